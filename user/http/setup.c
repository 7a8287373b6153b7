/* The HTTP server's setup: options, the token file, the TLS files (checked as a pair), the
 * listen address and the listening socket. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "http/internal.h"
#include "util/log.h"

#define MAX_TOKEN 4096
#define MAX_PEM	  (1u << 20)

/* Reads a whole small file into a NUL-terminated buffer. */
static int read_file(const char *path, size_t max, char **out, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;
	int err = 0;

	if (!f)
		return -errno;
	buf = malloc(max + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, max + 1, f);
	if (ferror(f))
		err = -EIO;
	else if (n > max)
		err = -EFBIG;
	fclose(f);
	if (err) {
		free(buf);
		return err;
	}
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

static int http_setup__token(struct http_server *s, const char *path)
{
	struct stat st;
	size_t n;
	int err = read_file(path, MAX_TOKEN, &s->token, &n);

	if (err) {
		pr_err("cannot read the token file %s: %s\n", path, strerror(-err));
		return err;
	}
	/* The first line is the token; trailing whitespace and CR are not part of it. */
	s->token[strcspn(s->token, "\n")] = '\0';
	n = strlen(s->token);
	while (n && (s->token[n - 1] == ' ' || s->token[n - 1] == '\t' || s->token[n - 1] == '\r'))
		s->token[--n] = '\0';
	if (!n) {
		pr_err("the token file %s is empty\n", path);
		return -EINVAL;
	}
	if (stat(path, &st) == 0 && (st.st_mode & 0044))
		pr_warn("the token file %s is readable by other users\n", path);
	return 0;
}

/* Loads the pair as libmicrohttpd will (GnuTLS), so that a key that does not belong to its
 * certificate, or a file that is not PEM, is named here rather than reported by libmicrohttpd
 * as "Failed to initialize TLS support". */
static int check_key_pair(struct http_server *s, const char *cert, const char *key)
{
	gnutls_certificate_credentials_t cred;
	gnutls_datum_t c = {(unsigned char *)s->cert, (unsigned)strlen(s->cert)};
	gnutls_datum_t k = {(unsigned char *)s->key, (unsigned)strlen(s->key)};
	int rc;

	if (gnutls_certificate_allocate_credentials(&cred) < 0) {
		pr_err("cannot load GnuTLS to check the TLS files\n");
		return -ENOTSUP;
	}
	rc = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
	gnutls_certificate_free_credentials(cred);
	if (rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
		pr_err("the TLS key %s does not match the certificate %s\n", key, cert);
		return -EINVAL;
	}
	if (rc < 0) {
		pr_err("cannot use the TLS certificate %s with the key %s: %s\n", cert, key,
		       gnutls_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

static int http_setup__tls(struct http_server *s, const char *cert, const char *key)
{
	int err;

	if (!cert != !key) {
		pr_err("--tls-cert and --tls-key go together\n");
		return -EINVAL;
	}
	if (!cert)
		return 0;
	if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		pr_err("this libmicrohttpd was built without TLS\n");
		return -ENOTSUP;
	}
	err = read_file(cert, MAX_PEM, &s->cert, NULL);
	if (err) {
		pr_err("cannot read the TLS certificate %s: %s\n", cert, strerror(-err));
		return err;
	}
	err = read_file(key, MAX_PEM, &s->key, NULL);
	if (err) {
		pr_err("cannot read the TLS key %s: %s\n", key, strerror(-err));
		return err;
	}
	return check_key_pair(s, cert, key);
}

bool http_setup__is_loopback(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)a;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)a;
		const uint8_t *b = in6->sin6_addr.s6_addr;

		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && b[12] == 127;
	}
	return false;
}

/* "HOST:PORT", "[V6]:PORT" or ":PORT" into an address. */
static int http_setup__listen(struct http_server *s, const char *listen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char host[256], *colon, *end;
	const char *port;
	long p;
	int gai;

	if (strlen(listen) >= sizeof(host))
		goto bad;
	strcpy(host, listen);
	if (host[0] == '[') {
		end = strchr(host, ']');
		if (!end || end[1] != ':')
			goto bad;
		*end = '\0';
		port = end + 2;
		memmove(host, host + 1, strlen(host + 1) + 1); /* port lies past the moved bytes */
	} else {
		colon = strrchr(host, ':');
		if (!colon)
			goto bad;
		*colon = '\0';
		port = colon + 1;
	}
	errno = 0;
	p = strtol(port, &end, 10);
	if (!*port || *end || errno || p < 0 || p > 65535)
		goto bad;
	gai = getaddrinfo(host[0] ? host : "0.0.0.0", port, &hints, &res);
	if (gai || !res) {
		pr_err("cannot resolve the listen address '%s': %s\n", listen,
		       gai ? gai_strerror(gai) : "no address");
		return -EINVAL;
	}
	memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
	s->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	s->loopback = http_setup__is_loopback(&s->addr);
	snprintf(s->host, sizeof(s->host), "%s", host);
	return 0;
bad:
	pr_err("invalid listen address '%s': expected HOST:PORT, [IPV6]:PORT or :PORT\n", listen);
	return -EINVAL;
}

int http_server__new(const struct http_server_opts *o, struct http_server **out)
{
	struct http_server *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	s->o = *o;
	s->listen_fd = -1;
	if (!s->o.listen)
		s->o.listen = DEFAULT_LISTEN;
	if (!s->o.max_connections)
		s->o.max_connections = DEFAULT_MAX_CONNECTIONS;
	if (!s->o.max_body)
		s->o.max_body = DEFAULT_MAX_BODY;
	if (!s->o.max_header)
		s->o.max_header = DEFAULT_MAX_HEADER;
	if (!s->o.idle_timeout)
		s->o.idle_timeout = DEFAULT_IDLE_TIMEOUT;
	if (!s->o.max_per_client)
		s->o.max_per_client = DEFAULT_MAX_PER_CLIENT;
	if (!s->o.head_timeout)
		s->o.head_timeout = DEFAULT_HEAD_TIMEOUT;
	err = http_setup__listen(s, s->o.listen);
	if (!err && o->token_file)
		err = http_setup__token(s, o->token_file);
	if (!err)
		err = http_setup__tls(s, o->tls_cert, o->tls_key);
	if (err) {
		http_server__free(s);
		return err;
	}
	*out = s;
	return 0;
}

int http_setup__open_listener(struct http_server *s)
{
	struct sockaddr_storage bound;
	socklen_t len = sizeof(bound);
	char host[INET6_ADDRSTRLEN];
	int one = 1, fd, err;

	fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&s->addr, s->addrlen) || listen(fd, 128) ||
	    getsockname(fd, (struct sockaddr *)&bound, &len)) {
		err = -errno;
		close(fd);
		return err;
	}
	if (bound.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (void *)&bound;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		s->port = ntohs(in6->sin6_port);
		snprintf(s->url, sizeof(s->url), "%s://[%s]:%d", s->cert ? "https" : "http", host,
			 s->port);
	} else {
		struct sockaddr_in *in = (void *)&bound;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		s->port = ntohs(in->sin_port);
		snprintf(s->url, sizeof(s->url), "%s://%s:%d", s->cert ? "https" : "http", host,
			 s->port);
	}
	s->listen_fd = fd;
	return 0;
}
