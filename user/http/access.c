#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <netinet/in.h>

#include "http/access.h"

/* --- the client's uid from /proc/net/tcp{,6} --- */

/* The address words of a socket as the table prints them: each 32-bit word of the address in
 * memory order, printed as a host-order number. Returns the number of words (1 or 4). */
static int addr_words(const struct sockaddr_storage *a, uint32_t w[4], uint16_t *port, bool v6)
{
	if (a->ss_family == AF_INET && !v6) {
		const struct sockaddr_in *in = (const void *)a;

		memcpy(w, &in->sin_addr, 4);
		*port = ntohs(in->sin_port);
		return 1;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)a;

		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && !v6) {
			memcpy(w, in6->sin6_addr.s6_addr + 12, 4);
			*port = ntohs(in6->sin6_port);
			return 1;
		}
		if (!v6)
			return 0;
		memcpy(w, &in6->sin6_addr, 16);
		*port = ntohs(in6->sin6_port);
		return 4;
	}
	if (a->ss_family == AF_INET && v6) {
		/* A v4 socket seen from a v6 table: ::ffff:a.b.c.d. */
		const struct sockaddr_in *in = (const void *)a;
		uint8_t b[16] = {[10] = 0xff, [11] = 0xff};

		memcpy(b + 12, &in->sin_addr, 4);
		memcpy(w, b, 16);
		*port = ntohs(in->sin_port);
		return 4;
	}
	return 0;
}

/* "0100007F:1F90" (or 32 hex digits for v6) equals the words and port. */
static bool field_is(const char *f, const uint32_t *w, int nw, uint16_t port)
{
	char word[9];
	unsigned long v;

	for (int i = 0; i < nw; i++, f += 8) {
		memcpy(word, f, 8);
		word[8] = '\0';
		if (strlen(word) != 8 || sscanf(word, "%lx", &v) != 1 || (uint32_t)v != w[i])
			return false;
	}
	return *f == ':' && strtoul(f + 1, NULL, 16) == port;
}

int access__find_socket(FILE *f, bool v6, const struct sockaddr_storage *client,
			const struct sockaddr_storage *server, uid_t *uid)
{
	uint32_t cw[4], sw[4];
	uint16_t cport, sport;
	int nc = addr_words(client, cw, &cport, v6), ns = addr_words(server, sw, &sport, v6);
	char line[512], local[64], remote[64];
	unsigned long u;

	if (!nc || nc != ns)
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		/* sl local rem st tx:rx tr:when retrnsmt uid ... */
		if (sscanf(line, " %*s %63s %63s %*s %*s %*s %*s %lu", local, remote, &u) != 3)
			continue;
		if (field_is(local, cw, nc, cport) && field_is(remote, sw, ns, sport)) {
			*uid = (uid_t)u;
			return 0;
		}
	}
	return -ENOENT;
}

int access__peer_uid(const struct sockaddr_storage *local, const struct sockaddr_storage *peer,
		     uid_t *uid)
{
	static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	int err = -ENOENT;

	for (int i = 0; i < 2 && err == -ENOENT; i++) {
		FILE *f = fopen(tables[i], "re");

		if (!f)
			continue;
		err = access__find_socket(f, i == 1, peer, local, uid);
		fclose(f);
	}
	return err;
}

/* --- the rules --- */

static int read_sysctl(const char *path, int def)
{
	FILE *f = fopen(path, "re");
	int v = def;

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = def;
		fclose(f);
	}
	return v;
}

void access__of_peer(const struct http_peer *peer, struct access *a)
{
	*a = (struct access){
		.all = peer->token || !peer->local || (peer->known && peer->uid == 0),
		.known = peer->known,
		.uid = peer->uid,
	};
	/* The sysctls matter only to a requester who may not do everything. Unreadable: assume
	 * the strictest. */
	if (!a->all) {
		a->paranoid = read_sysctl("/proc/sys/kernel/perf_event_paranoid", 3);
		a->kptr_restrict = read_sysctl("/proc/sys/kernel/kptr_restrict", 2);
	}
}

int access__profile(const struct access *a, char *why, size_t n)
{
	if (a->all)
		return 0;
	if (!a->known) {
		snprintf(why, n,
			 "cannot tell which local user sent this request (no socket of "
			 "its connection in /proc/net/tcp); use the server's token");
		return -EPERM;
	}
	if (a->paranoid > 2) {
		snprintf(why, n,
			 "kernel.perf_event_paranoid is %d: only root may profile on this machine",
			 a->paranoid);
		return -EPERM;
	}
	return 0;
}

/* The three ids of a "Uid:" or "Gid:" line of /proc/PID/status. */
static bool ids_line(const char *line, const char *key, unsigned long id[3])
{
	size_t k = strlen(key);

	return strncmp(line, key, k) == 0 &&
	       sscanf(line + k, "%lu %lu %lu", &id[0], &id[1], &id[2]) == 3;
}

int access__pid(const struct access *a, pid_t pid, char *why, size_t n)
{
	char path[64], line[256];
	unsigned long uid[3] = {0}, gid[3] = {0};
	bool have_uid = false, have_gid = false;
	struct stat st;
	FILE *f;
	int err = access__profile(a, why, n);

	if (err || a->all)
		return err;
	snprintf(path, sizeof(path), "/proc/%d", pid);
	if (stat(path, &st))
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -ESRCH;
	while (fgets(line, sizeof(line), f)) {
		have_uid |= ids_line(line, "Uid:", uid);
		have_gid |= ids_line(line, "Gid:", gid);
	}
	fclose(f);
	if (!have_uid || !have_gid)
		return -ESRCH;
	if (uid[0] != a->uid || uid[1] != a->uid || uid[2] != a->uid) {
		snprintf(why, n, "process %d belongs to uid %lu, not to you (uid %u)", pid, uid[1],
			 (unsigned)a->uid);
		return -EPERM;
	}
	if (gid[0] != gid[1] || gid[1] != gid[2] || st.st_uid != a->uid) {
		snprintf(why, n,
			 "process %d changed its ids or is not dumpable (setuid, setgid or "
			 "PR_SET_DUMPABLE): only root may profile it",
			 pid);
		return -EPERM;
	}
	return 0;
}

int access__system(const struct access *a, char *why, size_t n)
{
	int err = access__profile(a, why, n);

	if (err || a->all)
		return err;
	if (a->paranoid > 0) {
		snprintf(why, n,
			 "profiling the whole system needs root (kernel.perf_event_paranoid is "
			 "%d); ask for your own processes with pid=",
			 a->paranoid);
		return -EPERM;
	}
	return 0;
}

bool access__kernel(const struct access *a)
{
	return a->all || (a->paranoid <= 1 && a->kptr_restrict == 0);
}
