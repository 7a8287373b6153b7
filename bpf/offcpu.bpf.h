/* The off-CPU half shared by offcpu.bpf.c and wall.bpf.c: at a switch, the stacks of the
 * thread that leaves the CPU go to the start map, and the interval of the thread that comes
 * back is added to its stacks. */
#ifndef CPROF_OFFCPU_BPF_H
#define CPROF_OFFCPU_BPF_H

#include "wait.bpf.h"

#define TASK_DEAD 0x80

/* Frames of the kernel stack above __schedule: this program and bpf_trace_runN. When several
 * programs share sched_switch the tracepoint's iterator comes between them and __schedule:
 * user space drops that frame (its address varies, its depth would not be known here). */
const volatile __u32 kern_skip = 2;

/* --block-rate (offcpu): 0 counts every interval. R > 0 keeps an interval of d ns with
 * probability min(1, d/R) and counts a kept short one as R/d intervals of R ns in all, as Go's
 * SetBlockProfileRate does, so totals stay unbiased. */
const volatile __u64 block_rate_ns = 0;

static __always_inline __u64 rand64(void)
{
	return ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
}

/* The interval of delay ns that ended, sampled by block_rate_ns. */
static __always_inline void block_add(struct cprof_key *key, __u64 delay)
{
	__u64 count;

	if (delay < min_wait_ns) {
		stat_inc(CPROF_STAT_WAIT_SHORT);
		return;
	}
	if (!block_rate_ns || delay >= block_rate_ns) {
		wait_add_n(key, 1, delay);
		return;
	}
	if (delay == 0 || rand64() % block_rate_ns >= delay) {
		stat_inc(CPROF_STAT_WAIT_SAMPLED_OUT);
		return;
	}
	/* R/d intervals: the fraction is rounded up with its own probability (unbiased). */
	count = block_rate_ns / delay;
	if (rand64() % delay < block_rate_ns % delay)
		count++;
	wait_add_n(key, count, block_rate_ns);
}

/* The kernel stack of the current task without our own frames (key_stacks takes the user
 * stack: it does not skip). */
static __always_inline void kern_stack(void *ctx, struct cprof_key *key)
{
	long id;

	key->kern_stack_id = -1;
	if (!want_kern_stack)
		return;
	id = bpf_get_stackid(ctx, &stacks, kern_skip & BPF_F_SKIP_FIELD_MASK);
	if (id >= 0)
		key->kern_stack_id = id;
	else
		stat_inc(id == -EEXIST ? CPROF_STAT_KSTACK_COLLIDE : CPROF_STAT_KSTACK_ERR);
}

static __always_inline void switch_out(void *ctx, struct task_struct *prev, unsigned int state,
				       __u64 now)
{
	struct cprof_wait_start s = {};
	__u32 pid = prev->tgid, tid = prev->pid;
	struct pt_regs *regs;

	/* The last switch of an exiting thread is no wait: nothing switches it back in. */
	if (tid == 0 || (state & TASK_DEAD) || !is_target(pid))
		return;
	s.ts = now;
	/* prev is current here: its comm, its stacks. */
	key_current(ctx, &s.key, pid, false, prev->mm != NULL);
	kern_stack(ctx, &s.key);
	/* A thread that entered the kernel by a syscall has the syscall's number in orig_ax, and
	 * its user leaf is the return address of the syscall instruction. */
	regs = (struct pt_regs *)bpf_task_pt_regs(prev);
	if (regs && (long)BPF_CORE_READ(regs, orig_ax) >= 0)
		s.key.flags |= CPROF_WAIT_USER_RET;
	wait_begin(tid, &s);
	proc_seen(pid);
}

static __always_inline void switch_in(struct task_struct *next, __u64 now)
{
	__u32 tid = next->pid;
	struct cprof_wait_start *s;
	struct cprof_key key;
	__u64 delay;

	s = bpf_map_lookup_elem(&starts, &tid);
	if (!s)
		return;
	delay = now - s->ts;
	key = s->key;
	bpf_map_delete_elem(&starts, &tid);
	block_add(&key, delay);
}

/* Both halves of one sched_switch. */
static __always_inline void offcpu_switch_at(void *ctx, struct task_struct *prev,
					     struct task_struct *next, unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();

	switch_out(ctx, prev, prev_state, now);
	switch_in(next, now);
}

#endif
