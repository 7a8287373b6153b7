/* What every cprof-bpf program shares: the target filter, the stack and aggregation maps, the
 * loss counters and the new-process notices. Each program includes this once; its skeleton then
 * carries its own instance of each map, sized by user space before load. */
#ifndef CPROF_COMMON_BPF_H
#define CPROF_COMMON_BPF_H

#include "cprof.h"

#ifndef EEXIST
#define EEXIST 17
#endif

/* Profile every process (-a) rather than the pids in `targets`. */
const volatile bool target_all = false;
/* Add processes forked by a target to the targets (for `-- CMD`, whose work may be in children). */
const volatile bool follow_children = false;
/* Which stacks to take. */
const volatile bool want_user_stack = true;
const volatile bool want_kern_stack = true;
/* Lifecycle notices (the agent): every exec of a target is announced, not only of processes
 * already sampled, so mappings are read as early as possible; when a seen process exits it
 * leaves `seen` and a CPROF_PROC_EXIT notice lets user space evict its state (a reused pid is
 * then announced again). */
const volatile bool notify_lifecycle = false;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CPROF_MAX_TARGETS);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, CPROF_DEFAULT_MAX_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, CPROF_MAX_STACK * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CPROF_STAT_NR);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* `seen` value of a process announced at exec and not sampled since. */
#define SEEN_EXEC 2

/* Processes already announced to user space. LRU: an old entry evicted only means one more
 * (harmless) notice for that process. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} proc_events SEC(".maps");

static __always_inline void stat_inc(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline bool is_target(__u32 pid)
{
	if (target_all)
		return true;
	return bpf_map_lookup_elem(&targets, &pid) != NULL;
}

/* Lazy notices (see proc_event_submit) waiting past this much of the ring buffer wake the
 * reader anyway: a burst is read before the ring fills. */
#define CPROF_NOTICE_BACKLOG (64 * 1024)

/* A notice of kind about pid reserved on the ring buffer, for the caller to fill and submit; NULL
 * when the ring buffer is full (counted as lost). */
static __always_inline struct cprof_proc_event *proc_event_reserve(__u32 pid, __u32 kind)
{
	struct cprof_proc_event *e = bpf_ringbuf_reserve(&proc_events, sizeof(*e), 0);

	if (!e) {
		stat_inc(CPROF_STAT_EVENTS_LOST);
		return NULL;
	}
	e->pid = pid;
	e->kind = kind;
	e->flags = 0;
	e->reserved = 0;
	e->time_ns = bpf_ktime_get_ns();
	return e;
}

/* Submits a reserved notice. One that must be read while the process lives (lazy false) wakes
 * the reader at once; the kernel's default would not when older notices wait unread, as lazy
 * ones do. A lazy one (an exit; an exec under the agent, read 10 ms later at the soonest) waits
 * for the reader's next wake-up, which comes at least every 200 ms: a wake-up of a thread is a
 * good part of the agent's cost per process. */
static __always_inline void proc_event_submit(struct cprof_proc_event *e, bool lazy)
{
	__u64 wake = BPF_RB_FORCE_WAKEUP;

	if (lazy && bpf_ringbuf_query(&proc_events, BPF_RB_AVAIL_DATA) < CPROF_NOTICE_BACKLOG)
		wake = BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, wake);
}

/* Returns whether the notice was sent (a lost one is counted). */
static __always_inline bool proc_notify_lazy(__u32 pid, __u32 kind, __u32 flags, bool lazy)
{
	struct cprof_proc_event *e = proc_event_reserve(pid, kind);

	if (!e)
		return false;
	e->flags = flags;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	proc_event_submit(e, lazy);
	return true;
}

static __always_inline bool proc_notify(__u32 pid, __u32 kind)
{
	return proc_notify_lazy(pid, kind, 0, false);
}

/* Tells user space the first time a process is sampled, so it can read the process's mappings
 * while the process is alive. One map lookup per sample; a notice once per process. */
static __always_inline void proc_seen(__u32 pid)
{
	__u8 one = 1, *v;

	v = bpf_map_lookup_elem(&seen, &pid);
	if (v) {
		/* Announced at exec (SEEN_EXEC) but not sampled yet: its first sample is news too,
		 * since unwind tables are only built for processes that are sampled. Two CPUs may
		 * both see SEEN_EXEC: one extra notice, harmless. */
		if (*v == SEEN_EXEC) {
			*v = 1;
			proc_notify(pid, CPROF_PROC_SAMPLED);
		}
		return;
	}
	if (bpf_map_update_elem(&seen, &pid, &one, BPF_NOEXIST) == 0)
		proc_notify(pid, CPROF_PROC_NEW);
}

/* Processes with a CPROF_PROC_MMAP notice that user space has not handled yet: it deletes the
 * entry just before it reads the mappings, so a mapping made after that read sends a new notice
 * and none made before it is missed. Bounds the notices to one per read, however many mappings
 * a loader makes. LRU: an evicted entry only means one more notice. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} mmap_pending SEC(".maps");

#define CPROF_NR_MMAP	9 /* x86-64 */
#define CPROF_PROT_EXEC 0x4
#define CPROF_MAX_ERRNO 4095

/* A process of interest mapped executable memory (ld.so mapping a library, dlopen): user space
 * re-reads its mappings while it lives. Under -a only processes already seen are announced
 * (the others are read at their first sample); with targets, every target. prot and ret are
 * the mapping's protection and the call's result. */
static __always_inline void mmap_exec_seen(unsigned long prot, long ret)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1, *v;

	if (ret < 0 && ret >= -CPROF_MAX_ERRNO)
		return;
	if (!(prot & CPROF_PROT_EXEC))
		return;
	if (target_all) {
		/* Announced at exec but not sampled yet (SEEN_EXEC): its first sample sends a
		 * notice that reads the mappings anyway, so a process that is never sampled costs
		 * user space nothing here (the agent's exec'd processes). */
		v = bpf_map_lookup_elem(&seen, &pid);
		if (!v || *v == SEEN_EXEC)
			return;
	} else if (!is_target(pid)) {
		return;
	}
	if (bpf_map_update_elem(&mmap_pending, &pid, &one, BPF_NOEXIST))
		return; /* a notice is already on its way */
	if (!proc_notify(pid, CPROF_PROC_MMAP))
		bpf_map_delete_elem(&mmap_pending, &pid); /* lost: the next mapping tries again */
}

#include "unwind.bpf.h"

#ifndef CPROF_UNWIND_REMOTE
/* Fills the key's stacks for the current context. Kernel threads have no user stack; a sample
 * taken in user mode has no kernel stack: neither counts as a loss. User stacks are walked with
 * frame pointers by the kernel (--unwind=fp) or by the table unwinder (unwind.bpf.h), whose ids
 * carry CPROF_USTACK_ID_TABLE and the key CPROF_KEY_USTACK_TABLE; either works from any program
 * type, since neither reads registers from ctx. */
static __always_inline void key_stacks(void *ctx, struct cprof_key *key, bool in_kernel,
				       bool has_mm)
{
	long id;

	key->user_stack_id = -1;
	key->kern_stack_id = -1;
	if (want_user_stack && has_mm && unwind_mode != CPROF_UNWIND_FP) {
		id = unwind_user_stack();
		if (id >= 0) {
			key->user_stack_id = id;
			key->flags |= CPROF_KEY_USTACK_TABLE;
		}
	} else if (want_user_stack && has_mm) {
		id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
		if (id >= 0)
			key->user_stack_id = id;
		else
			stat_inc(id == -EEXIST ? CPROF_STAT_USTACK_COLLIDE : CPROF_STAT_USTACK_ERR);
	}
	if (want_kern_stack && in_kernel) {
		id = bpf_get_stackid(ctx, &stacks, 0);
		if (id >= 0)
			key->kern_stack_id = id;
		else
			stat_inc(id == -EEXIST ? CPROF_STAT_KSTACK_COLLIDE : CPROF_STAT_KSTACK_ERR);
	}
}

/* The key of a sample of the current task (of process pid): its process, its thread's name
 * and its stacks (as key_stacks). key's other fields are left as they are. */
static __always_inline void key_current(void *ctx, struct cprof_key *key, __u32 pid, bool in_kernel,
					bool has_mm)
{
	key->pid = pid;
	bpf_get_current_comm(key->comm, sizeof(key->comm));
	key_stacks(ctx, key, in_kernel, has_mm);
}
#endif

/* Adds delta to the u64 counter of key in an aggregation HASH map, creating it if needed. */
static __always_inline void count_add(void *map, struct cprof_key *key, __u64 delta)
{
	__u64 *v = bpf_map_lookup_elem(map, key);
	long err;

	if (v) {
		__sync_fetch_and_add(v, delta);
		return;
	}
	err = bpf_map_update_elem(map, key, &delta, BPF_NOEXIST);
	if (err == -EEXIST) {
		/* Another CPU created it between our lookup and update. */
		v = bpf_map_lookup_elem(map, key);
		if (v)
			__sync_fetch_and_add(v, delta);
	} else if (err) {
		stat_inc(CPROF_STAT_KEYS_FULL);
	}
}

#ifndef CPROF_UNWIND_REMOTE
/* Counts one sample of the current task (of process pid) in map, a HASH of struct cprof_key ->
 * u64, and announces the process if it is new. */
static __always_inline void count_sample(void *ctx, void *map, __u32 pid, bool in_kernel,
					 bool has_mm)
{
	struct cprof_key key = {};

	stat_inc(CPROF_STAT_SAMPLES);
	key_current(ctx, &key, pid, in_kernel, has_mm);
	count_add(map, &key, 1);
	proc_seen(pid);
}
#endif

/* Follows children of targets (follow_children): a forked process becomes a target. */
static __always_inline void follow_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 ppid = BPF_CORE_READ(parent, tgid);
	__u32 cpid = BPF_CORE_READ(child, tgid);
	__u8 one = 1;

	if (!follow_children || target_all || cpid == ppid) /* a new thread, not a process */
		return;
	if (bpf_map_lookup_elem(&targets, &ppid))
		bpf_map_update_elem(&targets, &cpid, &one, BPF_ANY);
}

#define CPROF_COMMON_PROGS                                                                           \
	SEC("tp_btf/sched_process_fork")                                                             \
	int BPF_PROG(cprof_fork, struct task_struct *parent, struct task_struct *child)              \
	{                                                                                            \
		follow_fork(parent, child);                                                          \
		return 0;                                                                            \
	}                                                                                            \
	SEC("tp_btf/sched_process_exec")                                                             \
	int BPF_PROG(cprof_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)    \
	{                                                                                            \
		__u32 pid = bpf_get_current_pid_tgid() >> 32, flags;                                 \
		__u8 one = SEEN_EXEC;                                                                \
		if (!is_target(pid))                                                                 \
			return 0;                                                                    \
		flags = bpf_map_lookup_elem(&seen, &pid) ? CPROF_PROC_F_KNOWN : 0;                   \
		/* The new image's executable is mapped now, its libraries only once ld.so \
		 * has run: notify now (a short-lived command may be gone before its first \
		 * sample; lazily under the agent, which reads it 10 ms on at the soonest), \
		 * and again at its first sample (forgotten here), when they are mapped. */         \
		if (notify_lifecycle)                                                                \
			bpf_map_update_elem(&seen, &pid, &one, BPF_ANY);                             \
		else                                                                                 \
			bpf_map_delete_elem(&seen, &pid);                                            \
		proc_notify_lazy(pid, CPROF_PROC_EXEC, flags, notify_lifecycle);                     \
		return 0;                                                                            \
	}                                                                                            \
	SEC("tp_btf/sched_process_exit")                                                             \
	int BPF_PROG(cprof_exit, struct task_struct *p)                                              \
	{                                                                                            \
		__u32 pid = BPF_CORE_READ(p, tgid);                                                  \
		/* signal->live reaches 0 when the last thread of the process exits. Nothing of    \
		 * an exit must be read at once: a lazy notice. */ \
		if (notify_lifecycle && BPF_CORE_READ(p, signal, live.counter) == 0 &&               \
		    bpf_map_delete_elem(&seen, &pid) == 0)                                           \
			proc_notify_lazy(pid, CPROF_PROC_EXIT, 0, true);                             \
		return 0;                                                                            \
	}                                                                                            \
	/* Every syscall of every process passes here: the number is tested first. The user \
	 * registers are read through the BTF pointer, without a helper call. */        \
	SEC("tp_btf/sys_exit")                                                                       \
	int BPF_PROG(cprof_mmap, struct pt_regs *regs, long ret)                                     \
	{                                                                                            \
		if (regs->orig_ax == CPROF_NR_MMAP)                                                  \
			mmap_exec_seen(regs->dx, ret);                                               \
		return 0;                                                                            \
	}

#endif
