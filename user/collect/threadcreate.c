/* threadcreate: the user stacks that created threads (see bpf/threadcreate.bpf.c), as Go's
 * threadcreate profile: threadcreate/count by the creating thread's stack. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>

#include "collect/collector.h"
#include "threadcreate.skel.h"
#include "util/log.h"

struct threadcreate_priv {
	struct threadcreate_bpf *skel;
};

static int threadcreate_open(struct collector *c)
{
	const struct collect_opts *o = &c->opts;
	struct threadcreate_priv *p;
	int err;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	c->priv = p;
	p->skel = threadcreate_bpf__open();
	err = collector__opened(c, p->skel);
	if (err)
		return err;
	COLLECTOR_SET_COMMON_RODATA(p->skel, o);
	return collector__load_attach(c, p->skel->skeleton);
}

static void threadcreate_stop(struct collector *c)
{
	struct threadcreate_priv *p = c->priv;

	if (p && p->skel)
		threadcreate_bpf__detach(p->skel);
}

static void threadcreate_close(struct collector *c)
{
	struct threadcreate_priv *p = c->priv;

	if (!p)
		return;
	threadcreate_bpf__destroy(p->skel);
	free(p);
	c->priv = NULL;
}

struct threadcreate_drain_ctx {
	struct pprof_builder *b;
	uint64_t ubuf[CPROF_MAX_STACK], kbuf[CPROF_MAX_STACK];
};

static int threadcreate_drain_one(struct collector *c, const struct cprof_key *k, const void *val,
				  void *ctx)
{
	struct threadcreate_drain_ctx *d = ctx;
	struct pprof_raw_sample s;

	collector__raw_sample(c, k, d->ubuf, d->kbuf, &s);
	/* Taken inside the clone syscall: the user leaf is the syscall's return address. */
	s.user_leaf_is_return = true;
	s.values[0] = (int64_t) * (const __u64 *)val;
	return pprof_builder__add_sample(d->b, &s);
}

static int threadcreate_drain(struct collector *c, struct pprof_builder *b)
{
	struct threadcreate_priv *p = c->priv;
	struct threadcreate_drain_ctx *d;
	int err;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->b = b;
	err = collector__drain_map(c, p->skel->maps.counts, sizeof(__u64), true,
				   threadcreate_drain_one, d);
	free(d);
	return err;
}

static void threadcreate_pprof_config(const struct collector *c, struct pprof_config *cfg)
{
	(void)c;
	cfg->nvalues = 1;
	cfg->sample_types[0] = (struct pprof_value_type){"threadcreate", "count"};
	cfg->period_type = (struct pprof_value_type){"threadcreate", "count"};
	cfg->period = 1;
	cfg->default_sample_type = "threadcreate";
}

const struct collector_ops threadcreate_collector_ops = {
	.name = "threadcreate",
	.open = threadcreate_open,
	.stop = threadcreate_stop,
	.drain = threadcreate_drain,
	.close = threadcreate_close,
	.pprof_config = threadcreate_pprof_config,
	.agg_map = "counts",
};
