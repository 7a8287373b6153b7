/* wall: on-CPU samples (cpu-clock, as -t cpu) and off-CPU intervals (sched_switch, as
 * -t offcpu) of the same threads in one profile, so both can be compared as wall-clock time. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>

#include "collect/collector.h"
#include "collect/cpu.h"
#include "collect/wait_profile.h"
#include "util/log.h"
#include "wall.skel.h"

struct wall_priv {
	struct wall_bpf *skel;
	struct bpf_link **links; /* perf events, one per online CPU */
	int nlinks;
	__u64 period_ns;
	uint64_t stop_ns;
	uint64_t glue_lo, glue_hi; /* __traceiter_sched_switch */
};

static int wall_open(struct collector *c)
{
	const struct collect_opts *o = &c->opts;
	struct wall_priv *p;
	int err;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	c->priv = p;
	p->period_ns = 1000000000ull / o->freq;
	p->skel = wall_bpf__open();
	err = collector__opened(c, p->skel);
	if (err)
		return err;
	COLLECTOR_SET_COMMON_RODATA(p->skel, o);
	p->skel->rodata->period_ns = p->period_ns;
	/* The perf-event program is attached by cpu__attach_clock, the others here. */
	err = collector__load_attach(c, p->skel->skeleton);
	if (err || o->load_only)
		return err;
	wait__glue_range(&p->glue_lo, &p->glue_hi);
	return cpu__attach_clock(p->skel->progs.wall_sample, p->period_ns, &p->links, &p->nlinks);
}

static void wall_stop(struct collector *c)
{
	struct wall_priv *p = c->priv;

	if (!p || !p->skel || p->stop_ns)
		return;
	for (int i = 0; i < p->nlinks; i++)
		bpf_link__destroy(p->links[i]);
	p->nlinks = 0;
	wall_bpf__detach(p->skel);
	p->stop_ns = wait__now_ns();
}

static void wall_close(struct collector *c)
{
	struct wall_priv *p = c->priv;

	if (!p)
		return;
	for (int i = 0; i < p->nlinks; i++)
		bpf_link__destroy(p->links[i]);
	free(p->links);
	wall_bpf__destroy(p->skel);
	free(p);
	c->priv = NULL;
}

static int wall_drain(struct collector *c, struct pprof_builder *b)
{
	struct wall_priv *p = c->priv;
	struct wait_drain_opts o = {
		.waits = p->skel->maps.waits,
		.starts = p->skel->maps.starts,
		.stop_ns = p->stop_ns ? p->stop_ns : wait__now_ns(),
		.glue_lo = p->glue_lo,
		.glue_hi = p->glue_hi,
		.wall = true,
	};

	pprof_builder__add_comment(b, "on-CPU: cpu-clock samples at %d Hz per CPU", c->opts.freq);
	return wait__drain(c, &o, b);
}

static void wall_pprof_config(const struct collector *c, struct pprof_config *cfg)
{
	const struct wall_priv *p = c->priv;

	wait__wall_pprof_config(cfg, p ? (int64_t)p->period_ns : 1000000000ll / c->opts.freq);
}

const struct collector_ops wall_collector_ops = {
	.name = "wall",
	.open = wall_open,
	.stop = wall_stop,
	.drain = wall_drain,
	.close = wall_close,
	.pprof_config = wall_pprof_config,
	.agg_map = "waits",
};
