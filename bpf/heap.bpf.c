// SPDX-License-Identifier: GPL-2.0
/* Heap profiler: uprobes on the malloc family (entry) and their returns, and on free.
 *
 * Sampling by bytes, as Go and tcmalloc do: each CPU counts down the bytes allocated on it;
 * when the countdown runs out the allocation is sampled and a new countdown is drawn from an
 * exponential distribution of mean sample_bytes. An unsampled malloc touches only its CPU's
 * countdown: no stack walk, no shared map, no lock, and (a uprobe session) no return probe. A
 * sampled one takes the stack at the return probe (where the registers are the caller's, so
 * frame-pointer walks do not skip the caller), counts it in `allocs` by (stack, size) and enters
 * `live` so that its free can subtract it from the in-use figures. A free of an untracked block
 * stops at one load from a counting filter in front of `live`. Nothing per call reaches user
 * space. The trap of each probe costs far more than all of this (README, "Cost"). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "common.bpf.h"
#include "heap.h"

/* Mean bytes between samples; 0 or 1: every allocation. */
const volatile __u64 sample_bytes = 512 * 1024;
/* Benchmark only (CPROF_BENCH_EMPTY_PROBES=1): every program returns at once, so that the cost
 * of the traps at exactly our probe sites can be told from the cost of our BPF work. */
const volatile bool empty_probes = false;
/* --heap-alloc-only: the free family is not probed, so nothing enters `live` and realloc does
 * not release its old block; only alloc_* is counted. */
const volatile bool alloc_only = false;
/* Exponential variates of mean sample_bytes, filled by user space. */
const volatile __u64 intervals[HEAP_NINTERVALS];

_Static_assert((HEAP_NINTERVALS & (HEAP_NINTERVALS - 1)) == 0, "a power of two, for the mask");

/* One per thread. Task-local storage: no lock, no sharing, freed with the thread. Only calls
 * that need it touch it: sampled ones, and those with a return probe anyway (realloc, new...). */
struct heap_thread {
	__u64 active_sp; /* sp at entry of the outermost allocator call in flight; 0: none */
	__u64 size;	 /* of that call */
	__u64 old_ptr;	 /* realloc: the block given back */
	__u64 memptr;	 /* posix_memalign: where the result is stored */
	__u64 released;	 /* last address an operator delete released (see heap_own_free) */
	__u32 kind;
	__u8 sampled;
	__u8 pad[3];
};

/* The bytes left before the next sample, one countdown per CPU (as Go keeps one per P): an
 * unsampled malloc then costs one per-CPU array access, where a task-storage lookup cost about
 * 40 ns more here. Sampling stays Poisson over the bytes each CPU allocates, so every byte is
 * still sampled with probability 1/sample_bytes. A program preempted between reading and writing
 * its CPU's countdown (they run with migration disabled) may lose one update: a sample comes a
 * little early or late, nothing is miscounted. */
struct heap_countdown {
	__s64 left;
	__u64 inited;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct heap_countdown);
} countdowns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct heap_thread);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CPROF_DEFAULT_MAX_KEYS);
	__type(key, struct heap_key);
	__type(value, struct heap_val);
} allocs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HEAP_DEFAULT_MAX_LIVE);
	__type(key, struct heap_addr);
	__type(value, struct heap_key);
} live SEC(".maps");

/* A counting filter in front of `live`: slot hash(addr) holds how many live entries (of any
 * process) hash there. Nearly every free is of an unsampled block: one array load says so, where
 * a failed lookup in `live` (hashing, then a bucket in a 4 MiB table, a cache miss) cost about
 * 50 ns more here. Raised before an entry enters `live`, lowered after it left, so a slot is
 * never 0 while an entry of its addresses is live. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HEAP_FILTER_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} live_filter SEC(".maps");

static __always_inline __u32 *filter_slot(__u64 addr)
{
	/* Fibonacci hashing of the address without its alignment bits. */
	__u32 slot = (__u32)(((addr >> 4) * 0x9e3779b97f4a7c15ull) >> (64 - HEAP_FILTER_BITS));

	return bpf_map_lookup_elem(&live_filter, &slot);
}

static __always_inline void filter_add(__u64 addr, int delta)
{
	__u32 *n = filter_slot(addr);

	if (n)
		__sync_fetch_and_add(n, delta);
}

static __always_inline __s64 next_interval(void)
{
	return (__s64)intervals[bpf_get_prandom_u32() & (HEAP_NINTERVALS - 1)];
}

/* Go's rule (runtime.mallocgc): an allocation of size s is sampled when s reaches the bytes
 * left, so each byte is sampled with probability 1/sample_bytes. */
static __always_inline bool should_sample(__u64 size)
{
	struct heap_countdown *c;
	__u32 zero = 0;

	if (sample_bytes <= 1)
		return true;
	c = bpf_map_lookup_elem(&countdowns, &zero);
	if (!c)
		return false;
	if (!c->inited) {
		c->inited = 1;
		c->left = next_interval();
	}
	if ((__s64)size < c->left) {
		c->left -= size;
		return false;
	}
	c->left = next_interval();
	return true;
}

static __always_inline __u64 mul_size(__u64 n, __u64 size)
{
	__u64 max = ~0ull;

	/* An overflowing product fails in the allocator; count it as nothing. The barrier keeps
	 * clang from turning the check into a 128-bit multiply, which BPF lacks. */
	asm volatile("" : "+r"(max));
	if (size && n > max / size)
		return 0;
	return n * size;
}

static __always_inline int heap_enter(struct pt_regs *ctx, __u32 kind, __u64 size, __u64 old_ptr,
				      __u64 memptr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 sp = PT_REGS_SP(ctx);
	struct heap_thread *t;

	t = bpf_task_storage_get(&threads, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t) {
		stat_inc(CPROF_STAT_HEAP_NO_THREAD);
		return 0;
	}
	/* Deeper on the stack than a call in flight: an allocator function called by another
	 * (operator new -> malloc, realloc(NULL) -> malloc). The outer one counts, once. */
	if (t->active_sp && sp < t->active_sp)
		return 0;
	t->active_sp = sp;
	t->kind = kind;
	t->size = size;
	t->old_ptr = old_ptr;
	t->memptr = memptr;
	t->sampled = should_sample(size);
	return 0;
}

/* The block at addr is gone: its sampled figures leave the in-use counts. */
enum release_unknown {
	UNKNOWN_COUNT,	/* a free: count an untracked address */
	UNKNOWN_IGNORE, /* released by an outer call already */
	UNKNOWN_DEDUP,	/* a free that an operator delete may have called: count unless so */
};

static __always_inline bool released_by_delete(__u64 addr)
{
	struct heap_thread *t = bpf_task_storage_get(&threads, bpf_get_current_task_btf(), 0, 0);

	if (!t || t->released != addr)
		return false;
	t->released = 0;
	return true;
}

static __always_inline void heap_release(__u64 addr, enum release_unknown unknown)
{
	struct heap_addr a = {.addr = addr};
	struct heap_key *lk = NULL, key;
	struct heap_val *v;
	__u32 *n;

	n = filter_slot(addr);
	if (n && *n) {
		a.pid = bpf_get_current_pid_tgid() >> 32;
		lk = bpf_map_lookup_elem(&live, &a);
	}
	if (!lk) {
		if (unknown == UNKNOWN_COUNT ||
		    (unknown == UNKNOWN_DEDUP && !released_by_delete(addr)))
			stat_inc(CPROF_STAT_HEAP_UNKNOWN_FREE);
		return;
	}
	key = *lk;
	if (bpf_map_delete_elem(&live, &a))
		return; /* another thread released it first */
	if (n)
		__sync_fetch_and_add(n, -1);
	v = bpf_map_lookup_elem(&allocs, &key);
	if (!v)
		return;
	__sync_fetch_and_add(&v->inuse_objects, -1);
	__sync_fetch_and_add(&v->inuse_bytes, -key.size);
}

static __always_inline struct heap_val *heap_val_of(struct heap_key *key)
{
	struct heap_val zero = {}, *v;
	long err;

	v = bpf_map_lookup_elem(&allocs, key);
	if (v)
		return v;
	err = bpf_map_update_elem(&allocs, key, &zero, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		stat_inc(CPROF_STAT_KEYS_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&allocs, key);
}

static __always_inline void heap_record(struct pt_regs *ctx, __u32 pid, __u64 addr, __u64 size)
{
	struct heap_addr a = {.pid = pid, .addr = addr};
	struct heap_key key = {};
	struct heap_val *v;
	long err;

	stat_inc(CPROF_STAT_SAMPLES);
	key.size = size;
	key_current(ctx, &key.k, pid, false, true);
	v = heap_val_of(&key);
	if (!v)
		return;
	__sync_fetch_and_add(&v->alloc_objects, 1);
	__sync_fetch_and_add(&v->alloc_bytes, size);
	proc_seen(pid);
	if (alloc_only)
		return;
	filter_add(addr, 1);
	err = bpf_map_update_elem(&live, &a, &key, BPF_NOEXIST);
	if (err == -EEXIST) {
		/* Still tracked: its free went by a path we do not probe. */
		stat_inc(CPROF_STAT_HEAP_STALE);
		heap_release(addr, UNKNOWN_IGNORE);
		err = bpf_map_update_elem(&live, &a, &key, BPF_NOEXIST);
	}
	if (err) {
		filter_add(addr, -1);
		stat_inc(CPROF_STAT_HEAP_LIVE_FULL);
	} else {
		__sync_fetch_and_add(&v->inuse_objects, 1);
		__sync_fetch_and_add(&v->inuse_bytes, size);
	}
}

static __always_inline int heap_exit(struct pt_regs *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 ret = PT_REGS_RC(ctx), addr = ret;
	struct heap_thread *t;

	t = bpf_task_storage_get(&threads, task, 0, 0);
	/* After the return sp is above the entry's (the return address was popped); a nested
	 * call returns below it. */
	if (!t || !t->active_sp || PT_REGS_SP(ctx) <= t->active_sp)
		return 0;
	t->active_sp = 0;
	/* realloc gave the old block back: moved, resized in place, or freed by size 0. */
	if (!alloc_only && t->kind == HEAP_KIND_REALLOC && t->old_ptr && (ret || t->size == 0))
		heap_release(t->old_ptr, UNKNOWN_COUNT);
	if (!t->sampled)
		return 0;
	if (t->kind == HEAP_KIND_POSIX_MEMALIGN) {
		if ((int)ret != 0 || bpf_probe_read_user(&addr, sizeof(addr), (void *)t->memptr))
			return 0;
	}
	if (addr)
		heap_record(ctx, pid, addr, t->size);
	return 0;
}

SEC("uretprobe")
int heap_return(struct pt_regs *ctx)
{
	if (empty_probes)
		return 0;
	return heap_exit(ctx);
}

/* Uprobe sessions (kernel 6.11+): one program runs at entry and at return, and an entry that
 * returns 1 gets no return probe at all, which saves the return trap of every unsampled call.
 * Used for malloc and calloc, which call no other probed function: an unsampled call there needs
 * no state, so it can skip its return. User space loads these as BPF_TRACE_UPROBE_SESSION when
 * the kernel has it and falls back to heap_malloc/heap_calloc + heap_return otherwise. */
extern bool bpf_session_is_return(void) __ksym __weak;

static __always_inline int heap_session(struct pt_regs *ctx, __u32 kind, __u64 size)
{
	struct heap_thread *t;

	if (empty_probes)
		return 1;
	if (bpf_session_is_return())
		return heap_exit(ctx);
	/* Counted down even when nested in an outer call (operator new -> malloc): the bytes are
	 * then counted twice, which only wastes a few samples: a sample drawn inside a nested call
	 * is dropped below, and each outer call is still sampled with its own probability. */
	if (!should_sample(size))
		return 1;
	t = bpf_task_storage_get(&threads, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t) {
		stat_inc(CPROF_STAT_HEAP_NO_THREAD);
		return 1;
	}
	if (t->active_sp && PT_REGS_SP(ctx) < t->active_sp)
		return 1; /* nested in operator new, realloc...: the outer call counts */
	t->active_sp = PT_REGS_SP(ctx);
	t->kind = kind;
	t->size = size;
	t->old_ptr = 0;
	t->memptr = 0;
	t->sampled = 1;
	return 0;
}

SEC("uprobe")
int heap_malloc_session(struct pt_regs *ctx)
{
	return heap_session(ctx, HEAP_KIND_MALLOC, PT_REGS_PARM1(ctx));
}

SEC("uprobe")
int heap_calloc_session(struct pt_regs *ctx)
{
	return heap_session(ctx, HEAP_KIND_CALLOC,
			    mul_size(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx)));
}

SEC("uprobe")
int heap_malloc(struct pt_regs *ctx)
{
	if (empty_probes)
		return 0;
	return heap_enter(ctx, HEAP_KIND_MALLOC, PT_REGS_PARM1(ctx), 0, 0);
}

SEC("uprobe")
int heap_calloc(struct pt_regs *ctx)
{
	if (empty_probes)
		return 0;
	return heap_enter(ctx, HEAP_KIND_CALLOC, mul_size(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx)),
			  0, 0);
}

SEC("uprobe")
int heap_realloc(struct pt_regs *ctx)
{
	if (empty_probes)
		return 0;
	return heap_enter(ctx, HEAP_KIND_REALLOC, PT_REGS_PARM2(ctx), PT_REGS_PARM1(ctx), 0);
}

SEC("uprobe")
int heap_reallocarray(struct pt_regs *ctx)
{
	if (empty_probes)
		return 0;
	return heap_enter(ctx, HEAP_KIND_REALLOC, mul_size(PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx)),
			  PT_REGS_PARM1(ctx), 0);
}

SEC("uprobe")
int heap_posix_memalign(struct pt_regs *ctx)
{
	if (empty_probes)
		return 0;
	return heap_enter(ctx, HEAP_KIND_POSIX_MEMALIGN, PT_REGS_PARM3(ctx), 0, PT_REGS_PARM1(ctx));
}

SEC("uprobe")
int heap_aligned(struct pt_regs *ctx)
{
	if (empty_probes)
		return 0;
	return heap_enter(ctx, HEAP_KIND_ALIGNED, PT_REGS_PARM2(ctx), 0, 0);
}

SEC("uprobe")
int heap_free(struct pt_regs *ctx)
{
	__u64 addr = PT_REGS_PARM1(ctx);

	if (empty_probes)
		return 0;
	if (addr)
		heap_release(addr, UNKNOWN_COUNT);
	return 0;
}

/* free in an allocator whose operator delete is probed too (heap_own_free): a delete that
 * calls free must not count its address twice. */
SEC("uprobe")
int heap_free_dedup(struct pt_regs *ctx)
{
	__u64 addr = PT_REGS_PARM1(ctx);

	if (empty_probes)
		return 0;
	if (addr)
		heap_release(addr, UNKNOWN_DEDUP);
	return 0;
}

/* operator delete, sdallocx... of an allocator that may implement them without free. They may
 * call one another (delete[] -> delete) or free, so an untracked address is not counted here:
 * the outermost call released it, and a free inside is told so through `released`. */
SEC("uprobe")
int heap_own_free(struct pt_regs *ctx)
{
	__u64 addr = PT_REGS_PARM1(ctx);
	struct heap_thread *t;

	if (empty_probes)
		return 0;
	if (!addr)
		return 0;
	heap_release(addr, UNKNOWN_IGNORE);
	t = bpf_task_storage_get(&threads, bpf_get_current_task_btf(), 0, 0);
	if (t)
		t->released = addr;
	return 0;
}

CPROF_COMMON_PROGS

char LICENSE[] SEC("license") = "GPL";
