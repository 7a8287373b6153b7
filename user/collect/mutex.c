/* mutex: futex waits of contended pthread mutexes and rwlocks (see bpf/lock.bpf.c), as Go's
 * mutex profile: contentions/count and delay/nanoseconds by the waiting thread's stacks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>

#include "collect/collector.h"
#include "collect/wait_profile.h"
#include "lock.skel.h"
#include "util/log.h"

struct mutex_priv {
	struct lock_bpf *skel;
	uint64_t stop_ns;
	uint64_t unfinished; /* waits under way at the end */
};

/* The per-syscall tracepoints run for futex calls only; they need tracefs (for their ids).
 * Without it, the raw sys_enter/sys_exit tracepoints run for every syscall and filter.
 * CPROF_NO_TRACEFS=1 forces the second way (tests use it). */
static bool have_futex_tracepoints(void)
{
	const char *force = getenv("CPROF_NO_TRACEFS");

	if (force && *force && strcmp(force, "0"))
		return false;
	return access("/sys/kernel/tracing/events/syscalls/sys_enter_futex/id", R_OK) == 0 ||
	       access("/sys/kernel/debug/tracing/events/syscalls/sys_enter_futex/id", R_OK) == 0;
}

static int mutex_open(struct collector *c)
{
	const struct collect_opts *o = &c->opts;
	struct mutex_priv *p;
	bool tp;
	int err;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	c->priv = p;
	p->skel = lock_bpf__open();
	err = collector__opened(c, p->skel);
	if (err)
		return err;
	COLLECTOR_SET_COMMON_RODATA(p->skel, o);
	p->skel->rodata->min_wait_ns = o->min_wait_ns;
	p->skel->rodata->mutex_fraction = o->mutex_fraction;
	/* `check` verifies both ways; a capture loads one. */
	tp = o->load_only || have_futex_tracepoints();
	bpf_program__set_autoload(p->skel->progs.futex_enter_tp, tp);
	bpf_program__set_autoload(p->skel->progs.futex_exit_tp, tp);
	bpf_program__set_autoload(p->skel->progs.futex_enter_raw, o->load_only || !tp);
	bpf_program__set_autoload(p->skel->progs.futex_exit_raw, o->load_only || !tp);
	if (!tp)
		pr_info("no tracefs: timing futex from the raw syscall tracepoints\n");
	return collector__load_attach(c, p->skel->skeleton);
}

static void mutex_stop(struct collector *c)
{
	struct mutex_priv *p = c->priv;

	if (!p || !p->skel || p->stop_ns)
		return;
	lock_bpf__detach(p->skel);
	p->stop_ns = wait__now_ns();
}

static void mutex_close(struct collector *c)
{
	struct mutex_priv *p = c->priv;

	if (!p)
		return;
	lock_bpf__destroy(p->skel);
	free(p);
	c->priv = NULL;
}

static int mutex_drain(struct collector *c, struct pprof_builder *b)
{
	struct mutex_priv *p = c->priv;
	struct collect_stats st;
	struct wait_drain_opts o = {
		.waits = p->skel->maps.waits,
		.starts = p->skel->maps.starts,
		.stop_ns = p->stop_ns ? p->stop_ns : wait__now_ns(),
		.unfinished = &p->unfinished,
		.scale = c->opts.mutex_fraction,
	};
	int err;

	p->unfinished = 0; /* a shared collector is drained once per window */
	err = wait__drain(c, &o, b);
	if (err)
		return err;
	if (c->opts.min_wait_ns)
		pprof_builder__add_comment(b, "min-wait: %llu us",
					   (unsigned long long)c->opts.min_wait_ns / 1000);
	if (c->opts.mutex_fraction > 1)
		pprof_builder__add_comment(b,
					   "mutex-fraction: %u (about one lock wait in %u kept, "
					   "contentions and delay scaled by %u)",
					   c->opts.mutex_fraction, c->opts.mutex_fraction,
					   c->opts.mutex_fraction);
	if (collector__stats(c, &st) == 0) {
		if (st.bpf[CPROF_STAT_WAIT_SAMPLED_OUT])
			pprof_builder__add_comment(
				b, "lock waits left out by mutex-fraction: %llu",
				(unsigned long long)st.bpf[CPROF_STAT_WAIT_SAMPLED_OUT]);
		pprof_builder__add_comment(b,
					   "futex waits that are no lock wait (condition "
					   "variables, semaphores, joins), not counted: %llu",
					   (unsigned long long)st.bpf[CPROF_STAT_FUTEX_OTHER]);
		if (st.bpf[CPROF_STAT_WAIT_SHORT])
			pprof_builder__add_comment(
				b, "lock waits under min-wait, not counted: %llu",
				(unsigned long long)st.bpf[CPROF_STAT_WAIT_SHORT]);
	}
	if (p->unfinished)
		pprof_builder__add_comment(b, "lock waits still under way at the end: %llu",
					   (unsigned long long)p->unfinished);
	return 0;
}

static void mutex_pprof_config(const struct collector *c, struct pprof_config *cfg)
{
	wait__pprof_config(cfg, c->opts.mutex_fraction);
}

const struct collector_ops mutex_collector_ops = {
	.name = "mutex",
	.open = mutex_open,
	.stop = mutex_stop,
	.drain = mutex_drain,
	.close = mutex_close,
	.pprof_config = mutex_pprof_config,
	.agg_map = "waits",
};
