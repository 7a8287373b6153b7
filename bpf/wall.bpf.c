// SPDX-License-Identifier: GPL-2.0
/* Wall-clock time: where threads of the targets spend it, on the CPU and off it, in one map.
 * The off-CPU half is offcpu.bpf.c's (sched_switch); the on-CPU half samples the cpu-clock
 * event like cpu.bpf.c, each sample standing for period_ns of CPU time. Both add to the same
 * (count, delay) map, the key's CPROF_WAIT_ONCPU flag telling them apart. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "offcpu.bpf.h"

/* CPU time one sample stands for (1e9 / HZ). */
const volatile __u64 period_ns = 10101010;

SEC("perf_event")
int wall_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id;
	struct task_struct *task;
	struct cprof_key key = {};

	if (tid == 0) {
		stat_inc(CPROF_STAT_IDLE);
		return 0;
	}
	if (!is_target(pid))
		return 0;
	task = bpf_get_current_task_btf();
	key.flags = CPROF_WAIT_ONCPU;
	/* Kernel text is in the upper half of the address space (see cpu.bpf.c). */
	key_current(ctx, &key, pid, (__s64)ctx->regs.ip < 0, task->mm != NULL);
	wait_add_n(&key, 1, period_ns);
	proc_seen(pid);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(wall_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	offcpu_switch_at(ctx, prev, next, prev_state);
	return 0;
}

CPROF_COMMON_PROGS

char LICENSE[] SEC("license") = "GPL";
