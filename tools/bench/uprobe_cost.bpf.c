// SPDX-License-Identifier: GPL-2.0
/* Programs for tools/bench/uprobe_cost.c: the cheapest things a uprobe can run, so that what a
 * trap costs can be told from what a program costs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} shared SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu SEC(".maps");

/* Sessions: 1 at entry means "no return probe for this call". */
const volatile int entry_ret;

SEC("uprobe")
int empty(void *ctx)
{
	return entry_ret;
}

/* One counter for all CPUs: its cache line moves between cores at every call. */
SEC("uprobe")
int count_shared(void *ctx)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&shared, &zero);

	if (v)
		__sync_fetch_and_add(v, 1);
	return entry_ret;
}

/* bpftrace's count(): one counter per CPU. */
SEC("uprobe")
int count_percpu(void *ctx)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&percpu, &zero);

	if (v)
		*v += 1;
	return entry_ret;
}

/* What cprof-bpf's heap programs do on an unsampled call, one piece at a time. */
struct thread_state {
	__s64 countdown;
	__u64 active_sp;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct thread_state);
} threads SEC(".maps");

/* Per-thread countdown in task-local storage (cprof-bpf's malloc entry before this change). */
SEC("uprobe")
int task_countdown(struct pt_regs *ctx)
{
	struct thread_state *t = bpf_task_storage_get(&threads, bpf_get_current_task_btf(), 0,
						      BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (t)
		t->countdown -= 100;
	return entry_ret;
}

/* The same countdown, per CPU. */
SEC("uprobe")
int percpu_countdown(struct pt_regs *ctx)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&percpu, &zero);

	if (v)
		*v -= 100;
	return entry_ret;
}

struct addr_key {
	__u32 pid, pad;
	__u64 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct addr_key);
	__type(value, __u64);
} live SEC(".maps");

/* free: one failed lookup in a large hash map (cprof-bpf's live map, default size). */
SEC("uprobe")
int hash_miss(struct pt_regs *ctx)
{
	struct addr_key k = {.pid = bpf_get_current_pid_tgid() >> 32, .addr = ctx->di};

	if (bpf_map_lookup_elem(&live, &k))
		return 0;
	return entry_ret;
}

#define FILTER_SLOTS (1 << 14)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FILTER_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} filter SEC(".maps");

/* free: a counting filter in front of the hash map, one array load for untracked blocks. */
SEC("uprobe")
int filter_miss(struct pt_regs *ctx)
{
	__u32 slot = (__u32)(((ctx->di >> 4) * 0x9e3779b97f4a7c15ull) >> 50);
	__u32 *n = bpf_map_lookup_elem(&filter, &slot);

	if (n && *n)
		return 0;
	return entry_ret;
}

char LICENSE[] SEC("license") = "GPL";
