/* Shared collectors (see pool.h): the pool, its collectors, joining and leaving. A window's own
 * work (notices, baseline, the view its drains see) is in pool_window.c.
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

#include "collect/internal.h"
#include "collect/pool.h"
#include "unwind/unwinder.h"
#include "util/clock.h"
#include "util/hashmap.h"
#include "util/log.h"

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

bool pool__has_pid(const pid_t *pids, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (pids[i] == pid)
			return true;
	return false;
}

static bool same_pids(const pid_t *a, size_t na, const pid_t *b, size_t nb)
{
	for (size_t i = 0; i < na; i++)
		if (!pool__has_pid(b, nb, a[i]))
			return false;
	for (size_t i = 0; i < nb; i++)
		if (!pool__has_pid(a, na, b[i]))
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

/* The collector's on_proc: runs in whichever window's thread polls the ring buffer. The
 * notice is queued for each window's own thread, which reads the mappings it needs then. */
static void pool_on_proc(void *ctx, const struct cprof_proc_event *e, const struct proc_read *rd)
{
	struct pool_col *pc = ctx;

	(void)rd;
	pthread_mutex_lock(&pc->pool->lock);
	for (struct collector_window *w = pc->windows; w; w = w->next)
		if (w->all || pool__has_pid(w->pids, w->npids, (pid_t)e->pid))
			pool_window__enqueue(w, e);
	pthread_mutex_unlock(&pc->pool->lock);
}

/* The collector's pid_labels: those of the window being drained. */
static int pool_pid_labels(void *ctx, pid_t pid, struct pprof_label *labels, int max)
{
	const struct pool_col *pc = ctx;
	const struct collector_window *w = pc->draining;

	return w && w->pid_labels ? w->pid_labels(w->ctx, pid, labels, max) : 0;
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
	if (o->npids)
		memcpy(pc->pids, o->pids, o->npids * sizeof(*pc->pids));
	co.pids = pc->pids;
	if (!p->solo) { /* notices and labels go to the window they concern */
		co.on_proc = pool_on_proc;
		co.pid_labels = pool_pid_labels;
		co.ctx = pc;
	}
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

/* The collector already loaded that w can share, counted as joined; or NULL. p->open_lock
 * held. */
static struct pool_col *find_shared(struct collector_pool *p, const struct collector_ops *ops,
				    const struct collect_opts *o)
{
	struct pool_col *pc;

	pthread_mutex_lock(&p->lock);
	for (pc = p->cols; pc && !can_share(pc, ops, o); pc = pc->next)
		;
	if (pc)
		pc->nwindows++; /* keeps it loaded from now on */
	pthread_mutex_unlock(&p->lock);
	return pc;
}

/* Puts w (and a fresh pc) in the pool's lists, so that w gets the notices of its targets. */
static void window_link(struct collector_window *w, struct pool_col *pc, bool fresh)
{
	struct collector_pool *p = pc->pool;
	struct type_figures *f;

	pthread_mutex_lock(&p->lock);
	if (fresh) {
		pc->next = p->cols;
		p->cols = pc;
	}
	w->next = pc->windows;
	pc->windows = w;
	pc->windows_ever++;
	f = figures(p, pc->ops);
	if (f)
		*(fresh ? &f->opened : &f->joined) += 1;
	pthread_mutex_unlock(&p->lock);
}

/* The window's baseline is taken: it is counted among the collector's captures. */
static void window_ready(struct collector_window *w, bool fresh)
{
	struct pool_col *pc = w->pc;
	struct type_figures *f;
	int ready = 0;

	pool_window__set_view(w);
	pthread_mutex_lock(&pc->pool->lock);
	w->ready = true;
	for (const struct collector_window *x = pc->windows; x; x = x->next)
		ready += x->ready;
	f = figures(pc->pool, pc->ops);
	if (f && (uint64_t)ready > f->most)
		f->most = ready;
	pthread_mutex_unlock(&pc->pool->lock);
	pr_debug("%s: capture %s collector %p (%d captures on it)\n", pc->ops->name,
		 fresh ? "loaded" : "shares", (void *)pc, ready);
}

int collector_pool__join(struct collector_pool *p, const struct collector_ops *ops,
			 const struct collect_opts *o, struct collector_window **out)
{
	struct collector_window *w = pool_window__new(o);
	struct pool_col *pc;
	bool fresh = false;
	int err;

	if (w && !p) { /* a pool of one, the window's own */
		p = w->own_pool = collector_pool__new();
		if (p)
			p->solo = true;
	}
	if (!w || !p) {
		collector_window__leave(w);
		return -ENOMEM;
	}
	pthread_mutex_lock(&p->open_lock);
	pc = find_shared(p, ops, o);
	if (!pc) {
		err = pool_col__open(p, ops, o, &pc);
		if (err) {
			pthread_mutex_unlock(&p->open_lock);
			collector_window__leave(w);
			return err;
		}
		fresh = true;
		pc->nwindows = 1;
	}
	pool_window__bind(w, pc);
	window_link(w, pc, fresh);
	err = w->base ? window_add_targets(w, fresh) : -ENOMEM;
	if (!err && !fresh)
		pool_window__catch_up(w);
	if (!err)
		err = pool_window__baseline(w);
	if (!err)
		window_ready(w, fresh);
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
		collector_pool__free(w->own_pool);
		pool_window__free(w);
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
	collector_pool__free(w->own_pool);
	pool_window__free(w);
}
