/* Who may profile what through serve: the kernel's rules for perf, applied to the local user
 * who sent a request.
 *
 * The user: a TCP connection from this machine has a socket of the client's on the other end;
 * /proc/net/tcp (or tcp6) lists it with its owner's uid (the line whose local address is the
 * client's and whose remote address is ours). That uid is the requester; its capabilities are
 * not visible, so only uid 0 counts as privileged.
 *
 * The rules, as perf_event_open() and ptrace_may_access() apply them:
 *  - root (uid 0), a holder of the server's token, and a client on another machine of a server
 *    run without a token (its start warns) may profile everything;
 *  - anyone else: nothing when kernel.perf_event_paranoid > 2; a process only when its real,
 *    effective and saved uids are the requester's (and its gids agree among themselves) and it
 *    is dumpable (its /proc directory is then owned by that uid: not setuid, setgid or marked
 *    undumpable); the whole system only when perf_event_paranoid <= 0;
 *  - kernel addresses (kernel stacks, /symbol of kernel addresses) only when
 *    perf_event_paranoid <= 1 and kernel.kptr_restrict is 0; otherwise captures are user-only. */
#ifndef CPROF_HTTP_ACCESS_H
#define CPROF_HTTP_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Who sent a request, as the HTTP server knows it. */
struct http_peer {
	bool token; /* presented the server's token */
	bool local; /* connected from this machine (a loopback or own address) */
	bool known; /* uid is the owner of the client's socket */
	uid_t uid;
};

/* What one request may do. */
struct access {
	bool all; /* root, token holder, or a remote client of a tokenless server */
	bool known;
	uid_t uid;
	int paranoid;	   /* kernel.perf_event_paranoid */
	int kptr_restrict; /* kernel.kptr_restrict */
};

/* Finds the uid owning the client's end of the TCP connection local<->peer in /proc/net/tcp or
 * /proc/net/tcp6. Returns 0, -ENOENT when no local socket matches, or -errno. */
int access__peer_uid(const struct sockaddr_storage *local, const struct sockaddr_storage *peer,
		     uid_t *uid);
/* The same in one table read from f (tcp6 format when v6). For tests. */
int access__find_socket(FILE *f, bool v6, const struct sockaddr_storage *client,
			const struct sockaddr_storage *server, uid_t *uid);

/* Decides what a request from peer may do (reads the two sysctls unless it may do everything;
 * paranoid and kptr_restrict stay 0 then). */
void access__of_peer(const struct http_peer *peer, struct access *a);
/* May profile at all: 0, or -EPERM with the reason in why. */
int access__profile(const struct access *a, char *why, size_t n);
/* May profile pid: 0, -ESRCH (no such process), or -EPERM with the reason in why. */
int access__pid(const struct access *a, pid_t pid, char *why, size_t n);
/* May profile the whole system: 0 or -EPERM with the reason. */
int access__system(const struct access *a, char *why, size_t n);
/* May see kernel addresses. */
bool access__kernel(const struct access *a);

#endif
