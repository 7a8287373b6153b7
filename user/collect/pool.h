/* Shared collectors: captures that run at the same time with the same profile type and the same
 * per-type options use one loaded and attached collector (serve: several HTTP captures at once).
 *
 * Each capture is a window on its collector. Joining adds the window's pids to the collector's
 * target filter (refcounted: a pid leaves the filter when its last window ends) and takes a
 * baseline, a non-destructive read of the aggregation map's entries for those pids and of the
 * counters. The window's drain reads them again and reports the differences, so each capture
 * gets the samples of its own window, and its drop counters are those of its window. Shared
 * collectors are never drained destructively nor trimmed while a window is open; one is detached
 * and freed when its last window ends (no keep-warm), and it takes no new windows once its
 * aggregation map was half full at a join (a new one is loaded instead), so a collector kept
 * alive by overlapping captures cannot grow without bound.
 *
 * What cannot be split by window:
 * - levels (heap's in-use figures, collector_ops.agg_levels) are reported as they are at the
 *   end: everything sampled since the collector attached and not freed, which may be before
 *   the window began;
 * - BPF counters (samples, drops) are the collector's, for all its targets: a window sharing
 *   the collector with another may report the other's drops as well as its own, never fewer.
 * - A type whose attachments are made per target (collector_ops.per_target_attach: heap's
 *   uprobes) is shared only between windows on the same pids (or the whole system). */
#ifndef CPROF_COLLECT_POOL_H
#define CPROF_COLLECT_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "collect/collector.h"

struct collector_pool;
struct collector_window;

/* What the pool holds for one profile type, for /metrics. */
struct collector_pool_stats {
	uint64_t loaded;       /* collectors loaded and attached now */
	uint64_t windows;      /* captures using them now */
	uint64_t opened;       /* collectors loaded so far */
	uint64_t joined;       /* captures that used a collector already loaded (shared) */
	uint64_t most_windows; /* the most captures one of them has served at once */
};

struct collector_pool *collector_pool__new(void);
/* Frees the pool; every window must have left. Safe on NULL. */
void collector_pool__free(struct collector_pool *p);
/* Sums the pool's figures for the profile type ops. */
void collector_pool__stats(struct collector_pool *p, const struct collector_ops *ops,
			   struct collector_pool_stats *st);

/* Opens a window for o (targets, options; on_proc, pid_labels and ctx are the window's own),
 * on the collector already loaded for the same type and options, or on a new one. p NULL: a
 * pool of one, the window's own (a capture that shares nothing): its collector has all of o's
 * options, its drain stops the collector and empties it, and its leave frees the pool. Returns
 * 0 or -errno (reported). */
int collector_pool__join(struct collector_pool *p, const struct collector_ops *ops,
			 const struct collect_opts *o, struct collector_window **out);
/* The collector behind a window (its ops, its configuration; do not drain or stop it). */
struct collector *collector_window__collector(struct collector_window *w);
/* CLOCK_MONOTONIC and CLOCK_REALTIME ns when the window's baseline was taken. */
void collector_window__start(const struct collector_window *w, int64_t *mono, int64_t *real);
/* Waits up to timeout_ms for process notices and hands this window the ones for its targets
 * (through its on_proc, in the calling thread). Returns 0 or -errno. */
int collector_window__poll(struct collector_window *w, int timeout_ms);
/* Drains what the window's targets did since its baseline into b, with its counters in st:
 * through the collector's view (struct collector_view), which pool.c alone sets. */
int collector_window__drain(struct collector_window *w, struct pprof_builder *b,
			    struct collect_stats *st);
/* Notices after deadline_ns (CLOCK_MONOTONIC) no longer build unwind tables: their processes
 * would not be sampled any more. Only a pool of one has it: a shared collector serves others. */
void collector_window__set_deadline(struct collector_window *w, int64_t deadline_ns);
/* Ends the window; the collector is detached and freed when it was the last. Safe on NULL. */
void collector_window__leave(struct collector_window *w);

#endif
