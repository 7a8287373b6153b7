/* offcpu: time threads spend off the CPU, from sched_switch (see bpf/offcpu.bpf.c), as Go's
 * block profile: contentions/count and delay/nanoseconds by the stacks where they left it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>

#include "collect/collector.h"
#include "collect/wait_profile.h"
#include "offcpu.skel.h"
#include "util/log.h"

struct offcpu_priv {
	struct offcpu_bpf *skel;
	uint64_t stop_ns;
	uint64_t glue_lo, glue_hi; /* __traceiter_sched_switch */
};

static int offcpu_open(struct collector *c)
{
	const struct collect_opts *o = &c->opts;
	struct offcpu_priv *p;
	int err;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	c->priv = p;
	p->skel = offcpu_bpf__open();
	err = collector__opened(c, p->skel);
	if (err)
		return err;
	COLLECTOR_SET_COMMON_RODATA(p->skel, o);
	p->skel->rodata->min_wait_ns = o->min_wait_ns;
	p->skel->rodata->block_rate_ns = o->block_rate_ns;
	err = collector__load_attach(c, p->skel->skeleton);
	if (err || o->load_only)
		return err;
	wait__glue_range(&p->glue_lo, &p->glue_hi);
	return 0;
}

static void offcpu_stop(struct collector *c)
{
	struct offcpu_priv *p = c->priv;

	if (!p || !p->skel || p->stop_ns)
		return;
	offcpu_bpf__detach(p->skel);
	p->stop_ns = wait__now_ns();
}

static void offcpu_close(struct collector *c)
{
	struct offcpu_priv *p = c->priv;

	if (!p)
		return;
	offcpu_bpf__destroy(p->skel);
	free(p);
	c->priv = NULL;
}

static int offcpu_drain(struct collector *c, struct pprof_builder *b)
{
	struct offcpu_priv *p = c->priv;
	struct collect_stats st;
	struct wait_drain_opts o = {
		.waits = p->skel->maps.waits,
		.starts = p->skel->maps.starts,
		.stop_ns = p->stop_ns ? p->stop_ns : wait__now_ns(),
		.glue_lo = p->glue_lo,
		.glue_hi = p->glue_hi,
		.block_rate_ns = c->opts.block_rate_ns,
	};
	int err = wait__drain(c, &o, b);

	if (err)
		return err;
	if (c->opts.min_wait_ns)
		pprof_builder__add_comment(b, "min-block: %llu us",
					   (unsigned long long)c->opts.min_wait_ns / 1000);
	if (c->opts.block_rate_ns)
		pprof_builder__add_comment(
			b,
			"block-rate: %llu ns (an interval of d ns kept with "
			"probability min(1, d/%llu), counted as %llu/d intervals "
			"of %llu ns in all)",
			(unsigned long long)c->opts.block_rate_ns,
			(unsigned long long)c->opts.block_rate_ns,
			(unsigned long long)c->opts.block_rate_ns,
			(unsigned long long)c->opts.block_rate_ns);
	if (collector__stats(c, &st) == 0) {
		if (st.bpf[CPROF_STAT_WAIT_SHORT])
			pprof_builder__add_comment(
				b, "off-CPU intervals under min-block, not counted: %llu",
				(unsigned long long)st.bpf[CPROF_STAT_WAIT_SHORT]);
		if (st.bpf[CPROF_STAT_WAIT_SAMPLED_OUT])
			pprof_builder__add_comment(
				b, "off-CPU intervals left out by block-rate: %llu",
				(unsigned long long)st.bpf[CPROF_STAT_WAIT_SAMPLED_OUT]);
	}
	return 0;
}

static void offcpu_pprof_config(const struct collector *c, struct pprof_config *cfg)
{
	(void)c;
	wait__pprof_config(cfg, 1);
}

const struct collector_ops offcpu_collector_ops = {
	.name = "offcpu",
	.open = offcpu_open,
	.stop = offcpu_stop,
	.drain = offcpu_drain,
	.close = offcpu_close,
	.pprof_config = offcpu_pprof_config,
	.agg_map = "waits",
};
