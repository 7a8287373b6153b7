#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capture.h"
#include "collect/drops.h"
#include "collect/collector.h"
#include "proc/maps.h"
#include "util/clock.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/mem.h"

struct capture {
	const struct capture_opts *o;
	struct symbolizer *sym;
	struct collector_window *win; /* on o->pool's collector, or on a pool of its own */
	int64_t started_ns;	      /* CLOCK_MONOTONIC when sampling began */
	struct hashmap *exes;	      /* pid -> executable path, system-wide only */
	uint64_t procs_missed;	      /* processes gone before their mappings could be read */
};

/* Remembers a process's executable while it is alive, for the `exe` label. */
static void note_exe(struct capture *c, pid_t pid)
{
	char path[4096], *copy, *old;
	const void *key;

	if (!c->exes || pid <= 0 || proc__exe(pid, path, sizeof(path)))
		return;
	copy = strdup(path);
	if (!copy)
		return;
	if (hashmap__delete(c->exes, (void *)(uintptr_t)pid, &key, (void **)&old))
		free(old);
	if (hashmap__insert(c->exes, (void *)(uintptr_t)pid, copy))
		free(copy);
}

static int exe_label(void *ctx, pid_t pid, struct pprof_label *labels, int max)
{
	struct capture *c = ctx;
	void *exe;

	if (max < 1 || !c->exes || !hashmap__find(c->exes, (void *)(uintptr_t)pid, &exe))
		return 0;
	labels[0] = (struct pprof_label){.key = "exe", .str = exe};
	return 1;
}

static void free_exe(const void *key, void *value, void *ctx)
{
	(void)key;
	(void)ctx;
	free(value);
}

static void on_proc(void *ctx, const struct cprof_proc_event *e, const struct proc_read *rd)
{
	struct capture *c = ctx;
	int err;

	if (e->kind == CPROF_PROC_EXIT)
		return;
	if (e->kind == CPROF_PROC_PYCODE) {
		symbolizer__python_prefetch(c->sym, e->pid, e->code);
		return;
	}
	err = rd->pm ? symbolizer__add_pid_maps(c->sym, e->pid, rd->pm)
		     : symbolizer__add_pid(c->sym, e->pid);
	note_exe(c, e->pid);
	/* Gone since an earlier notice (its exec) was read: that snapshot stands. */
	if ((err == -ESRCH || err == -ENOENT) && !symbolizer__has_pid(c->sym, e->pid))
		c->procs_missed++;
	else if (err)
		pr_debug("cannot read the mappings of pid %u: %s\n", e->pid, strerror(-err));
}

static int resolve_user(void *ctx, pid_t pid, uint64_t addr, bool is_return, struct sym_result *r)
{
	return symbolizer__user(ctx, pid, addr, is_return, r);
}

static int resolve_kernel(void *ctx, uint64_t addr, bool is_return, struct sym_result *r)
{
	return symbolizer__kernel(ctx, addr, is_return, r);
}

static int prepare(void *ctx, struct sym_request *reqs, size_t n)
{
	return symbolizer__prepare(ctx, reqs, n);
}

static bool targets_alive(const struct capture *c)
{
	if (c->o->opts->all)
		return true;
	for (size_t i = 0; i < c->o->opts->npids; i++)
		if (proc__exists(c->o->opts->pids[i]) == 0)
			return true;
	return false;
}

static bool stop_requested(const struct capture *c)
{
	return c->o->should_stop && c->o->should_stop(c->o->ctx);
}

/* Our window leaves its collector, which goes with its last capture. Safe when already done. */
static void capture_release(struct capture *c)
{
	collector_window__leave(c->win);
	c->win = NULL;
}

static void collect_loop(struct capture *c)
{
	const struct capture_opts *o = c->o;
	/* The duration counts from when sampling began, not from when this loop starts: building
	 * the targets' unwind tables in between is not profiled time. */
	int64_t deadline = o->opts->duration > 0
				   ? c->started_ns + (int64_t)(o->opts->duration * 1e9)
				   : INT64_MAX;
	int64_t left;
	int err;

	if (o->opts->duration > 0)
		collector_window__set_deadline(c->win, deadline);

	while (!stop_requested(c)) {
		left = deadline - clock__ns(CLOCK_MONOTONIC);
		if (left <= 0)
			break;
		err = collector_window__poll(c->win,
					     left < 100000000 ? (int)(left / 1000000) + 1 : 100);
		if (err) {
			pr_warn("polling process notices: %s\n", strerror(-err));
			break;
		}
		if (!targets_alive(c)) {
			pr_info("the target exited; writing what was collected\n");
			break;
		}
	}
	/* Notices still queued name processes that may yet be alive: read them now. */
	collector_window__poll(c->win, 0);
}

static void add_target_comment(const struct capture_opts *o, struct pprof_builder *b)
{
	char comm[64];

	if (o->target_desc) {
		pprof_builder__add_comment(b, "target: %s", o->target_desc);
	} else if (o->opts->all) {
		pprof_builder__add_comment(b, "target: whole system");
	} else {
		for (size_t i = 0; i < o->opts->npids; i++) {
			if (proc__comm(o->opts->pids[i], comm, sizeof(comm)))
				snprintf(comm, sizeof(comm), "exited");
			pprof_builder__add_comment(b, "target: pid %d (%s)", o->opts->pids[i],
						   comm);
		}
	}
}

/* Python frames whose code object could not be read (the process exited before its samples
 * were symbolized) are named as such in the profile, and counted here: n is how many the
 * symbolization of this profile met. */
static void report_python(struct pprof_builder *b, uint64_t n)
{
	if (!n)
		return;
	pprof_builder__add_comment(b, "dropped: %llu Python frames unreadable (process exited)",
				   (unsigned long long)n);
	pr_warn("%llu Python frames unreadable (process exited)\n", (unsigned long long)n);
}

static int drain(struct capture *c, int64_t t0, int64_t dur, struct pprof_builder **out)
{
	const struct capture_opts *o = c->o;
	struct pprof_resolver res = {resolve_user, resolve_kernel, c->sym, prepare};
	struct pprof_config cfg = {.time_nanos = t0, .duration_nanos = dur};
	struct collect_stats st = {};
	struct collector *col = collector_window__collector(c->win);
	struct pprof_builder *b;
	int err;

	col->ops->pprof_config(col, &cfg);
	for (int i = 0; o->default_sample_type && i < cfg.nvalues; i++)
		if (strcmp(cfg.sample_types[i].type, o->default_sample_type) == 0)
			cfg.default_sample_type = o->default_sample_type;
	b = pprof_builder__new(&cfg, &res);
	if (!b)
		return -ENOMEM;
	pprof_builder__add_comment(b, "cprof-bpf %s", CPROF_VERSION);
	add_target_comment(o, b);
	if (strcmp(o->opts->type, "cpu") == 0)
		pprof_builder__add_comment(b, "type: cpu, %d Hz per CPU", o->opts->freq);
	else
		pprof_builder__add_comment(b, "type: %s", o->opts->type);
	mem__checkpoint("drain start");
	err = collector_window__drain(c->win, b, &st);
	mem__checkpoint("drained");
	if (err) {
		pr_err("cannot read the collected samples: %s\n", strerror(-err));
		pprof_builder__free(b);
		return err;
	}
	st.procs_missed = c->procs_missed;
	drops__report(b, &st);
	if (o->stats) {
		o->stats->counters = st;
		o->stats->stacks = pprof_builder__nsamples(b);
		o->stats->max_keys = o->opts->max_keys ? o->opts->max_keys : CPROF_DEFAULT_MAX_KEYS;
	}
	pr_info("%zu distinct stacks, %llu samples\n", pprof_builder__nsamples(b),
		(unsigned long long)st.bpf[CPROF_STAT_SAMPLES]);
	if (st.unwind.tables)
		pprof_builder__add_comment(
			b,
			"unwind: %llu tables, %llu rows, %llu KiB for %llu KiB of code; frames: "
			"%llu "
			"from tables, %llu by frame pointers",
			(unsigned long long)st.unwind.tables, (unsigned long long)st.unwind.rows,
			(unsigned long long)st.unwind.bytes >> 10,
			(unsigned long long)st.unwind.text_bytes >> 10,
			(unsigned long long)st.bpf[CPROF_STAT_UNWIND_TABLE_FRAMES],
			(unsigned long long)st.bpf[CPROF_STAT_UNWIND_FP_FRAMES]);
	pr_info("unwind: %llu tables, %llu rows, %llu bytes for %llu bytes of code, %llu "
		"executables without .eh_frame\n",
		(unsigned long long)st.unwind.tables, (unsigned long long)st.unwind.rows,
		(unsigned long long)st.unwind.bytes, (unsigned long long)st.unwind.text_bytes,
		(unsigned long long)st.unwind.no_cfi);
	if (st.bpf[CPROF_STAT_PY_FRAMES] || st.bpf[CPROF_STAT_PY_NO_THREAD])
		pprof_builder__add_comment(
			b,
			"python: %llu Python frames walked; %llu samples of threads with no Python "
			"thread state (native frames only)",
			(unsigned long long)st.bpf[CPROF_STAT_PY_FRAMES],
			(unsigned long long)st.bpf[CPROF_STAT_PY_NO_THREAD]);
	if (st.bpf[CPROF_STAT_SAMPLES] == 0)
		pr_warn("no samples: the target did not run while profiled\n");
	*out = b;
	return 0;
}

/* Snapshots the mappings of the -p targets before sampling starts. With `-- CMD`
 * (follow_children) the target is still our own fork waiting to exec: its mappings are read at
 * its exec notice instead. */
static void snapshot_targets(const struct capture_opts *o, struct symbolizer *sym)
{
	int err;

	for (size_t i = 0; !o->follow_children && i < o->opts->npids; i++) {
		err = symbolizer__add_pid(sym, o->opts->pids[i]);
		if (err)
			pr_debug("cannot read the mappings of pid %d: %s\n", o->opts->pids[i],
				 strerror(-err));
	}
	mem__checkpoint("pids snapshotted");
}

/* Symbolizes the drained profile *out; on failure frees it (*out NULL). */
static int symbolize(struct symbolizer *sym, struct pprof_builder **out)
{
	uint64_t unreadable = symbolizer__python_unreadable(sym);
	int err = pprof_builder__resolve(*out);

	mem__checkpoint("symbolized");
	if (err) {
		pr_err("cannot symbolize the profile: %s\n", strerror(-err));
		pprof_builder__free(*out);
		*out = NULL;
		return err;
	}
	report_python(*out, symbolizer__python_unreadable(sym) - unreadable);
	return 0;
}

/* Whether the capture's type is (an alias of) type. */
static bool is_type(const struct capture_opts *o, const char *type)
{
	return collector__find(o->opts->type) == collector__find(type);
}

int capture__run(const struct capture_opts *o, struct symbolizer *sym, struct pprof_builder **out)
{
	struct capture c = {.o = o, .sym = sym};
	struct collect_opts co = {
		.all = o->opts->all,
		.pids = o->opts->pids,
		.npids = o->opts->npids,
		.follow_children = o->follow_children,
		.no_kernel_stacks = o->opts->no_kernel,
		.freq = o->opts->freq,
		.max_keys = o->opts->max_keys,
		.heap_sample_bytes = o->opts->heap_sample_bytes,
		.heap_max_live = o->opts->heap_max_live,
		.heap_alloc_only = o->opts->heap_alloc_only,
		.exe_hint = o->exe_hint,
		.unwind_mode = o->opts->unwind,
		.unwind_mem = o->opts->unwind_mem,
		.unwind_cache = o->opts->unwind_cache,
		.unwind_cache_size = o->opts->unwind_cache_size,
		.min_wait_ns = cli__min_wait_ns(o->opts, o->opts->type),
		.mutex_fraction = is_type(o, "mutex") ? o->opts->mutex_fraction : 0,
		.block_rate_ns = is_type(o, "offcpu") ? o->opts->block_rate_ns : 0,
		.on_proc = on_proc,
		.sym = sym,
		.threads_out = o->threads_out,
		.pid_labels = o->opts->all ? exe_label : NULL,
		.ctx = &c,
	};
	const struct collector_ops *ops = collector__find(o->opts->type);
	int64_t t0, m0;
	int err;

	if (!ops)
		return -EINVAL;
	if (o->opts->all) {
		c.exes = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
		if (!c.exes)
			return -ENOMEM;
	}
	snapshot_targets(o, sym);
	/* Without a pool (record, a triggered capture), a pool of one. */
	/* A snapshot is taken by its drain, at once: it shares no collector and waits for
	 * nothing. */
	err = collector_pool__join(ops->snapshot ? NULL : o->pool, ops, &co, &c.win);
	if (err)
		goto cleanup;
	collector_window__start(c.win, &m0, &t0);
	mem__checkpoint("BPF attached");
	c.started_ns = m0;
	if (o->attached)
		o->attached(o->ctx);
	if (!ops->snapshot) {
		pr_info("profiling (%s)%s\n", o->opts->type,
			o->opts->duration > 0 ? "" : "; Ctrl-C to stop and write");
		collect_loop(&c);
	}
	mem__checkpoint("sampling ended");
	err = drain(&c, t0, clock__ns(CLOCK_MONOTONIC) - m0, out);
	/* The samples hold raw addresses now: the BPF side goes before symbolization, and what it
	 * freed goes back to the system, so that the symbols are read on as little as possible.
	 * A shared collector goes when its last capture leaves. (A snapshot's frames were resolved
	 * in its drain: it has nothing left to read, and its heap is kept whole, util/bigpages.h.) */
	capture_release(&c);
	if (!ops->snapshot)
		malloc_trim(0);
	mem__checkpoint("BPF freed");
	if (!err)
		err = symbolize(sym, out);
cleanup:
	capture_release(&c);
	if (c.exes) {
		hashmap__for_each(c.exes, free_exe, NULL);
		hashmap__free(c.exes);
	}
	return err;
}
