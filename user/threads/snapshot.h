/* The threads snapshot (cprof-bpf -t threads, /debug/pprof/goroutine): every thread of the
 * targets as the BPF task iterator saw it (bpf/threads.h), described for people: its state
 * and for how long, what it waits on (the syscall and its arguments; for a futex, which kind
 * of lock by the glibc function on its stack), which thread holds the lock it waits for, and
 * wait-for cycles (deadlocks). Writes the snapshot as Go's goroutine profile (pprof), as Go's
 * goroutine dump (debug=2: one block per thread) or grouped by stack (debug=1). */
#ifndef CPROF_THREADS_SNAPSHOT_H
#define CPROF_THREADS_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <linux/types.h>

#include "cprof.h"
#include "threads.h"

struct symbolizer;
struct pprof_builder;
struct pprof_label;

/* What a thread waits on. */
enum thread_wait {
	THREAD_WAIT_NONE = 0,  /* not in a syscall: running, runnable, a fault, stopped */
	THREAD_WAIT_SYSCALL,   /* a syscall other than futex (read, epoll_wait, nanosleep...) */
	THREAD_WAIT_FUTEX,     /* a futex wait of no kind recognised below */
	THREAD_WAIT_MUTEX,     /* pthread_mutex_lock and friends */
	THREAD_WAIT_RWLOCK,    /* pthread_rwlock_rdlock / _wrlock and friends */
	THREAD_WAIT_CONDVAR,   /* pthread_cond_wait and friends */
	THREAD_WAIT_SEMAPHORE, /* sem_wait and friends */
	THREAD_WAIT_JOIN,      /* pthread_join: waits for a thread to exit */
};

/* One thread, described. */
struct thread_info {
	struct cprof_thread rec; /* as BPF read it */
	const char *state;	 /* "running", "sleeping", "disk sleep", "stopped", "zombie"... */
	char state_code;	 /* as ps shows it: R, S, D, T, t, Z, X, I, P */
	bool state_known_ns;	 /* state_ns holds a duration */
	uint64_t state_ns;	 /* how long it has been in that state (see threads__describe) */
	enum thread_wait wait;
	const char *wait_label; /* "mutex", "condvar", "read", "epoll_wait"...; NULL: none */
	char wait_desc
		[192];	   /* the syscall and its arguments: "futex(0x.., FUTEX_WAIT_PRIVATE, 2)" */
	bool rwlock_write; /* THREAD_WAIT_RWLOCK: for writing */
	uint64_t lock;	   /* MUTEX..JOIN: the futex address (a mutex's own address) */
	/* MUTEX: the owner's tid recorded in the mutex (its pid namespace's), 0 unknown; JOIN:
	 * the thread joined. */
	uint32_t owner_tid;
	bool lock_free;	 /* MUTEX: the mutex was free when read (its wait is ending) */
	long owner;	 /* index in the snapshot of the owner (or joined) thread, -1: none */
	size_t deadlock; /* 1-based number of the wait-for cycle it is in, 0: none */
	char where[64];	 /* the glibc function that identified the wait, "" if none */
};

/* A wait-for cycle: members[i] waits for something members[i + 1] holds (the last for the
 * first's). Indices into the snapshot's threads. */
struct thread_cycle {
	size_t *members;
	size_t n;
};

struct threads_snapshot {
	struct thread_info *t;
	size_t n, cap;
	struct thread_cycle *cycles;
	size_t ncycles;
	size_t running;	  /* threads on a CPU when read */
	uint64_t read_ns; /* how long reading the iterator took */
	int64_t time_ns;  /* wall clock (CLOCK_REALTIME) when it was taken */
};

struct threads_snapshot *threads_snapshot__new(void);
void threads_snapshot__free(struct threads_snapshot *s);
/* Appends a thread as read. Returns 0 or -ENOMEM. */
int threads_snapshot__add(struct threads_snapshot *s, const struct cprof_thread *rec);
/* Sorts the threads by pid then tid (output order). Call before threads__link. */
void threads_snapshot__sort(struct threads_snapshot *s);

/* Fills t's state, duration and wait from its record. fnames are the function names of its
 * user stack, innermost first (inlined functions included), as far as they were resolved:
 * they tell which kind of lock a futex wait is for. May be NULL (nf 0).
 *
 * Durations use the scheduler's clock (rq->clock): a thread off the CPU has been in its state
 * since it last left the CPU, which is when it last got one (sched_info.last_arrival) plus the
 * CPU time it ran then (se.sum_exec_runtime - se.prev_sum_exec_runtime); a running thread
 * since it got the CPU; a runnable one since it was queued (sched_info.last_queued). The
 * clock read as "now" lags by at most one scheduler tick. */
void threads__describe(struct thread_info *t, const char *const *fnames, size_t nf);
/* Links each lock waiter to the thread that holds the lock (same process, by the tid its
 * namespace gives it) and finds the wait-for cycles. Returns 0 or -ENOMEM. */
int threads__link(struct threads_snapshot *s);

/* The name of an x86-64 syscall ("futex"), NULL when unknown. */
const char *threads__syscall_name(long nr);
/* The state of a task as ps names it, from task->__state and exit_state; *code gets ps's
 * letter. */
const char *threads__state_name(uint32_t state, uint32_t exit_state, bool on_cpu, char *code);
/* A duration for people: "850us", "12ms", "2.31s", "5m12s", "3h04m". */
void threads__format_duration(uint64_t ns, char *buf, size_t len);
/* "thread 1234 (name)" for messages: the thread at index i. */
void threads__thread_name(const struct threads_snapshot *s, size_t i, char *buf, size_t len);
/* What thread i waits for, as a phrase: "lock 0x.. held by thread N (name)", "thread N (name)
 * to exit". */
void threads__wait_phrase(const struct threads_snapshot *s, size_t i, char *buf, size_t len);
/* One line saying what cycle c is: "thread A (a) waits for lock 0x.. held by thread B (b),
 * which waits for ..." */
void threads__cycle_text(const struct threads_snapshot *s, const struct thread_cycle *c, char *buf,
			 size_t len);

/* The labels of thread i's sample: state, wait, deadlock; fills at most max, returns how many.
 * Strings live as long as the snapshot (buf holds the deadlock number). */
int threads__labels(const struct threads_snapshot *s, size_t i, struct pprof_label *labels, int max,
		    char *buf, size_t buflen);

/* Hands the symbolizer at once the addresses about to be resolved, so that kernel ones cost one
 * pass over /proc/kallsyms and user ones one pass per file: of each thread that want accepts
 * (every thread when want is NULL), its kernel frames when kernel is set and its first max_user
 * user frames. Returns 0 or -errno. */
int threads__prepare(const struct threads_snapshot *s, struct symbolizer *sym,
		     bool (*want)(const struct thread_info *t), bool kernel, uint32_t max_user);

/* Writes the snapshot as text: debug 2 is Go's goroutine dump (a block per thread: the header
 * with state, duration and wait, then what it waits for, then `function(...)` and
 * `\tfile:line` per frame), debug 1 groups identical stacks with their count, as Go's
 * debug=1. Frames are resolved with sym (its processes' mappings already read). Returns 0
 * or -errno. */
int threads__write_text(const struct threads_snapshot *s, struct symbolizer *sym, FILE *f,
			int debug);

#endif
