/* What the wait profiles (lock.bpf.c, offcpu.bpf.c) share beyond common.bpf.h: the per-thread
 * start map, the (count, delay) aggregation map and the helper that adds to it. */
#ifndef CPROF_WAIT_BPF_H
#define CPROF_WAIT_BPF_H

#include "common.bpf.h"
#include "wait.h"

/* Waits shorter than this are not counted (--min-wait / --min-block), only tallied. */
const volatile __u64 min_wait_ns = 0;

/* Per thread (tid): the wait under way. Entries are created at the start of a wait and deleted
 * at its end, so the map holds at most the threads waiting at once. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CPROF_DEFAULT_MAX_WAITERS);
	__type(key, __u32);
	__type(value, struct cprof_wait_start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CPROF_DEFAULT_MAX_KEYS);
	__type(key, struct cprof_key);
	__type(value, struct cprof_wait_val);
} waits SEC(".maps");

/* Adds count waits of delay_ns in all under key (sampled waits stand for several). */
static __always_inline void wait_add_n(struct cprof_key *key, __u64 count, __u64 delay_ns)
{
	struct cprof_wait_val *v, init = {count, delay_ns};
	long err;

	stat_inc(CPROF_STAT_SAMPLES);
	v = bpf_map_lookup_elem(&waits, key);
	if (!v) {
		err = bpf_map_update_elem(&waits, key, &init, BPF_NOEXIST);
		if (!err)
			return;
		if (err != -EEXIST) {
			stat_inc(CPROF_STAT_KEYS_FULL);
			return;
		}
		/* Another CPU created it between our lookup and update. */
		v = bpf_map_lookup_elem(&waits, key);
		if (!v)
			return;
	}
	__sync_fetch_and_add(&v->count, count);
	__sync_fetch_and_add(&v->delay_ns, delay_ns);
}

/* Records the start of a wait of the current thread. */
static __always_inline void wait_begin(__u32 tid, struct cprof_wait_start *s)
{
	if (bpf_map_update_elem(&starts, &tid, s, BPF_ANY))
		stat_inc(CPROF_STAT_WAIT_START_FULL);
}

#endif
