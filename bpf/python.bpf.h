/* The CPython walker: in a process running CPython 3.10-3.13 (user space fills `py_procs` for
 * it), the Python frames of the sampled thread take the place of the interpreter's evaluation
 * frames (_PyEval_EvalFrameDefault) in the user stack, each as a tagged entry (python.h) that
 * user space turns into a function, file and line. Included by unwind.bpf.h: the native walker
 * hands it every native frame; the frames of both share one depth budget.
 *
 * The thread state of the sampled thread: the interpreter's list of thread states, searched
 * for the one whose thread_id (pthread_self(), which on x86-64 glibc is the thread's fs base)
 * is the current task's fs base (in a snapshot, threads.bpf.c, the iterated thread's, read
 * from its memory with bpf_copy_from_user_task); cached per thread. Its frame chain: 3.10 PyFrameObjects, one
 * per C call of the evaluation function; 3.11+ _PyInterpreterFrames, several per C call: 3.11
 * marks the first frame of a call (is_entry), 3.12+ put an entry frame owned by the C stack
 * below them. */
#ifndef CPROF_PYTHON_BPF_H
#define CPROF_PYTHON_BPF_H

#include "python.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CPROF_PY_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct cprof_py_proc);
} py_procs SEC(".maps");

/* A thread's search result: its PyThreadState (checked against the fs base at each use), or
 * none (tstate 0) found at miss_ns. */
struct py_thread {
	__u64 tstate;
	__u64 miss_ns;
};

/* A thread without a thread state (a native thread of a Python process, or one whose state is
 * not bound yet) is searched for again only this long after its last search. Not checked
 * against the list instead: 3.12+ push a new thread state before binding its thread_id. */
#define PY_MISS_RETRY_NS (100 * 1000 * 1000ull)

/* tid -> its search result. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct py_thread);
} py_threads SEC(".maps");

struct py_code_key {
	__u32 pid;
	__u32 pad;
	__u64 code;
};

/* Code objects already announced to user space (CPROF_PROC_PYCODE). LRU: an entry evicted
 * means one more, harmless, notice. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct py_code_key);
	__type(value, __u8);
} py_codes_seen SEC(".maps");

/* What the walk keeps about Python between steps (a part of struct cprof_walk). */
struct cprof_py_walk {
	struct cprof_py_proc p;
	__u64 frame;	/* the next Python frame to emit; 0: none left */
	__u32 emitting; /* inside the evaluation frame whose Python frames are being emitted */
	__u32 pid;
	__u32 walked; /* the thread had Python frames when the walk began */
	__u32 pad;
};

/* Announces a code object the first time it is seen in pid's stacks. */
static __always_inline void py_code_seen(__u32 pid, __u64 code)
{
	struct py_code_key k = {.pid = pid, .code = code};
	struct cprof_proc_event *e;
	__u8 one = 1;

	if (bpf_map_lookup_elem(&py_codes_seen, &k) ||
	    bpf_map_update_elem(&py_codes_seen, &k, &one, BPF_NOEXIST))
		return;
	e = proc_event_reserve(pid, CPROF_PROC_PYCODE);
	if (!e) {
		bpf_map_delete_elem(&py_codes_seen, &k); /* so that a later sample tries again */
		return;
	}
	e->code = code;
	proc_event_submit(e, false); /* read while the process lives */
}

/* Reads go through the walk's struct unwind_ctx (unwind.bpf.h): the current task's memory, or
 * with CPROF_UNWIND_REMOTE the iterated task's (threads.bpf.c). */
static __always_inline int py_read(struct unwind_ctx *uc, __u64 addr, void *dst, __u32 size)
{
	if (addr < 4096)
		return -1;
	return read_user(uc, dst, size, addr);
}

static __always_inline int py_read_u64(struct unwind_ctx *uc, __u64 addr, __u64 *v)
{
	return py_read(uc, addr, v, sizeof(*v));
}

/* Searches the interpreter's thread states for the one of the thread whose fs base is fsbase;
 * 0 if there is none (or it cannot be read). */
static __always_inline __u64 py_tstate_search(const struct cprof_py_proc *p, __u64 fsbase,
					      struct unwind_ctx *uc)
{
	__u64 ts, v, interp;

	if (py_read_u64(uc, p->runtime + p->l.runtime_interp_head, &interp) ||
	    py_read_u64(uc, interp + p->l.interp_threads_head, &ts))
		return 0;
	for (int i = 0; i < CPROF_PY_MAX_THREADS; i++) {
		if (!ts || py_read_u64(uc, ts + p->l.tstate_thread_id, &v))
			return 0;
		if (v == fsbase)
			return ts;
		if (py_read_u64(uc, ts + p->l.tstate_next, &ts))
			return 0;
	}
	return 0;
}

/* The thread state of the current thread, or 0. A found one is cached until it no longer
 * matches; a miss for PY_MISS_RETRY_NS, so that the native threads of a Python process do not
 * search the list at every sample. */
static __always_inline __u64 py_tstate(const struct cprof_py_proc *p, __u32 tid, __u64 fsbase,
				       struct unwind_ctx *uc)
{
	struct py_thread *cached = bpf_map_lookup_elem(&py_threads, &tid);
	struct py_thread t = {};
	__u64 v, now = bpf_ktime_get_ns();

	if (cached && cached->tstate &&
	    !py_read_u64(uc, cached->tstate + p->l.tstate_thread_id, &v) && v == fsbase)
		return cached->tstate;
	if (cached && !cached->tstate && now - cached->miss_ns < PY_MISS_RETRY_NS)
		return 0;
	t.tstate = py_tstate_search(p, fsbase, uc);
	if (!t.tstate)
		t.miss_ns = now;
	bpf_map_update_elem(&py_threads, &tid, &t, BPF_ANY);
	return t.tstate;
}

/* Prepares the walk of pid's Python frames for its thread task (the current one, or with
 * CPROF_UNWIND_REMOTE the iterated one, whose fs base was saved when it last left a CPU). */
static __always_inline void py_begin(struct cprof_py_walk *w, struct task_struct *task, __u32 pid,
				     struct unwind_ctx *uc)
{
	const struct cprof_py_proc *p = bpf_map_lookup_elem(&py_procs, &pid);
	__u64 ts, frame = 0;

	w->frame = 0;
	w->emitting = 0;
	w->walked = 0;
	w->pid = pid;
	if (!p)
		return;
	w->p = *p;
	ts = py_tstate(p, BPF_CORE_READ(task, pid), BPF_CORE_READ(task, thread.fsbase), uc);
	if (!ts) {
		stat_inc(CPROF_STAT_PY_NO_THREAD);
		return;
	}
	if (py_read_u64(uc, ts + p->l.tstate_frame, &frame))
		return;
	if (frame && p->l.cframe_current != CPROF_PY_NONE_OFF &&
	    py_read_u64(uc, frame + p->l.cframe_current, &frame))
		return;
	w->frame = frame;
	w->walked = frame != 0;
}

static __always_inline bool py_in_eval(const struct cprof_py_walk *w, __u64 at)
{
	return (at >= w->p.eval_start && at < w->p.eval_end) ||
	       (at >= w->p.cold_start && at < w->p.cold_end);
}

/* The instruction index (code units) of frame f running code, or CPROF_PY_IDX_UNKNOWN. */
static __always_inline __u64 py_instr_index(const struct cprof_py_walk *w, __u64 f, __u64 code,
					    struct unwind_ctx *uc)
{
	__u64 instr, base;
	__s32 lasti;

	if (w->p.minor == 10) {
		if (py_read(uc, f + w->p.l.frame_instr, &lasti, sizeof(lasti)))
			return CPROF_PY_IDX_UNKNOWN;
		return lasti >= 0 && lasti < CPROF_PY_IDX_MASK ? (__u64)lasti
							       : CPROF_PY_IDX_UNKNOWN;
	}
	if (py_read_u64(uc, f + w->p.l.frame_instr, &instr))
		return CPROF_PY_IDX_UNKNOWN;
	base = code + w->p.l.code_adaptive;
	if (instr < base || (instr - base) / 2 >= CPROF_PY_IDX_MASK)
		return CPROF_PY_IDX_UNKNOWN;
	return (instr - base) / 2;
}

enum py_step_result {
	PY_EMIT,      /* a frame to record in *ip; more of this C call's frames may follow */
	PY_EMIT_LAST, /* the last frame of this C call in *ip */
	PY_SKIP,      /* a shim frame skipped; more may follow */
	PY_GROUP_END, /* no more frames of this C call */
	PY_FAIL,      /* a frame could not be read (counted): stop the Python walk */
};

/* One step of the Python frames of the evaluation frame being replaced. */
static __always_inline int py_next(struct cprof_py_walk *w, __u64 *ip, struct unwind_ctx *uc)
{
	__u64 f = w->frame, code, prev;
	__u8 flag;

	if (!f)
		return PY_GROUP_END;
	if (py_read_u64(uc, f + w->p.l.frame_code, &code) ||
	    py_read_u64(uc, f + w->p.l.frame_previous, &prev))
		goto fail;
	if (w->p.minor >= 12) {
		if (py_read(uc, f + w->p.l.frame_owner, &flag, sizeof(flag)))
			goto fail;
		if (flag == CPROF_PY_FRAME_OWNED_CSTACK) {
			w->frame = prev;
			/* 3.13 also runs shims owned by the C stack (class construction's init
			 * cleanup) in the middle of one call: only the entry frame (whose
			 * executable is None) ends the call. */
			if (w->p.minor == 12 || code == w->p.entry_code || !w->p.entry_code)
				return PY_GROUP_END;
			return PY_SKIP;
		}
	}
	if (!code)
		goto fail;
	*ip = CPROF_PY_FRAME(code, py_instr_index(w, f, code, uc));
	w->frame = prev;
	stat_inc(CPROF_STAT_PY_FRAMES);
#ifndef CPROF_UNWIND_REMOTE
	/* (A snapshot's target lives on: its code objects are read when symbolized.) */
	py_code_seen(w->pid, code);
#endif
	if (w->p.minor == 10)
		return PY_EMIT_LAST;
	if (w->p.minor == 11) {
		if (py_read(uc, f + w->p.l.frame_is_entry, &flag, sizeof(flag)))
			goto fail;
		return flag ? PY_EMIT_LAST : PY_EMIT;
	}
	return PY_EMIT;
fail:
	stat_inc(CPROF_STAT_PY_BAD_READ);
	w->frame = 0;
	return PY_FAIL;
}

#endif
