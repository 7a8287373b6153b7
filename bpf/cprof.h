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

/* Every counter of what happened and what was lost, in one table:
 *   X(ID, KIND, name, text)
 * KIND says where it is counted and whether it is a loss:
 *   BPF_DROP   a slot of the per-CPU `stats` array (CPROF_STAT_ID, stat_inc() in BPF) that counts
 *              something lost; also a drop reason (CPROF_DROP_ID)
 *   BPF_COUNT  a slot of `stats` that is no loss (samples, frames unwound, skipped as asked);
 *              each profile type reports its own
 *   USER_DROP  a loss counted in user space (struct collect_stats, collect/drops.c says which
 *              field); a drop reason only
 * name is the `reason` label of /metrics (serve's and the agent's); text is the profile comment
 * "dropped: N text" and the stderr line "N text". Every drop reason reaches all four. */
#define CPROF_COUNTERS(X)                                                                          \
	X(SAMPLES, BPF_COUNT, "samples", "events that passed the target filter")                   \
	X(KEYS_FULL, BPF_DROP, "keys_full",                                                        \
	  "samples dropped: aggregation map full (--max-stacks)")                                  \
	X(USTACK_COLLIDE, BPF_DROP, "user_stack_collision",                                        \
	  "user stacks lost to stack-map hash collisions")                                         \
	X(KSTACK_COLLIDE, BPF_DROP, "kernel_stack_collision",                                      \
	  "kernel stacks lost to stack-map hash collisions")                                       \
	X(USTACK_ERR, BPF_DROP, "user_stack_error", "user stacks that could not be read")          \
	X(KSTACK_ERR, BPF_DROP, "kernel_stack_error", "kernel stacks that could not be read")      \
	X(STACK_EVICTED, USER_DROP, "stack_evicted", "stacks evicted before they were read")       \
	X(STACK_TRUNCATED, USER_DROP, "stack_truncated", "stacks truncated at the depth limit")    \
	X(EVENTS_LOST, BPF_DROP, "process_notice_lost",                                            \
	  "new-process notices lost (ring buffer full)")                                           \
	X(PROCS_MISSED, USER_DROP, "process_exited_unread",                                        \
	  "processes that exited before their mappings were read")                                 \
	X(IDLE, BPF_COUNT, "idle", "samples of the idle task, skipped")                            \
	X(HEAP_LIVE_FULL, BPF_DROP, "heap_live_map_full",                                          \
	  "sampled allocations not tracked until freed: live map full (--heap-max-live)")          \
	X(HEAP_UNKNOWN_FREE, BPF_COUNT, "heap_untracked_free", "frees of untracked addresses")     \
	X(HEAP_NO_THREAD, BPF_DROP, "heap_thread_state_failed",                                    \
	  "allocator calls missed: per-thread state could not be allocated")                       \
	X(HEAP_STALE, BPF_DROP, "heap_free_missed",                                                \
	  "tracked blocks allocated again before their free was seen (free missed)")               \
	X(USTACK_NO_RULE, BPF_DROP, "user_stack_no_unwind_rule",                                   \
	  "user stacks cut short: a pc with no usable unwind rule")                                \
	X(USTACK_NO_TABLE, BPF_DROP, "user_stack_no_unwind_table",                                 \
	  "user stacks cut short: a pc with no unwind table (--unwind=dwarf)")                     \
	X(USTACK_BAD_READ, BPF_DROP, "user_stack_bad_read",                                        \
	  "user stacks cut short: a saved register could not be read")                             \
	X(USTACK_BAD_PC, BPF_DROP, "user_stack_bad_return_address",                                \
	  "user stacks cut short: a return address outside user space")                            \
	X(USTACK_TABLE_FULL, BPF_DROP, "user_stack_map_full",                                      \
	  "user stacks lost: unwound-stack map full")                                              \
	X(UNWIND_OVER_BUDGET, USER_DROP, "unwind_table_over_budget",                               \
	  "executables without unwind table: --unwind-mem or table slots full (frame pointers)")   \
	X(UNWIND_FAILED, USER_DROP, "unwind_table_failed",                                         \
	  "executables or mappings whose unwind table could not be loaded")                        \
	X(UNWIND_NOT_LOADED_FP, BPF_DROP, "unwind_table_not_loaded",                               \
	  "user stacks walked in part with frame pointers: their unwind table is not loaded "      \
	  "(not built yet, evicted, or no room in --unwind-mem yet); built for later samples")     \
	X(UNWIND_EVICTIONS, USER_DROP, "unwind_table_evictions",                                   \
	  "unwind tables evicted to stay within --unwind-mem (least recently sampled first)")      \
	X(UNWIND_TABLE_FRAMES, BPF_COUNT, "unwind_table_frames", "frames unwound with a table")    \
	X(UNWIND_FP_FRAMES, BPF_COUNT, "unwind_fp_frames", "frames unwound with frame pointers")   \
	X(WAIT_START_FULL, BPF_DROP, "wait_start_map_full",                                        \
	  "waits not timed: per-thread start map full (threads waiting at once)")                  \
	X(WAIT_SHORT, BPF_COUNT, "wait_short", "waits shorter than --min-wait / --min-block")      \
	X(FUTEX_OTHER, BPF_COUNT, "futex_not_lock", "futex waits that are no lock wait")           \
	X(WAIT_SAMPLED_OUT, BPF_COUNT, "wait_sampled_out",                                         \
	  "waits left out by --mutex-fraction / --block-rate (the kept ones are scaled for them)") \
	X(PY_FRAMES, BPF_COUNT, "python_frames", "Python frames walked")                           \
	X(PY_NO_THREAD, BPF_COUNT, "python_no_thread_state",                                       \
	  "samples of Python processes whose thread has no Python thread state (native only)")     \
	X(PY_BAD_READ, BPF_DROP, "python_frame_bad_read",                                          \
	  "Python frame chains cut short: a frame could not be read")                              \
	X(PROG_MISSES, USER_DROP, "bpf_recursion_miss",                                            \
	  "BPF program runs skipped by the kernel (recursion)")

/* Which rows each enum takes: the slots of the per-CPU `stats` array are the BPF_DROP and
 * BPF_COUNT rows, the drop reasons the BPF_DROP and USER_DROP rows, in the table's order. */
#define CPROF_IN_STATS_BPF_DROP(...)  __VA_ARGS__
#define CPROF_IN_STATS_BPF_COUNT(...) __VA_ARGS__
#define CPROF_IN_STATS_USER_DROP(...)
#define CPROF_IN_DROPS_BPF_DROP(...) __VA_ARGS__
#define CPROF_IN_DROPS_BPF_COUNT(...)
#define CPROF_IN_DROPS_USER_DROP(...)	      __VA_ARGS__
#define CPROF_STAT_ENUM(id, kind, name, text) CPROF_IN_STATS_##kind(CPROF_STAT_##id, )
#define CPROF_DROP_ENUM(id, kind, name, text) CPROF_IN_DROPS_##kind(CPROF_DROP_##id, )
enum cprof_stat {
	CPROF_COUNTERS(CPROF_STAT_ENUM) CPROF_STAT_NR
};
enum cprof_drop {
	CPROF_COUNTERS(CPROF_DROP_ENUM) CPROF_DROP_NR
};

/* Ring buffer record: a process was seen for the first time (or exec'd), so user space should
 * snapshot its mappings while it is alive. Rare: once per process, never per sample. */
struct cprof_proc_event {
	__u32 pid;
	__u32 kind; /* CPROF_PROC_* */
	union {
		char comm[CPROF_COMM_LEN];
		__u64 code; /* CPROF_PROC_PYCODE: the code object's address */
	};
	__u32 flags; /* CPROF_PROC_F_* */
	__u32 reserved;
	__u64 time_ns; /* when it was sent: CLOCK_MONOTONIC (bpf_ktime_get_ns) */
};

/* CPROF_PROC_EXEC: the process was announced before this exec (sampled, or an earlier exec),
 * so user space may hold something of it. */
#define CPROF_PROC_F_KNOWN 1u

enum {
	CPROF_PROC_NEW = 1,
	CPROF_PROC_EXEC = 2,
	CPROF_PROC_EXIT = 3,
	/* A Python code object seen for the first time in a stack of pid (bpf/python.bpf.h):
	 * user space reads it while the process lives, so that its frames still resolve once the
	 * process is gone. Once per (process, code object). */
	CPROF_PROC_PYCODE = 4,
	/* First sample of a process announced at exec (lifecycle notices): its libraries are
	 * mapped by now, and it is worth an unwind table. */
	CPROF_PROC_SAMPLED = 5,
	/* A process of interest mapped executable memory (a library loaded by ld.so or dlopen):
	 * user space re-reads its mappings. At most one pending per process (mmap_pending). */
	CPROF_PROC_MMAP = 6,
	/* A walk of pid met a mapping whose unwind table is not loaded (not built yet: the agent
	 * builds tables on demand; or evicted, --unwind-mem): user space builds it (code: the
	 * table id). At most once a second per table. */
	CPROF_PROC_UNWIND_MISS = 7,
};

#ifndef __bpf__
_Static_assert(sizeof(struct cprof_key) == 32, "cprof_key layout is shared with BPF");
_Static_assert(sizeof(struct cprof_proc_event) == 40, "cprof_proc_event layout is shared");
#endif

#endif /* CPROF_H */
