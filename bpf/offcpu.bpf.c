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

#include "offcpu.bpf.h"

SEC("tp_btf/sched_switch")
int BPF_PROG(offcpu_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	offcpu_switch_at(ctx, prev, next, prev_state);
	return 0;
}

CPROF_COMMON_PROGS

char LICENSE[] SEC("license") = "GPL";
