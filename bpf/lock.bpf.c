// SPDX-License-Identifier: GPL-2.0
/* Lock contention: time threads of the targets wait for pthread mutexes and rwlocks.
 *
 * A contended lock is the only one that reaches the kernel: glibc takes an uncontended mutex
 * with one atomic instruction in user space and calls futex(FUTEX_WAIT) only when it must sleep.
 * So this program watches the futex syscall alone (enter and exit) and never the lock functions:
 * uprobes on pthread_mutex_lock would trap every acquisition and, measured here, serialise the
 * threads on the probe. An uncontended lock costs nothing; a contended one costs a map update
 * at the enter and, at the exit, two stack walks.
 *
 * Which futex waits are lock waits, from glibc 2.36 (and Rust's std, same protocol):
 *   - FUTEX_WAIT or FUTEX_WAIT_BITSET with val 2: a lowlevellock in its "locked, waiters"
 *     state: pthread_mutex_lock/timedlock (normal, recursive, errorcheck, adaptive), and
 *     glibc's internal locks (malloc arenas, stdio);
 *   - FUTEX_WAIT_BITSET with val 3 (1 | PTHREAD_RWLOCK_FUTEX_USED): a pthread_rwlock reader
 *     waiting for the write phase to end, or a writer waiting for writers_futex; val 2
 *     (PTHREAD_RWLOCK_FUTEX_USED): a writer waiting for the read phase to end;
 *   - FUTEX_LOCK_PI / FUTEX_LOCK_PI2: priority-inheritance mutexes.
 * Condition variables wait with FUTEX_WAIT_BITSET on g_signals with val 0; semaphores with val
 * 0; pthread_join on the tid: none of them is counted (only tallied, CPROF_STAT_FUTEX_OTHER).
 *
 * The user stack is taken at the syscall's exit, only for waits that last at least
 * min_wait_ns: the thread is still in the syscall, so its user stack is the one of the wait. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "wait.bpf.h"

#define FUTEX_WAIT	  0
#define FUTEX_LOCK_PI	  6
#define FUTEX_WAIT_BITSET 9
#define FUTEX_LOCK_PI2	  13
#define FUTEX_CMD_MASK	  0x7f /* without FUTEX_PRIVATE_FLAG (128), FUTEX_CLOCK_REALTIME (256) */
#define NR_FUTEX	  202  /* x86-64 */

/* --mutex-fraction: 0 or 1 times every lock wait; N > 1 times about one in N, chosen at the
 * futex entry, before the start map is touched or a stack walked (user space scales the kept
 * ones by N, as Go's SetMutexProfileFraction does). */
const volatile __u32 mutex_fraction = 0;

/* Whether a futex wait is a lock wait (see above). */
static __always_inline bool is_lock_wait(int op, __u32 val)
{
	switch (op & FUTEX_CMD_MASK) {
	case FUTEX_WAIT:
		return val == 2;
	case FUTEX_WAIT_BITSET:
		return val == 2 || val == 3;
	case FUTEX_LOCK_PI:
	case FUTEX_LOCK_PI2:
		return true;
	default:
		return false;
	}
}

static __always_inline bool is_wait_op(int op)
{
	int cmd = op & FUTEX_CMD_MASK;

	return cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET || cmd == FUTEX_LOCK_PI ||
	       cmd == FUTEX_LOCK_PI2;
}

static __always_inline void futex_enter(int op, __u32 val)
{
	struct cprof_wait_start s = {};
	__u64 id;

	if (!is_wait_op(op)) /* wakes: most futex calls of a contended lock, and free here */
		return;
	id = bpf_get_current_pid_tgid();
	if (!is_target(id >> 32))
		return;
	if (!is_lock_wait(op, val)) {
		stat_inc(CPROF_STAT_FUTEX_OTHER);
		return;
	}
	if (mutex_fraction > 1 && bpf_get_prandom_u32() % mutex_fraction) {
		stat_inc(CPROF_STAT_WAIT_SAMPLED_OUT);
		return;
	}
	s.ts = bpf_ktime_get_ns();
	s.key.flags = CPROF_WAIT_USER_RET;
	wait_begin((__u32)id, &s);
}

static __always_inline void futex_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns(), delay;
	__u32 tid = (__u32)id;
	struct cprof_wait_start *s;
	struct cprof_key key = {};

	s = bpf_map_lookup_elem(&starts, &tid);
	if (!s)
		return;
	delay = now - s->ts;
	key.flags = s->key.flags;
	bpf_map_delete_elem(&starts, &tid);
	if (delay < min_wait_ns) {
		stat_inc(CPROF_STAT_WAIT_SHORT);
		return;
	}
	/* User stack only: the kernel side of every lock wait is the same futex syscall entry
	 * (-t offcpu shows where in the kernel threads wait). */
	key_current(ctx, &key, id >> 32, false, true);
	wait_add_n(&key, 1, delay);
	proc_seen(key.pid);
}

/* The syscall tracepoints: called for futex only. They need tracefs for their ids. */
SEC("tracepoint/syscalls/sys_enter_futex")
int futex_enter_tp(struct trace_event_raw_sys_enter *ctx)
{
	futex_enter((int)ctx->args[1], (__u32)ctx->args[2]);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_futex")
int futex_exit_tp(struct trace_event_raw_sys_exit *ctx)
{
	futex_exit(ctx);
	return 0;
}

/* Without tracefs: the raw syscall tracepoints, called for every syscall of every process, so
 * they test the syscall number first. */
SEC("tp_btf/sys_enter")
int BPF_PROG(futex_enter_raw, struct pt_regs *regs, long id)
{
	if (id != NR_FUTEX)
		return 0;
	futex_enter((int)BPF_CORE_READ(regs, si), (__u32)BPF_CORE_READ(regs, dx));
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(futex_exit_raw, struct pt_regs *regs, long ret)
{
	/* Which syscall returns: orig_ax of the user registers keeps its number (read through
	 * the BTF pointer: no helper call on every syscall). */
	if (regs->orig_ax != NR_FUTEX)
		return 0;
	futex_exit(ctx);
	return 0;
}

CPROF_COMMON_PROGS

char LICENSE[] SEC("license") = "GPL";
