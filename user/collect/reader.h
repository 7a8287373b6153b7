/* The notice reader (collect_opts.notice_thread): a thread that reads a collector's ring buffer
 * of process notices and, with each, what must be read while the process lives (its mappings,
 * stat, executable, cgroup: struct proc_read), and queues both; notice_reader__drain hands the
 * queue to the notice handler in the caller's thread. A poller busy for a second (a window's
 * drain, a table build, both slowed by a loaded machine) still has every short-lived process of
 * that second read while it lived. */
#ifndef CPROF_COLLECT_READER_H
#define CPROF_COLLECT_READER_H

#include <stdbool.h>

#include "cprof.h"
#include "proc/stat.h"

struct bpf_map;
struct proc_maps;
struct notice_reader;

/* What was read of a process for one of its notices. */
struct proc_read {
	const struct proc_maps *pm; /* its mappings; NULL: not read, or it was gone */
	/* Read with the notice by the notice reader; else unset. */
	bool read;
	bool labels;  /* exe and cgroup were read (new, sampled) */
	int stat_err; /* 0: st was read; -errno: gone, or an exec (not read) */
	struct proc_stat st;
	const char *exe, *cgroup; /* NULL: unreadable, or not read (exe: read at exec too) */
};

typedef void (*notice_fn)(void *ctx, const struct cprof_proc_event *e, const struct proc_read *rd);

/* Starts the thread on the ring buffer events (the proc_events map); mmap_pending (may be NULL)
 * is cleared for a process before its mappings are read (bpf/common.bpf.h). Returns 0 or
 * -errno. */
int notice_reader__start(struct bpf_map *events, struct bpf_map *mmap_pending, notice_fn fn,
			 void *ctx, struct notice_reader **out);
/* Stops the thread and drops what it queued. */
void notice_reader__free(struct notice_reader *r);
/* Waits up to timeout_ms for queued notices, then hands each queued to fn. Returns how many,
 * or -errno. */
int notice_reader__drain(struct notice_reader *r, int timeout_ms);
/* The eventfd a drain waits on: a write to it ends the wait (safe from a signal handler). */
int notice_reader__wake_fd(const struct notice_reader *r);
/* Exec notices read so far, and those forgotten unread (the process exited unsampled). */
void notice_reader__counts(const struct notice_reader *r, uint64_t *execs, uint64_t *unread);

#endif
