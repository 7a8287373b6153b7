/* The front door of the HTTP server: one thread accepts every connection, holds it until its
 * request head (request line and headers) has arrived, checks that head, and only then hands
 * the connection to libmicrohttpd. So a connection costs a handler thread only once it has a
 * complete request, and the server's limits are kept here:
 *
 *  - a deadline for the request head (slowly-sent requests are answered 408 and closed; one
 *    that sent nothing at all is closed quietly after the idle timeout, if that is shorter);
 *  - at most max_per_client connections from one address and max_connections in all: a new
 *    connection over a limit makes room by closing the oldest connection that runs no request
 *    (one still waiting for its head, or a kept-alive one between requests); when every
 *    connection is running a request, the new one is answered 503 with Retry-After (plain
 *    HTTP) or closed (TLS);
 *  - a malformed head gets a one-line text/plain 4xx (400, 413, 431) in the project's format
 *    instead of libmicrohttpd's HTML page.
 *
 * The first request of a connection is checked here; later requests of a kept-alive connection
 * go to libmicrohttpd directly (its idle timeout and the eviction above still apply).
 *
 * The head is read with MSG_PEEK, so libmicrohttpd reads it again from the socket; the thread
 * waits for more bytes with SO_RCVLOWAT set past what it has seen. With TLS the bytes are a
 * handshake, so a TLS connection is handed over as soon as its first byte arrives (the limits on
 * connections still apply; the head deadline is then libmicrohttpd's idle timeout). */
#ifndef CPROF_HTTP_DOOR_H
#define CPROF_HTTP_DOOR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct http_door_opts {
	int listen_fd; /* bound and listening; the door owns it from start on */
	bool tls;
	unsigned max_connections; /* open connections in all */
	unsigned max_per_client;  /* open connections from one address */
	unsigned head_timeout;	  /* seconds from accept to a complete request head */
	unsigned idle_timeout;	  /* seconds a connection that sent nothing stays open */
	size_t max_header;	  /* request line + headers, bytes: more gets 431 */
	size_t max_body;	  /* Content-Length above this gets 413 */
	/* Takes a connection whose head arrived; returns 0, or -errno after closing fd. */
	int (*hand_off)(void *ctx, int fd, const struct sockaddr *addr, socklen_t len);
	void *ctx;
};

struct http_door;

/* Starts the accepting thread. Returns 0 or -errno. */
int http_door__start(const struct http_door_opts *o, struct http_door **out);
/* A connection handed off earlier is about to be closed (called from any thread, before fd is
 * closed). */
void http_door__closed(struct http_door *d, int fd);
/* A handed-off connection is between two requests (idle), or has begun one. */
void http_door__idle(struct http_door *d, int fd, bool idle);
/* Stops accepting (the listening socket is closed). Safe on NULL and twice. */
void http_door__stop(struct http_door *d);
/* Stops, closes the connections still waiting and frees. Safe on NULL. */
void http_door__free(struct http_door *d);

/* Checks a request head of len bytes (up to its blank line). Returns 0, or the HTTP status to
 * answer with *why its one-line reason. */
int http_door__check_head(const char *head, size_t len, size_t max_body, const char **why);

#endif
