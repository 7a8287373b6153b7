#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collect/wait_profile.h"
#include "sym/kallsyms.h"
#include "util/log.h"
#include "wait.h"
#include "util/clock.h"

struct wait_drain_ctx {
	const struct wait_drain_opts *o;
	struct pprof_builder *b;
	uint64_t ubuf[CPROF_MAX_STACK], kbuf[CPROF_MAX_STACK];
	uint64_t seed; /* for sampling the tails by the block rate */
};

/* xorshift64*: enough to sample the few waits under way at the end. */
static uint64_t rand64(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

uint64_t wait__now_ns(void)
{
	return (uint64_t)clock__ns(CLOCK_MONOTONIC);
}

void wait__glue_range(uint64_t *lo, uint64_t *hi)
{
	if (kallsyms__range("/proc/kallsyms", "__traceiter_sched_switch", lo, hi))
		pr_debug("no address of __traceiter_sched_switch: it may show in kernel stacks\n");
}

void wait__pprof_config(struct pprof_config *cfg, int64_t period)
{
	cfg->nvalues = 2;
	cfg->sample_types[0] = (struct pprof_value_type){"contentions", "count"};
	cfg->sample_types[1] = (struct pprof_value_type){"delay", "nanoseconds"};
	cfg->period_type = (struct pprof_value_type){"contentions", "count"};
	/* 1: every wait is counted; Go writes the mutex fraction here when it samples. */
	cfg->period = period > 0 ? period : 1;
	cfg->default_sample_type = "delay";
}

void wait__wall_pprof_config(struct pprof_config *cfg, int64_t period_ns)
{
	cfg->nvalues = 3;
	cfg->sample_types[0] = (struct pprof_value_type){"cpu", "nanoseconds"};
	cfg->sample_types[1] = (struct pprof_value_type){"offcpu", "nanoseconds"};
	cfg->sample_types[2] = (struct pprof_value_type){"wall", "nanoseconds"};
	cfg->period_type = (struct pprof_value_type){"cpu", "nanoseconds"};
	cfg->period = period_ns;
	cfg->default_sample_type = "wall";
}

static int add_wait(struct collector *c, struct wait_drain_ctx *d, const struct cprof_key *k,
		    uint64_t count, uint64_t delay_ns)
{
	struct pprof_raw_sample s;

	collector__raw_sample(c, k, d->ubuf, d->kbuf, &s);
	if (s.nkstack && s.kstack[0] >= d->o->glue_lo && s.kstack[0] < d->o->glue_hi) {
		s.kstack++;
		s.nkstack--;
	}
	/* Taken in a syscall (user) and in the scheduler or a syscall tracepoint (kernel): both
	 * leaves are return addresses. */
	s.user_leaf_is_return = k->flags & CPROF_WAIT_USER_RET;
	s.kernel_leaf_is_return = true;
	if (d->o->wall) {
		bool on = k->flags & CPROF_WAIT_ONCPU;

		s.values[0] = on ? (int64_t)delay_ns : 0;
		s.values[1] = on ? 0 : (int64_t)delay_ns;
		s.values[2] = (int64_t)delay_ns;
		if (s.nlabels < PPROF_MAX_LABELS)
			s.labels[s.nlabels++] = (struct pprof_label){
				.key = "state", .str = on ? "on-cpu" : "off-cpu"};
	} else {
		uint64_t n = d->o->scale > 1 ? d->o->scale : 1;

		s.values[0] = (int64_t)(count * n);
		s.values[1] = (int64_t)(delay_ns * n);
	}
	return pprof_builder__add_sample(d->b, &s);
}

static int drain_one(struct collector *c, const struct cprof_key *k, const void *val, void *ctx)
{
	const struct cprof_wait_val *v = val;

	return add_wait(c, ctx, k, v->count, v->delay_ns);
}

/* A wait under way at the end, of delay ns so far, sampled by the block rate as BPF samples
 * the finished ones (bpf/offcpu.bpf.h). */
static int add_tail(struct collector *c, struct wait_drain_ctx *d, const struct cprof_key *k,
		    uint64_t delay)
{
	uint64_t rate = d->o->block_rate_ns, count;

	if (!rate || delay >= rate)
		return add_wait(c, d, k, 1, delay);
	if (delay == 0 || rand64(&d->seed) % rate >= delay)
		return 0;
	count = rate / delay + (rand64(&d->seed) % delay < rate % delay);
	return add_wait(c, d, k, count, rate);
}

/* Waits still under way when the programs stopped: no end event will come for them. */
static int drain_tails(struct collector *c, struct wait_drain_ctx *d, uint64_t min_ns)
{
	const struct wait_drain_opts *o = d->o;
	int fd = bpf_map__fd(o->starts), err = 0;
	struct cprof_wait_start s;
	__u32 tid, next, *prev = NULL;
	/* A partial view (a shared collector's window) counts the part of a wait under way since
	 * the view began. */
	int64_t from = c->view ? c->view->from_ns : 0;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		tid = next;
		prev = &tid;
		if (bpf_map_lookup_elem(fd, &tid, &s) || s.ts > o->stop_ns)
			continue;
		if (c->view && s.key.pid && !c->view->wants(c->view->ctx, s.key.pid))
			continue;
		if (s.ts < (uint64_t)from)
			s.ts = from;
		if (!s.key.pid) { /* no stacks: a lock wait, timed at its end only */
			if (o->unfinished)
				(*o->unfinished)++;
			continue;
		}
		if (o->stop_ns - s.ts < min_ns)
			continue;
		err = add_tail(c, d, &s.key, o->stop_ns - s.ts);
		if (err)
			break;
	}
	return err;
}

int wait__drain(struct collector *c, const struct wait_drain_opts *o, struct pprof_builder *b)
{
	struct wait_drain_ctx *d;
	int err;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->o = o;
	d->b = b;
	d->seed = (uint64_t)clock__ns(CLOCK_MONOTONIC) | 1;
	err = collector__drain_map(c, o->waits, sizeof(struct cprof_wait_val), true, drain_one, d);
	if (!err && o->starts)
		err = drain_tails(c, d, c->opts.min_wait_ns);
	free(d);
	return err;
}
