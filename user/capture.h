/* One capture: attach a profile type to targets, collect until the duration ends, a stop is
 * requested or the targets are gone, then drain everything into a pprof builder with comments
 * saying what was profiled and what was lost. Shared by record, serve and agent. */
#ifndef CPROF_CAPTURE_H
#define CPROF_CAPTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "pprof/builder.h"
#include "sym/symbolizer.h"

struct capture_opts {
	const char *type;  /* "cpu" */
	const pid_t *pids; /* targets unless all */
	size_t npids;
	bool all;
	bool follow_children; /* processes forked by targets become targets */
	double duration;      /* seconds; 0 = until should_stop or the targets exit */
	int freq;	      /* cpu: Hz */
	uint32_t max_keys;    /* 0 = default */
	bool no_kernel;
	uint64_t heap_sample_bytes; /* heap: 0 = default */
	uint32_t heap_max_live;	    /* heap: 0 = default */
	const char *exe_hint;	    /* heap, `-- CMD`: the command not exec'd yet; may be NULL */
	/* Called about every 100 ms and once at the start (after attaching, before collecting);
	 * returning true ends the capture early (Ctrl-C, client gone, CMD exited). May be NULL. */
	bool (*should_stop)(void *ctx);
	/* Called once everything is attached: a gated child may start now. May be NULL. */
	void (*attached)(void *ctx);
	void *ctx;
	const char *target_desc; /* for the comments; NULL: from pids/all */
};

/* Runs a capture; on success *out is a builder the caller writes and frees. sym resolves the
 * addresses (its lifetime must cover the builder's). Returns 0 or -errno (already reported). */
int capture__run(const struct capture_opts *o, struct symbolizer *sym, struct pprof_builder **out);

#endif
