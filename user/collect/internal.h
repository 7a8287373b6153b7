/* Private to collect/: the shared-collector pool's structures, shared by pool.c (the pool, its
 * collectors, joining and leaving) and pool_window.c (one window: its notice queue, baseline,
 * view and drain). Locks and their order: pool.c's header comment. */
#ifndef CPROF_COLLECT_INTERNAL_H
#define CPROF_COLLECT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "collect/collector.h"
#include "collect/pool.h"

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
	void (*on_proc)(void *ctx, const struct cprof_proc_event *e, const struct proc_read *rd);
	int (*pid_labels)(void *ctx, pid_t pid, struct pprof_label *labels, int max);
	void *ctx;
	pthread_mutex_t qlock;
	struct cprof_proc_event *q;
	size_t nq, qcap;
	uint64_t qlost;
	struct collector_view view;	 /* what a drain of the shared collector reports */
	struct collector_pool *own_pool; /* a pool of one, made by the join, freed by the leave */
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
	/* A pool of one (a capture of its own): its collector has the capture's options and
	 * callbacks, nothing is subtracted, and its window's drain stops it and empties its maps. */
	bool solo;
	pthread_mutex_t open_lock, lock;
	struct pool_col *cols;
	struct type_figures figs[POOL_MAX_TYPES];
};

/* Whether pid is one of pids[0..n). */
bool pool__has_pid(const pid_t *pids, size_t n, pid_t pid);

/* A window for o's targets and callbacks, on no collector yet; NULL when out of memory. */
struct collector_window *pool_window__new(const struct collect_opts *o);
/* Puts w on pc (its baseline map is keyed by pc's key size). */
void pool_window__bind(struct collector_window *w, struct pool_col *pc);
void pool_window__free(struct collector_window *w);
/* Queues a process notice for w's thread (pool->lock held). */
void pool_window__enqueue(struct collector_window *w, const struct cprof_proc_event *e);
/* Hands w's queued notices to its on_proc, in the calling thread (w's own). */
void pool_window__flush(struct collector_window *w);
/* w's starting point: its targets' entries of the aggregation map, and the counters. A pool of
 * one starts where its collector started. Returns 0 or -errno. */
int pool_window__baseline(struct collector_window *w);
/* A window joining a collector loaded before it: the processes already announced. */
void pool_window__catch_up(struct collector_window *w);
/* Sets the view the collector's drains see for w (after its baseline). */
void pool_window__set_view(struct collector_window *w);

#endif
