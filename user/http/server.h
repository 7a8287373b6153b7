/* A small HTTP/HTTPS server on libmicrohttpd for `serve` and `agent`: a route table, optional
 * token authentication (a Bearer header, or the password of HTTP basic auth, so that
 * `go tool pprof http://x:TOKEN@host:port/...` works), TLS from PEM files, request limits.
 *
 * Connections are accepted by a front door (http/door.h) that keeps the limits and checks the
 * first request head of each before a handler thread sees it; a connection is kept alive for
 * more requests (they go to libmicrohttpd directly) until it idles out or is evicted. Without
 * a token, the Host header must name this server (against DNS rebinding: 421 otherwise), and
 * query parameters may not hold NUL bytes, be empty or repeat (400).
 *
 * Threading: one thread per connection. A handler runs in its connection's thread and may block
 * as long as it likes (a 30 s capture): no server timeout applies while it runs, and it can ask
 * http_request__should_stop() whether the client went away or the server is stopping.
 * Handlers therefore run concurrently: what they share must be locked.
 *
 *	static int healthz(void *ctx, struct http_request *req)
 *	{
 *		return http_respond(req, 200, "text/plain", "ok\n", 3);
 *	}
 *	static const struct http_route routes[] = {{"/healthz", NULL, healthz, NULL}};
 *	struct http_server_opts o = {.listen = "127.0.0.1:6060", .routes = routes, .nroutes = 1};
 *	struct http_server *srv;
 *	err = http_server__new(&o, &srv) ?: http_server__start(srv);
 *	...
 *	http_server__stop(srv); http_server__free(srv);
 */
#ifndef CPROF_HTTP_SERVER_H
#define CPROF_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/access.h"

struct http_request;

/* Handles one request: must answer it with one http_respond*() call and return 0, or return
 * -errno without answering (the server then answers 500 with that error). */
typedef int (*http_handler_fn)(void *ctx, struct http_request *req);

struct http_route {
	const char *path;    /* exact path ("/debug/pprof/heap"); a trailing '*' matches a prefix */
	const char *methods; /* "GET" (GET and HEAD), "GET,POST"; NULL means "GET" */
	http_handler_fn fn;
	void *ctx;
	bool public; /* served without the token (e.g. a load balancer's health check) */
};

struct http_server_opts {
	/* "HOST:PORT", "[V6ADDR]:PORT" or ":PORT" (all interfaces); PORT 0 picks a free port
	 * (http_server__port tells which). NULL means "127.0.0.1:6060". */
	const char *listen;
	const char *token_file; /* NULL: no authentication; else its first line is the token */
	const char *tls_cert;	/* PEM files; both or neither */
	const char *tls_key;
	/* Limits; 0 means the default given. */
	/* Connections (see http/door.h): over a limit, the oldest one still waiting for its
	 * request is closed to make room; when all run requests, the new one gets 503. */
	unsigned max_connections; /* open connections at once (default 128) */
	unsigned max_per_client;  /* open connections from one address (default 64) */
	unsigned head_timeout;	  /* seconds to send the request line and headers, and again the
				   * body (default 10) */
	size_t max_body;	  /* request body bytes (default 1 MiB): more gets 413 */
	size_t max_header;	  /* request line + headers bytes (default 16 KiB): more gets 431 */
	unsigned idle_timeout;	  /* seconds a connection may stay idle (default 30) */
	const struct http_route *routes;
	size_t nroutes;
	/* Called after each request with its path, status and the time it took. May be NULL. */
	void (*on_request)(void *ctx, const char *path, int status, double seconds);
	void *ctx;
};

struct http_server;

/* Checks the options, reads the token and TLS files, resolves the address. Prints a one-line
 * error and returns -errno on failure (-EINVAL for bad options). */
int http_server__new(const struct http_server_opts *o, struct http_server **out);
/* Binds and starts serving in background threads. Warns on stderr when the address is not
 * loopback and no token is set. Returns 0 or -errno (reported). */
int http_server__start(struct http_server *s);
/* The port bound (after start), and the base URL ("http://127.0.0.1:6060"). */
int http_server__port(const struct http_server *s);
const char *http_server__url(const struct http_server *s);
/* Stops accepting, asks running handlers to finish (http_request__should_stop turns true),
 * waits up to 15 s for the requests in flight to be answered, then closes every connection.
 * Safe to call twice. */
void http_server__stop(struct http_server *s);
void http_server__free(struct http_server *s);

/* Request accessors; strings live until the handler returns. */
const char *http_request__method(const struct http_request *r);
const char *http_request__path(const struct http_request *r);
/* A query parameter (URL-decoded), NULL when absent. */
const char *http_request__query(const struct http_request *r, const char *key);
/* Calls fn for each query parameter, in order (value NULL for "?key" without '='). */
void http_request__for_each_query(const struct http_request *r,
				  void (*fn)(void *ctx, const char *key, const char *value),
				  void *ctx);
const char *http_request__header(const struct http_request *r, const char *name);
/* Who sent the request: its token, and the local user owning the client's socket (found in
 * /proc/net/tcp{,6}; see http/access.h). Looked up on the first call. */
const struct http_peer *http_request__peer(struct http_request *r);
/* The request body (POST), possibly empty; never NULL. */
const char *http_request__body(const struct http_request *r, size_t *len);
/* True once the client has closed its side of the connection or the server is stopping: a
 * long handler polls it and ends early. Cheap (one poll(2)). */
bool http_request__should_stop(struct http_request *r);

/* Adds a response header to the next http_respond*() of this request. Returns 0 or -ENOMEM. */
int http_request__add_header(struct http_request *r, const char *name, const char *value);

/* Answers with a copy of body. Returns 0 or -errno. */
int http_respond(struct http_request *r, int status, const char *content_type, const void *body,
		 size_t len);
/* Answers with body, a malloc'd buffer the server frees (also on failure). */
int http_respond_take(struct http_request *r, int status, const char *content_type, void *body,
		      size_t len);
/* Answers an error the way net/http/pprof does: text/plain, `X-Go-Pprof: 1` (so go tool pprof
 * prints the message), the formatted message plus a newline as the body. */
int http_respond_error(struct http_request *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
