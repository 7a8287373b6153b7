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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strbuf_escapes),
		cmocka_unit_test(test_flamegraph_data),
		cmocka_unit_test(test_server),
		cmocka_unit_test(test_server_bad_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
