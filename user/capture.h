/* One capture: attach a profile type to targets, collect until the duration ends, a stop is
 * requested or the targets are gone, then drain everything into a pprof builder with comments
 * saying what was profiled and what was lost. Shared by record, serve and agent. */
#ifndef CPROF_CAPTURE_H
#define CPROF_CAPTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cli.h"
#include "collect/collector.h"
#include "collect/pool.h"
#include "pprof/builder.h"
#include "sym/symbolizer.h"

/* What a capture counted and lost, for callers that export it (serve's /metrics). */
struct capture_stats {
	struct collect_stats counters; /* BPF and user-side counters at the end */
	size_t stacks;		       /* distinct stacks in the profile */
	uint32_t max_keys;	       /* the aggregation map's capacity */
};

struct capture_opts {
	/* The settings, as the command line (or serve's request, on a copy of the server's) gave
	 * them: type, targets (pids, npids, all), duration, freq, max_keys, no_kernel, heap_*,
	 * unwind, unwind_mem, --min-wait/--min-block (cli__min_wait_ns), mutex_fraction (for mutex
	 * only) and block_rate_ns (for offcpu only). A caller that captures otherwise than its
	 * command line says (a trigger: one pid, its own duration) passes its own copy. */
	const struct cli_opts *opts;
	bool follow_children; /* -- CMD: processes forked by targets become targets */
	const char *exe_hint; /* heap, `-- CMD`: the command not exec'd yet; may be NULL */
	/* Called about every 100 ms and once at the start (after attaching, before collecting);
	 * returning true ends the capture early (Ctrl-C, client gone, CMD exited). May be NULL. */
	bool (*should_stop)(void *ctx);
	/* Called once everything is attached: a gated child may start now. May be NULL. */
	void (*attached)(void *ctx);
	void *ctx;
	const char *target_desc; /* for the comments; NULL: from pids/all */
	/* The sample type viewers show first (e.g. "alloc_space" for /allocs), when the profile
	 * type has it; NULL: the type's own default. */
	const char *default_sample_type;
	struct capture_stats *stats; /* filled at the end when non-NULL */
	/* Shares the BPF collector with the other captures of the pool of the same type and
	 * options running at the same time (collect/pool.h). NULL: a collector of its own. */
	struct collector_pool *pool;
	/* threads (a snapshot): where the snapshot itself is left for the text outputs (the
	 * caller frees it with threads_snapshot__free); NULL: freed with the capture. */
	struct threads_snapshot **threads_out;
};

/* Runs a capture; on success *out is a builder the caller writes and frees. sym resolves the
 * addresses (its lifetime must cover the builder's). Returns 0 or -errno (already reported). */
int capture__run(const struct capture_opts *o, struct symbolizer *sym, struct pprof_builder **out);

#endif
