/* /proc/PID/stat and /proc/PID/cgroup: what the agent needs to tell processes apart (start
 * time, for pid reuse), label them (cgroup, container) and watch them (CPU time, RSS, threads). */
#ifndef CPROF_PROC_STAT_H
#define CPROF_PROC_STAT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct proc_stat {
	uint64_t starttime;   /* clock ticks after boot: with the pid, identifies a process */
	uint64_t cpu_ticks;   /* utime + stime of all threads, clock ticks */
	uint64_t rss_bytes;   /* resident set size */
	uint32_t num_threads; /* threads */
	unsigned long flags;  /* the kernel's PF_* flags of the task */
	char state;	      /* R, S, Z ... */
};

/* Reads /proc/PID/stat. Returns 0 or -errno (-ESRCH / -ENOENT: gone). */
int proc_stat__read(pid_t pid, struct proc_stat *st);
/* Parses the text of /proc/PID/stat (for tests and for read). Returns 0 or -EINVAL. */
int proc_stat__parse(const char *text, struct proc_stat *st);

/* The process's cgroup v2 path ("/system.slice/foo.service"), or for cgroup v1 the path of
 * its first hierarchy. Returns 0 or -errno. */
int proc__cgroup(pid_t pid, char *buf, size_t len);
/* The container id in a cgroup path: the last 64-hex-digit run (docker, containerd, cri-o,
 * podman name their scopes after it), cut to 12 digits as `docker ps` shows it. Returns 0, or
 * -ENOENT when the path names no container. */
int proc__container_id(const char *cgroup, char *buf, size_t len);

#endif
