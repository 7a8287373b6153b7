/* Private to http/: the HTTP server's own structures, shared by the files that make up the
 * server (http/server.h is their public face):
 *   server.c  requests and dispatch
 *   setup.c   options, token, TLS files, the listening socket
 *   guard.c   authorization, the Host check, query checks
 * The other modules of http/ (door, access, procs, flamegraph) stand alone and do not include
 * it; nothing outside http/ does. */
#ifndef CPROF_HTTP_INTERNAL_H
#define CPROF_HTTP_INTERNAL_H

#include <stdbool.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "http/access.h"
#include "http/server.h"

#define DEFAULT_LISTEN		"127.0.0.1:6060"
#define DEFAULT_MAX_CONNECTIONS 128
#define DEFAULT_MAX_PER_CLIENT	64
#define DEFAULT_HEAD_TIMEOUT	10
#define DEFAULT_MAX_BODY	(1u << 20)
#define DEFAULT_MAX_HEADER	(16u << 10)
#define DEFAULT_IDLE_TIMEOUT	30

struct MHD_Daemon;
struct MHD_Connection;
struct http_door;

struct http_server {
	struct http_server_opts o;
	char *token;
	char *cert, *key; /* PEM contents */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	bool loopback;
	char host[256]; /* the host part of --listen, for the Host header check */
	int port;
	char url[128];
	int listen_fd;
	struct http_door *door;
	struct MHD_Daemon *daemon;
	volatile int stopping;
	int inflight;	    /* requests between their first call and their completion (atomic) */
	char last_log[256]; /* libmicrohttpd's last message, for start errors */
};

struct header {
	char *name, *value;
	struct header *next;
};

struct http_request {
	struct http_server *s;
	struct MHD_Connection *conn;
	const char *method, *path;
	char *body;
	size_t body_len;
	bool body_too_big;
	bool responded;
	bool queue_failed;
	bool authorized; /* http_guard__authorized(), worked out once by dispatch() */
	bool peer_done;	 /* peer below is filled in */
	struct http_peer peer;
	int status;
	struct header *headers;
	double t0; /* clock__mono_s() at the request's first call */
};

/* server.c: the socket of a connection, -1 if unknown. */
int http_connection__fd(struct MHD_Connection *conn);

/* setup.c */
int http_setup__open_listener(struct http_server *s);
bool http_setup__is_loopback(const struct sockaddr_storage *a);

/* guard.c: each answers the request (401 aside) and returns false when it fails. */
/* The token, as a Bearer header or the password of basic auth; true without a token. */
bool http_guard__authorized(struct http_request *r);
/* Without a token, Host must name this server (421 otherwise). */
bool http_guard__host(struct http_request *r);
/* No NUL byte, no repeated and no empty parameter (400 otherwise). */
bool http_guard__query(struct http_request *r);

#endif
