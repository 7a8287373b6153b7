// SPDX-License-Identifier: GPL-2.0
/* Threads snapshot (Go's goroutine profile for any process): a sleepable task iterator visits
 * every thread of the targets once and writes one struct cprof_thread per thread to the
 * iterator's output, which user space reads. Per thread: its scheduler state and times, its
 * kernel stack (bpf_get_task_stack), the user registers it saved at its last kernel entry
 * (bpf_task_pt_regs: the syscall it waits in and the arguments), its user stack walked from
 * those registers by the table unwinder of every profile type, reading the thread's memory with
 * bpf_copy_from_user_task, and for a futex wait the words at the futex address (a mutex's
 * owner). Nothing stops the target: the walk reads its memory while it runs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

/* The unwinder reads the iterated thread's memory, not the current task's. */
#define CPROF_UNWIND_REMOTE 1
#include "common.bpf.h"
#include "threads.h"

#define PF_KTHREAD    0x00200000
#define X86_SYS_FUTEX 202

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cprof_thread);
} thread_scratch SEC(".maps");

/* The run-queue clock of the CPU a task is queued on or last ran on (through its fair-class
 * run queue, which points at the CPU's run queue with CONFIG_FAIR_GROUP_SCHED), 0 if unknown. */
static __always_inline __u64 rq_clock_of(struct task_struct *task)
{
	struct cfs_rq *cfs = BPF_CORE_READ(task, se.cfs_rq);

	if (!cfs || !bpf_core_field_exists(cfs->rq))
		return 0;
	return BPF_CORE_READ(cfs, rq, clock);
}

/* The scheduler's "now": the clock of this CPU's run queue, which is running this program and
 * so has its tick (the clock is at most one tick old), or the iterated task's if later. */
static __always_inline __u64 sched_now(struct task_struct *task)
{
	__u64 now = rq_clock_of(bpf_get_current_task_btf()), c = rq_clock_of(task);

	return c > now ? c : now;
}

/* The thread's id in the pid namespace it was created in (its process's view). */
static __always_inline __u32 ns_tid(struct task_struct *task)
{
	struct pid *p = task->thread_pid;
	unsigned int level;

	if (!p)
		return 0;
	level = BPF_CORE_READ(p, level);
	if (level > 31)
		return 0;
	return BPF_CORE_READ(p, numbers[level].nr);
}

/* Scheduler state and times. */
static __always_inline void read_sched(struct task_struct *task, struct cprof_thread *t)
{
	t->state = task->__state;
	t->exit_state = task->exit_state;
	t->cpu = BPF_CORE_READ(task, thread_info.cpu);
	if (task->on_cpu)
		t->flags |= CPROF_THREAD_ON_CPU;
	t->last_arrival = task->sched_info.last_arrival;
	t->last_queued = task->sched_info.last_queued;
	t->slice_ns = task->se.sum_exec_runtime - task->se.prev_sum_exec_runtime;
	t->now = sched_now(task);
}

/* The user registers saved at the last kernel entry; whether that entry was a syscall (the
 * `syscall` instruction leaves the return address in rcx and the flags in r11, and the entry
 * code saves both as they were: an interrupt or a fault leaves no such pair). */
static __always_inline void read_regs(struct task_struct *task, struct pt_regs *regs,
				      struct cprof_thread *t)
{
	long orig_ax = BPF_CORE_READ(regs, orig_ax);

	if ((BPF_CORE_READ(regs, cs) & 3) != 3)
		return; /* no user context saved */
	t->flags |= CPROF_THREAD_USER_REGS;
	t->regs_ip = BPF_CORE_READ(regs, ip);
	t->regs_sp = BPF_CORE_READ(regs, sp);
	t->regs_bp = BPF_CORE_READ(regs, bp);
	t->syscall = -1;
	if (orig_ax < 0 || BPF_CORE_READ(regs, cx) != t->regs_ip ||
	    BPF_CORE_READ(regs, r11) != BPF_CORE_READ(regs, flags))
		return;
	t->flags |= CPROF_THREAD_IN_SYSCALL;
	t->syscall = orig_ax;
	t->args[0] = BPF_CORE_READ(regs, di);
	t->args[1] = BPF_CORE_READ(regs, si);
	t->args[2] = BPF_CORE_READ(regs, dx);
	t->args[3] = BPF_CORE_READ(regs, r10);
	t->args[4] = BPF_CORE_READ(regs, r8);
	t->args[5] = BPF_CORE_READ(regs, r9);
	if (orig_ax == X86_SYS_FUTEX &&
	    bpf_copy_from_user_task(t->futex, sizeof(t->futex), (const void *)t->args[0], task,
				    0) == 0)
		t->flags |= CPROF_THREAD_FUTEX_READ;
}

static __always_inline void read_user_stack(struct task_struct *task, struct pt_regs *regs,
					    struct cprof_thread *t)
{
	struct unwind_ctx uc = {.task = task};
	struct cprof_walk *s;

	s = unwind_walk(regs, t->pid, &uc);
	if (!s)
		return;
	t->ustack_err = s->stop;
	t->nustack = s->st.n > CPROF_MAX_STACK ? CPROF_MAX_STACK : s->st.n;
	if (s->st.truncated)
		t->flags |= CPROF_THREAD_USTACK_TRUNCATED;
	bpf_probe_read_kernel(t->ustack, sizeof(t->ustack), s->st.ips);
	if (!t->nustack)
		stat_inc(CPROF_STAT_USTACK_ERR);
	/* A thread that ran meanwhile saved other registers: its stack may mix two moments. */
	if (BPF_CORE_READ(regs, ip) != t->regs_ip || BPF_CORE_READ(regs, sp) != t->regs_sp)
		t->flags |= CPROF_THREAD_REGS_CHANGED;
}

SEC("iter.s/task")
int threads_snapshot(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct cprof_thread *t;
	struct pt_regs *regs;
	__u32 zero = 0;
	long n;

	if (!task)
		return 0; /* the end of the iteration */
	if (!is_target(task->tgid))
		return 0;
	t = bpf_map_lookup_elem(&thread_scratch, &zero);
	if (!t)
		return 0;
	__builtin_memset(t, 0, 200); /* the header; the stacks are counted by nustack/nkstack */
	t->pid = task->tgid;
	t->tid = task->pid;
	t->ns_tid = ns_tid(task);
	t->syscall = -1;
	bpf_probe_read_kernel_str(t->comm, sizeof(t->comm), task->comm);
	bpf_probe_read_kernel_str(t->pcomm, sizeof(t->pcomm), task->group_leader->comm);
	read_sched(task, t);
	if (t->tid == (__u32)bpf_get_current_pid_tgid())
		t->flags |= CPROF_THREAD_SELF;
	if (task->flags & PF_KTHREAD)
		t->flags |= CPROF_THREAD_KTHREAD;
	stat_inc(CPROF_STAT_SAMPLES);

	/* A running thread's kernel stack changes under the walk: the kernel cannot take it. */
	if (want_kern_stack && !(t->flags & (CPROF_THREAD_ON_CPU | CPROF_THREAD_SELF)) &&
	    !t->exit_state) {
		n = bpf_get_task_stack(task, t->kstack, sizeof(t->kstack), 0);
		if (n >= 0)
			t->nkstack = n / sizeof(__u64);
		else
			stat_inc(CPROF_STAT_KSTACK_ERR);
	}
	/* Kernel threads and zombies have no user context (a zombie's memory is gone). */
	if (!(t->flags & CPROF_THREAD_KTHREAD) && !t->exit_state && task->mm) {
		regs = (struct pt_regs *)bpf_task_pt_regs(task);
		if (regs) {
			read_regs(task, regs, t);
			if (want_user_stack && (t->flags & CPROF_THREAD_USER_REGS))
				read_user_stack(task, regs, t);
		}
	}
	bpf_seq_write(seq, t, sizeof(*t));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
