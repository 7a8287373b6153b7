/* The .eh_frame table unwinder: walks a user stack with tables compiled in user space
 * (user/unwind/) from each executable's call-frame information, falling back to frame pointers
 * where no table covers a pc. Included by common.bpf.h; key_stacks() calls unwind_user_stack().
 *
 * Per frame: one LPM-trie lookup (pid, pc) -> (table, bias) (sleepable programs: a binary
 * search of the process's mapping array instead), one HASH_OF_MAPS lookup for the
 * table, a binary search of at most CPROF_UNWIND_SEARCH_STEPS map lookups, two user reads.
 * Frames are walked by bpf_loop(): the verifier checks the step once, not once per frame, so the
 * cost of verification does not grow with the depth and the same code loads in every program
 * type (perf_event, uprobe, tracepoint, tp_btf) with no tail calls. User registers come from
 * bpf_task_pt_regs(), which holds them in all of those: a sample taken in user mode and one
 * taken in the kernel (syscall, fault, sched_switch) alike.
 *
 * Whose memory the walk reads is chosen at compile time, so that one walker serves both: by
 * default the current task's (bpf_probe_read_user, any program type); a program that defines
 * CPROF_UNWIND_REMOTE before including this reads the task it names in struct unwind_ctx with
 * bpf_copy_from_user_task, which only sleepable programs may call (threads.bpf.c's task
 * iterator walks every thread of a process that way). */
#ifndef CPROF_UNWIND_BPF_H
#define CPROF_UNWIND_BPF_H

#include "cprof.h"
#include "unwind.h"

#define USER_ADDR_MAX 0x00007fffffffffffull

/* What a walk reads memory through: the task whose stack it is (remote walks only). */
struct unwind_ctx {
	struct task_struct *task;
};

/* Reads size bytes at addr of the walk's task: its own with bpf_probe_read_user, or a remote
 * one's with bpf_copy_from_user_task (sleepable programs). */
static __always_inline int read_user(struct unwind_ctx *uc, void *dst, __u32 size, __u64 addr)
{
	if (addr > USER_ADDR_MAX - 8)
		return -1;
#ifdef CPROF_UNWIND_REMOTE
	return bpf_copy_from_user_task(dst, size, (const void *)addr, uc->task, 0);
#else
	(void)uc;
	return bpf_probe_read_user(dst, size, (const void *)addr);
#endif
}

/* The task whose stack is walked: the current one, or with CPROF_UNWIND_REMOTE uc's. */
static __always_inline struct task_struct *walk_task(struct unwind_ctx *uc)
{
#ifdef CPROF_UNWIND_REMOTE
	return uc->task;
#else
	(void)uc;
	return bpf_get_current_task_btf();
#endif
}

static __always_inline int read_user_u64(struct unwind_ctx *uc, __u64 addr, __u64 *v)
{
	return read_user(uc, v, sizeof(*v), addr);
}

#include "python.bpf.h"

_Static_assert((1ull << CPROF_UNWIND_SEARCH_STEPS) >= CPROF_UNWIND_MAX_ROWS,
	       "the binary search covers the largest table");
_Static_assert((1ull << CPROF_UNWIND_PID_MAPS_STEPS) >= CPROF_UNWIND_MAX_PID_MAPS,
	       "the binary search covers the most mappings of a process");
_Static_assert(CPROF_USTACK_ID_TABLE > CPROF_DEFAULT_MAX_STACKS * 32,
	       "table stack ids never look like STACK_TRACE ids");

/* Open-coded loops (kernel 6.4+; libbpf says so at load on an older one): the verifier checks
 * the body until its state converges, not once per iteration as a bounded loop's. */
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;

/* --unwind: CPROF_UNWIND_FP, _AUTO or _DWARF. */
const volatile __u32 unwind_mode = CPROF_UNWIND_AUTO;
/* Whether Python frames are walked at all: a loader clears it where no target runs CPython (a
 * snapshot of native processes), and the verifier then drops the Python code unexplored. */
const volatile bool unwind_python = true;

/* The template of every table: ARRAYs of rows, each created by user space at its exact size
 * (BPF_F_INNER_MAP lets inner maps differ in max_entries). */
struct unwind_rows {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct cprof_unwind_row));
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, CPROF_UNWIND_MAX_EXES);
	__type(key, __u32);
	__array(values, struct unwind_rows);
} unwind_tables SEC(".maps");

#ifndef CPROF_UNWIND_REMOTE
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, CPROF_UNWIND_LPM_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cprof_unwind_lpm_key);
	__type(value, struct cprof_unwind_mapping);
} unwind_mappings SEC(".maps");
#else
/* Sleepable programs may not use an LPM trie: the same mappings as one sorted ARRAY per
 * process (unwind.h), searched by start. */
struct unwind_pid_maps_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cprof_unwind_mapping);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, CPROF_UNWIND_MAX_PIDS);
	__type(key, __u32);
	__array(values, struct unwind_pid_maps_inner);
} unwind_pid_maps SEC(".maps");
#endif

/* When each table was last used by a walk (bpf_ktime_get_ns), by table id: user space evicts
 * the least recently sampled tables when --unwind-mem is full (user/unwind/unwinder.c) and
 * reads this array through mmap. A walk that meets the id of a table not loaded (not built yet,
 * or evicted: its processes still map it) walks that frame with frame pointers, counts it, and
 * sends a CPROF_PROC_UNWIND_MISS notice so the table is built, at most once per
 * CPROF_UNWIND_MISS_NS per table. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, CPROF_UNWIND_MAX_EXES + 1);
	__type(key, __u32);
	__type(value, __u64);
} unwind_used SEC(".maps");

/* Unwound user stacks by id (hash of the frames | CPROF_USTACK_ID_TABLE). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* 16 MiB preallocated otherwise, mostly unused */
	__uint(max_entries, CPROF_DEFAULT_MAX_USTACKS);
	__type(key, __u32);
	__type(value, struct cprof_ustack);
} ustacks SEC(".maps");

/* The walk in progress: too big for the 512-byte stack, and bpf_loop's step finds it here. */
struct cprof_walk {
	__u64 pc, sp, bp;
	__u64 hash;
	__u32 pid;
	__u32 exact;	  /* pc is where the frame is, not a return address (leaf, signal frame) */
	__u32 stop;	  /* CPROF_STAT_* that ended the walk early, or 0 */
	__u32 not_loaded; /* frames walked with frame pointers: their table is not loaded */
	__u64 now;	  /* bpf_ktime_get_ns() at the start of the walk */
	/* The last trie entry found: consecutive frames are mostly in one mapping, and a trie
	 * lookup costs more than the rest of a frame. */
	struct cprof_unwind_mapping last;
	struct cprof_py_walk py; /* the Python frames of a CPython process (python.bpf.h) */
	struct cprof_ustack st;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cprof_walk);
} unwind_scratch SEC(".maps");

/* x86-64 rt_sigframe: at __restore_rt rsp points at the ucontext; its uc_mcontext starts 40
 * bytes in (uc_flags, uc_link, uc_stack); rbp, rsp, rip are at these offsets in it. */
/* The end of x86-64 user addresses with 5-level page tables (0x00ff_ffff_ffff_f000; 4-level
 * ones end lower still): no user return address is at or above it. */
#define CPROF_USER_ADDR_END (1ull << 56)

#define UC_MCONTEXT 40
#define SIGCTX_RBP  80
#define SIGCTX_RSP  120
#define SIGCTX_RIP  128

/* The row of the largest pc <= vaddr among the nrows rows of table (entries 1..nrows; entry 0
 * is its header, table_rows), or NULL. */
static __always_inline const struct cprof_unwind_row *find_row(void *table, __u32 nrows,
							       __u64 vaddr)
{
	const struct cprof_unwind_row *row;
	__u32 lo = 1, hi = nrows + 1, mid;
	struct bpf_iter_num it;
	bool lost = false;

	if (nrows == 0 || vaddr > 0xffffffffull)
		return NULL;
	bpf_iter_num_new(&it, 0, CPROF_UNWIND_SEARCH_STEPS);
	while (bpf_iter_num_next(&it)) {
		if (lo + 1 >= hi)
			break;
		mid = lo + (hi - lo) / 2;
		row = bpf_map_lookup_elem(table, &mid);
		if (!row) {
			lost = true;
			break;
		}
		if (row->pc <= vaddr)
			lo = mid;
		else
			hi = mid;
	}
	bpf_iter_num_destroy(&it);
	if (lost)
		return NULL;
	row = bpf_map_lookup_elem(table, &lo);
	if (!row || row->pc > vaddr)
		return NULL;
	return row;
}

#ifdef CPROF_UNWIND_REMOTE
/* The mapping of pid holding at (one with a table), or NULL: the last mapping starting at or
 * below at, if at is inside it. */
static __always_inline const struct cprof_unwind_mapping *find_pid_mapping(__u32 pid, __u64 at)
{
	const struct cprof_unwind_mapping *m;
	__u32 zero = 0, lo = 1, hi, mid;
	struct bpf_iter_num it;
	bool lost = false;
	void *maps;

	maps = bpf_map_lookup_elem(&unwind_pid_maps, &pid);
	if (!maps)
		return NULL;
	m = bpf_map_lookup_elem(maps, &zero);
	if (!m || m->nrows == 0)
		return NULL;
	hi = m->nrows + 1;
	bpf_iter_num_new(&it, 0, CPROF_UNWIND_PID_MAPS_STEPS);
	while (bpf_iter_num_next(&it)) {
		if (lo + 1 >= hi)
			break;
		mid = lo + (hi - lo) / 2;
		m = bpf_map_lookup_elem(maps, &mid);
		if (!m) {
			lost = true;
			break;
		}
		if (m->start <= at)
			lo = mid;
		else
			hi = mid;
	}
	bpf_iter_num_destroy(&it);
	if (lost)
		return NULL;
	m = bpf_map_lookup_elem(maps, &lo);
	if (!m || at < m->start || at >= m->end)
		return NULL;
	return m;
}
#endif

/* One frame by frame pointers: the caller's pc is at rbp + 8, its rbp at rbp. Returns 1 when
 * the stack ends (an rbp of 0 or below sp is the end of a frame-pointer chain, not an error). */
static __always_inline int fp_step(struct cprof_walk *s, struct unwind_ctx *uc)
{
	__u64 ra, bp;

	if (s->bp == 0 || s->bp < s->sp)
		return 1;
	if (read_user_u64(uc, s->bp + 8, &ra) || read_user_u64(uc, s->bp, &bp))
		return 1;
	stat_inc(CPROF_STAT_UNWIND_FP_FRAMES);
	s->sp = s->bp + 16;
	s->bp = bp;
	s->pc = ra;
	s->exact = 0;
	return 0;
}

/* One frame by a table row. Returns 1 when the stack ends. */
static __always_inline int row_step(struct cprof_walk *s, const struct cprof_unwind_row *row,
				    struct unwind_ctx *uc)
{
	__u64 cfa, ra, bp = s->bp, sp;

	switch (row->kind) {
	case CPROF_UNW_STOP:
		return 1;
	case CPROF_UNW_CFA_RSP:
		cfa = s->sp + row->cfa_off;
		break;
	case CPROF_UNW_CFA_RBP:
		cfa = s->bp + row->cfa_off;
		break;
	case CPROF_UNW_PLT:
		cfa = s->sp + row->cfa_off + ((s->pc & 15) >= row->arg ? 8 : 0);
		break;
	case CPROF_UNW_SIGNAL:
		cfa = s->sp + UC_MCONTEXT;
		if (read_user_u64(uc, cfa + SIGCTX_RIP, &ra) ||
		    read_user_u64(uc, cfa + SIGCTX_RSP, &sp) ||
		    read_user_u64(uc, cfa + SIGCTX_RBP, &bp)) {
			s->stop = CPROF_STAT_USTACK_BAD_READ;
			return 1;
		}
		stat_inc(CPROF_STAT_UNWIND_TABLE_FRAMES);
		s->pc = ra;
		s->sp = sp;
		s->bp = bp;
		s->exact = 1; /* the interrupted instruction itself, not a return address */
		return 0;
	default:
		s->stop = CPROF_STAT_USTACK_NO_RULE;
		return 1;
	}
	if (cfa <= s->sp || read_user_u64(uc, cfa - 8, &ra) ||
	    (row->rbp_off && read_user_u64(uc, cfa + row->rbp_off, &bp))) {
		s->stop = CPROF_STAT_USTACK_BAD_READ;
		return 1;
	}
	stat_inc(CPROF_STAT_UNWIND_TABLE_FRAMES);
	s->pc = ra;
	s->sp = cfa;
	s->bp = bp;
	s->exact = 0;
	return 0;
}

/* The top frame at a pc no row covers is taken for a frameless leaf, whose return address is at
 * rsp: glibc's clone and clone3 issue their syscall after ending their FDE (the child's frame
 * would be wrong), so a thread-creating parent stops there. Only for the first frame. */
static const struct cprof_unwind_row leaf_row = {.kind = CPROF_UNW_CFA_RSP, .cfa_off = 8};

/* The mapping holding at (NULL: none, e.g. anonymous memory): the trie entry, or for sleepable
 * programs the entry of the process's array. */
static __always_inline const struct cprof_unwind_mapping *find_mapping(struct cprof_walk *s,
								       __u64 at)
{
#ifndef CPROF_UNWIND_REMOTE
	struct cprof_unwind_lpm_key lk = {.prefixlen = 96};
#endif
	const struct cprof_unwind_mapping *m;

	if (at >= s->last.start && at < s->last.end)
		return &s->last;
#ifdef CPROF_UNWIND_REMOTE
	m = find_pid_mapping(s->pid, at);
#else
	lk.pid_be = __builtin_bswap32(s->pid);
	lk.addr_be = __builtin_bswap64(at);
	m = bpf_map_lookup_elem(&unwind_mappings, &lk);
	/* An entry may cover more than its mapping (user/unwind/unwinder.c, covering_prefix). */
	if (m && (at < m->start || at >= m->end))
		return NULL;
#endif
	if (m)
		s->last = *m;
	return m;
}

/* A return address is the instruction after the call: its row may be the next function's (a
 * call at the end of a noreturn function), so look up the call. */
static __always_inline __u64 lookup_pc(const struct cprof_walk *s)
{
	return s->exact ? s->pc : s->pc - 1;
}

/* The table of exe_id was used now (unwind_used): written at most every CPROF_UNWIND_TOUCH_NS
 * so that a busy table's cache line is not written by every sample. */
static __always_inline void table_used(struct cprof_walk *s, __u32 exe_id)
{
	__u64 *v = bpf_map_lookup_elem(&unwind_used, &exe_id);

	if (v && *v + CPROF_UNWIND_TOUCH_NS < s->now)
		*v = s->now;
}

/* A mapping names exe_id, whose table is not in unwind_tables: not built yet, or evicted. Asks
 * user space to build it (rate-limited per table through its unwind_used slot; a lost notice is
 * only sent again later). */
static __always_inline void table_missing(struct cprof_walk *s, __u32 exe_id)
{
	struct cprof_proc_event *e;
	__u64 *v = bpf_map_lookup_elem(&unwind_used, &exe_id);

	s->not_loaded++;
	if (!v || *v + CPROF_UNWIND_MISS_NS > s->now)
		return;
	*v = s->now;
	e = proc_event_reserve(s->pid, CPROF_PROC_UNWIND_MISS);
	if (!e)
		return;
	e->code = exe_id;
	proc_event_submit(e, true);
}

/* The rows of table, the one the walk's current mapping (s->last, find_mapping) names: read from
 * the table's header (its entry 0: a table says its own size, so that a mapping can name it
 * before it is built) once per run of frames in that mapping, and kept in s->last, whose
 * nrows user space leaves 0. */
static __always_inline __u32 table_rows(struct cprof_walk *s, void *table)
{
	const struct cprof_unwind_row *hdr;
	__u32 zero = 0;

	if (!s->last.nrows) {
		hdr = bpf_map_lookup_elem(table, &zero);
		s->last.nrows = hdr ? hdr->pc : 0;
	}
	return s->last.nrows;
}

/* Moves from the current native frame (at lookup_pc, in mapping m, which find_mapping also
 * left in s->last) to its caller. 1 ends the walk. */
static __always_inline int native_step_in(struct cprof_walk *s,
					  const struct cprof_unwind_mapping *m, __u64 at,
					  struct unwind_ctx *uc)
{
	const struct cprof_unwind_row *row = NULL;
	void *table = NULL;

	if (m && m->exe_id) {
		table = bpf_map_lookup_elem(&unwind_tables, &m->exe_id);
		if (!table) {
			table_missing(s, m->exe_id); /* and frame pointers, below */
			goto no_table;
		}
		table_used(s, m->exe_id);
		row = find_row(table, table_rows(s, table), at - m->bias);
		if ((!row || row->kind == CPROF_UNW_INVALID) && s->exact && s->st.n <= 1)
			return row_step(s, &leaf_row, uc);
		if (!row) {
			s->stop = CPROF_STAT_USTACK_NO_RULE;
			return 1;
		}
		return row_step(s, row, uc);
	}
no_table:
	if (unwind_mode == CPROF_UNWIND_DWARF) {
		s->stop = CPROF_STAT_USTACK_NO_TABLE;
		return 1;
	}
	return fp_step(s, uc);
}

static __always_inline int native_step(struct cprof_walk *s, struct unwind_ctx *uc)
{
	__u64 at = lookup_pc(s);

	return native_step_in(s, find_mapping(s, at), at, uc);
}

static __always_inline void record(struct cprof_walk *s, __u32 n, __u64 ip)
{
	if (n >= CPROF_MAX_STACK)
		return;
	s->st.ips[n] = ip;
	s->st.n = n + 1;
	s->hash = (s->hash ^ ip) * 0x100000001b3ull;
}

/* One step in an evaluation frame of CPython: its next Python frame, or, when they are all
 * recorded, the move to the native caller. */
static __always_inline int py_step(struct cprof_walk *s, __u32 n, struct unwind_ctx *uc)
{
	__u64 ip = 0;

	switch (py_next(&s->py, &ip, uc)) {
	case PY_EMIT:
		record(s, n, ip);
		return 0;
	case PY_SKIP:
		return 0;
	case PY_EMIT_LAST:
		record(s, n, ip);
		break;
	case PY_FAIL:
		/* Nothing invented: the evaluation frame stays as the native frame it is. */
		record(s, n, s->pc);
		break;
	default:
		break;
	}
	s->py.emitting = 0;
	return native_step(s, uc);
}

/* bpf_loop step: records the current frame (or, in an evaluation frame of CPython, one of its
 * Python frames), then moves to its caller. 1 ends the walk. ctx is the walk's struct
 * unwind_ctx. */
static int unwind_step(__u32 i, void *ctx)
{
	struct unwind_ctx *uc = ctx;
	const struct cprof_unwind_mapping *m;
	struct cprof_walk *s;
	__u32 zero = 0, n;
	__u64 at;

	(void)i;
	s = bpf_map_lookup_elem(&unwind_scratch, &zero);
	if (!s)
		return 1;
	n = s->st.n;
	if (n >= CPROF_MAX_STACK) {
		s->st.truncated = 1;
		return 1;
	}
	if (unwind_python && s->py.emitting)
		return py_step(s, n, uc);
	if (s->pc == 0)
		return 1;
	/* A return address no user code can have (a wrong rule or a torn stack read a value
	 * that is none): recorded, it would be taken for a tagged Python frame. */
	if (s->pc >= CPROF_USER_ADDR_END) {
		s->stop = CPROF_STAT_USTACK_BAD_PC;
		return 1;
	}
	at = lookup_pc(s);
	if (unwind_python && s->py.frame && py_in_eval(&s->py, at)) {
		s->py.emitting = 1;
		return py_step(s, n, uc);
	}
	m = find_mapping(s, at);
	/* In a process whose Python frames are walked, code in anonymous memory is the
	 * trampolines of `-X perf` (3.12+): the Python frames say it already. */
	if (m || !unwind_python || !s->py.walked)
		record(s, n, s->pc);
	return native_step_in(s, m, at, uc);
}

/* bpf_loop step after the native walk ended: the Python frames not placed yet (the native
 * walk stopped early, e.g. at a `-X perf` trampoline it cannot unwind) follow in order, so no
 * Python caller is lost. 1 ends the walk. */
static int py_rest_step(__u32 i, void *ctx)
{
	struct unwind_ctx *uc = ctx;
	struct cprof_walk *s;
	__u32 zero = 0, n;
	__u64 ip = 0;

	(void)i;
	s = bpf_map_lookup_elem(&unwind_scratch, &zero);
	if (!s || !s->py.frame)
		return 1;
	n = s->st.n;
	if (n >= CPROF_MAX_STACK) {
		s->st.truncated = 1;
		return 1;
	}
	switch (py_next(&s->py, &ip, uc)) {
	case PY_EMIT:
	case PY_EMIT_LAST:
		record(s, n, ip);
		return 0;
	case PY_FAIL:
		return 1;
	default:
		return 0;
	}
}

/* Whether a stored stack is the one just walked (else two stacks share a hash). */
static __always_inline bool same_stack(const struct cprof_ustack *a, const struct cprof_ustack *b)
{
	if (a->n != b->n)
		return false;
	for (int i = 0; i < CPROF_MAX_STACK; i++) {
		if (i >= a->n)
			break;
		if (a->ips[i] != b->ips[i])
			return false;
	}
	return true;
}

/* Walks the user stack of the task in uc from the user registers it saved at its last kernel
 * entry (regs) into the per-CPU scratch, pid being its process. Returns the walk (its stack in
 * ->st, what cut it short counted) or NULL. */
static __always_inline struct cprof_walk *unwind_walk(struct pt_regs *regs, __u32 pid,
						      struct unwind_ctx *uc)
{
	struct cprof_walk *s;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&unwind_scratch, &zero);
	if (!s || !regs)
		return NULL;
	s->pc = BPF_CORE_READ(regs, ip);
	s->sp = BPF_CORE_READ(regs, sp);
	s->bp = BPF_CORE_READ(regs, bp);
	s->pid = pid;
	s->hash = 0xcbf29ce484222325ull;
	/* In user mode regs->ip is the interrupted instruction. In a syscall it is the one after
	 * `syscall`, in the same function: exact either way. */
	s->exact = 1;
	s->stop = 0;
	s->not_loaded = 0;
	s->now = bpf_ktime_get_ns();
	s->last.start = s->last.end = 0;
	s->st.n = 0;
	s->st.truncated = 0;
	if (unwind_python)
		py_begin(&s->py, walk_task(uc), s->pid, uc);
	else
		s->py.frame = s->py.emitting = s->py.walked = 0;
	/* Python frames of an evaluation frame take a step each and the move to its caller one
	 * more: at most twice as many steps as frames recorded. */
	bpf_loop(2 * CPROF_MAX_STACK + 2, unwind_step, uc, 0);
	if (unwind_python && s->py.frame && s->st.n < CPROF_MAX_STACK)
		bpf_loop(2 * CPROF_MAX_STACK, py_rest_step, uc, 0);
	if (s->stop)
		stat_inc(s->stop);
	if (s->not_loaded)
		stat_inc(CPROF_STAT_UNWIND_NOT_LOADED_FP);
	return s;
}

#ifndef CPROF_UNWIND_REMOTE
/* Walks the current task's user stack and stores it in `ustacks`. Returns the stack id
 * (CPROF_USTACK_ID_TABLE set) or -1 when it was lost (counted). */
static __always_inline long unwind_user_stack(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	const struct cprof_ustack *old;
	struct cprof_walk *s;
	__u32 id;

	/* The current task's memory: read_user_u64 needs no context. */
	s = unwind_walk((struct pt_regs *)bpf_task_pt_regs(task), bpf_get_current_pid_tgid() >> 32,
			NULL);
	if (!s)
		return -1;
	if (s->st.n == 0) {
		stat_inc(CPROF_STAT_USTACK_ERR);
		return -1;
	}
	id = ((__u32)(s->hash >> 32) ^ (__u32)s->hash) & CPROF_USTACK_ID_MASK;
	id |= CPROF_USTACK_ID_TABLE;
	old = bpf_map_lookup_elem(&ustacks, &id);
	if (old) {
		if (same_stack(old, &s->st))
			return id;
		stat_inc(CPROF_STAT_USTACK_COLLIDE);
		return -1;
	}
	if (bpf_map_update_elem(&ustacks, &id, &s->st, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&ustacks, &id)) {
		stat_inc(CPROF_STAT_USTACK_TABLE_FULL);
		return -1;
	}
	return id;
}
#endif

#endif
