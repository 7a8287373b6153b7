/* One window of a shared collector (see pool.h): the queue of process notices its thread
 * handles, its baseline, the view through which the collector's drains report its part, and its
 * drain. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collect/internal.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/hashmap.h"
#include "util/log.h"

static bool window_wants(void *ctx, uint32_t pid);

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

/* --- notices: the poller queues them, each window's thread handles its own --- */

void pool_window__enqueue(struct collector_window *w, const struct cprof_proc_event *e)
{
	pthread_mutex_lock(&w->qlock);
	/* A failed growth leaves the queue as it was: the notice is counted lost. */
	if (w->nq < WINDOW_MAX_QUEUE)
		(void)array__reserve((void **)&w->q, &w->qcap, w->nq + 1, sizeof(*w->q));
	if (w->nq < w->qcap)
		w->q[w->nq++] = *e;
	else
		w->qlost++;
	pthread_mutex_unlock(&w->qlock);
}

void pool_window__flush(struct collector_window *w)
{
	static const struct proc_read unread; /* each window reads what it needs */
	struct cprof_proc_event *q;
	size_t n;

	pthread_mutex_lock(&w->qlock);
	q = w->q;
	n = w->nq;
	w->q = NULL;
	w->nq = w->qcap = 0;
	pthread_mutex_unlock(&w->qlock);
	for (size_t i = 0; w->on_proc && i < n; i++)
		w->on_proc(w->ctx, &q[i], &unread);
	free(q);
}

int collector_window__poll(struct collector_window *w, int timeout_ms)
{
	struct pool_col *pc = w->pc;
	int err = 0;

	pool_window__flush(w);
	if (pthread_mutex_trylock(&pc->lock) == 0) {
		err = collector__poll(pc->c, timeout_ms);
		pthread_mutex_unlock(&pc->lock);
	} else if (timeout_ms > 0) {
		/* Another window's thread is polling, and queues our notices. */
		usleep((useconds_t)(timeout_ms < 100 ? timeout_ms : 100) * 1000);
	}
	pool_window__flush(w);
	return err;
}

static void free_blob(const void *key, void *value, void *ctx)
{
	(void)value;
	(void)ctx;
	free((void *)key);
}

/* The window's starting point: its targets' entries of the aggregation map, the counters. */
int pool_window__baseline(struct collector_window *w)
{
	struct pool_col *pc = w->pc;
	size_t ks = pc->key_size, vs = pc->value_size;
	void *key = NULL, *next = NULL, *val = NULL, *blob;
	uint64_t entries = 0;
	bool first = true;
	int fd, err = 0;

	if (pc->pool->solo) { /* everything since the collector started is the window's */
		w->mono = pc->c->started_ns;
		w->real = pc->c->started_real_ns;
		return 0;
	}
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
		if (!window_wants(w, ((const struct cprof_key *)key)->pid) ||
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
void pool_window__catch_up(struct collector_window *w)
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
		pool_window__enqueue(w, &e);
	}
}

struct collector_window *pool_window__new(const struct collect_opts *o)
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
	if (o->npids)
		memcpy(w->pids, o->pids, o->npids * sizeof(*w->pids));
	w->npids = o->npids;
	w->all = o->all;
	w->on_proc = o->on_proc;
	w->pid_labels = o->pid_labels;
	w->ctx = o->ctx;
	return w;
}

void pool_window__bind(struct collector_window *w, struct pool_col *pc)
{
	w->pc = pc;
	w->base = hashmap__new(key_hash, key_equal, pc);
}

void pool_window__free(struct collector_window *w)
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

static bool window_wants(void *ctx, uint32_t pid)
{
	const struct collector_window *w = ctx;

	return w->all || pool__has_pid(w->pids, w->npids, (pid_t)pid);
}

/* Whether an entry of the aggregation map belongs to the window, and its value as the window
 * sees it: the difference with the baseline (levels kept). */
static bool window_value(void *ctx, const void *key, void *val)
{
	const struct collector_window *w = ctx;
	const struct pool_col *pc = w->pc;
	size_t n = pc->value_size / sizeof(__u64);
	const __u64 *base = NULL;
	__u64 *v = val;
	void *found;
	bool any = false;

	if (!window_wants(ctx, ((const struct cprof_key *)key)->pid))
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

/* The window's part of the counters: what they grew by since its baseline (truncated and lost
 * stack reads are the window's drain's own, set by collector_window__drain), and the notices
 * its queue lost. */
static void window_stats(void *ctx, struct collect_stats *st)
{
	const struct collector_window *w = ctx;

	collect_stats__since(st, &w->base_stats, st);
	st->bpf[CPROF_STAT_EVENTS_LOST] += w->qlost;
}

void pool_window__set_view(struct collector_window *w)
{
	w->view = (struct collector_view){window_value, window_wants, window_stats, w->mono, w};
}

/* A pool of one: the collector stops, so the drain sees quiet maps, and is emptied. */
static int window_drain_solo(struct collector_window *w, struct pprof_builder *b,
			     struct collect_stats *st)
{
	struct collector *c = w->pc->c;
	int err;

	pool_window__flush(w);
	collector__stop(c);
	err = collector__drain(c, b);
	return err ? err : collector__stats(c, st);
}

int collector_window__drain(struct collector_window *w, struct pprof_builder *b,
			    struct collect_stats *st)
{
	struct pool_col *pc = w->pc;
	struct collector *c = pc->c;
	uint64_t truncated, lost;
	uint64_t ever;
	int err;

	if (pc->pool->solo)
		return window_drain_solo(w, b, st);
	pool_window__flush(w);
	pthread_mutex_lock(&pc->lock);
	truncated = c->ustats.truncated_stacks;
	lost = c->ustats.lost_stack_reads;
	pc->draining = w;
	c->view = &w->view;
	err = collector__drain(c, b);
	if (!err)
		err = collector__stats(c, st);
	/* What reading this window's stacks found, not what earlier drains did. */
	st->truncated_stacks = c->ustats.truncated_stacks - truncated;
	st->lost_stack_reads = c->ustats.lost_stack_reads - lost;
	c->view = NULL;
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

void collector_window__set_deadline(struct collector_window *w, int64_t deadline_ns)
{
	/* A shared collector outlives any one capture's deadline: it keeps building tables. */
	if (w->pc->pool->solo)
		w->pc->c->deadline_ns = deadline_ns;
}
