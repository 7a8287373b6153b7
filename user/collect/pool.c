/* Shared collectors (see pool.h).
 *
 * Locks, always taken in this order:
 *   pool->open_lock  one join at a time: a join may load a collector, which the next join of
 *                    the same type and options must find rather than load another
 *   pc->lock         one collector: its ring buffer and unwinder, drains and baselines (which
 *                    walk its maps), deleting entries
 *   pool->lock       the list of collectors, their windows and pid refcounts, the figures
 *   w->qlock         a window's queue of process notices
 * A window's own symbolizer is only ever used by its own thread: the thread that polls the
 * shared ring buffer queues each notice to the windows it concerns, and each window handles its
 * queue when it polls. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collect/pool.h"
#include "unwind/unwinder.h"
#include "util/clock.h"
#include "util/hashmap.h"
#include "util/log.h"

#define POOL_MAX_TYPES	 16
#define WINDOW_MAX_QUEUE 65536 /* notices waiting for a window's thread; more are counted lost */

struct pool_col;

struct collector_window {
	struct pool_col *pc;
	struct collector_window *next; /* in pc->windows */
	pid_t *pids;
	size_t npids;
	bool all;
	bool ready;	    /* baseline taken */
	bool targets_added; /* its pids hold references in pc->refs */
	/* Baseline: aggregation map entries of the window's targets, key bytes then value bytes,
	 * keyed by the key bytes. */
	struct hashmap *base;
	struct collect_stats base_stats;
	int64_t mono, real;
	void (*on_proc)(void *ctx, const struct cprof_proc_event *e);
	int (*pid_labels)(void *ctx, pid_t pid, struct pprof_label *labels, int max);
	void *ctx;
	pthread_mutex_t qlock;
	struct cprof_proc_event *q;
	size_t nq, qcap;
	uint64_t qlost;
};

struct pool_col {
	struct collector_pool *pool;
	struct pool_col *next;
	struct collector *c;
	const struct collector_ops *ops;
	struct collect_opts opts; /* as loaded: what a window must match to share it */
	pid_t *pids;		  /* opts.pids: the first window's, copied */
	pthread_mutex_t lock;
	struct collector_window *windows;
	int nwindows;	       /* joined or joining */
	uint64_t windows_ever; /* windows it has served */
	struct hashmap *refs;  /* pid -> number of windows targeting it */
	struct bpf_map *agg;   /* the aggregation map (ops->agg_map), NULL: not shareable */
	size_t key_size, value_size;
	bool retired; /* takes no new windows (its map was half full at a join) */
	const struct collector_window *draining; /* whose pid_labels apply */
	int64_t opened_ns;
};

struct type_figures {
	const struct collector_ops *ops;
	uint64_t opened, joined, most;
};

struct collector_pool {
	pthread_mutex_t open_lock, lock;
	struct pool_col *cols;
	struct type_figures figs[POOL_MAX_TYPES];
};

static uint64_t key_hash(const void *key, void *ctx)
{
	const struct pool_col *pc = ctx;

	return hashmap__hash_bytes(HASHMAP_HASH_INIT, key, pc->key_size);
}

static bool key_equal(const void *a, const void *b, void *ctx)
{
	const struct pool_col *pc = ctx;

	return memcmp(a, b, pc->key_size) == 0;
}

struct collector_pool *collector_pool__new(void)
{
	struct collector_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	pthread_mutex_init(&p->open_lock, NULL);
	pthread_mutex_init(&p->lock, NULL);
	return p;
}

void collector_pool__free(struct collector_pool *p)
{
	if (!p)
		return;
	if (p->cols)
		pr_warn("collector pool freed with collectors still loaded\n");
	pthread_mutex_destroy(&p->open_lock);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static struct type_figures *figures(struct collector_pool *p, const struct collector_ops *ops)
{
	for (int i = 0; i < POOL_MAX_TYPES; i++) {
		if (p->figs[i].ops == ops)
			return &p->figs[i];
		if (!p->figs[i].ops) {
			p->figs[i].ops = ops;
			return &p->figs[i];
		}
	}
	return NULL;
}

void collector_pool__stats(struct collector_pool *p, const struct collector_ops *ops,
			   struct collector_pool_stats *st)
{
	const struct type_figures *f;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&p->lock);
	for (const struct pool_col *pc = p->cols; pc; pc = pc->next) {
		if (pc->ops != ops)
			continue;
		st->loaded++;
		for (const struct collector_window *w = pc->windows; w; w = w->next)
			st->windows += w->ready;
	}
	f = figures(p, ops);
	if (f) {
		st->opened = f->opened;
		st->joined = f->joined;
		st->most_windows = f->most;
	}
	pthread_mutex_unlock(&p->lock);
}

static bool has_pid(const pid_t *pids, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (pids[i] == pid)
			return true;
	return false;
}

static bool same_pids(const pid_t *a, size_t na, const pid_t *b, size_t nb)
{
	for (size_t i = 0; i < na; i++)
		if (!has_pid(b, nb, a[i]))
			return false;
	for (size_t i = 0; i < nb; i++)
		if (!has_pid(a, na, b[i]))
			return false;
	return true;
}

/* Whether a window of o can use pc: every option that changes what is loaded or attached is
 * the same. */
static bool can_share(const struct pool_col *pc, const struct collector_ops *ops,
		      const struct collect_opts *o)
{
	const struct collect_opts *a = &pc->opts;

	if (pc->ops != ops || !pc->agg || pc->retired || o->load_only || o->live || o->lifecycle ||
	    o->follow_children || o->exe_hint)
		return false;
	if (a->all != o->all || a->no_kernel_stacks != o->no_kernel_stacks || a->freq != o->freq ||
	    a->max_keys != o->max_keys || a->max_stacks != o->max_stacks ||
	    a->unwind_mode != o->unwind_mode || a->unwind_mem != o->unwind_mem ||
	    a->heap_sample_bytes != o->heap_sample_bytes || a->heap_max_live != o->heap_max_live ||
	    a->heap_alloc_only != o->heap_alloc_only || a->min_wait_ns != o->min_wait_ns ||
	    a->mutex_fraction != o->mutex_fraction || a->block_rate_ns != o->block_rate_ns)
		return false;
	return !ops->per_target_attach || o->all ||
	       same_pids(pc->pids, a->npids, o->pids, o->npids);
}

/* --- notices: the poller queues them, each window's thread handles its own --- */

static void window_enqueue(struct collector_window *w, const struct cprof_proc_event *e)
{
	struct cprof_proc_event *q;

	pthread_mutex_lock(&w->qlock);
	if (w->nq == w->qcap && w->qcap < WINDOW_MAX_QUEUE) {
		q = realloc(w->q, (w->qcap ? w->qcap * 2 : 64) * sizeof(*q));
		if (q) {
			w->q = q;
			w->qcap = w->qcap ? w->qcap * 2 : 64;
		}
	}
	if (w->nq < w->qcap)
		w->q[w->nq++] = *e;
	else
		w->qlost++;
	pthread_mutex_unlock(&w->qlock);
}

static void window_flush(struct collector_window *w)
{
	struct cprof_proc_event *q;
	size_t n;

	pthread_mutex_lock(&w->qlock);
	q = w->q;
	n = w->nq;
	w->q = NULL;
	w->nq = w->qcap = 0;
	pthread_mutex_unlock(&w->qlock);
	for (size_t i = 0; w->on_proc && i < n; i++)
		w->on_proc(w->ctx, &q[i]);
	free(q);
}

/* The collector's on_proc: runs in whichever window's thread polls the ring buffer. */
static void pool_on_proc(void *ctx, const struct cprof_proc_event *e)
{
	struct pool_col *pc = ctx;

	pthread_mutex_lock(&pc->pool->lock);
	for (struct collector_window *w = pc->windows; w; w = w->next)
		if (w->all || has_pid(w->pids, w->npids, (pid_t)e->pid))
			window_enqueue(w, e);
	pthread_mutex_unlock(&pc->pool->lock);
}

/* The collector's pid_labels: those of the window being drained. */
static int pool_pid_labels(void *ctx, pid_t pid, struct pprof_label *labels, int max)
{
	const struct pool_col *pc = ctx;
	const struct collector_window *w = pc->draining;

	return w && w->pid_labels ? w->pid_labels(w->ctx, pid, labels, max) : 0;
}

int collector_window__poll(struct collector_window *w, int timeout_ms)
{
	struct pool_col *pc = w->pc;
	int err = 0;

	window_flush(w);
	if (pthread_mutex_trylock(&pc->lock) == 0) {
		err = collector__poll(pc->c, timeout_ms);
		pthread_mutex_unlock(&pc->lock);
	} else if (timeout_ms > 0) {
		/* Another window's thread is polling, and queues our notices. */
		usleep((useconds_t)(timeout_ms < 100 ? timeout_ms : 100) * 1000);
	}
	window_flush(w);
	return err;
}

/* --- loading, joining, leaving --- */

static void pool_col__free(struct pool_col *pc)
{
	if (!pc)
		return;
	if (pc->c) {
		collector__stop(pc->c);
		collector__free(pc->c);
	}
	hashmap__free(pc->refs);
	pthread_mutex_destroy(&pc->lock);
	free(pc->pids);
	free(pc);
}

static int pool_col__open(struct collector_pool *p, const struct collector_ops *ops,
			  const struct collect_opts *o, struct pool_col **out)
{
	struct pool_col *pc = calloc(1, sizeof(*pc));
	struct collect_opts co = *o;
	int err;

	if (!pc)
		return -ENOMEM;
	pc->pool = p;
	pc->ops = ops;
	pthread_mutex_init(&pc->lock, NULL);
	pc->refs = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	pc->pids = calloc(o->npids ? o->npids : 1, sizeof(*pc->pids));
	if (!pc->refs || !pc->pids) {
		err = -ENOMEM;
		goto fail;
	}
	memcpy(pc->pids, o->pids, o->npids * sizeof(*pc->pids));
	co.pids = pc->pids;
	co.on_proc = pool_on_proc;
	co.pid_labels = pool_pid_labels;
	co.ctx = pc;
	pc->opts = co;
	err = collector__open(ops, &co, &pc->c);
	if (err)
		goto fail;
	pc->opened_ns = clock__ns(CLOCK_MONOTONIC);
	pc->agg = ops->agg_map ? bpf_object__find_map_by_name(pc->c->obj, ops->agg_map) : NULL;
	if (pc->agg) {
		pc->key_size = bpf_map__key_size(pc->agg);
		pc->value_size = bpf_map__value_size(pc->agg);
		if (pc->key_size < sizeof(struct cprof_key) || pc->value_size % sizeof(__u64))
			pc->agg = NULL; /* not a layout windows can split: never shared */
	}
	*out = pc;
	return 0;
fail:
	pool_col__free(pc);
	return err;
}

/* References the window's pids; the collector's filter gets those that had none. */
static int window_add_targets(struct collector_window *w, bool fresh)
{
	struct pool_col *pc = w->pc;
	bool added[w->npids ? w->npids : 1];
	void *v;
	int err = 0;

	pthread_mutex_lock(&pc->pool->lock);
	for (size_t i = 0; i < w->npids; i++) {
		uintptr_t n = 0;
		void *key = (void *)(uintptr_t)w->pids[i];

		if (hashmap__delete(pc->refs, key, NULL, &v))
			n = (uintptr_t)v;
		added[i] = n == 0;
		if (n == 0 && !fresh)
			err = err ? err : collector__add_target(pc->c, w->pids[i]);
		if (hashmap__insert(pc->refs, key, (void *)(n + 1)))
			err = err ? err : -ENOMEM;
	}
	w->targets_added = true;
	pthread_mutex_unlock(&pc->pool->lock);
	if (err) {
		pr_err("cannot add the targets to the shared %s collector: %s\n", pc->ops->name,
		       strerror(-err));
		return err;
	}
	/* Tables for the table unwinder: a fresh collector built them when it was opened. */
	if (fresh || !pc->c->unw)
		return 0;
	pthread_mutex_lock(&pc->lock);
	for (size_t i = 0; i < w->npids; i++)
		if (added[i])
			unwinder__add_pid(pc->c->unw, w->pids[i], false);
	pthread_mutex_unlock(&pc->lock);
	return 0;
}

static void free_blob(const void *key, void *value, void *ctx)
{
	(void)value;
	(void)ctx;
	free((void *)key);
}

/* The window's starting point: its targets' entries of the aggregation map, the counters. */
static int window_baseline(struct collector_window *w)
{
	struct pool_col *pc = w->pc;
	size_t ks = pc->key_size, vs = pc->value_size;
	void *key = NULL, *next = NULL, *val = NULL, *blob;
	uint64_t entries = 0;
	bool first = true;
	int fd, err = 0;

	pthread_mutex_lock(&pc->lock);
	if (!pc->agg)
		goto stats;
	fd = bpf_map__fd(pc->agg);
	key = malloc(ks);
	next = malloc(ks);
	val = malloc(vs);
	if (!key || !next || !val) {
		err = -ENOMEM;
		goto out;
	}
	while (bpf_map_get_next_key(fd, first ? NULL : key, next) == 0) {
		first = false;
		memcpy(key, next, ks);
		entries++;
		if (!collector_window__wants(w, ((const struct cprof_key *)key)->pid) ||
		    bpf_map_lookup_elem(fd, key, val))
			continue;
		blob = malloc(ks + vs);
		if (!blob) {
			err = -ENOMEM;
			goto out;
		}
		memcpy(blob, key, ks);
		memcpy((char *)blob + ks, val, vs);
		if (hashmap__insert(w->base, blob, blob))
			free(blob); /* seen twice (the walk restarted) or out of memory */
	}
	if (entries * 2 > bpf_map__max_entries(pc->agg)) {
		pr_info("shared %s collector half full (%llu entries): later captures load "
			"another\n",
			pc->ops->name, (unsigned long long)entries);
		pc->retired = true;
	}
stats:
	err = collector__stats(pc->c, &w->base_stats);
	w->mono = clock__ns(CLOCK_MONOTONIC);
	w->real = clock__ns(CLOCK_REALTIME);
out:
	pthread_mutex_unlock(&pc->lock);
	free(key);
	free(next);
	free(val);
	return err;
}

/* A window joining a collector loaded before it did not see the notices of the processes
 * already announced: each of those is announced to it now (whole system only; a pid target's
 * mappings are read by the capture itself). */
static void window_catch_up(struct collector_window *w)
{
	struct bpf_map *seen = bpf_object__find_map_by_name(w->pc->c->obj, "seen");
	struct cprof_proc_event e = {.kind = CPROF_PROC_NEW};
	__u32 pid, next, *prev = NULL;
	int fd;

	if (!seen || !w->all)
		return;
	fd = bpf_map__fd(seen);
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		pid = next;
		prev = &pid;
		e.pid = pid;
		window_enqueue(w, &e);
	}
}

static struct collector_window *window_new(const struct collect_opts *o)
{
	struct collector_window *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	pthread_mutex_init(&w->qlock, NULL);
	w->pids = calloc(o->npids ? o->npids : 1, sizeof(*w->pids));
	if (!w->pids) {
		pthread_mutex_destroy(&w->qlock);
		free(w);
		return NULL;
	}
	memcpy(w->pids, o->pids, o->npids * sizeof(*w->pids));
	w->npids = o->npids;
	w->all = o->all;
	w->on_proc = o->on_proc;
	w->pid_labels = o->pid_labels;
	w->ctx = o->ctx;
	return w;
}

static void window_free(struct collector_window *w)
{
	if (w->base) {
		hashmap__for_each(w->base, free_blob, NULL);
		hashmap__free(w->base);
	}
	pthread_mutex_destroy(&w->qlock);
	free(w->q);
	free(w->pids);
	free(w);
}

int collector_pool__join(struct collector_pool *p, const struct collector_ops *ops,
			 const struct collect_opts *o, struct collector_window **out)
{
	struct collector_window *w = window_new(o);
	struct type_figures *f;
	struct pool_col *pc;
	bool fresh = false;
	int err;

	if (!w)
		return -ENOMEM;
	pthread_mutex_lock(&p->open_lock);
	pthread_mutex_lock(&p->lock);
	for (pc = p->cols; pc && !can_share(pc, ops, o); pc = pc->next)
		;
	if (pc)
		pc->nwindows++; /* keeps it loaded from now on */
	pthread_mutex_unlock(&p->lock);
	if (!pc) {
		err = pool_col__open(p, ops, o, &pc);
		if (err) {
			pthread_mutex_unlock(&p->open_lock);
			window_free(w);
			return err;
		}
		fresh = true;
		pc->nwindows = 1;
	}
	w->pc = pc;
	w->base = hashmap__new(key_hash, key_equal, pc);
	pthread_mutex_lock(&p->lock);
	if (fresh) {
		pc->next = p->cols;
		p->cols = pc;
	}
	/* In the list from now on, so it gets the notices of its targets. */
	w->next = pc->windows;
	pc->windows = w;
	pc->windows_ever++;
	f = figures(p, ops);
	if (f)
		*(fresh ? &f->opened : &f->joined) += 1;
	pthread_mutex_unlock(&p->lock);

	err = w->base ? window_add_targets(w, fresh) : -ENOMEM;
	if (!err && !fresh)
		window_catch_up(w);
	if (!err)
		err = window_baseline(w);
	if (!err) {
		int ready = 0;

		pthread_mutex_lock(&p->lock);
		w->ready = true;
		for (const struct collector_window *x = pc->windows; x; x = x->next)
			ready += x->ready;
		if (f && (uint64_t)ready > f->most)
			f->most = ready;
		pthread_mutex_unlock(&p->lock);
		pr_debug("%s: capture %s collector %p (%d captures on it)\n", ops->name,
			 fresh ? "loaded" : "shares", (void *)pc, ready);
	}
	pthread_mutex_unlock(&p->open_lock);
	if (err) {
		collector_window__leave(w);
		return err;
	}
	*out = w;
	return 0;
}

/* Deletes the aggregation map's entries of pid (its last window ended), so a long-lived shared
 * collector does not fill with processes nobody profiles any more. pc->lock held. */
static void delete_entries_of(struct pool_col *pc, pid_t pid)
{
	size_t ks = pc->key_size, n = 0, cap = 0;
	char *keys = NULL, *tmp, *key = NULL, *next = NULL;
	bool first = true;
	int fd;

	if (!pc->agg)
		return;
	fd = bpf_map__fd(pc->agg);
	key = malloc(ks);
	next = malloc(ks);
	/* Keys first: deleting while walking a hash map restarts the walk. */
	while (key && next && bpf_map_get_next_key(fd, first ? NULL : key, next) == 0) {
		first = false;
		memcpy(key, next, ks);
		if (((const struct cprof_key *)key)->pid != (__u32)pid)
			continue;
		if (n == cap) {
			tmp = realloc(keys, (cap ? cap * 2 : 64) * ks);
			if (!tmp)
				break;
			keys = tmp;
			cap = cap ? cap * 2 : 64;
		}
		memcpy(keys + n++ * ks, key, ks);
	}
	for (size_t i = 0; i < n; i++)
		bpf_map_delete_elem(fd, keys + i * ks);
	free(keys);
	free(key);
	free(next);
}

static uintptr_t pid_refs(struct pool_col *pc, pid_t pid)
{
	void *v = NULL;

	return hashmap__find(pc->refs, (void *)(uintptr_t)pid, &v) ? (uintptr_t)v : 0;
}

void collector_window__leave(struct collector_window *w)
{
	struct collector_pool *p;
	struct pool_col *pc;
	bool last, gone[w && w->npids ? w->npids : 1], any = false;

	if (!w)
		return;
	pc = w->pc;
	if (!pc) {
		window_free(w);
		return;
	}
	p = pc->pool;
	/* The window leaves the list and its pids' references first; it stays counted in
	 * nwindows, which keeps pc loaded, until it is done with pc. */
	pthread_mutex_lock(&p->lock);
	for (struct collector_window **x = &pc->windows; *x; x = &(*x)->next)
		if (*x == w) {
			*x = w->next;
			break;
		}
	for (size_t i = 0; w->targets_added && i < w->npids; i++) {
		uintptr_t n = pid_refs(pc, w->pids[i]);
		void *key = (void *)(uintptr_t)w->pids[i];

		gone[i] = n <= 1;
		hashmap__delete(pc->refs, key, NULL, NULL);
		if (n > 1)
			hashmap__insert(pc->refs, key, (void *)(n - 1));
		else
			collector__remove_target(pc->c, w->pids[i]);
		/* Nothing to clean in a collector about to be freed. */
		any |= gone[i] && pc->nwindows > 1;
	}
	pthread_mutex_unlock(&p->lock);
	if (any) {
		/* Unless a window of the same pid joined meanwhile. */
		pthread_mutex_lock(&pc->lock);
		pthread_mutex_lock(&p->lock);
		for (size_t i = 0; i < w->npids; i++) {
			if (!gone[i] || pid_refs(pc, w->pids[i]))
				continue;
			delete_entries_of(pc, w->pids[i]);
			if (pc->c->unw)
				unwinder__remove_pid(pc->c->unw, w->pids[i]);
		}
		pthread_mutex_unlock(&p->lock);
		pthread_mutex_unlock(&pc->lock);
	}
	pthread_mutex_lock(&p->lock);
	last = --pc->nwindows == 0;
	if (last) {
		for (struct pool_col **x = &p->cols; *x; x = &(*x)->next)
			if (*x == pc) {
				*x = pc->next;
				break;
			}
	}
	pthread_mutex_unlock(&p->lock);
	if (last)
		pool_col__free(pc);
	window_free(w);
}

/* --- draining a window --- */

struct collector *collector_window__collector(struct collector_window *w)
{
	return w->pc->c;
}

void collector_window__start(const struct collector_window *w, int64_t *mono, int64_t *real)
{
	*mono = w->mono;
	*real = w->real;
}

bool collector_window__wants(const struct collector_window *w, uint32_t pid)
{
	return w->all || has_pid(w->pids, w->npids, (pid_t)pid);
}

bool collector_window__value(const struct collector_window *w, const void *key, void *val)
{
	const struct pool_col *pc = w->pc;
	size_t n = pc->value_size / sizeof(__u64);
	const __u64 *base = NULL;
	__u64 *v = val;
	void *found;
	bool any = false;

	if (!collector_window__wants(w, ((const struct cprof_key *)key)->pid))
		return false;
	if (hashmap__find(w->base, key, &found))
		base = (const __u64 *)((const char *)found + pc->key_size);
	for (size_t i = 0; i < n; i++) {
		/* A count below its baseline was deleted and counted again since: all of it is
		 * the window's. */
		if (base && !(i < 32 && (pc->ops->agg_levels & (1u << i))) && v[i] >= base[i])
			v[i] -= base[i];
		any |= v[i] != 0;
	}
	return any;
}

static uint64_t sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

void collector_window__stats(const struct collector_window *w, struct collect_stats *st)
{
	const struct collect_stats *b = &w->base_stats;

	for (int i = 0; i < CPROF_STAT_NR; i++)
		st->bpf[i] = sub(st->bpf[i], b->bpf[i]);
	st->bpf[CPROF_STAT_EVENTS_LOST] += w->qlost;
	st->prog_misses = sub(st->prog_misses, b->prog_misses);
	st->unwind.over_budget = sub(st->unwind.over_budget, b->unwind.over_budget);
	st->unwind.failed = sub(st->unwind.failed, b->unwind.failed);
}

int collector_window__drain(struct collector_window *w, struct pprof_builder *b,
			    struct collect_stats *st)
{
	struct pool_col *pc = w->pc;
	struct collector *c = pc->c;
	uint64_t truncated, lost;
	uint64_t ever;
	int err;

	window_flush(w);
	pthread_mutex_lock(&pc->lock);
	truncated = c->ustats.truncated_stacks;
	lost = c->ustats.lost_stack_reads;
	pc->draining = w;
	c->window = w;
	err = collector__drain(c, b);
	if (!err)
		err = collector__stats(c, st);
	/* What reading this window's stacks found, not what earlier drains did. */
	st->truncated_stacks = c->ustats.truncated_stacks - truncated;
	st->lost_stack_reads = c->ustats.lost_stack_reads - lost;
	c->window = NULL;
	pc->draining = NULL;
	pthread_mutex_unlock(&pc->lock);
	pthread_mutex_lock(&pc->pool->lock);
	ever = pc->windows_ever;
	pthread_mutex_unlock(&pc->pool->lock);
	if (!err && ever > 1) {
		pprof_builder__add_comment(
			b,
			"shared: the BPF programs served %llu captures (this one from %.1f s "
			"after they attached); samples are this capture's window, counters and "
			"drops those of all their targets during it",
			(unsigned long long)ever, (w->mono - pc->opened_ns) / 1e9);
		if (pc->ops->agg_levels)
			pprof_builder__add_comment(
				b, "shared: in-use values count everything sampled since the "
				   "programs attached and not freed, including before this window");
	}
	return err;
}
