/* The HTTP server's checks of who sent a request and what it carries: the token, the Host
 * header (against DNS rebinding), the query parameters, and the requester's uid. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <microhttpd.h>

#include "http/access.h"
#include "http/server.h"
#include "http/internal.h"

/* Compares in time that depends on the length of the guess only. */
static bool token_equal(const char *token, const char *guess)
{
	size_t n = strlen(token), m = strlen(guess);
	unsigned char diff = n != m;

	for (size_t i = 0; i < m; i++)
		diff |= (unsigned char)guess[i] ^ (unsigned char)token[i % n];
	return diff == 0;
}

bool http_guard__authorized(struct http_request *r)
{
	const char *h = http_request__header(r, MHD_HTTP_HEADER_AUTHORIZATION);
	char *user, *pass = NULL;
	bool ok;

	if (!r->s->token)
		return true;
	if (h && strncasecmp(h, "Bearer ", 7) == 0)
		return token_equal(r->s->token, h + 7);
	user = MHD_basic_auth_get_username_password(r->conn, &pass);
	ok = pass && token_equal(r->s->token, pass);
	MHD_free(user);
	MHD_free(pass);
	return ok;
}

/* --- checks of every request --- */

/* Host names a browser may send us without a token: a page on another site reaching this
 * server by DNS rebinding sends its own name. IP literals cannot be rebound. */
static bool host_name_ok(const struct http_server *s, const char *name, size_t n)
{
	struct in6_addr a6;
	struct in_addr a4;
	char buf[256];

	if (!n || n >= sizeof(buf))
		return false;
	memcpy(buf, name, n);
	buf[n] = '\0';
	if (buf[0] == '[' && buf[n - 1] == ']') {
		buf[n - 1] = '\0';
		return inet_pton(AF_INET6, buf + 1, &a6) == 1;
	}
	return strcasecmp(buf, "localhost") == 0 || strcasecmp(buf, s->host) == 0 ||
	       inet_pton(AF_INET, buf, &a4) == 1;
}

/* Without a token, Host must name this server (see host_name_ok) and its port. */
bool http_guard__host(struct http_request *r)
{
	const char *h = http_request__header(r, MHD_HTTP_HEADER_HOST), *colon;
	size_t n;

	if (r->s->token || !h)
		return true; /* HTTP/1.0 may omit it; the front door requires it of 1.1 */
	colon = strrchr(h, ':');
	if (colon && strchr(colon, ']'))
		colon = NULL;
	n = colon ? (size_t)(colon - h) : strlen(h);
	if (host_name_ok(r->s, h, n) && (!colon || atoi(colon + 1) == r->s->port))
		return true;
	http_respond_error(r, 421,
			   "Host '%.64s' does not name this server: use %s, or run the server "
			   "with --token-file",
			   h, r->s->url);
	return false;
}

struct query_check {
	char bad[160];
	const char *keys[32];
	size_t nkeys;
};

static enum MHD_Result check_one_param(void *cls, enum MHD_ValueKind kind, const char *key,
				       size_t key_size, const char *value, size_t value_size)
{
	struct query_check *q = cls;

	(void)kind;
	if (strlen(key) != key_size || (value && strlen(value) != value_size))
		snprintf(q->bad, sizeof(q->bad), "NUL byte in parameter '%.32s'", key);
	else if (value && !value_size)
		snprintf(q->bad, sizeof(q->bad), "invalid %.32s '': empty value", key);
	for (size_t i = 0; !q->bad[0] && value && i < q->nkeys; i++)
		if (strcmp(q->keys[i], key) == 0)
			snprintf(q->bad, sizeof(q->bad), "parameter '%.32s' given more than once",
				 key);
	if (q->bad[0])
		return MHD_NO;
	if (value && q->nkeys < sizeof(q->keys) / sizeof(q->keys[0]))
		q->keys[q->nkeys++] = key;
	return MHD_YES;
}

/* Query parameters: no NUL (pid=1%00abc), none given twice, none empty ("pid="). */
bool http_guard__query(struct http_request *r)
{
	struct query_check q = {};

	MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, check_one_param, &q);
	if (!q.bad[0])
		return true;
	http_respond_error(r, 400, "%s", q.bad);
	return false;
}

const struct http_peer *http_request__peer(struct http_request *r)
{
	struct sockaddr_storage local = {}, peer = {};
	socklen_t llen = sizeof(local), plen = sizeof(peer);
	uid_t uid;
	int fd;

	if (r->peer_done)
		return &r->peer;
	r->peer_done = true;
	/* A token holder may do everything: who it is does not matter. */
	r->peer.token = r->s->token && r->authorized;
	if (r->peer.token)
		return &r->peer;
	fd = http_connection__fd(r->conn);
	if (fd < 0 || getsockname(fd, (struct sockaddr *)&local, &llen) ||
	    getpeername(fd, (struct sockaddr *)&peer, &plen))
		return &r->peer;
	r->peer.local = http_setup__is_loopback(&peer);
	if (access__peer_uid(&local, &peer, &uid) == 0) {
		r->peer.local = r->peer.known = true;
		r->peer.uid = uid;
	}
	return &r->peer;
}
