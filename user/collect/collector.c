#include <errno.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collect/collector.h"
#include "proc/maps.h"
#include "python/cpython.h"
#include "util/clock.h"
#include "util/hashmap.h"
#include "util/log.h"

extern const struct collector_ops cpu_collector_ops;
extern const struct collector_ops heap_collector_ops;
extern const struct collector_ops mutex_collector_ops;
extern const struct collector_ops offcpu_collector_ops;
extern const struct collector_ops wall_collector_ops;
extern const struct collector_ops threadcreate_collector_ops;
extern const struct collector_ops threads_collector_ops;

static const struct collector_ops *const all_ops[] = {
	&cpu_collector_ops,	&heap_collector_ops, &mutex_collector_ops,
	&offcpu_collector_ops,	&wall_collector_ops, &threadcreate_collector_ops,
	&threads_collector_ops,
};

const struct collector_ops *collector__find(const char *type)
{
	if (strcmp(type, "block") == 0) /* Go's name of the off-CPU profile */
		type = "offcpu";
	else if (strcmp(type, "goroutine") == 0) /* Go's name of the threads snapshot */
		type = "threads";
	else if (strcmp(type, "cpu,offcpu") == 0 || strcmp(type, "offcpu,cpu") == 0)
		type = "wall";
	for (size_t i = 0; i < sizeof(all_ops) / sizeof(all_ops[0]); i++)
		if (strcmp(all_ops[i]->name, type) == 0)
			return all_ops[i];
	return NULL;
}

const struct collector_ops *collector__nth(size_t i)
{
	return i < sizeof(all_ops) / sizeof(all_ops[0]) ? all_ops[i] : NULL;
}

const char *collector__names(void)
{
	static char names[128];

	if (!names[0]) {
		for (size_t i = 0; i < sizeof(all_ops) / sizeof(all_ops[0]); i++) {
			if (i)
				strncat(names, ",", sizeof(names) - strlen(names) - 1);
			strncat(names, all_ops[i]->name, sizeof(names) - strlen(names) - 1);
		}
	}
	return names;
}

/* Whether the capture's deadline has passed: then building tables would only delay its end. */
static bool collector__late(const struct collector *c)
{
	return c->deadline_ns && clock__ns(CLOCK_MONOTONIC) >= c->deadline_ns;
}

/* Takes pid out of the Python walker's processes: a bpf(2) call only for a pid put in (most
 * notices are of processes that never were). A pid not remembered (no memory) is deleted
 * anyway. */
static void collector__forget_python(struct collector *c, pid_t pid)
{
	bool put = c->py_pids && hashmap__delete(c->py_pids, (void *)(uintptr_t)pid, NULL, NULL);
	__u32 key = pid;

	if (put || c->py_pids_lost)
		bpf_map__delete_elem(c->py_procs, &key, sizeof(key), 0);
}

/* Tells the Python walker about pid when it runs a CPython it can walk (user/python/). pm: pid's
 * mappings, NULL when they could not be read (the process is gone). */
static void collector__python(struct collector *c, pid_t pid, const struct proc_maps *pm)
{
	struct cprof_py_proc p;
	char why[128] = "";
	__u32 key = pid;

	if (!c->py_procs || !c->unw || c->no_python)
		return;
	if (!pm || python__probe_maps(pm, &p, why, sizeof(why))) {
		/* An exec into something else, or a reused pid: no stale layout stays. */
		collector__forget_python(c, pid);
		if (why[0] && !c->opts.all)
			pr_warn("pid %d: %s: native frames only\n", (int)pid, why);
		return;
	}
	if (bpf_map__update_elem(c->py_procs, &key, sizeof(key), &p, sizeof(p), BPF_ANY)) {
		pr_warn("pid %d: Python frames not walked: %s\n", (int)pid, strerror(errno));
		return;
	}
	pr_debug("pid %d: CPython 3.%u\n", (int)pid, p.minor);
	if (!c->py_pids)
		c->py_pids = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	if (!c->py_pids || (!hashmap__find(c->py_pids, (void *)(uintptr_t)pid, NULL) &&
			    hashmap__insert(c->py_pids, (void *)(uintptr_t)pid, NULL)))
		c->py_pids_lost = true;
}

/* pid's mappings for the Python probe and the unwinder, read once for both; NULL when the
 * process is gone. */
static struct proc_maps *collector__read_maps(pid_t pid)
{
	struct proc_maps *pm = NULL;

	if (proc_maps__read(pid, &pm)) {
		proc_maps__free(pm);
		return NULL;
	}
	return pm;
}

/* Handles one notice; rd: what was read with it (the notice reader's), NULL: read what is needed
 * now. */
static void collector__handle_notice(void *ctx, const struct cprof_proc_event *e,
				     const struct proc_read *rd)
{
	struct collector *c = ctx;
	struct proc_read own = {};
	struct proc_maps *pm = NULL;
	bool python, lazy;

	/* The unwinder's alone: an evicted table met by a walk. */
	if (e->kind == CPROF_PROC_UNWIND_MISS) {
		if (c->unw && !collector__late(c))
			unwinder__table_missed(c->unw, e->pid, (uint32_t)e->code);
		return;
	}
	python = c->unw && c->py_procs && !c->no_python && e->kind != CPROF_PROC_MMAP;
	lazy = c->unw && c->opts.unwind_lazy && e->kind == CPROF_PROC_EXEC;
	if (!rd) {
		/* Cleared before the mappings are read: a library mapped after this read is
		 * announced again (bpf/common.bpf.h, mmap_exec_seen). */
		if (e->kind == CPROF_PROC_MMAP && c->mmap_pending)
			bpf_map__delete_elem(c->mmap_pending, &e->pid, sizeof(e->pid), 0);
		/* Read once, for the unwinder, the Python probe and on_proc alike. */
		if (c->unw && e->kind != CPROF_PROC_EXIT && e->kind != CPROF_PROC_PYCODE &&
		    (python || lazy || !collector__late(c)))
			own.pm = pm = collector__read_maps(e->pid);
		rd = &own;
	}
	/* The symbolizer's snapshot first: building tables is slow, and a short-lived process
	 * may be gone by the time they are built. */
	if (c->opts.on_proc)
		c->opts.on_proc(c->opts.ctx, e, rd);
	if (c->unw && e->kind == CPROF_PROC_EXIT) {
		unwinder__remove_pid(c->unw, e->pid);
		if (c->py_procs)
			collector__forget_python(c, (pid_t)e->pid);
	} else if (c->unw && e->kind != CPROF_PROC_PYCODE) {
		if (python)
			collector__python(c, e->pid, rd->pm);
		if (lazy) /* tables built if it is sampled */
			unwinder__add_pid_known_maps(c->unw, e->pid, rd->pm);
		else if (!collector__late(c))
			unwinder__add_pid_maps(c->unw, e->pid, rd->pm, true);
	}
	proc_maps__free(pm);
}

static int handle_proc_event(void *ctx, void *data, size_t size)
{
	if (size >= sizeof(struct cprof_proc_event))
		collector__handle_notice(ctx, data, NULL);
	return 0;
}

int collector__bind(struct collector *c, struct bpf_object *obj)
{
	c->obj = obj;
	c->targets = bpf_object__find_map_by_name(obj, "targets");
	c->stacks = bpf_object__find_map_by_name(obj, "stacks");
	c->stats = bpf_object__find_map_by_name(obj, "stats");
	c->proc_events = bpf_object__find_map_by_name(obj, "proc_events");
	c->ustacks = bpf_object__find_map_by_name(obj, "ustacks");
	c->py_procs = bpf_object__find_map_by_name(obj, "py_procs");
	c->mmap_pending = bpf_object__find_map_by_name(obj, "mmap_pending");
	/* Benchmark only (CPROF_BENCH_NO_PYTHON=1): native frames alone, to measure what the
	 * Python walk adds per sample (tools/bench/bench_python.py). */
	c->no_python = getenv("CPROF_BENCH_NO_PYTHON") != NULL;
	if (!c->targets || !c->stacks || !c->stats || !c->proc_events)
		return -ENOENT;
	return 0;
}

int collector__opened(const struct collector *c, const void *skel)
{
	int err = -errno;

	if (skel)
		return 0;
	pr_err("cannot open the %s BPF object: %s\n", c->ops->name, strerror(-err));
	return err;
}

void collector__size_maps(struct collector *c, struct bpf_object *obj)
{
	const struct collect_opts *o = &c->opts;
	struct bpf_map *agg =
		c->ops->agg_map ? bpf_object__find_map_by_name(obj, c->ops->agg_map) : NULL;
	struct bpf_map *stacks = bpf_object__find_map_by_name(obj, "stacks");
	struct bpf_map *codes = bpf_object__find_map_by_name(obj, "py_codes_seen");
	struct bpf_program *fork = bpf_object__find_program_by_name(obj, "cprof_fork");

	if (o->max_keys && agg)
		bpf_map__set_max_entries(agg, o->max_keys);
	if (o->max_stacks && stacks)
		bpf_map__set_max_entries(stacks, o->max_stacks);
	if (o->py_codes_max && codes)
		bpf_map__set_max_entries(codes, o->py_codes_max);
	if (fork)
		bpf_program__set_autoload(fork, o->follow_children);
}

static int collector__load(struct collector *c, struct bpf_object_skeleton *s)
{
	int err;

	collector__size_maps(c, *s->obj);
	err = bpf_object__load_skeleton(s);
	if (err)
		pr_err("cannot load the %s BPF programs: %s\n", c->ops->name, strerror(-err));
	return err;
}

int collector__attach(struct collector *c, struct bpf_object_skeleton *s)
{
	int err = collector__bind(c, *s->obj);

	if (err || c->opts.load_only)
		return err;
	err = bpf_object__attach_skeleton(s);
	if (err)
		pr_err("cannot attach the %s BPF programs: %s\n", c->ops->name, strerror(-err));
	return err;
}

int collector__load_attach(struct collector *c, struct bpf_object_skeleton *s)
{
	int err = collector__load(c, s);

	return err ? err : collector__attach(c, s);
}

int collector__add_target(struct collector *c, pid_t pid)
{
	__u32 key = pid;
	__u8 one = 1;

	if (bpf_map__update_elem(c->targets, &key, sizeof(key), &one, sizeof(one), BPF_ANY))
		return -errno;
	return 0;
}

int collector__remove_target(struct collector *c, pid_t pid)
{
	__u32 key = pid;

	if (bpf_map__delete_elem(c->targets, &key, sizeof(key), 0) && errno != ENOENT)
		return -errno;
	return 0;
}

/* Tables for the table unwinder: built for the targets now, for other processes as their
 * notices arrive (handle_proc_event). */
static int collector__start_unwinder(struct collector *c)
{
	struct bpf_map *tables = bpf_object__find_map_by_name(c->obj, "unwind_tables");
	struct bpf_map *mappings = bpf_object__find_map_by_name(c->obj, "unwind_mappings");
	/* Sleepable programs' objects have the per-process arrays instead of the trie. */
	struct bpf_map *pid_maps = bpf_object__find_map_by_name(c->obj, "unwind_pid_maps");
	struct bpf_map *used = bpf_object__find_map_by_name(c->obj, "unwind_used");
	struct unwinder_opts uo = {.budget_bytes = c->opts.unwind_mem,
				   .cpu_pct = c->opts.unwind_cpu,
				   .on_demand = c->opts.unwind_lazy,
				   .cache_dir = c->opts.unwind_cache,
				   .cache_bytes = c->opts.unwind_cache_size};

	if (c->opts.unwind_mode == CPROF_UNWIND_FP || !tables || !(mappings || pid_maps) ||
	    !c->ustacks)
		return 0;
	uo.tables_fd = bpf_map__fd(tables);
	uo.mappings_fd = mappings ? bpf_map__fd(mappings) : -1;
	uo.pid_maps_fd = pid_maps ? bpf_map__fd(pid_maps) : -1;
	uo.used_fd = used ? bpf_map__fd(used) : -1;
	c->unw = unwinder__new(&uo);
	if (!c->unw)
		return -ENOMEM;
	/* A `-- CMD` target (follow_children) has not exec'd yet: its exec notice builds them. */
	for (size_t i = 0; !c->opts.all && !c->opts.follow_children && i < c->opts.npids; i++) {
		struct proc_maps *pm = c->target_maps ? c->target_maps[i] : NULL;

		if (pm)
			c->target_maps[i] = NULL; /* read by the type's open already: ours now */
		else
			pm = collector__read_maps(c->opts.pids[i]);
		collector__python(c, c->opts.pids[i], pm);
		unwinder__add_pid_maps(c->unw, c->opts.pids[i], pm, false);
		proc_maps__free(pm);
	}
	return 0;
}

int collector__open(const struct collector_ops *ops, const struct collect_opts *o,
		    struct collector **out)
{
	struct collector *c;
	int err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ops = ops;
	c->opts = *o;
	err = ops->open(c);
	if (err)
		goto cleanup;
	if (!c->obj) {
		err = -EINVAL;
		goto cleanup;
	}
	/* Tables of the targets first: a target's samples before its tables are in would be
	 * walked with frame pointers only. */
	if (!o->load_only) {
		err = collector__start_unwinder(c);
		if (err)
			goto cleanup;
	}
	for (size_t i = 0; !o->all && i < o->npids; i++) {
		err = collector__add_target(c, o->pids[i]);
		if (err) {
			pr_err("cannot add target %d: %s\n", o->pids[i], strerror(-err));
			goto cleanup;
		}
	}
	c->started_ns = clock__ns(CLOCK_MONOTONIC);
	c->started_real_ns = clock__ns(CLOCK_REALTIME);
	if (o->load_only)
		goto done;
	if (o->notice_thread) {
		err = notice_reader__start(c->proc_events, c->mmap_pending,
					   collector__handle_notice, c, &c->reader);
		if (err) {
			pr_err("cannot start reading process notices: %s\n", strerror(-err));
			goto cleanup;
		}
		goto done;
	}
	c->rb = ring_buffer__new(bpf_map__fd(c->proc_events), handle_proc_event, c, NULL);
	if (!c->rb) {
		err = -errno;
		pr_err("cannot open the ring buffer: %s\n", strerror(-err));
		goto cleanup;
	}
done:
	*out = c;
	return 0;
cleanup:
	collector__free(c);
	return err;
}

void collector__free(struct collector *c)
{
	if (!c)
		return;
	notice_reader__free(c->reader); /* before what its notices feed */
	ring_buffer__free(c->rb);
	free(c->stack_refs);
	hashmap__free(c->ustack_refs);
	hashmap__free(c->py_pids);
	for (size_t i = 0; c->target_maps && i < c->opts.npids; i++)
		proc_maps__free(c->target_maps[i]);
	free(c->target_maps);
	unwinder__free(c->unw);
	if (c->ops && c->ops->close)
		c->ops->close(c);
	free(c);
}

int collector__poll(struct collector *c, int timeout_ms)
{
	int n = c->reader ? notice_reader__drain(c->reader, timeout_ms)
			  : ring_buffer__poll(c->rb, timeout_ms);

	/* Notices first, then queued tables (a few: within their CPU budget, see unwinder.h), each
	 * followed by the notices that came while it was built: a loader maps a process's
	 * libraries one after the other, and a short-lived process must have its mappings read
	 * again before it exits, not after the tables of its first libraries are built. */
	for (int i = 0; n >= 0 && c->unw && !collector__late(c) && i < 8; i++) {
		if (!unwinder__idle(c->unw))
			break;
		n = c->reader ? notice_reader__drain(c->reader, 0) : ring_buffer__consume(c->rb);
	}
	if (n == -EINTR)
		return 0;
	return n < 0 ? n : 0;
}

bool collector__has_work(const struct collector *c)
{
	return c->unw && unwinder__pending(c->unw);
}

int collector__wake_fd(const struct collector *c)
{
	return c->reader ? notice_reader__wake_fd(c->reader) : -1;
}

/* Runs of the collector's programs that the kernel skipped because a BPF program was already
 * running on that CPU (a tracepoint hit from inside another program, e.g. under a high switch
 * rate): they are lost events. */
static uint64_t prog_misses(struct collector *c)
{
	struct bpf_program *prog;
	uint64_t n = 0;

	bpf_object__for_each_program(prog, c->obj)
	{
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(prog);

		if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
			n += info.recursion_misses;
	}
	return n;
}

int collector__stats(struct collector *c, struct collect_stats *st)
{
	int ncpu = libbpf_num_possible_cpus();
	__u64 *vals;

	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	vals = calloc(ncpu, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	*st = c->ustats;
	if (c->unw)
		unwinder__stats(c->unw, &st->unwind);
	for (__u32 i = 0; i < CPROF_STAT_NR; i++) {
		if (bpf_map__lookup_elem(c->stats, &i, sizeof(i), vals, ncpu * sizeof(*vals), 0))
			continue;
		st->bpf[i] = 0;
		for (int cpu = 0; cpu < ncpu; cpu++)
			st->bpf[i] += vals[cpu];
	}
	free(vals);
	st->prog_misses = prog_misses(c);
	if (c->reader)
		notice_reader__counts(c->reader, &st->execs, &st->execs_unread);
	if (c->view && c->view->stats)
		c->view->stats(c->view->ctx, st);
	return 0;
}

static uint64_t since(uint64_t now, uint64_t base)
{
	return now > base ? now - base : 0;
}

void collect_stats__since(const struct collect_stats *now, const struct collect_stats *base,
			  struct collect_stats *out)
{
	for (int i = 0; i < CPROF_STAT_NR; i++)
		out->bpf[i] = since(now->bpf[i], base->bpf[i]);
	out->truncated_stacks = since(now->truncated_stacks, base->truncated_stacks);
	out->lost_stack_reads = since(now->lost_stack_reads, base->lost_stack_reads);
	out->trimmed_stacks = since(now->trimmed_stacks, base->trimmed_stacks);
	out->prog_misses = since(now->prog_misses, base->prog_misses);
	out->unwind.over_budget = since(now->unwind.over_budget, base->unwind.over_budget);
	out->unwind.failed = since(now->unwind.failed, base->unwind.failed);
	out->unwind.evicted = since(now->unwind.evicted, base->unwind.evicted);
}

void collector__stop(struct collector *c)
{
	if (c->ops->stop)
		c->ops->stop(c);
}
