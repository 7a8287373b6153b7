// SPDX-License-Identifier: GPL-2.0
/* Off-CPU time: how long threads of the targets stay off the CPU (blocked in I/O, sleeping,
 * waiting for a lock or a page, or preempted), by the stack where they left it.
 *
 * One program on tp_btf/sched_switch does both halves. When a target thread is switched out it
 * is still the current task, so its user and kernel stacks are taken there and kept with the
 * time in the per-thread start map; when a thread is switched in, its entry (if any) gives the
 * duration, which is added to the (count, delay) of the stacks. Only the aggregates reach user
 * space; threads still off the CPU when the profile ends are counted up to the end from the
 * start map by user space. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "wait.bpf.h"

#define TASK_DEAD 0x80

/* Frames of the kernel stack above __schedule: this program and bpf_trace_runN. */
const volatile __u32 kern_skip = 2;

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
	s.key.pid = pid;
	/* prev is current here: its comm, its stacks. */
	bpf_get_current_comm(s.key.comm, sizeof(s.key.comm));
	key_stacks(ctx, &s.key, false, prev->mm != NULL);
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
	wait_add(&key, delay);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(offcpu_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();

	switch_out(ctx, prev, prev_state, now);
	switch_in(next, now);
	return 0;
}

CPROF_COMMON_PROGS

char LICENSE[] SEC("license") = "GPL";
