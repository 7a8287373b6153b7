// SPDX-License-Identifier: GPL-2.0
/* CPU profiler: a perf cpu-clock event on every CPU runs on_sample; samples of target processes
 * are counted in `counts` by (pid, thread name, user stack, kernel stack). Nothing per sample
 * reaches user space. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "common.bpf.h"

/* Not preallocated: a few hundred keys a window fill a map sized for the worst case, whose
 * preallocation was a tenth of the agent's start-up CPU (the kernel's allocator serves a new key
 * from a per-CPU cache, in any context, since 6.1). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, CPROF_DEFAULT_MAX_KEYS);
	__type(key, struct cprof_key);
	__type(value, __u64);
} counts SEC(".maps");

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id;
	struct task_struct *task;
	bool in_kernel;

	if (tid == 0) { /* the idle task of this CPU */
		stat_inc(CPROF_STAT_IDLE);
		return 0;
	}
	if (!is_target(pid))
		return 0;
	task = bpf_get_current_task_btf();
	/* Kernel text is in the upper half of the address space on x86-64; ctx only allows full
	 * 8-byte loads of regs, so the ip says it, not the 2-byte cs. */
	in_kernel = (__s64)ctx->regs.ip < 0;
	count_sample(ctx, &counts, pid, in_kernel, task->mm != NULL);
	return 0;
}

CPROF_COMMON_PROGS

char LICENSE[] SEC("license") = "GPL";
