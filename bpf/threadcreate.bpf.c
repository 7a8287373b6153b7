// SPDX-License-Identifier: GPL-2.0
/* Thread creation: Go's threadcreate profile for any process. At every fork or clone the
 * kernel's sched_process_fork tracepoint runs in the creating thread, still inside the clone
 * syscall, so its user stack is the one that asked for the new thread (pthread_create, Rust's
 * thread::spawn, ...). Only new threads of a process are counted (child tgid == parent tgid,
 * i.e. CLONE_THREAD); new processes are not. Counted per (pid, thread name, user stack) in
 * BPF; nothing per creation reaches user space.
 *
 * tp_btf needs no tracefs (a tp/ program through perf_event would: it reads the event's id). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "common.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CPROF_DEFAULT_MAX_KEYS);
	__type(key, struct cprof_key);
	__type(value, __u64);
} counts SEC(".maps");

SEC("tp_btf/sched_process_fork")
int BPF_PROG(thread_create, struct task_struct *parent, struct task_struct *child)
{
	__u32 pid = parent->tgid;

	if (child->tgid != pid || !is_target(pid)) /* a new process, or not ours */
		return 0;
	/* parent is current here: its name and its stack, inside the clone syscall. */
	count_sample(ctx, &counts, pid, false, parent->mm != NULL);
	return 0;
}

CPROF_COMMON_PROGS

char LICENSE[] SEC("license") = "GPL";
