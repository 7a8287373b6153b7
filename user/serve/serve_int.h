/* serve's own parts, shared by its files and by nothing else:
 *   serve.c          the URL table and the server's life (start, signals, stop)
 *   serve/params.c   query parameters of a capture: pid, seconds, hz, type; access checks
 *   serve/profiles.c the capture routes (profile, heap, allocs, mutex, block, flamegraph)
 *   serve/goroutine.c /debug/pprof/goroutine: a threads snapshot (debug=0 pprof, 1, 2 text)
 *   serve/symbol.c   /debug/pprof/symbol and /debug/pprof/cmdline
 *   serve/metrics.c  /metrics (Prometheus text) and the counters behind it
 *   serve/index.c    the index page */
#ifndef CPROF_SERVE_INT_H
#define CPROF_SERVE_INT_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "capture.h"
#include "cli.h"
#include "collect/drops.h"
#include "http/access.h"
#include "http/server.h"

#define DEFAULT_SECONDS	      30.0 /* as net/http/pprof */
#define DEFAULT_FLAME_SECONDS 10.0 /* the index's flame graph links: a person is waiting */
#define MAX_PIDS	      64
#define MAX_TYPES	      8

struct collector_pool;
struct procs_table;
struct pprof_builder;
struct symbolizer;

/* A profile route of net/http/pprof, /debug/pprof/NAME. A new one is one line in
 * serve__pprof_routes (serve.c); fn NULL means a capture of type as profile_route() runs it. */
struct pprof_route {
	const char *name; /* /debug/pprof/NAME, and the download's file name */
	const char *type; /* collector name */
	const char *default_sample_type;
	const char *what; /* for the index page */
	http_handler_fn fn;
	bool no_index_link; /* the index links the route's type once (allocs shows heap) */
};

extern const struct pprof_route serve__pprof_routes[];
extern const size_t serve__npprof_routes;

struct type_metrics {
	uint64_t ok, failed, cancelled;
	uint64_t samples;
	uint64_t drops[CPROF_DROP_NR];
	double seconds;
	size_t last_stacks;
	uint32_t max_keys;
	double peak_fill;
};

struct serve {
	const struct cli_opts *o;
	struct http_server *srv;
	struct procs_table *procs;
	struct collector_pool *pool; /* captures of one type and options share BPF programs */
	pthread_mutex_t lock;	     /* everything below */
	int active;
	uint64_t codes[600];
	uint64_t errors_internal;
	double request_seconds;
	struct type_metrics types[MAX_TYPES];
	time_t started;
};

/* A route's handler context: the server and, for profile routes, which one. */
struct serve_route_ctx {
	struct serve *sv;
	const struct pprof_route *route;
};

/* SIGINT or SIGTERM arrived. */
extern volatile sig_atomic_t serve__exiting;

/* --- params.c --- */
struct capture_params {
	pid_t pids[MAX_PIDS];
	size_t npids;
	double seconds;
	int freq;
	const struct pprof_route *route; /* flamegraph: type= */
	struct access access;		 /* what the requester may do */
	/* The sampling of this capture (params__capture); capture__run uses each for its type. */
	uint32_t fraction; /* mutex: fraction= or the server's --mutex-fraction; 0 = all */
	uint64_t rate;	   /* block: rate= or the server's --block-rate; 0 = all */
};

/* Each answers the request itself (400, 403, 404) and returns false when it cannot go on. */
bool params__check_known(struct http_request *r, const char *const *known, const char *list);
/* pid=N[,M...] (none: the whole system), each checked against what the requester may see. */
bool params__pids(struct http_request *r, struct capture_params *p);
bool params__capture(struct serve *sv, struct http_request *r, struct capture_params *p,
		     double def_seconds);
const struct pprof_route *params__route_by_name(const char *name);

/* --- profiles.c --- */
struct threads_snapshot;
/* Runs the capture a request asked for. On success *out is the profile (and *sym its
 * symbolizer, which the caller frees after the builder; and for a threads snapshot, when
 * snap_out is not NULL, *snap_out the snapshot); otherwise the request was answered. */
int profiles__capture(struct serve *sv, struct http_request *r, const struct capture_params *p,
		      struct pprof_builder **out, struct symbolizer **sym_out,
		      struct threads_snapshot **snap_out);
/* Answers with b encoded as a gzipped pprof, downloaded as name (500 when it cannot be
 * encoded). Frees b and then sym. */
int profiles__respond_pprof(struct serve *sv, struct http_request *r, const char *name,
			    struct pprof_builder *b, struct symbolizer *sym);
int profiles__route(void *ctx, struct http_request *r);
int profiles__flamegraph(void *ctx, struct http_request *r);

/* --- goroutine.c --- */
int goroutine__route(void *ctx, struct http_request *r);

/* --- symbol.c --- */
int symbol__route(void *ctx, struct http_request *r);
int symbol__cmdline(void *ctx, struct http_request *r);

/* --- metrics.c --- */
enum capture_result {
	CAPTURE_OK,
	CAPTURE_FAILED,
	CAPTURE_CANCELLED
};
void metrics__count_capture(struct serve *sv, const char *type, enum capture_result res,
			    const struct capture_stats *st, double secs);
void metrics__count_internal_error(struct serve *sv);
void metrics__on_request(void *ctx, const char *path, int status, double seconds);
int metrics__route(void *ctx, struct http_request *r);

/* --- index.c --- */
int index__route(void *ctx, struct http_request *r);

#endif
