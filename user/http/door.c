#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "http/door.h"
#include "util/clock.h"
#include "util/log.h"

/* A connection accepted and still waiting for its request head. */
struct pending {
	int fd;
	struct sockaddr_storage addr;
	socklen_t len;
	double t0; /* accepted, monotonic seconds */
	size_t seen;
};

/* A connection handed to libmicrohttpd, until it closes. Between two requests of a kept-alive
 * connection it is idle, and may be closed to make room like a waiting one. */
struct handed {
	int fd; /* open until http_door__closed(): libmicrohttpd notifies before it closes */
	struct sockaddr_storage addr;
	bool idle;
	bool closing; /* shut down by us: no longer counted */
	double t_idle;
};

struct http_door {
	struct http_door_opts o;
	pthread_t thread;
	bool started;
	int wake[2];	      /* a byte here stops the thread */
	pthread_mutex_t lock; /* handed[], nhanded: the handler threads report on them */
	struct handed *handed;
	size_t nhanded, cap_handed;
	struct pending *pend;
	size_t npend;
	char *buf; /* max_header + 1 bytes for MSG_PEEK */
};

/* --- client addresses --- */

/* The IP of a client, v4-mapped IPv6 as IPv4: a key for per-client counts. */
static size_t addr_key(const struct sockaddr_storage *a, uint8_t key[16])
{
	if (a->ss_family == AF_INET) {
		memcpy(key, &((const struct sockaddr_in *)a)->sin_addr, 4);
		return 4;
	}
	if (a->ss_family == AF_INET6) {
		const struct in6_addr *in6 = &((const struct sockaddr_in6 *)a)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(in6)) {
			memcpy(key, in6->s6_addr + 12, 4);
			return 4;
		}
		memcpy(key, in6->s6_addr, 16);
		return 16;
	}
	return 0;
}

static bool same_client(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	uint8_t ka[16], kb[16];
	size_t n = addr_key(a, ka);

	return n == addr_key(b, kb) && memcmp(ka, kb, n) == 0;
}

/* The entry of fd; called with the lock held. */
static struct handed *handed_fd(struct http_door *d, int fd)
{
	for (size_t i = 0; i < d->nhanded; i++)
		if (d->handed[i].fd == fd)
			return &d->handed[i];
	return NULL;
}

static int add_handed(struct http_door *d, int fd, const struct sockaddr_storage *addr)
{
	int err = 0;

	pthread_mutex_lock(&d->lock);
	if (d->nhanded == d->cap_handed) {
		size_t cap = d->cap_handed ? d->cap_handed * 2 : 16;
		struct handed *n = realloc(d->handed, cap * sizeof(*n));

		if (n) {
			d->handed = n;
			d->cap_handed = cap;
		} else {
			err = -ENOMEM;
		}
	}
	if (!err)
		d->handed[d->nhanded++] = (struct handed){.fd = fd, .addr = *addr};
	pthread_mutex_unlock(&d->lock);
	return err;
}

void http_door__closed(struct http_door *d, int fd)
{
	struct handed *h;

	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	h = handed_fd(d, fd);
	if (h)
		*h = d->handed[--d->nhanded];
	pthread_mutex_unlock(&d->lock);
}

void http_door__idle(struct http_door *d, int fd, bool idle)
{
	struct handed *h;

	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	h = handed_fd(d, fd);
	if (h) {
		h->idle = idle;
		h->t_idle = clock__mono_s();
	}
	pthread_mutex_unlock(&d->lock);
}

/* Open connections of addr (NULL: of everyone), waiting or handed off. */
static unsigned open_count(struct http_door *d, const struct sockaddr_storage *addr)
{
	unsigned n = 0;

	for (size_t i = 0; i < d->npend; i++)
		n += !addr || same_client(&d->pend[i].addr, addr);
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nhanded; i++)
		n += !d->handed[i].closing && (!addr || same_client(&d->handed[i].addr, addr));
	pthread_mutex_unlock(&d->lock);
	return n;
}

/* --- answers of the door itself --- */

static const char *reason(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

/* Reads of what a client sent before answer_and_close() closes: a client that keeps sending
 * must not hold the door's one thread. */
#define DRAIN_READS 4

/* Answers status with a one-line text/plain body (as http_respond_error does) and closes. What
 * the client sent is read first (at most DRAIN_READS buffers), so that closing does not reset
 * the connection under the answer. A TLS connection gets no HTTP answer, only the close. */
static void answer_and_close(struct http_door *d, int fd, int status, const char *msg)
{
	char out[640];
	int n;

	for (int i = 0; i < DRAIN_READS; i++)
		if (recv(fd, d->buf, d->o.max_header + 1, MSG_DONTWAIT) <= 0)
			break;
	if (!d->o.tls) {
		n = snprintf(out, sizeof(out),
			     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			     "X-Go-Pprof: 1\r\nX-Content-Type-Options: nosniff\r\n"
			     "Cache-Control: no-store\r\nConnection: close\r\n%s"
			     "Content-Length: %zu\r\n\r\n%s\n",
			     status, reason(status), status == 503 ? "Retry-After: 1\r\n" : "",
			     strlen(msg) + 1, msg);
		if (n > 0 && (size_t)n < sizeof(out))
			(void)!send(fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		shutdown(fd, SHUT_WR);
	}
	close(fd);
}

static void drop_pending(struct http_door *d, size_t i)
{
	d->pend[i] = d->pend[--d->npend];
}

/* Closes the oldest connection that is not running a request (of addr, or of anyone): one
 * waiting for its head, or a kept-alive one between two requests (shut down, so that its
 * handler thread sees the end and closes it). */
static bool evict_oldest(struct http_door *d, const struct sockaddr_storage *addr)
{
	size_t best = d->npend, kept = SIZE_MAX;
	double t = 0;

	for (size_t i = 0; i < d->npend; i++)
		if ((!addr || same_client(&d->pend[i].addr, addr)) &&
		    (best == d->npend || d->pend[i].t0 < t))
			best = i, t = d->pend[i].t0;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nhanded; i++) {
		struct handed *h = &d->handed[i];

		if (h->idle && !h->closing && (!addr || same_client(&h->addr, addr)) &&
		    ((best == d->npend && kept == SIZE_MAX) || h->t_idle < t))
			kept = i, t = h->t_idle;
	}
	if (kept != SIZE_MAX) {
		d->handed[kept].closing = true;
		shutdown(d->handed[kept].fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&d->lock);
	if (kept != SIZE_MAX)
		return true;
	if (best == d->npend)
		return false;
	pr_debug("http: closing a waiting connection to make room\n");
	close(d->pend[best].fd);
	drop_pending(d, best);
	return true;
}

/* A new connection: within the limits (making room if it can) it waits for its head. */
static void admit(struct http_door *d, int fd, const struct sockaddr_storage *addr, socklen_t len)
{
	/* The client's own limit first, then everyone's. */
	const struct {
		const struct sockaddr_storage *of; /* NULL: anyone */
		unsigned max;
		const char *what, *option;
	} limits[] = {
		{addr, d->o.max_per_client, "too many connections from your address",
		 "max-per-client"},
		{NULL, d->o.max_connections, "server full", "max-connections"},
	};
	char msg[160];

	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		if (open_count(d, limits[i].of) < limits[i].max || evict_oldest(d, limits[i].of))
			continue;
		snprintf(msg, sizeof(msg),
			 "%s (%u running requests, the server's --%s); retry later", limits[i].what,
			 limits[i].max, limits[i].option);
		answer_and_close(d, fd, 503, msg);
		return;
	}
	d->pend[d->npend++] =
		(struct pending){.fd = fd, .addr = *addr, .len = len, .t0 = clock__mono_s()};
}

static void accept_all(struct http_door *d)
{
	for (;;) {
		struct sockaddr_storage addr = {};
		socklen_t len = sizeof(addr);
		int fd = accept4(d->o.listen_fd, (struct sockaddr *)&addr, &len,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				evict_oldest(d, NULL);
			return;
		}
		/* One slot more than the limits, to answer 503 from. */
		if (d->npend > d->o.max_connections) {
			close(fd);
			continue;
		}
		admit(d, fd, &addr, len);
	}
}

/* --- request heads --- */

static bool is_token_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* "METHOD /target HTTP/1.x": *http11 tells whether the version is 1.1. */
static int check_request_line(const char *s, size_t n, bool *http11, const char **why)
{
	size_t i = 0, t;

	while (i < n && is_token_char(s[i]))
		i++;
	if (!i || i >= n || s[i] != ' ')
		goto bad;
	t = ++i;
	while (i < n && s[i] != ' ') {
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			goto bad;
		i++;
	}
	if (i == t || i >= n || (s[t] != '/' && s[t] != '*'))
		goto bad;
	i++;
	if (n - i != 8 || memcmp(s + i, "HTTP/1.", 7) != 0 || (s[i + 7] != '0' && s[i + 7] != '1'))
		goto bad;
	*http11 = s[i + 7] == '1';
	return 0;
bad:
	*why = "malformed request line: expected 'METHOD /PATH HTTP/1.1'";
	return 400;
}

static int check_header(const char *s, size_t n, bool *host, size_t max_body, const char **why)
{
	const char *colon = memchr(s, ':', n), *v;
	size_t name = colon ? (size_t)(colon - s) : 0;
	unsigned long long cl;
	char num[24], *end;

	for (size_t i = 0; i < name; i++)
		if (!is_token_char(s[i]))
			name = 0;
	if (!name) {
		*why = "malformed header line: expected 'Name: value'";
		return 400;
	}
	for (v = colon + 1; v < s + n && (*v == ' ' || *v == '\t'); v++)
		;
	if (name == 4 && strncasecmp(s, "host", 4) == 0)
		*host = true;
	if (name == 17 && strncasecmp(s, "transfer-encoding", 17) == 0 &&
	    !(s + n - v == 7 && strncasecmp(v, "chunked", 7) == 0)) {
		*why = "unsupported Transfer-Encoding: only chunked is";
		return 400;
	}
	if (name == 14 && strncasecmp(s, "content-length", 14) == 0) {
		snprintf(num, sizeof(num), "%.*s", (int)(s + n - v), v);
		errno = 0;
		cl = strtoull(num, &end, 10);
		if (!*num || *end || errno || num[0] == '-' || (size_t)(s + n - v) >= sizeof(num)) {
			*why = "invalid Content-Length";
			return 400;
		}
		if (cl > max_body) {
			*why = "request body too large";
			return 413;
		}
	}
	return 0;
}

int http_door__check_head(const char *head, size_t len, size_t max_body, const char **why)
{
	const char *p = head, *end = head + len;
	bool http11 = false, host = false, first = true;
	int status;

	while (p < end) {
		const char *nl = memchr(p, '\n', end - p);
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (n && p[n - 1] == '\r')
			n--;
		if (memchr(p, '\0', n)) {
			*why = "NUL byte in the request head";
			return 400;
		}
		if (!n && !first)
			break;
		status = first ? check_request_line(p, n, &http11, why)
			       : check_header(p, n, &host, max_body, why);
		if (status)
			return status;
		first = false;
		p = nl ? nl + 1 : end;
	}
	if (http11 && !host) {
		*why = "HTTP/1.1 request without a Host header";
		return 400;
	}
	return 0;
}

/* The start of a head that has not all arrived: its request line, once whole, must be valid,
 * and before that hold only printable characters. Garbage is answered at once, not after the
 * head timeout. Returns 0 or the status to answer. */
static int check_partial(const char *buf, size_t n, const char **why)
{
	const char *nl = memchr(buf, '\n', n);
	bool http11;

	if (nl) {
		size_t len = nl - buf;

		return check_request_line(buf, len && buf[len - 1] == '\r' ? len - 1 : len, &http11,
					  why);
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)buf[i] < 0x20 && buf[i] != '\r') {
			*why = "malformed request line: expected 'METHOD /PATH HTTP/1.1'";
			return 400;
		}
	}
	return 0;
}

/* Length of the head (through its blank line) in buf, 0 while incomplete. */
static size_t head_length(const char *buf, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static void hand_off(struct http_door *d, struct pending *p)
{
	int one = 1;

	setsockopt(p->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
	if (add_handed(d, p->fd, &p->addr)) {
		close(p->fd);
		return;
	}
	/* On failure the fd is closed (and may have been reported closed already); no other
	 * connection can have its number before this thread accepts one. */
	if (d->o.hand_off(d->o.ctx, p->fd, (struct sockaddr *)&p->addr, p->len))
		http_door__closed(d, p->fd);
}

/* Bytes arrived on pending connection i: hands it off, answers it, or waits for more. Returns
 * true when it left the pending list. */
static bool examine(struct http_door *d, size_t i, short revents)
{
	struct pending *p = &d->pend[i];
	ssize_t n = recv(p->fd, d->buf, d->o.max_header + 1, MSG_PEEK | MSG_DONTWAIT);
	const char *why = NULL;
	size_t head;
	int status, lowat;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return false;
	if (n <= 0) {
		close(p->fd);
		drop_pending(d, i);
		return true;
	}
	head = d->o.tls ? 1 : head_length(d->buf, n);
	if (head) {
		status = d->o.tls ? 0 : http_door__check_head(d->buf, head, d->o.max_body, &why);
		if (status)
			answer_and_close(d, p->fd, status, why);
		else
			hand_off(d, p);
		drop_pending(d, i);
		return true;
	}
	status = (size_t)n > d->o.max_header ? 431 : check_partial(d->buf, n, &why);
	if (status || (revents & (POLLRDHUP | POLLHUP | POLLERR))) {
		if (status)
			answer_and_close(d, p->fd, status,
					 status == 431 ? "request line and headers too large"
						       : why);
		else
			close(p->fd); /* it will send no more */
		drop_pending(d, i);
		return true;
	}
	/* Wake up only when more than what is there has arrived. */
	p->seen = n;
	lowat = (int)n + 1;
	setsockopt(p->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
	return false;
}

/* Closes the connections past their deadline: one that sent nothing is idle (closed quietly
 * after the idle timeout), one that sent part of a head is slow (408 after the head timeout).
 * Returns the milliseconds until the next deadline (at most one second). */
static int expire(struct http_door *d, double now)
{
	double next = 1.0;
	char msg[96];

	for (size_t i = 0; i < d->npend;) {
		struct pending *p = &d->pend[i];
		unsigned limit = d->o.head_timeout;
		double left;

		if (!p->seen && d->o.idle_timeout < limit)
			limit = d->o.idle_timeout;
		left = p->t0 + limit - now;
		if (left > 0) {
			next = left < next ? left : next;
			i++;
			continue;
		}
		if (p->seen) {
			snprintf(msg, sizeof(msg), "request not received within %u s", limit);
			answer_and_close(d, p->fd, 408, msg);
		} else {
			close(p->fd);
		}
		drop_pending(d, i);
	}
	return (int)(next * 1000) + 1;
}

static void *door_main(void *arg)
{
	struct http_door *d = arg;
	size_t cap = d->o.max_connections + 3;
	struct pollfd *pfd = calloc(cap, sizeof(*pfd));

	if (!pfd) {
		pr_err("http: out of memory\n");
		return NULL;
	}
	for (;;) {
		int timeout = expire(d, clock__mono_s());
		size_t n = d->npend;

		pfd[0] = (struct pollfd){.fd = d->wake[0], .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = d->o.listen_fd, .events = POLLIN};
		for (size_t i = 0; i < n; i++)
			pfd[i + 2] =
				(struct pollfd){.fd = d->pend[i].fd, .events = POLLIN | POLLRDHUP};
		if (poll(pfd, n + 2, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		/* Backwards: examine() moves the last entry into the slot it frees. */
		for (size_t i = n; i-- > 0;)
			if (pfd[i + 2].revents && pfd[i + 2].fd == d->pend[i].fd)
				examine(d, i, pfd[i + 2].revents);
		if (pfd[1].revents & POLLIN)
			accept_all(d);
	}
	free(pfd);
	return NULL;
}

int http_door__start(const struct http_door_opts *o, struct http_door **out)
{
	struct http_door *d = calloc(1, sizeof(*d));
	int err;

	if (!d)
		return -ENOMEM;
	d->o = *o;
	d->wake[0] = d->wake[1] = -1;
	pthread_mutex_init(&d->lock, NULL);
	d->pend = calloc(o->max_connections + 1, sizeof(*d->pend));
	d->buf = malloc(o->max_header + 1);
	if (!d->pend || !d->buf || pipe2(d->wake, O_CLOEXEC | O_NONBLOCK)) {
		err = d->pend && d->buf ? -errno : -ENOMEM;
		goto fail;
	}
	fcntl(o->listen_fd, F_SETFL, fcntl(o->listen_fd, F_GETFL) | O_NONBLOCK);
	err = -pthread_create(&d->thread, NULL, door_main, d);
	if (err)
		goto fail;
	d->started = true;
	*out = d;
	return 0;
fail:
	d->o.listen_fd = -1; /* the caller closes it on failure */
	http_door__free(d);
	return err;
}

void http_door__stop(struct http_door *d)
{
	if (!d || !d->started)
		return;
	(void)!write(d->wake[1], "x", 1);
	pthread_join(d->thread, NULL);
	d->started = false;
	if (d->o.listen_fd >= 0)
		close(d->o.listen_fd);
	d->o.listen_fd = -1;
}

void http_door__free(struct http_door *d)
{
	if (!d)
		return;
	http_door__stop(d);
	for (size_t i = 0; i < d->npend; i++)
		close(d->pend[i].fd);
	if (d->wake[0] >= 0)
		close(d->wake[0]);
	if (d->wake[1] >= 0)
		close(d->wake[1]);
	if (d->o.listen_fd >= 0)
		close(d->o.listen_fd);
	pthread_mutex_destroy(&d->lock);
	free(d->handed);
	free(d->pend);
	free(d->buf);
	free(d);
}
