#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capture.h"
#include "collect/collector.h"
#include "proc/maps.h"
#include "util/clock.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/mem.h"

struct capture {
	const struct capture_opts *o;
	struct symbolizer *sym;
	struct collector *col;
	struct collector_window *win; /* o->pool: col is shared, this is our window on it */
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

static void on_proc(void *ctx, const struct cprof_proc_event *e)
{
	struct capture *c = ctx;
	int err;

	if (e->kind == CPROF_PROC_EXIT)
		return;
	err = symbolizer__add_pid(c->sym, e->pid);
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
	if (c->o->all)
		return true;
	for (size_t i = 0; i < c->o->npids; i++)
		if (proc__exists(c->o->pids[i]) == 0)
			return true;
	return false;
}

static bool stop_requested(const struct capture *c)
{
	return c->o->should_stop && c->o->should_stop(c->o->ctx);
}

static int capture_poll(struct capture *c, int timeout_ms)
{
	return c->win ? collector_window__poll(c->win, timeout_ms)
		      : collector__poll(c->col, timeout_ms);
}

/* Our window leaves the shared collector (which goes with its last capture), or our own
 * collector is freed. Safe when already done. */
static void capture_release(struct capture *c)
{
	if (c->win)
		collector_window__leave(c->win);
	else
		collector__free(c->col);
	c->win = NULL;
	c->col = NULL;
}

static void collect_loop(struct capture *c)
{
	const struct capture_opts *o = c->o;
	/* The duration counts from when sampling began, not from when this loop starts: building
	 * the targets' unwind tables in between is not profiled time. */
	int64_t deadline =
		o->duration > 0 ? c->started_ns + (int64_t)(o->duration * 1e9) : INT64_MAX;
	int64_t left;
	int err;

	/* A shared collector outlives this capture's deadline: it keeps building tables. */
	if (o->duration > 0 && !c->win)
		c->col->deadline_ns = deadline;

	while (!stop_requested(c)) {
		left = deadline - clock__ns(CLOCK_MONOTONIC);
		if (left <= 0)
			break;
		err = capture_poll(c, left < 100000000 ? (int)(left / 1000000) + 1 : 100);
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
	capture_poll(c, 0);
}

struct drop {
	uint64_t n;
	const char *what;
};

/* Says what was lost, on stderr and in the profile's comments: never a silently short profile. */
void capture__report_drops(struct pprof_builder *b, const struct collect_stats *st,
			   uint64_t procs_missed)
{
	const struct drop drops[] = {
		{st->bpf[CPROF_STAT_KEYS_FULL],
		 "samples dropped: aggregation map full (--max-stacks)"},
		{st->bpf[CPROF_STAT_USTACK_COLLIDE],
		 "user stacks lost to stack-map hash collisions"},
		{st->bpf[CPROF_STAT_KSTACK_COLLIDE],
		 "kernel stacks lost to stack-map hash collisions"},
		{st->bpf[CPROF_STAT_USTACK_ERR], "user stacks that could not be read"},
		{st->bpf[CPROF_STAT_KSTACK_ERR], "kernel stacks that could not be read"},
		{st->lost_stack_reads, "stacks evicted before they were read"},
		{st->truncated_stacks, "stacks truncated at the depth limit"},
		{st->bpf[CPROF_STAT_EVENTS_LOST], "new-process notices lost (ring buffer full)"},
		{procs_missed, "processes that exited before their mappings were read"},
		{st->bpf[CPROF_STAT_HEAP_LIVE_FULL],
		 "sampled allocations not tracked until freed: live map full (--heap-max-live)"},
		{st->bpf[CPROF_STAT_HEAP_NO_THREAD],
		 "allocator calls missed: per-thread state could not be allocated"},
		{st->bpf[CPROF_STAT_HEAP_STALE],
		 "tracked blocks allocated again before their free was seen (free missed)"},
		{st->bpf[CPROF_STAT_USTACK_NO_RULE],
		 "user stacks cut short: a pc with no usable unwind rule"},
		{st->bpf[CPROF_STAT_USTACK_NO_TABLE],
		 "user stacks cut short: a pc with no unwind table (--unwind=dwarf)"},
		{st->bpf[CPROF_STAT_USTACK_BAD_READ],
		 "user stacks cut short: a saved register could not be read"},
		{st->bpf[CPROF_STAT_USTACK_TABLE_FULL], "user stacks lost: unwound-stack map full"},
		{st->unwind.over_budget, "executables without unwind table: --unwind-mem or table "
					 "slots full (frame pointers)"},
		{st->unwind.failed,
		 "executables or mappings whose unwind table could not be loaded"},
		{st->bpf[CPROF_STAT_WAIT_START_FULL],
		 "waits not timed: per-thread start map full (threads waiting at once)"},
		{st->prog_misses, "BPF program runs skipped by the kernel (recursion)"},
	};
	uint64_t total = 0;

	for (size_t i = 0; i < sizeof(drops) / sizeof(drops[0]); i++) {
		if (!drops[i].n)
			continue;
		total += drops[i].n;
		pprof_builder__add_comment(b, "dropped: %llu %s", (unsigned long long)drops[i].n,
					   drops[i].what);
		pr_warn("%llu %s\n", (unsigned long long)drops[i].n, drops[i].what);
	}
	if (!total)
		pprof_builder__add_comment(b, "dropped: nothing");
}

static void add_target_comment(const struct capture_opts *o, struct pprof_builder *b)
{
	char comm[64];

	if (o->target_desc) {
		pprof_builder__add_comment(b, "target: %s", o->target_desc);
	} else if (o->all) {
		pprof_builder__add_comment(b, "target: whole system");
	} else {
		for (size_t i = 0; i < o->npids; i++) {
			if (proc__comm(o->pids[i], comm, sizeof(comm)))
				snprintf(comm, sizeof(comm), "exited");
			pprof_builder__add_comment(b, "target: pid %d (%s)", o->pids[i], comm);
		}
	}
}

static int drain(struct capture *c, int64_t t0, int64_t dur, struct pprof_builder **out)
{
	const struct capture_opts *o = c->o;
	struct pprof_resolver res = {resolve_user, resolve_kernel, c->sym, prepare};
	struct pprof_config cfg = {.time_nanos = t0, .duration_nanos = dur};
	struct collect_stats st = {};
	struct pprof_builder *b;
	int err, stats_err;

	c->col->ops->pprof_config(c->col, &cfg);
	for (int i = 0; o->default_sample_type && i < cfg.nvalues; i++)
		if (strcmp(cfg.sample_types[i].type, o->default_sample_type) == 0)
			cfg.default_sample_type = o->default_sample_type;
	b = pprof_builder__new(&cfg, &res);
	if (!b)
		return -ENOMEM;
	pprof_builder__add_comment(b, "cprof-bpf %s", CPROF_VERSION);
	add_target_comment(o, b);
	if (strcmp(o->type, "cpu") == 0)
		pprof_builder__add_comment(b, "type: cpu, %d Hz per CPU", o->freq);
	else
		pprof_builder__add_comment(b, "type: %s", o->type);
	mem__checkpoint("drain start");
	if (c->win) {
		err = collector_window__drain(c->win, b, &st);
		stats_err = err;
	} else {
		err = collector__drain(c->col, b);
		stats_err = err ? err : collector__stats(c->col, &st);
	}
	mem__checkpoint("drained");
	if (err) {
		pr_err("cannot read the collected samples: %s\n", strerror(-err));
		pprof_builder__free(b);
		return err;
	}
	if (stats_err == 0)
		capture__report_drops(b, &st, c->procs_missed);
	if (o->stats) {
		o->stats->counters = st;
		o->stats->procs_missed = c->procs_missed;
		o->stats->stacks = pprof_builder__nsamples(b);
		o->stats->max_keys = o->max_keys ? o->max_keys : CPROF_DEFAULT_MAX_KEYS;
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
	if (st.bpf[CPROF_STAT_SAMPLES] == 0)
		pr_warn("no samples: the target did not run while profiled\n");
	*out = b;
	return 0;
}

int capture__run(const struct capture_opts *o, struct symbolizer *sym, struct pprof_builder **out)
{
	struct capture c = {.o = o, .sym = sym};
	struct collect_opts co = {
		.all = o->all,
		.pids = o->pids,
		.npids = o->npids,
		.follow_children = o->follow_children,
		.no_kernel_stacks = o->no_kernel,
		.freq = o->freq,
		.max_keys = o->max_keys,
		.heap_sample_bytes = o->heap_sample_bytes,
		.heap_max_live = o->heap_max_live,
		.heap_alloc_only = o->heap_alloc_only,
		.exe_hint = o->exe_hint,
		.unwind_mode = o->unwind,
		.unwind_mem = o->unwind_mem,
		.min_wait_ns = o->min_wait_ns,
		.mutex_fraction = o->mutex_fraction,
		.block_rate_ns = o->block_rate_ns,
		.on_proc = on_proc,
		.pid_labels = o->all ? exe_label : NULL,
		.ctx = &c,
	};
	const struct collector_ops *ops = collector__find(o->type);
	int64_t t0, m0;
	int err;

	if (!ops)
		return -EINVAL;
	if (o->all) {
		c.exes = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
		if (!c.exes)
			return -ENOMEM;
	}
	/* `-- CMD` (follow_children): the target is still our own fork waiting to exec; its
	 * mappings are read at its exec notice instead. */
	for (size_t i = 0; !o->follow_children && i < o->npids; i++) {
		err = symbolizer__add_pid(sym, o->pids[i]);
		if (err)
			pr_debug("cannot read the mappings of pid %d: %s\n", o->pids[i],
				 strerror(-err));
	}
	mem__checkpoint("pids snapshotted");
	if (o->pool) {
		err = collector_pool__join(o->pool, ops, &co, &c.win);
		if (err)
			goto cleanup;
		c.col = collector_window__collector(c.win);
		collector_window__start(c.win, &m0, &t0);
	} else {
		err = collector__open(ops, &co, &c.col);
		if (err)
			goto cleanup;
		t0 = c.col->started_real_ns;
		m0 = c.col->started_ns;
	}
	mem__checkpoint("BPF attached");
	c.started_ns = m0;
	if (o->attached)
		o->attached(o->ctx);
	pr_info("profiling (%s)%s\n", o->type, o->duration > 0 ? "" : "; Ctrl-C to stop and write");
	collect_loop(&c);
	if (!c.win)
		collector__stop(c.col); /* a shared one goes on for the other captures */
	mem__checkpoint("sampling ended");
	err = drain(&c, t0, clock__ns(CLOCK_MONOTONIC) - m0, out);
	/* The samples hold raw addresses now: the BPF side goes before symbolization, and what it
	 * freed goes back to the system, so that the symbols are read on as little as possible.
	 * A shared collector goes when its last capture leaves. */
	capture_release(&c);
	malloc_trim(0);
	mem__checkpoint("BPF freed");
	if (!err) {
		err = pprof_builder__resolve(*out);
		mem__checkpoint("symbolized");
		if (err) {
			pr_err("cannot symbolize the profile: %s\n", strerror(-err));
			pprof_builder__free(*out);
			*out = NULL;
		}
	}
cleanup:
	capture_release(&c);
	if (c.exes) {
		hashmap__for_each(c.exes, free_exe, NULL);
		hashmap__free(c.exes);
	}
	return err;
}
