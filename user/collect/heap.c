/* heap: uprobes on the malloc family and free of each target, found in whichever of its objects
 * provides them (glibc, or an allocator linked in or preloaded); sampled allocations counted by
 * (stack, size) in BPF, with what is still live. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collect/allocators.h"
#include "collect/collector.h"
#include "collect/uprobe_multi.h"
#include "heap.h"
#include "heap.skel.h"
#include "util/array.h"
#include "util/log.h"

#define HEAP_DEFAULT_SAMPLE_BYTES (512 * 1024)

struct heap_priv {
	struct heap_bpf *skel;
	struct bpf_link **links;
	size_t nlinks, cap;
	bool session;	  /* the kernel has uprobe sessions: malloc and calloc use them, and every
			     other probe is a uprobe_multi link */
	int *session_fds; /* those links (libbpf 1.1 cannot make them: raw bpf(2)) */
	size_t nsession, session_cap;
	uint64_t sample_bytes;
	bool alloc_only; /* --heap-alloc-only: the free family is not probed */
	bool quiet;	 /* attach failures are expected (-a, processes that may be gone) */
	char probed[8][PATH_MAX]; /* distinct objects probed, for the comments */
	int nprobed;
	bool probed_func[ALLOC_NFUNCS]; /* functions probed in some object, for the comments */
};

static void fill_intervals(struct heap_bpf *skel, uint64_t mean)
{
	unsigned short seed[3];
	uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
	double u, v;

	seed[0] = (unsigned short)t;
	seed[1] = (unsigned short)(t >> 16);
	seed[2] = (unsigned short)(t >> 32);
	for (int i = 0; i < HEAP_NINTERVALS; i++) {
		/* Exponential of mean `mean`: the gaps of a Poisson process over the bytes. */
		u = erand48(seed);
		v = -log(1.0 - u) * (double)mean;
		if (v < 1)
			v = 1;
		if (v > 1e18)
			v = 1e18;
		skel->rodata->intervals[i] = (__u64)v;
	}
}

static struct bpf_program *prog_of(struct heap_bpf *skel, enum alloc_role r)
{
	switch (r) {
	case ALLOC_MALLOC:
		return skel->progs.heap_malloc;
	case ALLOC_CALLOC:
		return skel->progs.heap_calloc;
	case ALLOC_REALLOC:
		return skel->progs.heap_realloc;
	case ALLOC_REALLOCARRAY:
		return skel->progs.heap_reallocarray;
	case ALLOC_POSIX_MEMALIGN:
		return skel->progs.heap_posix_memalign;
	case ALLOC_ALIGNED:
		return skel->progs.heap_aligned;
	case ALLOC_FREE:
		return skel->progs.heap_free;
	case ALLOC_OWN_FREE:
		return skel->progs.heap_own_free;
	case ALLOC_FREE_DEDUP:
		return skel->progs.heap_free_dedup;
	}
	return NULL;
}

static int add_link(struct heap_priv *p, struct bpf_link *l)
{
	if (array__reserve((void **)&p->links, &p->cap, p->nlinks + 1, sizeof(*p->links))) {
		bpf_link__destroy(l);
		return -ENOMEM;
	}
	p->links[p->nlinks++] = l;
	return 0;
}

enum probe_kind {
	PROBE_ENTRY,
	PROBE_RETURN,
	PROBE_SESSION, /* the program runs at entry and, unless the entry returned 1, at return */
};

/* A uprobe_multi link (kernel 6.6+; used when the kernel has sessions, 6.11+). Measured here
 * (tools/bench/uprobe_cost.c) it costs less per hit than a perf_event uprobe when several threads
 * hit it: the perf path takes a shared lock of its pid filter at every hit. */
static int attach_multi(struct heap_priv *p, struct bpf_program *prog, enum probe_kind kind,
			pid_t pid, const struct alloc_obj *o, size_t f, uint64_t off)
{
	struct uprobe_multi_attr a = {
		.prog_fd = (__u32)bpf_program__fd(prog),
		.attach_type = kind == PROBE_SESSION ? CPROF_BPF_TRACE_UPROBE_SESSION
						     : CPROF_BPF_TRACE_UPROBE_MULTI,
		.path = (__u64)(uintptr_t)o->open_path,
		.offsets = (__u64)(uintptr_t)&off,
		.cnt = 1,
		.multi_flags = kind == PROBE_RETURN ? CPROF_BPF_F_UPROBE_MULTI_RETURN : 0,
		.pid = pid > 0 ? (__u32)pid : 0,
	};
	int fd;

	if (array__reserve((void **)&p->session_fds, &p->session_cap, p->nsession + 1,
			   sizeof(*p->session_fds)))
		return -ENOMEM;
	fd = (int)syscall(__NR_bpf, BPF_LINK_CREATE, &a, sizeof(a));
	if (fd < 0) {
		fd = -errno;
		if (!p->quiet)
			pr_err("cannot attach a uprobe to %s in %s: %s\n", alloc_funcs[f].name,
			       o->path, strerror(-fd));
		return fd;
	}
	p->session_fds[p->nsession++] = fd;
	return 0;
}

static int attach_one(struct heap_priv *p, struct bpf_program *prog, enum probe_kind kind,
		      pid_t pid, const struct alloc_obj *o, size_t f)
{
	bool ptr_arg = allocators__is_release(alloc_funcs[f].role);
	struct bpf_link *l;
	uint64_t off;
	int err;

	/* A return probe is taken at the entry too (to hijack the return address), so it moves
	 * with the entry probe; but only past endbr64, which keeps every path. */
	off = allocators__probe_offset(o->open_path, o->offsets[f], ptr_arg && kind == PROBE_ENTRY);
	if (p->session)
		return attach_multi(p, prog, kind, pid, o, f, off);
	l = bpf_program__attach_uprobe(prog, kind == PROBE_RETURN, pid, o->open_path, off);
	if (!l) {
		err = -errno;
		if (!p->quiet)
			pr_err("cannot attach a uprobe to %s in %s: %s\n", alloc_funcs[f].name,
			       o->path, strerror(-err));
		return err;
	}
	return add_link(p, l);
}

static void note_probed(struct heap_priv *p, const char *path)
{
	for (int i = 0; i < p->nprobed; i++)
		if (strcmp(p->probed[i], path) == 0)
			return;
	if (p->nprobed < (int)(sizeof(p->probed) / sizeof(p->probed[0])))
		snprintf(p->probed[p->nprobed++], PATH_MAX, "%s", path);
}

/* Return probes and the free family go first, entries last: a call that enters between two
 * attachments then has no entry state and its return is ignored, rather than leaving an entry
 * without a return, and no sampled block can be freed unseen. */
static int attach_providers(struct heap_priv *p, pid_t pid, const struct alloc_obj *objs, int n)
{
	enum alloc_role progs[ALLOC_NFUNCS];
	int prov[ALLOC_NFUNCS], err;

	allocators__choose(objs, n, prov, progs);
	for (int pass = 0; pass < 2; pass++) {
		for (size_t f = 0; f < ALLOC_NFUNCS; f++) {
			const struct alloc_obj *o;

			if (prov[f] < 0 || (p->alloc_only && allocators__is_release(progs[f])))
				continue;
			o = &objs[prov[f]];
			if (p->session && (progs[f] == ALLOC_MALLOC || progs[f] == ALLOC_CALLOC) &&
			    strncmp(alloc_funcs[f].name, "_Zn", 3)) {
				if (pass == 0)
					continue;
				err = attach_one(p,
						 progs[f] == ALLOC_MALLOC
							 ? p->skel->progs.heap_malloc_session
							 : p->skel->progs.heap_calloc_session,
						 PROBE_SESSION, pid, o, f);
			} else if (allocators__is_release(progs[f])) {
				if (pass == 1)
					continue;
				err = attach_one(p, prog_of(p->skel, progs[f]), PROBE_ENTRY, pid, o,
						 f);
			} else if (pass == 0) {
				err = attach_one(p, p->skel->progs.heap_return, PROBE_RETURN, pid,
						 o, f);
			} else {
				err = attach_one(p, prog_of(p->skel, progs[f]), PROBE_ENTRY, pid, o,
						 f);
			}
			if (err)
				return err;
			note_probed(p, o->path);
			p->probed_func[f] = true;
		}
	}
	return 0;
}

/* -a: an allocator a running process has linked in or preloaded, probed for every process that
 * maps it. The process may have gone meanwhile, and its file with it: not an error. */
static void attach_running(void *ctx, const struct alloc_obj *o, pid_t pid)
{
	struct heap_priv *p = ctx;

	p->quiet = true;
	if (attach_providers(p, -1, o, 1))
		pr_debug("heap: -a: cannot probe %s (pid %d); skipped\n", o->path, pid);
	p->quiet = false;
}

/* Finds the providers of pid (or of the system, pid -1) and attaches to them. */
static int attach_target(struct collector *c, struct heap_priv *p, pid_t pid, bool before_exec)
{
	struct alloc_obj *objs;
	int n = 0, err;

	objs = calloc(ALLOC_MAX_OBJS, sizeof(*objs));
	if (!objs)
		return -ENOMEM;
	if (pid > 0 && !before_exec)
		err = allocators__of_pid(pid, objs, &n);
	else
		err = allocators__of_system(c->opts.exe_hint, objs, &n);
	if (err) {
		pr_err("cannot read the mappings of pid %d: %s\n", pid, strerror(-err));
		goto out;
	}
	if (!allocators__have_malloc(objs, n)) {
		allocators__no_malloc_error(pid, objs, n);
		err = -ENOENT;
		goto out;
	}
	err = attach_providers(p, pid, objs, n);
	if (!err && pid < 0 && !c->opts.exe_hint)
		err = allocators__running(objs, n, attach_running, p);
out:
	free(objs);
	return err;
}

static int heap_load(struct collector *c, struct heap_priv *p, bool session)
{
	const struct collect_opts *o = &c->opts;
	struct bpf_program *prog;

	p->skel = heap_bpf__open();
	if (!p->skel)
		return -errno;
	/* With sessions every uprobe is a uprobe_multi link (the kernel has had those since 6.6,
	 * before sessions), so its programs are loaded for that attach type. */
	bpf_object__for_each_program(prog, p->skel->obj)
	{
		bool sess = prog == p->skel->progs.heap_malloc_session ||
			    prog == p->skel->progs.heap_calloc_session;

		if (bpf_program__type(prog) != BPF_PROG_TYPE_KPROBE)
			continue;
		if (session)
			bpf_program__set_expected_attach_type(
				prog, (enum bpf_attach_type)(sess ? CPROF_BPF_TRACE_UPROBE_SESSION
								  : CPROF_BPF_TRACE_UPROBE_MULTI));
		else if (sess)
			bpf_program__set_autoload(prog, false);
	}
	p->session = session;
	COLLECTOR_SET_COMMON_RODATA(p->skel, o);
	p->skel->rodata->want_kern_stack = false; /* the probes fire in user mode */
	p->skel->rodata->sample_bytes = p->sample_bytes;
	p->skel->rodata->alloc_only = p->alloc_only;
	fill_intervals(p->skel, p->sample_bytes);
	p->skel->rodata->empty_probes = getenv("CPROF_BENCH_EMPTY_PROBES") != NULL;
	collector__size_maps(c, p->skel->obj);
	if (o->heap_max_live)
		bpf_map__set_max_entries(p->skel->maps.live, o->heap_max_live);
	if (p->alloc_only)
		bpf_map__set_max_entries(p->skel->maps.live, 1); /* never used */
	return heap_bpf__load(p->skel);
}

static int heap_open(struct collector *c)
{
	const struct collect_opts *o = &c->opts;
	struct heap_priv *p;
	int err;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	c->priv = p;
	p->sample_bytes = o->heap_sample_bytes ? o->heap_sample_bytes : HEAP_DEFAULT_SAMPLE_BYTES;
	p->alloc_only = o->heap_alloc_only;

	/* With uprobe sessions if the kernel loads them, else without. */
	err = heap_load(c, p, true);
	if (err) {
		pr_debug("heap: no uprobe sessions (%s); return probes on every call\n",
			 strerror(-err));
		heap_bpf__destroy(p->skel);
		p->skel = NULL;
		err = heap_load(c, p, false);
	}
	if (err) {
		pr_err("cannot load the heap BPF programs: %s\n", strerror(-err));
		return err;
	}
	/* Only the fork and exec hooks attach here; the uprobes need a target. */
	err = collector__attach(c, p->skel->skeleton);
	if (err || o->load_only)
		return err;
	if (o->all)
		return attach_target(c, p, -1, true);
	for (size_t i = 0; i < o->npids; i++) {
		err = attach_target(c, p, o->pids[i], o->exe_hint != NULL);
		if (err)
			return err;
	}
	pr_debug("heap: %zu perf_event uprobes and %zu uprobe_multi links attached\n", p->nlinks,
		 p->nsession);
	return 0;
}

static void heap_stop(struct collector *c)
{
	struct heap_priv *p = c->priv;

	/* In the reverse order of attachment: entries go first, then frees and returns, so no
	 * block sampled at the end has its free missed. */
	for (size_t i = p ? p->nlinks : 0; i > 0; i--)
		bpf_link__destroy(p->links[i - 1]);
	for (size_t i = p ? p->nsession : 0; i > 0; i--)
		close(p->session_fds[i - 1]);
	if (p) {
		p->nlinks = 0;
		p->nsession = 0;
	}
}

static void heap_close(struct collector *c)
{
	struct heap_priv *p = c->priv;

	if (!p)
		return;
	heap_stop(c);
	free(p->links);
	free(p->session_fds);
	heap_bpf__destroy(p->skel);
	free(p);
	c->priv = NULL;
}

/* Go's estimate (runtime/pprof scaleHeapSample): an allocation of s bytes is sampled with
 * probability 1 - exp(-s/rate), so each sampled one stands for 1/(1 - exp(-s/rate)). */
static void heap_scale(uint64_t count, uint64_t bytes, uint64_t size, uint64_t rate, int64_t *oc,
		       int64_t *ob)
{
	double scale = 1.0;

	if (rate > 1 && size > 0)
		scale = 1.0 / (1.0 - exp(-(double)size / (double)rate));
	*oc = (int64_t)((double)count * scale);
	*ob = (int64_t)((double)bytes * scale);
}

struct heap_drain_ctx {
	struct pprof_builder *b;
	uint64_t rate;
	uint64_t ubuf[CPROF_MAX_STACK], kbuf[CPROF_MAX_STACK];
};

static int heap_drain_one(struct collector *c, const struct heap_key *k, const struct heap_val *v,
			  struct heap_drain_ctx *d)
{
	struct pprof_raw_sample s;

	if (!v->alloc_objects && !v->inuse_objects)
		return 0;
	collector__raw_sample(c, &k->k, d->ubuf, d->kbuf, &s);
	/* Taken at the return probe: the leaf is the return address into the caller. */
	s.user_leaf_is_return = true;
	heap_scale(v->alloc_objects, v->alloc_bytes, k->size, d->rate, &s.values[0], &s.values[1]);
	heap_scale(v->inuse_objects, v->inuse_bytes, k->size, d->rate, &s.values[2], &s.values[3]);
	if (k->size && s.nlabels < PPROF_MAX_LABELS)
		s.labels[s.nlabels++] =
			(struct pprof_label){.key = "bytes", .num = (int64_t)k->size};
	return pprof_builder__add_sample(d->b, &s);
}

static void heap_comments(struct collector *c, struct pprof_builder *b)
{
	struct heap_priv *p = c->priv;
	struct collect_stats st;

	if (p->sample_bytes <= 1)
		pprof_builder__add_comment(b, "heap: every allocation (--heap-sample-bytes 1); "
					      "values are exact counts");
	else
		pprof_builder__add_comment(
			b,
			"heap: one sample per %llu allocated bytes on average (Poisson, like Go's "
			"MemProfileRate); each sample of size s is scaled by 1/(1-exp(-s/%llu)), "
			"as "
			"Go's runtime/pprof does, to estimate true totals",
			(unsigned long long)p->sample_bytes, (unsigned long long)p->sample_bytes);
	char rel[512] = "";
	size_t len = 0;

	for (int i = 0; i < p->nprobed; i++)
		pprof_builder__add_comment(b, "heap: probes in %s", p->probed[i]);
	for (size_t f = 0; f < ALLOC_NFUNCS; f++)
		if (p->probed_func[f] && allocators__is_release(alloc_funcs[f].role) &&
		    len < sizeof(rel) - 1)
			len += snprintf(rel + len, sizeof(rel) - len, "%s%s", len ? ", " : "",
					alloc_funcs[f].name);
	pprof_builder__add_comment(b, "heap: release functions probed: %s", len ? rel : "none");
	if (p->alloc_only)
		pprof_builder__add_comment(
			b,
			"heap: --heap-alloc-only: in-use was not tracked (free, operator delete "
			"and sdallocx were not probed, to save their trap on every call), so the "
			"profile has alloc_objects and alloc_space only; realloc counts as an "
			"allocation of its new size");
	pprof_builder__add_comment(
		b,
		"heap: allocations made before the probes attached are "
		"invisible%s",
		p->alloc_only ? "" : "; in-use counts what was sampled and not freed");
	if (collector__stats(c, &st) == 0 && st.bpf[CPROF_STAT_HEAP_UNKNOWN_FREE])
		pprof_builder__add_comment(
			b,
			"heap: %llu frees of untracked addresses (not sampled, or allocated "
			"before attach): ignored",
			(unsigned long long)st.bpf[CPROF_STAT_HEAP_UNKNOWN_FREE]);
}

static int heap_drain(struct collector *c, struct pprof_builder *b)
{
	struct heap_priv *p = c->priv;
	int fd = bpf_map__fd(p->skel->maps.allocs), err = 0;
	struct heap_key key, next, *prev = NULL;
	struct heap_drain_ctx *d;
	struct heap_val val;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->b = b;
	d->rate = p->sample_bytes;
	heap_comments(c, b);
	/* The probes are detached by now: the map no longer changes. */
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &val))
			continue;
		if (c->view && !c->view->value(c->view->ctx, &key, &val))
			continue; /* not in the view */
		err = heap_drain_one(c, &key, &val, d);
		if (err)
			break;
	}
	free(d);
	return err;
}

static void heap_pprof_config(const struct collector *c, struct pprof_config *cfg)
{
	const struct heap_priv *p = c->priv;

	cfg->nvalues = 4;
	cfg->sample_types[0] = (struct pprof_value_type){"alloc_objects", "count"};
	cfg->sample_types[1] = (struct pprof_value_type){"alloc_space", "bytes"};
	cfg->sample_types[2] = (struct pprof_value_type){"inuse_objects", "count"};
	cfg->sample_types[3] = (struct pprof_value_type){"inuse_space", "bytes"};
	cfg->period_type = (struct pprof_value_type){"space", "bytes"};
	cfg->period = p ? (int64_t)p->sample_bytes : HEAP_DEFAULT_SAMPLE_BYTES;
	cfg->default_sample_type = "inuse_space";
	/* --heap-alloc-only: in-use was not tracked (no free was seen), so there are no inuse_*
	 * types at all: zeros there would read as "nothing in use". */
	if (p && p->alloc_only) {
		cfg->nvalues = 2;
		cfg->default_sample_type = "alloc_space";
	}
}

const struct collector_ops heap_collector_ops = {
	.name = "heap",
	.open = heap_open,
	.stop = heap_stop,
	.drain = heap_drain,
	.close = heap_close,
	.pprof_config = heap_pprof_config,
	.agg_map = "allocs",
	.agg_levels = 1u << 2 | 1u << 3, /* inuse_objects, inuse_bytes */
	.per_target_attach = true,
};
