// SPDX-License-Identifier: GPL-2.0
/* Test programs of the stack path every profile type shares: key_current() called from a
 * uprobe, a tp_btf (sched_switch), a raw syscall tp_btf (sys_enter, as -t mutex uses where there
 * is no tracefs) and a tracepoint program (needs tracefs to attach: the test turns it off where
 * there is none), each counting into its own map. Loaded only by
 * tests/unit/test_unwind_probes.c, never by cprof-bpf itself. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "common.bpf.h"

#define COUNTS(name)                                                                               \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_HASH);                                                   \
		__uint(max_entries, 1024);                                                         \
		__type(key, struct cprof_key);                                                     \
		__type(value, __u64);                                                              \
	} name SEC(".maps")

COUNTS(uprobe_counts);
COUNTS(switch_counts);
COUNTS(tp_counts);
COUNTS(sys_counts);

#ifndef NR_CLOCK_NANOSLEEP
#define NR_CLOCK_NANOSLEEP 230 /* x86_64 */
#endif

static __always_inline void sample(void *ctx, void *counts, bool in_kernel)
{
	struct cprof_key key = {};
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (!is_target(pid))
		return;
	key_current(ctx, &key, pid, in_kernel, true);
	count_add(counts, &key, 1);
}

SEC("uprobe")
int BPF_KPROBE(probe_uprobe)
{
	sample(ctx, &uprobe_counts, false);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(probe_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	sample(ctx, &switch_counts, true); /* prev is the current task */
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(probe_sys_enter, struct pt_regs *regs, long id)
{
	if (id == NR_CLOCK_NANOSLEEP)
		sample(ctx, &sys_counts, true);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_clock_nanosleep")
int probe_tracepoint(void *ctx)
{
	sample(ctx, &tp_counts, true);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
