/* What the agent's parts (window loop, store, push queue, triggers, metrics) share. */
#ifndef CPROF_AGENT_INTERNAL_H
#define CPROF_AGENT_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/types.h>

#include "agent/trigger.h"
#include "cli.h"
#include "cprof.h"
#include "sym/symbolizer.h"
#include "unwind/unwinder.h"

/* Counters and gauges shown by /metrics and the logs. Guarded by agent.lock. */
struct agent_metrics {
	uint64_t windows, samples, stacks;
	uint64_t dropped[CPROF_DROP_NR]; /* what windows lost, by reason, summed over windows */
	uint64_t trimmed_stacks;
	uint64_t procs_tracked, procs_evicted, procs_late, sym_resets;
	uint64_t execs, execs_unread;
	uint64_t store_written, store_deleted, store_dropped, store_bytes, store_files;
	bool store_full; /* the file system is below --min-free and deleting would not fix it */
	uint64_t push_enqueued, push_ok, push_failed, push_dropped, push_rejected;
	uint64_t queue_bytes, queue_files;
	uint64_t triggers_fired, triggers_skipped, trigger_captures;
	double own_cpu_pct; /* of one core, over the last window */
	uint64_t own_rss;   /* bytes */
	double own_cpu_seconds;
	int64_t last_window_mono; /* CLOCK_MONOTONIC ns when the last window was drained */
	int64_t started_mono;
	struct unwinder_stats unwind; /* as of the last window */
	/* The symbol caches as of the last window; the counters summed over the symbolizers
	 * replaced since start (sym_base). */
	struct symbolizer_stats sym, sym_base;
};

struct store;
struct pusher;
struct triggers;
struct agent_http;

struct agent {
	const struct cli_opts *o;
	char host[256];
	pthread_mutex_t lock; /* metrics */
	struct agent_metrics m;
	struct store *store;
	struct pusher *push;
	struct triggers *trig;
	struct agent_http *http;
};

extern volatile sig_atomic_t agent_exiting;

/* The store's file name of a profile started at t0 (CLOCK_REALTIME ns):
 * KIND-YYYYmmddTHHMMSS.mmmZ.pb.gz for a window (rule NULL), else
 * KIND-YYYYmmddTHHMMSS.mmmZ-pidPID-RULE.pb.gz for a trigger's capture of pid. */
void agent__profile_name(char *buf, size_t len, const char *kind, int64_t t0, pid_t pid,
			 const char *rule);

/* Directories the agent makes are 0750: profiles show code and command names of every process. */
#define AGENT_DIR_MODE 0750

/* Local store: one gzipped pprof file per window (and per triggered capture) in out_dir,
 * written to a temporary name and renamed. Retention by age and total size after each write;
 * before each write the file system must keep min_free bytes free, else the oldest files go,
 * else the new one is dropped (counted). Thread-safe. */
int store__open(struct agent *a, struct store **out);
int store__write(struct store *s, const char *name, const void *buf, size_t len);
void store__close(struct store *s);
/* Applies retention now (also done after every write). */
void store__retain(struct store *s);

/* Push: a Pyroscope ingest client on its own thread, fed from an on-disk queue in
 * OUT_DIR/queue (bounded by queue_max_size: past it the oldest go, counted). */
struct push_item {
	const char *app;     /* service name */
	const char *labels;  /* "k=v,k=v" (already sanitized), may be "" */
	int64_t from, until; /* unix seconds */
	int freq;
	const void *body; /* gzipped pprof */
	size_t len;
};
int pusher__start(struct agent *a, struct pusher **out);
int pusher__enqueue(struct pusher *p, const struct push_item *it);
/* Stops the thread after at most grace seconds spent sending what is queued. */
void pusher__stop(struct pusher *p, double grace);
/* Makes a label value safe inside Pyroscope's name{k=v,...} syntax. */
void push__sanitize(const char *in, char *out, size_t len);

/* Splits an uncompressed pprof profile into one gzipped profile per service: the value of the
 * sample label `key` (basename of it when basename is set), or fallback when a sample has
 * none. Calls fn for each. Returns 0 or -errno. */
int split__by_label(const uint8_t *raw, size_t len, const char *key, bool basename,
		    const char *fallback,
		    int (*fn)(void *ctx, const char *service, const uint8_t *gz, size_t gzlen),
		    void *ctx);

/* The text of /metrics (Prometheus exposition format). malloc'd. */
char *metrics__render(struct agent *a);
/* Adds the counters of a symbolizer about to be replaced to the metrics' totals. */
void metrics__sym_retired(struct agent *a, const struct symbolizer *sym);
/* /healthz: true while windows are drained on time. */
/* Whether the agent is healthy; if not, why (one line, no newline) in why. */
bool metrics__healthy(struct agent *a, const char **why);
/* The agent's own CPU seconds and RSS bytes so far. */
void metrics__self(double *cpu_seconds, uint64_t *rss);

int agent_http__start(struct agent *a, struct agent_http **out);
void agent_http__stop(struct agent_http *h);

/* Pushes and stores one finished profile (a window or a triggered capture): the file `name`
 * in the store, and per-service pushes with extra labels (may be ""). raw is the uncompressed
 * profile, gz the compressed one. */
int agent__emit(struct agent *a, const char *name, const uint8_t *raw, size_t rawlen,
		const uint8_t *gz, size_t gzlen, int64_t from, int64_t until, int freq,
		const char *extra_labels);

#endif
