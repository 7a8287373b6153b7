#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <microhttpd.h>

#include "http/access.h"
#include "http/door.h"
#include "http/server.h"
#include "http/internal.h"
#include "util/clock.h"
#include "util/log.h"

/* --- requests --- */

const char *http_request__method(const struct http_request *r)
{
	return r->method;
}

const char *http_request__path(const struct http_request *r)
{
	return r->path;
}

struct query_find {
	const char *key;
	const char *value;
	bool found;
};

static enum MHD_Result query_find_one(void *cls, enum MHD_ValueKind kind, const char *key,
				      const char *value)
{
	struct query_find *q = cls;

	(void)kind;
	if (strcmp(key, q->key) != 0)
		return MHD_YES;
	q->value = value ? value : "";
	q->found = true;
	return MHD_NO;
}

const char *http_request__query(const struct http_request *r, const char *key)
{
	struct query_find q = {.key = key};

	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_find_one, &q);
	return q.found ? q.value : NULL;
}

struct query_each {
	void (*fn)(void *ctx, const char *key, const char *value);
	void *ctx;
};

static enum MHD_Result query_each_one(void *cls, enum MHD_ValueKind kind, const char *key,
				      const char *value)
{
	struct query_each *q = cls;

	(void)kind;
	q->fn(q->ctx, key, value);
	return MHD_YES;
}

void http_request__for_each_query(const struct http_request *r,
				  void (*fn)(void *ctx, const char *key, const char *value),
				  void *ctx)
{
	struct query_each q = {fn, ctx};

	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_each_one, &q);
}

const char *http_request__header(const struct http_request *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_request__body(const struct http_request *r, size_t *len)
{
	*len = r->body_len;
	return r->body ? r->body : "";
}

bool http_request__should_stop(struct http_request *r)
{
	struct pollfd pfd = {.events = POLLRDHUP};

	if (r->s->stopping)
		return true;
	pfd.fd = http_connection__fd(r->conn);
	if (pfd.fd < 0)
		return false;
	/* The client sends nothing more while it waits for the response: a hang-up or an error on
	 * its socket means it is gone. */
	return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

int http_request__add_header(struct http_request *r, const char *name, const char *value)
{
	struct header *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->name = strdup(name);
	h->value = strdup(value);
	if (!h->name || !h->value) {
		free(h->name);
		free(h->value);
		free(h);
		return -ENOMEM;
	}
	h->next = r->headers;
	r->headers = h;
	return 0;
}

static void free_headers(struct http_request *r)
{
	struct header *h, *next;

	for (h = r->headers; h; h = next) {
		next = h->next;
		free(h->name);
		free(h->value);
		free(h);
	}
	r->headers = NULL;
}

static int queue(struct http_request *r, int status, const char *content_type, void *body,
		 size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *resp;
	enum MHD_Result ok;

	if (r->responded) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return -EALREADY;
	}
	r->responded = true;
	r->status = status;
	resp = MHD_create_response_from_buffer(len, body, mode);
	if (!resp) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		r->queue_failed = true;
		return -ENOMEM;
	}
	if (content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	for (struct header *h = r->headers; h; h = h->next)
		MHD_add_response_header(resp, h->name, h->value);
	free_headers(r);
	ok = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	if (ok != MHD_YES) {
		r->queue_failed = true;
		return -EIO;
	}
	return 0;
}

int http_respond(struct http_request *r, int status, const char *content_type, const void *body,
		 size_t len)
{
	return queue(r, status, content_type, (void *)body, len, MHD_RESPMEM_MUST_COPY);
}

int http_respond_take(struct http_request *r, int status, const char *content_type, void *body,
		      size_t len)
{
	return queue(r, status, content_type, body, len, MHD_RESPMEM_MUST_FREE);
}

int http_respond_error(struct http_request *r, int status, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	/* One line: the message, and a newline for curl users. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	msg = realloc(msg, n + 2) ?: msg;
	msg[n] = '\n';
	http_request__add_header(r, "X-Go-Pprof", "1");
	return queue(r, status, "text/plain; charset=utf-8", msg, n + 1, MHD_RESPMEM_MUST_FREE);
}

/* --- dispatch --- */

static bool method_allowed(const char *methods, const char *method)
{
	const char *m = methods ? methods : "GET";
	size_t n = strlen(method);

	if (strcmp(method, "HEAD") == 0)
		method = "GET", n = 3;
	while (*m) {
		size_t len = strcspn(m, ",");

		if (len == n && strncmp(m, method, n) == 0)
			return true;
		m += len;
		if (*m == ',')
			m++;
	}
	return false;
}

static const struct http_route *find_route(const struct http_server *s, const char *path)
{
	for (size_t i = 0; i < s->o.nroutes; i++) {
		const struct http_route *rt = &s->o.routes[i];
		size_t n = strlen(rt->path);

		if (n && rt->path[n - 1] == '*') {
			if (strncmp(path, rt->path, n - 1) == 0)
				return rt;
		} else if (strcmp(path, rt->path) == 0) {
			return rt;
		}
	}
	return NULL;
}

static void dispatch(struct http_request *r)
{
	struct http_server *s = r->s;
	const struct http_route *rt = find_route(s, r->path);
	int err;

	if (!http_guard__host(r) || !http_guard__query(r))
		return;
	r->authorized = http_guard__authorized(r);
	if (!(rt && rt->public) && !r->authorized) {
		http_request__add_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					 "Basic realm=\"cprof-bpf\", charset=\"UTF-8\"");
		http_respond_error(r, 401,
				   "missing or wrong token: send it as 'Authorization: Bearer "
				   "TOKEN' or as the basic-auth password");
		return;
	}
	if (!rt) {
		http_respond_error(r, 404, "unknown path %s", r->path);
		return;
	}
	if (!method_allowed(rt->methods, r->method)) {
		http_request__add_header(r, MHD_HTTP_HEADER_ALLOW,
					 rt->methods ? rt->methods : "GET");
		http_respond_error(r, 405, "method %s not allowed on %s", r->method, r->path);
		return;
	}
	if (r->body_too_big) {
		http_respond_error(r, 413, "request body larger than %zu bytes", s->o.max_body);
		return;
	}
	/* No timeout while the handler runs (a capture takes as long as it was asked to); setting
	 * it back afterwards restarts the idle clock. */
	MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
	err = rt->fn(rt->ctx, r);
	MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, s->o.idle_timeout);
	if (!r->responded)
		http_respond_error(r, 500, "internal error: %s", strerror(err < 0 ? -err : EPROTO));
}

struct header_size {
	size_t n;
};

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key,
				       const char *value)
{
	struct header_size *h = cls;

	(void)kind;
	h->n += strlen(key) + (value ? strlen(value) : 0) + 4;
	return MHD_YES;
}

/* The first call of a request: everything but the body has arrived. Too big a request is
 * answered at once, before its body is read. */
static bool check_request(struct http_request *r, const char *url)
{
	struct header_size hs = {strlen(url) + strlen(r->method) + 16};
	const char *cl;
	char *end;
	unsigned long long n;

	MHD_get_connection_values(r->conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, add_header_size,
				  &hs);
	if (hs.n > r->s->o.max_header) {
		http_respond_error(r, 431, "request line and headers larger than %zu bytes",
				   r->s->o.max_header);
		return false;
	}
	cl = http_request__header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		errno = 0;
		n = strtoull(cl, &end, 10);
		if (errno || *end || n > r->s->o.max_body) {
			http_respond_error(r, 413, "request body larger than %zu bytes",
					   r->s->o.max_body);
			return false;
		}
	}
	return true;
}

static int append_body(struct http_request *r, const char *data, size_t len)
{
	char *b;

	if (r->body_too_big || r->body_len + len > r->s->o.max_body) {
		r->body_too_big = true;
		return 0;
	}
	b = realloc(r->body, r->body_len + len + 1);
	if (!b)
		return -ENOMEM;
	memcpy(b + r->body_len, data, len);
	r->body = b;
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return 0;
}

int http_connection__fd(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

	return ci ? ci->connect_fd : -1;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload,
				 size_t *upload_size, void **con_cls)
{
	struct http_server *s = cls;
	struct http_request *r = *con_cls;

	(void)version;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->s = s;
		r->conn = conn;
		r->method = method;
		r->path = url;
		r->t0 = clock__mono_s();
		__atomic_add_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
		http_door__idle(s->door, http_connection__fd(conn), false);
		*con_cls = r;
		/* The body too must arrive within the request deadline: silence ends it sooner. */
		if (s->o.head_timeout < s->o.idle_timeout)
			MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
						  s->o.head_timeout);
		check_request(r, url);
		return r->queue_failed ? MHD_NO : MHD_YES;
	}
	if (r->responded)
		return r->queue_failed ? MHD_NO : MHD_YES;
	if (*upload_size) {
		if (clock__mono_s() - r->t0 > s->o.head_timeout) {
			pr_debug("http: %s: body not received within %u s, closing\n", r->path,
				 s->o.head_timeout);
			return MHD_NO;
		}
		if (append_body(r, upload, *upload_size))
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	dispatch(r);
	return r->queue_failed ? MHD_NO : MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_server *s = cls;
	struct http_request *r = *con_cls;

	(void)toe;
	if (!r)
		return;
	http_door__idle(s->door, http_connection__fd(conn), true);
	if (s->o.on_request)
		s->o.on_request(s->o.ctx, r->path, r->responded ? r->status : 0,
				clock__mono_s() - r->t0);
	free_headers(r);
	free(r->body);
	free(r);
	*con_cls = NULL;
	__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct http_server *s = cls;
	size_t n;

	vsnprintf(s->last_log, sizeof(s->last_log), fmt, ap);
	n = strlen(s->last_log);
	while (n && s->last_log[n - 1] == '\n')
		s->last_log[--n] = '\0';
	pr_debug("libmicrohttpd: %s\n", s->last_log);
}

/* A connection handed over by the front door ends (libmicrohttpd closes its socket after this
 * returns): it counts no more against its client. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct http_server *s = cls;

	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
		http_door__closed(s->door, http_connection__fd(conn));
}

static int hand_off(void *ctx, int fd, const struct sockaddr *addr, socklen_t len)
{
	struct http_server *s = ctx;

	/* libmicrohttpd closes the socket when it cannot take it. */
	return MHD_add_connection(s->daemon, fd, addr, len) == MHD_YES ? 0 : -EIO;
}

static int start_daemon(struct http_server *s)
{
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_NO_LISTEN_SOCKET;
	size_t pool = s->o.max_header * 2 > 32768 ? s->o.max_header * 2 : 32768;

	if (s->addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (s->cert)
		flags |= MHD_USE_TLS;
	/* Connections come from the front door (http/door.h), which keeps the limits: one more
	 * here than there, so libmicrohttpd never refuses one the door let in. */
	struct MHD_OptionItem opts[] = {
		{MHD_OPTION_CONNECTION_LIMIT, s->o.max_connections + 1, NULL},
		{MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)pool, NULL},
		{MHD_OPTION_CONNECTION_TIMEOUT, s->o.idle_timeout, NULL},
		{MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s},
		{MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s},
		{MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, s},
		{s->cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, s->cert},
		{MHD_OPTION_HTTPS_MEM_KEY, 0, s->key},
		{MHD_OPTION_END, 0, NULL},
	};

	s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s, MHD_OPTION_ARRAY, opts,
				     MHD_OPTION_END);
	if (!s->daemon) {
		pr_err("cannot start the %s server on %s%s%s\n", s->cert ? "HTTPS" : "HTTP",
		       s->o.listen, s->last_log[0] ? ": " : "", s->last_log);
		return -EINVAL;
	}
	return 0;
}

int http_server__start(struct http_server *s)
{
	struct http_door_opts d = {
		.tls = s->cert != NULL,
		.max_connections = s->o.max_connections,
		.max_per_client = s->o.max_per_client,
		.head_timeout = s->o.head_timeout,
		.idle_timeout = s->o.idle_timeout,
		.max_header = s->o.max_header,
		.max_body = s->o.max_body,
		.hand_off = hand_off,
		.ctx = s,
	};
	int err;

	err = http_setup__open_listener(s);
	if (err) {
		pr_err("cannot listen on %s: %s\n", s->o.listen, strerror(-err));
		return err;
	}
	err = start_daemon(s);
	if (!err) {
		d.listen_fd = s->listen_fd;
		err = http_door__start(&d, &s->door);
		if (err)
			pr_err("cannot start the HTTP server's accepting thread: %s\n",
			       strerror(-err));
	}
	if (err) {
		close(s->listen_fd);
		s->listen_fd = -1;
		return err;
	}
	s->listen_fd = -1; /* the door's now */
	if (!s->loopback && !s->token)
		pr_warn("listening on %s without --token-file: anyone who can reach it from "
			"another machine can profile every process on this machine\n",
			s->o.listen);
	return 0;
}

int http_server__port(const struct http_server *s)
{
	return s->port;
}

const char *http_server__url(const struct http_server *s)
{
	return s->url;
}

/* Longest wait at stop for requests to finish: handlers see should_stop within their next poll,
 * and then send what they have (a capture its partial profile). */
#define STOP_GRACE_MS 15000

void http_server__stop(struct http_server *s)
{
	if (!s || !s->daemon)
		return;
	s->stopping = 1;
	/* No new connections; the requests in flight finish and their answers are sent. */
	http_door__stop(s->door);
	for (int ms = 0; ms < STOP_GRACE_MS && __atomic_load_n(&s->inflight, __ATOMIC_SEQ_CST);
	     ms += 10)
		usleep(10000);
	MHD_stop_daemon(s->daemon);
	s->daemon = NULL;
}

void http_server__free(struct http_server *s)
{
	if (!s)
		return;
	http_server__stop(s);
	http_door__free(s->door);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->token)
		memset(s->token, 0, strlen(s->token));
	free(s->token);
	free(s->cert);
	if (s->key)
		memset(s->key, 0, strlen(s->key));
	free(s->key);
	free(s);
}
