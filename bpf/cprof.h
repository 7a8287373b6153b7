/* Types and limits shared by the BPF programs and user space. Include nothing here: BPF code
 * gets the __u* types from vmlinux.h, user space from <linux/types.h>. */
#ifndef CPROF_H
#define CPROF_H

/* Deepest stack captured (frames). The kernel's perf_event_max_stack default is 127. */
#ifndef CPROF_MAX_STACK
#define CPROF_MAX_STACK 127
#endif

#define CPROF_COMM_LEN 16

/* Default number of distinct (pid, comm, user stack, kernel stack) keys aggregated in BPF.
 * User space can resize it before load (--max-stacks). */
#ifndef CPROF_DEFAULT_MAX_KEYS
#define CPROF_DEFAULT_MAX_KEYS 16384
#endif

/* Default number of stacks in a STACK_TRACE map. More than keys: user and kernel stacks of
 * one key are stored separately. */
#ifndef CPROF_DEFAULT_MAX_STACKS
#define CPROF_DEFAULT_MAX_STACKS 32768
#endif

/* Most pids a `-p` target list may name. */
#define CPROF_MAX_TARGETS 1024

/* Aggregation key of every stack-keyed profile. A stack id < 0 means "none" (kernel stack of a
 * user-mode sample) or "lost" (the error is counted in the stats). */
struct cprof_key {
	__u32 pid;
	__s32 user_stack_id;
	__s32 kern_stack_id;
	__u32 flags;
	char comm[CPROF_COMM_LEN];
};

/* Counters of what happened and what was lost, one slot per reason, in a PERCPU_ARRAY. */
enum cprof_stat {
	CPROF_STAT_SAMPLES,	   /* events that passed the target filter */
	CPROF_STAT_USTACK_COLLIDE, /* user stack lost to a STACK_TRACE hash collision (-EEXIST) */
	CPROF_STAT_KSTACK_COLLIDE, /* kernel stack lost likewise */
	CPROF_STAT_USTACK_ERR,	   /* user stack lost otherwise (map full, fault) */
	CPROF_STAT_KSTACK_ERR,	   /* kernel stack lost otherwise */
	CPROF_STAT_KEYS_FULL,	   /* aggregation map full: the sample is dropped */
	CPROF_STAT_EVENTS_LOST,	   /* ring buffer full: a new-process notice was lost */
	CPROF_STAT_IDLE,	   /* samples of the idle task, skipped */
	CPROF_STAT_HEAP_LIVE_FULL, /* heap: sampled allocation not tracked, live map full */
	CPROF_STAT_HEAP_UNKNOWN_FREE, /* heap: free of an address not tracked (see README) */
	CPROF_STAT_HEAP_NO_THREAD,    /* heap: per-thread state could not be created: call missed */
	CPROF_STAT_HEAP_STALE, /* heap: a tracked address was allocated again (free missed) */
	/* Table unwinder (bpf/unwind.bpf.h). */
	CPROF_STAT_USTACK_NO_RULE,    /* user stack cut short: a pc whose row says INVALID */
	CPROF_STAT_USTACK_NO_TABLE,   /* user stack cut short: no table for a pc (--unwind=dwarf) */
	CPROF_STAT_USTACK_BAD_READ,   /* user stack cut short: a saved register was unreadable */
	CPROF_STAT_USTACK_TABLE_FULL, /* user stack lost: the stack map was full */
	CPROF_STAT_UNWIND_TABLE_FRAMES, /* frames unwound with a table (not a loss) */
	CPROF_STAT_UNWIND_FP_FRAMES,	/* frames unwound with frame pointers (not a loss) */

	/* mutex, offcpu: a wait not timed, the per-thread start map being full */
	CPROF_STAT_WAIT_START_FULL,
	/* mutex, offcpu: waits shorter than --min-wait / --min-block, skipped as asked */
	CPROF_STAT_WAIT_SHORT,
	/* mutex: futex waits that are no lock wait (condition variable, semaphore, join) */
	CPROF_STAT_FUTEX_OTHER,
	CPROF_STAT_NR,
};

/* Ring buffer record: a process was seen for the first time (or exec'd), so user space should
 * snapshot its mappings while it is alive. Rare: once per process, never per sample. */
struct cprof_proc_event {
	__u32 pid;
	__u32 kind; /* CPROF_PROC_* */
	char comm[CPROF_COMM_LEN];
};

enum {
	CPROF_PROC_NEW = 1,
	CPROF_PROC_EXEC = 2,
	CPROF_PROC_EXIT = 3,
	/* First sample of a process announced at exec (lifecycle notices): its libraries are
	 * mapped by now, and it is worth an unwind table. */
	CPROF_PROC_SAMPLED = 4,
};

#ifndef __bpf__
_Static_assert(sizeof(struct cprof_key) == 32, "cprof_key layout is shared with BPF");
_Static_assert(sizeof(struct cprof_proc_event) == 24, "cprof_proc_event layout is shared");
#endif

#endif /* CPROF_H */
