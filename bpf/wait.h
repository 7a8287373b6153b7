/* Types shared by the wait profiles (mutex, offcpu) and their collectors. Include nothing. */
#ifndef CPROF_WAIT_H
#define CPROF_WAIT_H

#include "cprof.h"

/* Threads whose wait can be under way at once (the per-thread start map). Resized from user
 * space before load; a wait that finds it full is counted (CPROF_STAT_WAIT_START_FULL). */
#ifndef CPROF_DEFAULT_MAX_WAITERS
#define CPROF_DEFAULT_MAX_WAITERS 32768
#endif

/* Value of an aggregation key of a wait profile: Go's contentions/count and delay/nanoseconds. */
struct cprof_wait_val {
	__u64 count;
	__u64 delay_ns;
};

/* A wait under way, per thread: when it began and, for off-CPU, the stacks taken when the
 * thread left the CPU (it is current only then). */
struct cprof_wait_start {
	__u64 ts;
	struct cprof_key key;
};

/* cprof_key.flags of wait profiles. */
enum {
	/* The user leaf is a return address: the thread entered the kernel by a syscall. */
	CPROF_WAIT_USER_RET = 1u << 8,
	/* wall: an on-CPU sample (count samples, delay their CPU time), not an off-CPU interval. */
	CPROF_WAIT_ONCPU = 1u << 9,
};

#ifndef __bpf__
_Static_assert(sizeof(struct cprof_wait_val) == 16, "cprof_wait_val layout is shared with BPF");
_Static_assert(sizeof(struct cprof_wait_start) == 40, "cprof_wait_start layout is shared");
#endif

#endif /* CPROF_WAIT_H */
