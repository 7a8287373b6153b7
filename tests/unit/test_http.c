/* Unit tests of the HTTP pieces serve and agent share: the server (routes, token, limits,
 * should_stop on a client that leaves) over real loopback sockets, the string builder's
 * escaping, and the flame graph page's data (names that try to close the script stay inside). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "http/access.h"
#include "http/door.h"
#include "http/flamegraph.h"
#include "http/server.h"
#include "pprof/builder.h"
#include "util/strbuf.h"

static void test_strbuf_escapes(void **state)
{
	struct strbuf b = {};
	char *s;
	size_t len;

	(void)state;
	strbuf__json(&b, "a\"b\\c\n</script>&\x01");
	assert_string_equal(b.s, "\"a\\\"b\\\\c\\u000a\\u003c/script\\u003e\\u0026\\u0001\"");
	strbuf__free(&b);
	strbuf__html(&b, "<a href=\"x\">'&'</a>");
	assert_string_equal(b.s, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
	strbuf__free(&b);
	for (int i = 0; i < 10000; i++)
		strbuf__printf(&b, "%04d,", i);
	assert_int_equal(strbuf__err(&b), 0);
	s = strbuf__take(&b, &len);
	assert_int_equal(len, 50000);
	assert_memory_equal(s + 49995, "9999,", 5);
	assert_null(b.s);
	free(s);
	s = strbuf__take(&b, &len); /* empty: still a string */
	assert_string_equal(s, "");
	assert_int_equal(len, 0);
	free(s);
}

/* --- flame graph data --- */

static const struct sym_mapping app_map = {
	.start = 0x400000,
	.limit = 0x500000,
	.path = "/usr/bin/app",
	.build_id = "",
	.has_functions = true,
};
static const struct sym_mapping kmap = {
	.start = 0xffffffff81000000ull,
	.limit = 0xffffffff82000000ull,
	.path = "[kernel.kallsyms]",
	.build_id = "",
	.has_functions = true,
};

static int fake_user(void *ctx, pid_t pid, uint64_t addr, bool is_return, struct sym_result *r)
{
	(void)ctx;
	(void)pid;
	(void)is_return;
	memset(r, 0, sizeof(*r));
	r->mapping = &app_map;
	r->nframes = 1;
	r->frames[0].function = addr == 0x401000   ? "main"
				: addr == 0x402000 ? "</script><img src=x onerror=alert(1)>"
						   : "leaf";
	r->frames[0].system_name = r->frames[0].function;
	return 0;
}

static int fake_kernel(void *ctx, uint64_t addr, bool is_return, struct sym_result *r)
{
	(void)ctx;
	(void)addr;
	(void)is_return;
	memset(r, 0, sizeof(*r));
	r->mapping = &kmap;
	r->nframes = 1;
	r->frames[0].function = "do_syscall_64";
	r->frames[0].system_name = "do_syscall_64";
	return 0;
}

static void test_flamegraph_data(void **state)
{
	struct pprof_config cfg = {.nvalues = 2,
				   .sample_types = {{"samples", "count"}, {"cpu", "nanoseconds"}},
				   .period_type = {"cpu", "nanoseconds"},
				   .period = 10,
				   .default_sample_type = "cpu"};
	struct pprof_resolver res = {fake_user, fake_kernel, NULL};
	uint64_t u1[] = {0x403000, 0x402000, 0x401000}, k1[] = {0xffffffff81000100ull};
	struct pprof_raw_sample s = {
		.pid = 42,
		.ustack = u1,
		.nustack = 3,
		.kstack = k1,
		.nkstack = 1,
		.values = {3, 30},
		.nlabels = 2,
		.labels = {{.key = "pid", .num = 42}, {.key = "comm", .str = "app"}}};
	struct flamegraph_info info = {.title = "cpu: <pid 42>", .profile_url = "/x?a=1&b=2"};
	struct pprof_builder *b = pprof_builder__new(&cfg, &res);
	uint8_t *pb;
	size_t len, hlen;
	char *html, *data, *end;

	(void)state;
	assert_non_null(b);
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	s.nkstack = 0;
	s.nustack = 2; /* main <- "</script>..." only */
	s.ustack = u1 + 1;
	s.values[0] = 1;
	s.values[1] = 10;
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	assert_int_equal(pprof_builder__encode(b, false, &pb, &len), 0);
	assert_int_equal(flamegraph__render(pb, len, &info, &html, &hlen), 0);
	assert_int_equal(strlen(html), hlen);
	/* The page has its data and no placeholder left. */
	assert_null(strstr(html, "__CPROF_DATA__"));
	data = strstr(html, "const DATA = {");
	assert_non_null(data);
	end = strstr(data, "</script>");
	assert_non_null(end);
	*end = '\0'; /* the data ends at the first closing tag: the hostile name is escaped */
	assert_non_null(
		strstr(data, "\\u003c/script\\u003e\\u003cimg src=x onerror=alert(1)\\u003e"));
	assert_non_null(strstr(data, "\"title\":\"cpu: \\u003cpid 42\\u003e\""));
	assert_non_null(
		strstr(data, "\"types\":[[\"samples\",\"count\"],[\"cpu\",\"nanoseconds\"]]"));
	assert_non_null(strstr(data, "\"default\":1"));
	assert_non_null(strstr(data, "\"procs\":[\"app (42)\"]"));
	/* Frames root first: main, the hostile one, leaf, then the kernel frame (flag 1). */
	assert_non_null(strstr(data, "[\"main\",\"app\",0]"));
	assert_non_null(strstr(data, "[\"do_syscall_64\",\"[kernel.kallsyms]\",1]"));
	assert_true(strstr(data, "[0,[3,30],[0,1,2,3]]") || strstr(data, "[0,[1,10],[0,1]]"));
	assert_non_null(strstr(data, "[0,[1,10],[0,1]]"));
	free(html);
	assert_int_equal(
		flamegraph__render((const uint8_t *)"\xff\xff\xff", 3, &info, &html, &hlen),
		-EINVAL);
	free(pb);
	pprof_builder__free(b);
}

/* --- the server --- */

static volatile int saw_stop;

static int echo(void *ctx, struct http_request *r)
{
	const char *x = http_request__query(r, "x");
	size_t blen;
	http_request__body(r, &blen);
	char out[256];

	(void)ctx;
	snprintf(out, sizeof(out), "%s %s x=%s body=%zu", http_request__method(r),
		 http_request__path(r), x ? x : "(none)", blen);
	return http_respond(r, 200, "text/plain", out, strlen(out));
}

static int waits(void *ctx, struct http_request *r)
{
	(void)ctx;
	for (int i = 0; i < 500 && !http_request__should_stop(r); i++)
		usleep(10000);
	saw_stop = http_request__should_stop(r);
	return http_respond(r, 200, "text/plain", "late", 4);
}

static int fails(void *ctx, struct http_request *r)
{
	(void)ctx;
	(void)r;
	return -ENOSPC;
}

static const struct http_route routes[] = {
	{"/echo", "GET,POST", echo, NULL, false}, {"/pub", NULL, echo, NULL, true},
	{"/pre/*", NULL, echo, NULL, false},	  {"/wait", NULL, waits, NULL, false},
	{"/fail", NULL, fails, NULL, false},
};

static int connect_to(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Sends req and returns the whole answer (the request asks the server to close). */
static char *roundtrip(int port, const char *req)
{
	static char buf[65536];
	int fd = connect_to(port);
	size_t n = 0;
	ssize_t k;

	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (n < sizeof(buf) - 1 && (k = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += k;
	buf[n] = '\0';
	close(fd);
	return buf;
}

#define AUTH		"Authorization: Bearer tok3n\r\n"
#define GET(path, hdrs) "GET " path " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" hdrs "\r\n"

static void test_server(void **state)
{
	char tok[] = "/tmp/cprof-test-token-XXXXXX";
	int fd = mkstemp(tok);
	struct http_server_opts o = {.listen = "127.0.0.1:0",
				     .token_file = tok,
				     .routes = routes,
				     .nroutes = sizeof(routes) / sizeof(routes[0]),
				     .max_body = 100};
	struct http_server *s;
	char *a;
	int port, c;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "tok3n\n", 6), 6);
	close(fd);
	assert_int_equal(http_server__new(&o, &s), 0);
	assert_int_equal(http_server__start(s), 0);
	port = http_server__port(s);
	assert_true(port > 0);
	assert_non_null(strstr(http_server__url(s), "http://127.0.0.1:"));

	a = roundtrip(port, GET("/pub?x=1", ""));
	assert_non_null(strstr(a, "HTTP/1.1 200"));
	assert_non_null(strstr(a, "GET /pub x=1 body=0"));
	a = roundtrip(port, GET("/echo", ""));
	assert_non_null(strstr(a, "HTTP/1.1 401"));
	assert_non_null(strstr(a, "X-Go-Pprof: 1"));
	assert_non_null(strstr(a, "WWW-Authenticate: Basic"));
	a = roundtrip(port, GET("/echo", "Authorization: Bearer tok3m\r\n"));
	assert_non_null(strstr(a, "HTTP/1.1 401"));
	a = roundtrip(port, GET("/echo?x=a%20b", AUTH));
	assert_non_null(strstr(a, "GET /echo x=a b body=0"));
	/* Basic auth: any user, the token as password ("u:tok3n"). */
	a = roundtrip(port, GET("/echo", "Authorization: Basic dTp0b2szbg==\r\n"));
	assert_non_null(strstr(a, "HTTP/1.1 200"));
	a = roundtrip(port, GET("/pre/anything", AUTH));
	assert_non_null(strstr(a, "GET /pre/anything"));
	a = roundtrip(port, GET("/nothing", AUTH));
	assert_non_null(strstr(a, "HTTP/1.1 404"));
	assert_non_null(strstr(a, "unknown path /nothing\n"));
	a = roundtrip(port, "POST /pub HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
			    "Content-Length: 1\r\n\r\nx");
	assert_non_null(strstr(a, "HTTP/1.1 405"));
	assert_non_null(strstr(a, "Allow: GET"));
	a = roundtrip(port, "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" AUTH
			    "Content-Length: 5\r\n\r\nhello");
	assert_non_null(strstr(a, "POST /echo x=(none) body=5"));
	a = roundtrip(port, "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" AUTH
			    "Content-Length: 101\r\n\r\n");
	assert_non_null(strstr(a, "HTTP/1.1 413"));
	a = roundtrip(port, GET("/fail", AUTH));
	assert_non_null(strstr(a, "HTTP/1.1 500"));
	assert_non_null(strstr(a, "internal error: No space left on device"));

	/* A client that leaves: the handler sees should_stop within its next poll. */
	saw_stop = 0;
	c = connect_to(port);
	assert_int_equal(write(c, GET("/wait", AUTH), strlen(GET("/wait", AUTH))),
			 (ssize_t)strlen(GET("/wait", AUTH)));
	usleep(200000);
	close(c);
	for (int i = 0; i < 300 && !saw_stop; i++)
		usleep(10000);
	assert_true(saw_stop);

	http_server__stop(s);
	http_server__stop(s);
	http_server__free(s);
	unlink(tok);
}

static void test_server_bad_options(void **state)
{
	struct http_server_opts o = {.routes = routes, .nroutes = 1};
	struct http_server *s = NULL;
	const char *bad[] = {"127.0.0.1", "127.0.0.1:70000", "[::1", "host:port", "127.0.0.1:-1"};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.listen = bad[i];
		assert_int_equal(http_server__new(&o, &s), -EINVAL);
	}
	o.listen = "127.0.0.1:0";
	o.tls_cert = "/nonexistent.pem";
	assert_int_equal(http_server__new(&o, &s), -EINVAL);
	o.tls_key = "/nonexistent.pem";
	assert_int_equal(http_server__new(&o, &s), -ENOENT);
	o.tls_cert = o.tls_key = NULL;
	o.token_file = "/nonexistent-token";
	assert_int_equal(http_server__new(&o, &s), -ENOENT);
	o.token_file = NULL;
	o.listen = "[::1]:0";
	assert_int_equal(http_server__new(&o, &s), 0);
	http_server__free(s);
}

/* --- the front door's checks of a request head --- */

static void test_door_check_head(void **state)
{
	static const struct {
		const char *head;
		int status;
	} cases[] = {
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
		{"GET /x?a=1 HTTP/1.0\r\n\r\n", 0},
		{"POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", 0},
		{"GET / HTTP/1.1\r\n\r\n", 400},	     /* 1.1 without Host */
		{"GARBAGE\r\n\r\n", 400},		     /* no target, no version */
		{"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400},  /* not HTTP/1.x */
		{"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400}, /* two spaces */
		{"GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400},  /* target not a path */
		{"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},  /* method not a token */
		{"GET / HTTP/1.1\r\nHost a\r\n\r\n", 400},   /* header without ':' */
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", 413},
		{"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
	};
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why = NULL;
		assert_int_equal(
			http_door__check_head(cases[i].head, strlen(cases[i].head), 100, &why),
			cases[i].status);
		assert_true(cases[i].status == 0 || (why && !strchr(why, '\n')));
	}
	/* A NUL inside the head. */
	assert_int_equal(
		http_door__check_head("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", 28, 100, &why), 400);
}

/* --- the client's uid from a /proc/net/tcp table --- */

static void test_access_find_socket(void **state)
{
	static char v4[] =
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   "
		"uid  timeout inode\n"
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     "
		"0        0 1062 1 0 100 0 0 10 0\n"
		"   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     "
		"0        0 1063 1 0 100 0 0 10 0\n"
		"   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  "
		"1000        0 1064 1 0 100 0 0 10 0\n";
	static char v6[] =
		"  sl  local_address                         remote_address                        "
		"st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
		"   0: 00000000000000000000000001000000:C351 00000000000000000000000001000000:1F90 "
		"01 00000000:00000000 00:00000000 00000000  1001        0 99 1 0 20 4 30 10 -1\n";
	struct sockaddr_in srv = {.sin_family = AF_INET, .sin_port = htons(0x1f90)};
	struct sockaddr_in cli = {.sin_family = AF_INET, .sin_port = htons(0xc350)};
	struct sockaddr_in6 srv6 = {.sin6_family = AF_INET6, .sin6_port = htons(0x1f90)};
	struct sockaddr_in6 cli6 = {.sin6_family = AF_INET6, .sin6_port = htons(0xc351)};
	struct sockaddr_storage s = {}, c = {};
	uid_t uid = 0;
	FILE *f;

	(void)state;
	srv.sin_addr.s_addr = cli.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memcpy(&s, &srv, sizeof(srv));
	memcpy(&c, &cli, sizeof(cli));
	f = fmemopen(v4, strlen(v4), "r");
	assert_int_equal(access__find_socket(f, false, &c, &s, &uid), 0);
	assert_int_equal(uid, 1000); /* the client's line, not the server's (uid 0) */
	fclose(f);
	cli.sin_port = htons(0xc352);
	memcpy(&c, &cli, sizeof(cli));
	f = fmemopen(v4, strlen(v4), "r");
	assert_int_equal(access__find_socket(f, false, &c, &s, &uid), -ENOENT);
	fclose(f);
	srv6.sin6_addr = cli6.sin6_addr = in6addr_loopback;
	memcpy(&s, &srv6, sizeof(srv6));
	memcpy(&c, &cli6, sizeof(cli6));
	f = fmemopen(v6, strlen(v6), "r");
	assert_int_equal(access__find_socket(f, true, &c, &s, &uid), 0);
	assert_int_equal(uid, 1001);
	fclose(f);
}

static void test_access_rules(void **state)
{
	struct http_peer root = {.local = true, .known = true, .uid = 0};
	struct http_peer user = {.local = true, .known = true, .uid = 4242};
	struct http_peer unknown = {.local = true};
	struct http_peer token = {.token = true, .local = true, .known = true, .uid = 4242};
	struct access a;
	char why[256];

	(void)state;
	access__of_peer(&root, &a);
	assert_true(a.all && access__kernel(&a));
	assert_int_equal(access__pid(&a, 1, why, sizeof(why)), 0);
	access__of_peer(&token, &a);
	assert_true(a.all);
	access__of_peer(&user, &a);
	assert_false(a.all);
	a.paranoid = 2;
	a.kptr_restrict = 0;
	assert_int_equal(access__pid(&a, 1, why, sizeof(why)), -EPERM);
	assert_non_null(strstr(why, "belongs to uid 0"));
	assert_int_equal(access__pid(&a, 4194303, why, sizeof(why)), -ESRCH);
	assert_int_equal(access__system(&a, why, sizeof(why)), -EPERM);
	assert_false(access__kernel(&a));
	a.paranoid = 1;
	assert_true(access__kernel(&a));
	a.kptr_restrict = 1;
	assert_false(access__kernel(&a));
	a.paranoid = 0;
	assert_int_equal(access__system(&a, why, sizeof(why)), 0);
	a.paranoid = 3;
	assert_int_equal(access__profile(&a, why, sizeof(why)), -EPERM);
	access__of_peer(&unknown, &a);
	assert_int_equal(access__pid(&a, 1, why, sizeof(why)), -EPERM);
	assert_non_null(strstr(why, "cannot tell which local user"));
}

/* Without a token: Host must name the server; parameters without NUL, repeats or empties. */
static void test_server_host_and_query(void **state)
{
	struct http_server_opts o = {.listen = "127.0.0.1:0",
				     .routes = routes,
				     .nroutes = sizeof(routes) / sizeof(routes[0])};
	struct http_server *s;
	char req[256], *a;
	int port;

	(void)state;
	assert_int_equal(http_server__new(&o, &s), 0);
	assert_int_equal(http_server__start(s), 0);
	port = http_server__port(s);
	a = roundtrip(port, GET("/pub", ""));
	assert_non_null(strstr(a, "HTTP/1.1 421"));
	assert_non_null(strstr(a, "does not name this server"));
	snprintf(req, sizeof(req),
		 "GET /pub HTTP/1.1\r\nHost: localhost:%d\r\nConnection: close\r\n\r\n", port);
	assert_non_null(strstr(roundtrip(port, req), "HTTP/1.1 200"));
	snprintf(req, sizeof(req),
		 "GET /pub HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", port + 1);
	assert_non_null(strstr(roundtrip(port, req), "HTTP/1.1 421"));
	snprintf(req, sizeof(req),
		 "GET /pub?x=1%%00y HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
		 port);
	a = roundtrip(port, req);
	assert_non_null(strstr(a, "HTTP/1.1 400"));
	assert_non_null(strstr(a, "NUL byte in parameter 'x'\n"));
	snprintf(req, sizeof(req),
		 "GET /pub?x=1&x=2 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
		 port);
	assert_non_null(strstr(roundtrip(port, req), "given more than once"));
	snprintf(req, sizeof(req),
		 "GET /pub?x= HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", port);
	assert_non_null(strstr(roundtrip(port, req), "empty value"));
	/* What the front door refuses comes in the same one-line format. */
	a = roundtrip(port, "GARBAGE\r\n\r\n");
	assert_non_null(strstr(a, "HTTP/1.1 400"));
	assert_non_null(strstr(a, "X-Go-Pprof: 1"));
	assert_non_null(strstr(a, "malformed request line"));
	assert_null(strstr(a, "<html"));
	/* Garbage is answered when it arrives, without waiting for a blank line. */
	a = roundtrip(port, "\x16\x03\x01garbage");
	assert_non_null(strstr(a, "HTTP/1.1 400"));
	a = roundtrip(port, "GET / HTTP/9\r\nHost: a\r\n");
	assert_non_null(strstr(a, "HTTP/1.1 400"));
	http_server__free(s);
}

/* A kept-alive connection between two requests makes room for a new one, as a silent one does;
 * connections all running requests make the next one a 503. */
static void test_server_limits(void **state)
{
	struct http_server_opts o = {.listen = "127.0.0.1:0",
				     .routes = routes,
				     .nroutes = sizeof(routes) / sizeof(routes[0]),
				     .max_per_client = 2};
	const char *req = "GET /pub HTTP/1.1\r\nHost: localhost\r\n\r\n";
	const char *once = "GET /pub HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
	const char *wait = "GET /wait HTTP/1.1\r\nHost: localhost\r\n\r\n";
	struct http_server *s;
	char buf[4096], *a;
	int port, c[2];

	(void)state;
	assert_int_equal(http_server__new(&o, &s), 0);
	assert_int_equal(http_server__start(s), 0);
	port = http_server__port(s);
	for (int i = 0; i < 2; i++) {
		c[i] = connect_to(port);
		assert_int_equal(write(c[i], req, strlen(req)), (ssize_t)strlen(req));
		assert_true(read(c[i], buf, sizeof(buf)) > 0); /* answered, kept alive */
	}
	a = roundtrip(port, once);
	assert_non_null(strstr(a, "HTTP/1.1 200"));
	assert_int_equal(read(c[0], buf, sizeof(buf)), 0); /* the oldest was closed */
	close(c[0]);
	close(c[1]);
	/* Two requests running (/wait polls until its client leaves): the third gets 503. */
	for (int i = 0; i < 2; i++) {
		c[i] = connect_to(port);
		assert_int_equal(write(c[i], wait, strlen(wait)), (ssize_t)strlen(wait));
	}
	usleep(300000);
	a = roundtrip(port, once);
	assert_non_null(strstr(a, "HTTP/1.1 503"));
	assert_non_null(strstr(a, "Retry-After: 1"));
	assert_non_null(strstr(a, "too many connections from your address"));
	close(c[0]);
	close(c[1]);
	http_server__free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strbuf_escapes),
		cmocka_unit_test(test_flamegraph_data),
		cmocka_unit_test(test_server),
		cmocka_unit_test(test_server_bad_options),
		cmocka_unit_test(test_door_check_head),
		cmocka_unit_test(test_access_find_socket),
		cmocka_unit_test(test_access_rules),
		cmocka_unit_test(test_server_host_and_query),
		cmocka_unit_test(test_server_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
