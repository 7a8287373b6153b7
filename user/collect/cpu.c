/* cpu: perf cpu-clock events on every online CPU, counted per stack in BPF. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/perf_event.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collect/collector.h"
#include "collect/cpu.h"
#include "cpu.skel.h"
#include "util/cpus.h"
#include "util/log.h"

struct cpu_priv {
	struct cpu_bpf *skel;
	struct bpf_link **links; /* one per online CPU; each owns its perf event fd */
	int nlinks;
	__u64 period_ns;
};

static int perf_open_cpu_clock(int cpu, __u64 period_ns)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.size = sizeof(attr),
		/* A fixed period rather than a frequency: every sample then stands for exactly
		 * period_ns of CPU time, so cpu/nanoseconds is samples * period, not a guess. */
		.sample_period = period_ns,
	};
	int fd = syscall(__NR_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int cpu__attach_clock(struct bpf_program *prog, __u64 period_ns, struct bpf_link ***links,
		      int *nlinks)
{
	struct cpu_set cpus;
	int err, fd;

	err = cpus__online(&cpus);
	if (err) {
		pr_err("cannot read the online CPUs: %s\n", strerror(-err));
		return err;
	}
	*links = calloc(cpus.n, sizeof(**links));
	if (!*links)
		return -ENOMEM;
	for (int i = 0; i < cpus.n; i++) {
		fd = perf_open_cpu_clock(cpus.ids[i], period_ns);
		if (fd == -ENODEV) /* went offline meanwhile */
			continue;
		if (fd < 0) {
			pr_err("perf_event_open(cpu-clock) on CPU %d: %s\n", cpus.ids[i],
			       strerror(-fd));
			return fd;
		}
		(*links)[*nlinks] = bpf_program__attach_perf_event(prog, fd);
		if (!(*links)[*nlinks]) {
			err = -errno;
			close(fd);
			pr_err("cannot attach to the perf event on CPU %d: %s\n", cpus.ids[i],
			       strerror(-err));
			return err;
		}
		(*nlinks)++;
	}
	return 0;
}

static int cpu_open(struct collector *c)
{
	const struct collect_opts *o = &c->opts;
	struct cpu_priv *p;
	int err;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	c->priv = p;
	p->period_ns = 1000000000ull / o->freq;

	p->skel = cpu_bpf__open();
	err = collector__opened(c, p->skel);
	if (err)
		return err;
	COLLECTOR_SET_COMMON_RODATA(p->skel, o);
	/* Targets are added by the caller before any event can fire for them; the fork and exec
	 * hooks attach first so that no child forked meanwhile is missed. */
	err = collector__load_attach(c, p->skel->skeleton);
	if (err || o->load_only)
		return err;
	return cpu__attach_clock(p->skel->progs.on_sample, p->period_ns, &p->links, &p->nlinks);
}

static void cpu_stop(struct collector *c)
{
	struct cpu_priv *p = c->priv;

	for (int i = 0; p && i < p->nlinks; i++)
		bpf_link__destroy(p->links[i]);
	if (p)
		p->nlinks = 0;
}

static void cpu_close(struct collector *c)
{
	struct cpu_priv *p = c->priv;

	if (!p)
		return;
	cpu_stop(c);
	free(p->links);
	cpu_bpf__destroy(p->skel);
	free(p);
	c->priv = NULL;
}

struct cpu_drain_ctx {
	struct pprof_builder *b;
	__u64 period_ns;
	uint64_t ubuf[CPROF_MAX_STACK], kbuf[CPROF_MAX_STACK];
};

static int cpu_drain_one(struct collector *c, const struct cprof_key *k, const void *val, void *ctx)
{
	struct cpu_drain_ctx *d = ctx;
	struct pprof_raw_sample s;
	__u64 count = *(const __u64 *)val;

	collector__raw_sample(c, k, d->ubuf, d->kbuf, &s);
	s.values[0] = count;
	s.values[1] = count * d->period_ns;
	return pprof_builder__add_sample(d->b, &s);
}

static int cpu_drain(struct collector *c, struct pprof_builder *b)
{
	struct cpu_priv *p = c->priv;
	struct cpu_drain_ctx *d;
	int err;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->b = b;
	d->period_ns = p->period_ns;
	err = collector__drain_map(c, p->skel->maps.counts, sizeof(__u64), true, cpu_drain_one, d);
	free(d);
	return err;
}

static void cpu_pprof_config(const struct collector *c, struct pprof_config *cfg)
{
	const struct cpu_priv *p = c->priv;

	cfg->nvalues = 2;
	cfg->sample_types[0] = (struct pprof_value_type){"samples", "count"};
	cfg->sample_types[1] = (struct pprof_value_type){"cpu", "nanoseconds"};
	cfg->period_type = (struct pprof_value_type){"cpu", "nanoseconds"};
	cfg->period = p ? (int64_t)p->period_ns : 1000000000ll / c->opts.freq;
	cfg->default_sample_type = "cpu";
}

const struct collector_ops cpu_collector_ops = {
	.name = "cpu",
	.open = cpu_open,
	.stop = cpu_stop,
	.drain = cpu_drain,
	.close = cpu_close,
	.pprof_config = cpu_pprof_config,
	.agg_map = "counts",
};
