/* What the wait profiles (mutex, offcpu) share: Go's sample types (contentions/count,
 * delay/nanoseconds), the drain of their (count, delay) maps, and the waits still under way
 * when the profile ends. */
#ifndef CPROF_COLLECT_WAIT_PROFILE_H
#define CPROF_COLLECT_WAIT_PROFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "collect/collector.h"

struct bpf_map;

struct wait_drain_opts {
	struct bpf_map *waits;	/* struct cprof_key -> struct cprof_wait_val */
	struct bpf_map *starts; /* tid -> struct cprof_wait_start: waits under way */
	/* Waits under way at stop_ns (CLOCK_MONOTONIC) whose start has stacks (off-CPU) are
	 * counted up to stop_ns; those without (mutex) are only counted in *unfinished. */
	uint64_t stop_ns;
	uint64_t *unfinished;
	/* wall: values are cpu, offcpu and wall nanoseconds (wait__wall_pprof_config), with a
	 * `state` label, on-CPU samples and off-CPU intervals told apart by CPROF_WAIT_ONCPU. */
	bool wall;
	/* Kernel leaves in [glue_lo, glue_hi) are dropped: the tracepoint's iterator, on the stack
	 * only while several programs share sched_switch (wait__glue_range). */
	uint64_t glue_lo, glue_hi;
	/* mutex: every kept wait stands for this many (--mutex-fraction); 0 or 1: itself */
	uint32_t scale;
	/* offcpu: --block-rate, applied to the intervals still under way at the end as BPF
	 * applies it to the others */
	uint64_t block_rate_ns;
};

/* Sample types and period of a wait profile, as Go writes its mutex and block profiles. */
void wait__pprof_config(struct pprof_config *cfg, int64_t period);
/* Sample types of the wall profile: cpu, offcpu and wall (default) nanoseconds. */
void wait__wall_pprof_config(struct pprof_config *cfg, int64_t period_ns);
/* Drains the aggregated waits (and the tails) into b. Returns 0 or -errno. */
int wait__drain(struct collector *c, const struct wait_drain_opts *o, struct pprof_builder *b);
/* The address range of __traceiter_sched_switch, the tracepoint's iterator that shows in
 * kernel stacks while several programs share sched_switch: [0, 0) when it cannot be read. */
void wait__glue_range(uint64_t *lo, uint64_t *hi);
/* CLOCK_MONOTONIC now, in ns (bpf_ktime_get_ns's clock). */
uint64_t wait__now_ns(void);

#endif
