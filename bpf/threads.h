/* The threads snapshot's record, shared by threads.bpf.c and user/collect/threads.c. Include
 * nothing here (see cprof.h); include cprof.h first. */
#ifndef CPROF_THREADS_H
#define CPROF_THREADS_H

#ifndef CPROF_MAX_STACK
#error "include cprof.h before threads.h"
#endif

/* struct cprof_thread.flags */
enum {
	CPROF_THREAD_ON_CPU = 1 << 0,	  /* executing on a CPU while it was read */
	CPROF_THREAD_KTHREAD = 1 << 1,	  /* a kernel thread: no user stack */
	CPROF_THREAD_USER_REGS = 1 << 2,  /* regs_* and syscall hold the saved user registers */
	CPROF_THREAD_IN_SYSCALL = 1 << 3, /* those registers were saved by a syscall entry */
	CPROF_THREAD_FUTEX_READ = 1 << 4, /* futex[] holds the 16 bytes at the futex address */
	CPROF_THREAD_USTACK_TRUNCATED = 1 << 5, /* the user stack hit CPROF_MAX_STACK */
	/* The saved user registers differed after the walk from before: the thread entered the
	 * kernel again meanwhile (it runs), so its stack may mix two moments. */
	CPROF_THREAD_REGS_CHANGED = 1 << 6,
	CPROF_THREAD_SELF = 1 << 7, /* the snapshot's own thread (reading the iterator) */
};

/* One thread as the task iterator saw it. Times are the scheduler's clock (rq->clock,
 * nanoseconds since boot, the clock of sched_info): now is the latest clock of any CPU's run
 * queue at the read, which lags the true time by at most one scheduler tick. */
struct cprof_thread {
	__u32 pid;    /* process (tgid), as this pid namespace sees it */
	__u32 tid;    /* thread, likewise */
	__u32 ns_tid; /* the thread's id in its own pid namespace: what its mutexes record */
	__u32 flags;  /* CPROF_THREAD_* */
	__u32 state;  /* task->__state (TASK_* bits) */
	__u32 exit_state;
	__s32 cpu;		    /* the CPU it runs on or last ran on */
	__u32 nustack;		    /* frames in ustack */
	__u32 nkstack;		    /* frames in kstack */
	__u32 ustack_err;	    /* CPROF_STAT_* that cut the user stack short, 0 */
	char comm[CPROF_COMM_LEN];  /* the thread's name */
	char pcomm[CPROF_COMM_LEN]; /* the process's name (its main thread's) */
	__u64 now;		    /* the scheduler's clock at the read */
	__u64 last_arrival;	    /* when it last got a CPU */
	__u64 last_queued;	    /* when it was last queued for a CPU (0: not waiting) */
	__u64 slice_ns;		    /* how long it ran from last_arrival (CPU time) */
	__u64 regs_ip, regs_sp, regs_bp;
	__s64 syscall;		       /* orig_ax: the syscall number when IN_SYSCALL */
	__u64 args[6];		       /* its arguments: rdi, rsi, rdx, r10, r8, r9 */
	__u64 futex[2];		       /* FUTEX_READ: the futex word and the 12 bytes after it */
	__u64 ustack[CPROF_MAX_STACK]; /* leaf first */
	__u64 kstack[CPROF_MAX_STACK];
};

#ifndef __bpf__
_Static_assert(sizeof(struct cprof_thread) == 200 + 2 * 8 * CPROF_MAX_STACK,
	       "cprof_thread layout is shared with BPF");
#endif

#endif /* CPROF_THREADS_H */
