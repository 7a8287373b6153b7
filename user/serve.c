/* serve: the routes of net/http/pprof for any pid, each capture run through capture__run().
 *
 * Symbolizers: one per capture (and one per /symbol request), never shared. A capture's
 * symbolizer snapshots the mappings of the processes it sees and is freed with its profile, so
 * captures need no lock between them, a pid reused between two captures cannot be symbolized
 * with the old process's files, and memory does not grow with the server's lifetime. The cost
 * is that each capture reads the symbol tables it needs again. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "cli.h"
#include "collect/collector.h"
#include "collect/pool.h"
#include "http/flamegraph.h"
#include "http/procs.h"
#include "http/server.h"
#include "proc/maps.h"
#include "serve.h"
#include "sym/symbolizer.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/preflight.h"
#include "util/strbuf.h"

#define DEFAULT_SECONDS	      30.0 /* as net/http/pprof */
#define DEFAULT_FLAME_SECONDS 10.0 /* the index's flame graph links: a person is waiting */
#define MAX_PIDS	      64
#define MAX_TYPES	      8
#define MAX_SYMBOL_ADDRS      100000

static volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

/* A route of net/http/pprof and the profile type behind it. */
struct pprof_route {
	const char *name; /* /debug/pprof/NAME, and the download's file name */
	const char *type; /* collector name */
	const char *default_sample_type;
	const char *what;
};

static const struct pprof_route pprof_routes[] = {
	{"profile", "cpu", NULL, "CPU profile: where threads spend CPU time (seconds=S, hz=HZ)"},
	{"heap", "heap", "inuse_space", "memory in use, sampled allocations that are not freed"},
	{"allocs", "heap", "alloc_space",
	 "all sampled allocations (heap, shown by allocated bytes)"},
	{"mutex", "mutex", NULL, "lock contention: where threads wait for contended locks"},
	{"block", "offcpu", NULL, "off-CPU time: where threads block (sleep, I/O, locks)"},
	{"threadcreate", "threadcreate", NULL, "the stacks that created threads during the window"},
};
#define NROUTES (sizeof(pprof_routes) / sizeof(pprof_routes[0]))

enum drop_reason {
	DROP_KEYS_FULL,
	DROP_USTACK_COLLIDE,
	DROP_KSTACK_COLLIDE,
	DROP_USTACK_ERR,
	DROP_KSTACK_ERR,
	DROP_EVICTED,
	DROP_TRUNCATED,
	DROP_NOTICES,
	DROP_PROCS,
	DROP_NR,
};

static const char *const drop_names[DROP_NR] = {
	"keys_full",	    "user_stack_collision", "kernel_stack_collision",
	"user_stack_error", "kernel_stack_error",   "stack_evicted",
	"stack_truncated",  "process_notice_lost",  "process_exited_unread",
};

struct type_metrics {
	uint64_t ok, failed, cancelled;
	uint64_t samples;
	uint64_t drops[DROP_NR];
	double seconds;
	size_t last_stacks;
	uint32_t max_keys;
	double peak_fill;
};

struct serve {
	const struct serve_opts *o;
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

/* --- parameters --- */

struct capture_params {
	pid_t pids[MAX_PIDS];
	size_t npids;
	double seconds;
	int freq;
	const struct pprof_route *route; /* flamegraph: type= */
	uint32_t fraction;		 /* mutex: fraction=; 0 = the server's --mutex-fraction */
	uint64_t rate;			 /* block: rate=; 0 = the server's --block-rate */
};

struct unknown_param {
	const char *const *known;
	const char *bad;
};

static void find_unknown(void *ctx, const char *key, const char *value)
{
	struct unknown_param *u = ctx;

	(void)value;
	for (const char *const *k = u->known; *k; k++)
		if (strcmp(*k, key) == 0)
			return;
	if (!u->bad)
		u->bad = key;
}

/* Answers 400 when the query has a parameter not in known (NULL-terminated). */
static bool check_known(struct http_request *r, const char *const *known, const char *list)
{
	struct unknown_param u = {known};

	http_request__for_each_query(r, find_unknown, &u);
	if (!u.bad)
		return true;
	http_respond_error(r, 400, "unknown parameter '%.64s' (known: %s)", u.bad, list);
	return false;
}

/* pid=N or pid=N,M,...; absent means the whole system. Answers 400/404 itself. */
static bool parse_pids(struct http_request *r, struct capture_params *p)
{
	const char *arg = http_request__query(r, "pid");
	char buf[1024], *tok, *save = NULL;
	long v;

	p->npids = 0;
	if (!arg)
		return true;
	if (strlen(arg) >= sizeof(buf)) {
		http_respond_error(r, 400, "pid list too long (at most %d pids)", MAX_PIDS);
		return false;
	}
	strcpy(buf, arg);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (cli__parse_long(tok, 1, 4194304, &v)) {
			http_respond_error(r, 400,
					   "invalid pid '%.32s': expected a number from 1 to "
					   "4194304",
					   tok);
			return false;
		}
		if (p->npids == MAX_PIDS) {
			http_respond_error(r, 400, "too many pids (at most %d)", MAX_PIDS);
			return false;
		}
		if (proc__exists((pid_t)v)) {
			http_respond_error(r, 404, "no such process: %ld", v);
			return false;
		}
		p->pids[p->npids++] = (pid_t)v;
	}
	if (!p->npids) {
		http_respond_error(r, 400, "invalid pid '': expected a number from 1 to 4194304");
		return false;
	}
	return true;
}

static bool parse_seconds(struct serve *sv, struct http_request *r, double def, double *out)
{
	const char *arg = http_request__query(r, "seconds");

	*out = def < sv->o->max_seconds ? def : sv->o->max_seconds;
	if (!arg)
		return true;
	if (cli__parse_seconds(arg, 0.001, 1e300, out)) {
		http_respond_error(r, 400, "invalid seconds '%.32s': expected a number more than 0",
				   arg);
		return false;
	}
	if (*out > sv->o->max_seconds) {
		http_respond_error(r, 400,
				   "seconds=%.32s is more than the cap of %g s (the server's "
				   "--max-seconds)",
				   arg, sv->o->max_seconds);
		return false;
	}
	return true;
}

static bool parse_freq(struct serve *sv, struct http_request *r, int *out)
{
	const char *arg = http_request__query(r, "hz");
	long v;

	*out = sv->o->freq;
	if (!arg)
		return true;
	if (cli__parse_long(arg, 1, 10000, &v)) {
		http_respond_error(r, 400, "invalid hz '%.32s': expected 1 to 10000", arg);
		return false;
	}
	*out = (int)v;
	return true;
}

/* fraction= (mutex) and rate= (block): Go's SetMutexProfileFraction and SetBlockProfileRate
 * for this capture. */
static bool parse_sampling(struct http_request *r, struct capture_params *p)
{
	const char *frac = http_request__query(r, "fraction");
	const char *rate = http_request__query(r, "rate");
	bool mutex = collector__find(p->route->type) == collector__find("mutex");
	bool block = collector__find(p->route->type) == collector__find("offcpu");

	if ((frac && !mutex) || (rate && !block)) {
		http_respond_error(
			r, 400, "%s applies to /debug/pprof/%s only",
			frac && !mutex ? "fraction=" : "rate=", frac && !mutex ? "mutex" : "block");
		return false;
	}
	if (frac && cli__parse_mutex_fraction(frac, &p->fraction)) {
		http_respond_error(r, 400, "invalid fraction '%.32s': expected 1 to %ld", frac,
				   CLI_MAX_MUTEX_FRACTION);
		return false;
	}
	if (rate && cli__parse_block_rate(rate, &p->rate)) {
		http_respond_error(r, 400, "invalid rate '%.32s': expected nanoseconds, 1 to %ld",
				   rate, CLI_MAX_BLOCK_RATE);
		return false;
	}
	return true;
}

static const struct pprof_route *route_by_name(const char *name)
{
	for (size_t i = 0; i < NROUTES; i++)
		if (strcmp(pprof_routes[i].name, name) == 0)
			return &pprof_routes[i];
	/* The type names work too: cpu, offcpu. */
	for (size_t i = 0; i < NROUTES; i++)
		if (strcmp(pprof_routes[i].type, name) == 0)
			return &pprof_routes[i];
	return NULL;
}

/* --- metrics --- */

static int type_slot(const char *type)
{
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		if (strcmp(collector__nth(i)->name, type) == 0)
			return i;
	return -1;
}

enum capture_result {
	CAPTURE_OK,
	CAPTURE_FAILED,
	CAPTURE_CANCELLED
};

static void count_capture(struct serve *sv, const char *type, enum capture_result res,
			  const struct capture_stats *st, double secs)
{
	int slot = type_slot(type);
	struct type_metrics *m;
	const uint64_t *bpf = st->counters.bpf;

	if (slot < 0)
		return;
	pthread_mutex_lock(&sv->lock);
	m = &sv->types[slot];
	if (res == CAPTURE_OK)
		m->ok++;
	else if (res == CAPTURE_CANCELLED)
		m->cancelled++;
	else
		m->failed++;
	m->seconds += secs;
	if (res != CAPTURE_FAILED) {
		m->samples += bpf[CPROF_STAT_SAMPLES];
		m->drops[DROP_KEYS_FULL] += bpf[CPROF_STAT_KEYS_FULL];
		m->drops[DROP_USTACK_COLLIDE] += bpf[CPROF_STAT_USTACK_COLLIDE];
		m->drops[DROP_KSTACK_COLLIDE] += bpf[CPROF_STAT_KSTACK_COLLIDE];
		m->drops[DROP_USTACK_ERR] += bpf[CPROF_STAT_USTACK_ERR];
		m->drops[DROP_KSTACK_ERR] += bpf[CPROF_STAT_KSTACK_ERR];
		m->drops[DROP_EVICTED] += st->counters.lost_stack_reads;
		m->drops[DROP_TRUNCATED] += st->counters.truncated_stacks;
		m->drops[DROP_NOTICES] += bpf[CPROF_STAT_EVENTS_LOST];
		m->drops[DROP_PROCS] += st->procs_missed;
		m->last_stacks = st->stacks;
		m->max_keys = st->max_keys;
		if (st->max_keys && (double)st->stacks / st->max_keys > m->peak_fill)
			m->peak_fill = (double)st->stacks / st->max_keys;
	}
	pthread_mutex_unlock(&sv->lock);
}

static void on_request(void *ctx, const char *path, int status, double seconds)
{
	struct serve *sv = ctx;

	pthread_mutex_lock(&sv->lock);
	if (status >= 100 && status < 600)
		sv->codes[status]++;
	sv->request_seconds += seconds;
	pthread_mutex_unlock(&sv->lock);
	pr_info("%d %s %.3fs\n", status, path, seconds);
}

/* The shared collectors (collect/pool.h): how many are loaded, how many captures use them. */
static void pool_metrics(struct serve *sv, struct strbuf *b)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} m[] = {
		{"cprof_collectors_loaded", "gauge", "BPF collectors loaded and attached now.",
		 offsetof(struct collector_pool_stats, loaded)},
		{"cprof_collector_captures", "gauge",
		 "Captures using the loaded collectors now (more than cprof_collectors_loaded: "
		 "some share one).",
		 offsetof(struct collector_pool_stats, windows)},
		{"cprof_collector_captures_max", "gauge",
		 "The most captures one collector has served at once.",
		 offsetof(struct collector_pool_stats, most_windows)},
		{"cprof_collectors_opened_total", "counter", "BPF collectors loaded and attached.",
		 offsetof(struct collector_pool_stats, opened)},
		{"cprof_captures_shared_total", "counter",
		 "Captures that used a collector already loaded by another capture.",
		 offsetof(struct collector_pool_stats, joined)},
	};
	struct collector_pool_stats st[MAX_TYPES];
	int n = 0;

	for (; n < MAX_TYPES && collector__nth(n); n++)
		collector_pool__stats(sv->pool, collector__nth(n), &st[n]);
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		strbuf__printf(b, "# HELP %s %s\n# TYPE %s %s\n", m[i].name, m[i].help, m[i].name,
			       m[i].type);
		for (int t = 0; t < n; t++)
			strbuf__printf(b, "%s{type=\"%s\"} %" PRIu64 "\n", m[i].name,
				       collector__nth(t)->name,
				       *(const uint64_t *)((const char *)&st[t] + m[i].off));
	}
}

static int metrics(void *ctx, struct http_request *r)
{
	struct serve *sv = ctx;
	struct strbuf b = {};
	char *body;
	size_t len;

	pthread_mutex_lock(&sv->lock);
	strbuf__puts(&b, "# HELP cprof_http_requests_total HTTP requests answered, by status.\n"
			 "# TYPE cprof_http_requests_total counter\n");
	for (int c = 100; c < 600; c++)
		if (sv->codes[c])
			strbuf__printf(&b, "cprof_http_requests_total{code=\"%d\"} %" PRIu64 "\n",
				       c, sv->codes[c]);
	strbuf__printf(&b,
		       "# HELP cprof_http_request_seconds_total Time spent answering requests.\n"
		       "# TYPE cprof_http_request_seconds_total counter\n"
		       "cprof_http_request_seconds_total %.6f\n"
		       "# HELP cprof_captures_active Captures running now.\n"
		       "# TYPE cprof_captures_active gauge\n"
		       "cprof_captures_active %d\n"
		       "# HELP cprof_captures_limit Captures allowed at once (--max-captures).\n"
		       "# TYPE cprof_captures_limit gauge\n"
		       "cprof_captures_limit %d\n",
		       sv->request_seconds, sv->active, sv->o->max_captures);
	strbuf__puts(&b, "# HELP cprof_captures_total Captures by profile type and result.\n"
			 "# TYPE cprof_captures_total counter\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++) {
		const struct type_metrics *m = &sv->types[i];
		const char *t = collector__nth(i)->name;

		strbuf__printf(&b,
			       "cprof_captures_total{type=\"%s\",result=\"ok\"} %" PRIu64 "\n"
			       "cprof_captures_total{type=\"%s\",result=\"cancelled\"} %" PRIu64
			       "\n"
			       "cprof_captures_total{type=\"%s\",result=\"error\"} %" PRIu64 "\n",
			       t, m->ok, t, m->cancelled, t, m->failed);
	}
	strbuf__puts(&b, "# HELP cprof_capture_seconds_total Time spent capturing.\n"
			 "# TYPE cprof_capture_seconds_total counter\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		strbuf__printf(&b, "cprof_capture_seconds_total{type=\"%s\"} %.3f\n",
			       collector__nth(i)->name, sv->types[i].seconds);
	strbuf__puts(&b, "# HELP cprof_samples_total Events that passed the target filter.\n"
			 "# TYPE cprof_samples_total counter\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		strbuf__printf(&b, "cprof_samples_total{type=\"%s\"} %" PRIu64 "\n",
			       collector__nth(i)->name, sv->types[i].samples);
	strbuf__puts(&b, "# HELP cprof_dropped_total What captures lost, by reason (see the "
			 "profile comments).\n"
			 "# TYPE cprof_dropped_total counter\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		for (int d = 0; d < DROP_NR; d++)
			strbuf__printf(
				&b, "cprof_dropped_total{type=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
				collector__nth(i)->name, drop_names[d], sv->types[i].drops[d]);
	strbuf__puts(&b, "# HELP cprof_bpf_map_entries Entries of the BPF aggregation map used by "
			 "the last capture.\n"
			 "# TYPE cprof_bpf_map_entries gauge\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		strbuf__printf(&b, "cprof_bpf_map_entries{type=\"%s\",map=\"keys\"} %zu\n",
			       collector__nth(i)->name, sv->types[i].last_stacks);
	strbuf__puts(&b, "# HELP cprof_bpf_map_capacity Capacity of the BPF aggregation map "
			 "(--max-stacks).\n"
			 "# TYPE cprof_bpf_map_capacity gauge\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		strbuf__printf(&b, "cprof_bpf_map_capacity{type=\"%s\",map=\"keys\"} %u\n",
			       collector__nth(i)->name,
			       sv->types[i].max_keys ? sv->types[i].max_keys
						     : (sv->o->max_keys ? sv->o->max_keys
									: CPROF_DEFAULT_MAX_KEYS));
	strbuf__puts(&b, "# HELP cprof_bpf_map_fill_ratio_max Highest fill of the aggregation map "
			 "seen in one capture.\n"
			 "# TYPE cprof_bpf_map_fill_ratio_max gauge\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		strbuf__printf(&b, "cprof_bpf_map_fill_ratio_max{type=\"%s\",map=\"keys\"} %.4f\n",
			       collector__nth(i)->name, sv->types[i].peak_fill);
	pool_metrics(sv, &b);
	strbuf__printf(&b,
		       "# HELP cprof_errors_total Requests that failed inside the server.\n"
		       "# TYPE cprof_errors_total counter\n"
		       "cprof_errors_total %" PRIu64 "\n"
		       "# HELP cprof_start_time_seconds When the server started.\n"
		       "# TYPE cprof_start_time_seconds gauge\n"
		       "cprof_start_time_seconds %lld\n",
		       sv->errors_internal, (long long)sv->started);
	pthread_mutex_unlock(&sv->lock);
	if (strbuf__err(&b)) {
		strbuf__free(&b);
		return -ENOMEM;
	}
	body = strbuf__take(&b, &len);
	return http_respond_take(r, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
}

static int healthz(void *ctx, struct http_request *r)
{
	(void)ctx;
	return http_respond(r, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

/* --- captures --- */

static bool request_gone(void *ctx)
{
	return exiting || http_request__should_stop(ctx);
}

static bool take_slot(struct serve *sv)
{
	bool ok;

	pthread_mutex_lock(&sv->lock);
	ok = sv->active < sv->o->max_captures;
	if (ok)
		sv->active++;
	pthread_mutex_unlock(&sv->lock);
	return ok;
}

static void give_slot(struct serve *sv)
{
	pthread_mutex_lock(&sv->lock);
	sv->active--;
	pthread_mutex_unlock(&sv->lock);
}

static void count_internal_error(struct serve *sv)
{
	pthread_mutex_lock(&sv->lock);
	sv->errors_internal++;
	pthread_mutex_unlock(&sv->lock);
}

/* --min-wait for mutex captures, --min-block for block (offcpu) ones. */
static uint64_t min_wait_ns(const struct serve_opts *o, const char *type)
{
	long us = -1;

	if (collector__find(type) == collector__find("mutex"))
		us = o->min_wait_us;
	else if (collector__find(type) == collector__find("offcpu"))
		us = o->min_block_us;
	return us > 0 ? (uint64_t)us * 1000 : 0;
}

/* Runs the capture a request asked for. On success *out is the profile (and *sym its
 * symbolizer, which the caller frees after the builder); otherwise the request was answered. */
static int run_capture(struct serve *sv, struct http_request *r, const struct capture_params *p,
		       struct pprof_builder **out, struct symbolizer **sym_out)
{
	const struct pprof_route *rt = p->route;
	struct symbolizer_opts so = {.demangle = sv->o->demangle ? SYM_DEMANGLE_FULL
								 : SYM_DEMANGLE_NONE,
				     .no_kernel = sv->o->no_kernel,
				     .debug_dir = sv->o->debug_dir};
	struct capture_stats st = {};
	struct capture_opts co = {
		.type = rt->type,
		.pids = p->pids,
		.npids = p->npids,
		.all = p->npids == 0,
		.duration = p->seconds,
		.freq = p->freq,
		.max_keys = sv->o->max_keys,
		.no_kernel = sv->o->no_kernel,
		.heap_sample_bytes = sv->o->heap_sample_bytes,
		.heap_max_live = sv->o->heap_max_live,
		.unwind = sv->o->unwind,
		.unwind_mem = sv->o->unwind_mem,
		.min_wait_ns = min_wait_ns(sv->o, rt->type),
		.mutex_fraction = collector__find(rt->type) != collector__find("mutex") ? 0
				  : p->fraction ? p->fraction
						: sv->o->mutex_fraction,
		.block_rate_ns = collector__find(rt->type) != collector__find("offcpu") ? 0
				 : p->rate						? p->rate
					   : sv->o->block_rate_ns,
		.pool = sv->pool,
		.should_stop = request_gone,
		.ctx = r,
		.default_sample_type = rt->default_sample_type,
		.stats = &st,
	};
	struct symbolizer *sym;
	double t0 = clock__mono_s();
	bool gone;
	int err;

	if (!collector__find(rt->type)) {
		http_respond_error(r, 501,
				   "profile type '%s' (/debug/pprof/%s) is not compiled into this "
				   "cprof-bpf (available: %s)",
				   rt->type, rt->name, collector__names());
		return -ENOTSUP;
	}
	if (!take_slot(sv)) {
		http_request__add_header(r, "Retry-After", "5");
		http_respond_error(r, 503,
				   "too many captures at once (%d running, the server's "
				   "--max-captures); retry later",
				   sv->o->max_captures);
		return -EBUSY;
	}
	sym = symbolizer__new(&so);
	err = sym ? capture__run(&co, sym, out) : -ENOMEM;
	give_slot(sv);
	gone = http_request__should_stop(r) && !exiting;
	count_capture(sv, rt->type,
		      err    ? CAPTURE_FAILED
		      : gone ? CAPTURE_CANCELLED
			     : CAPTURE_OK,
		      &st, clock__mono_s() - t0);
	if (err) {
		symbolizer__free(sym);
		if (err == -ESRCH)
			http_respond_error(r, 404,
					   "the process exited before it could be profiled");
		else
			http_respond_error(r, 500,
					   "%s capture failed: %s (the server's log says more)",
					   rt->type, strerror(-err));
		return err;
	}
	*sym_out = sym;
	return 0;
}

static bool parse_capture(struct serve *sv, struct http_request *r, struct capture_params *p,
			  double def_seconds)
{
	return parse_pids(r, p) && parse_seconds(sv, r, def_seconds, &p->seconds) &&
	       parse_freq(sv, r, &p->freq) && parse_sampling(r, p);
}

static int profile_route(void *ctx, struct http_request *r, const struct pprof_route *rt)
{
	static const char *const known[] = {"pid", "seconds", "hz", "fraction", "rate", NULL};
	struct serve *sv = ctx;
	struct capture_params p = {.route = rt};
	struct pprof_builder *b = NULL;
	struct symbolizer *sym = NULL;
	char disp[128];
	uint8_t *buf;
	size_t len;
	int err;

	if (!check_known(r, known, "pid, seconds, hz, fraction, rate") ||
	    !parse_capture(sv, r, &p, DEFAULT_SECONDS) || run_capture(sv, r, &p, &b, &sym))
		return 0;
	err = pprof_builder__encode(b, true, &buf, &len);
	pprof_builder__free(b);
	symbolizer__free(sym);
	if (err) {
		count_internal_error(sv);
		return http_respond_error(r, 500, "cannot encode the profile: %s", strerror(-err));
	}
	snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", rt->name);
	http_request__add_header(r, "Content-Disposition", disp);
	return http_respond_take(r, 200, "application/octet-stream", buf, len);
}

#define PROFILE_HANDLER(n)                                                                         \
	static int route_##n(void *ctx, struct http_request *r)                                    \
	{                                                                                          \
		return profile_route(ctx, r, route_by_name(#n));                                   \
	}
PROFILE_HANDLER(profile)
PROFILE_HANDLER(heap)
PROFILE_HANDLER(allocs)
PROFILE_HANDLER(mutex)
PROFILE_HANDLER(block)
PROFILE_HANDLER(threadcreate)

static void flame_title(const struct capture_params *p, char *buf, size_t len)
{
	char comm[64];
	size_t n;

	n = snprintf(buf, len, "%s: ", p->route->name);
	if (!p->npids) {
		snprintf(buf + n, len - n, "whole system");
		return;
	}
	for (size_t i = 0; i < p->npids && n < len; i++) {
		if (proc__comm(p->pids[i], comm, sizeof(comm)))
			snprintf(comm, sizeof(comm), "exited");
		n += snprintf(buf + n, len - n, "%spid %d (%s)", i ? ", " : "", p->pids[i], comm);
	}
}

static int flamegraph(void *ctx, struct http_request *r)
{
	static const char *const known[] = {"pid",	"seconds", "hz", "type",
					    "fraction", "rate",	   NULL};
	struct serve *sv = ctx;
	struct capture_params p = {};
	struct pprof_builder *b = NULL;
	struct symbolizer *sym = NULL;
	const char *type = http_request__query(r, "type");
	char title[512], url[256];
	struct flamegraph_info info = {.title = title, .profile_url = url};
	uint8_t *pb;
	char *html;
	size_t len, hlen;
	int err;

	if (!check_known(r, known, "pid, seconds, hz, type, fraction, rate"))
		return 0;
	p.route = route_by_name(type ? type : "profile");
	if (!p.route)
		return http_respond_error(r, 400,
					  "unknown type '%.32s' (known: profile or cpu, heap, "
					  "allocs, mutex, block or offcpu, threadcreate)",
					  type);
	if (!parse_capture(sv, r, &p, DEFAULT_SECONDS) || run_capture(sv, r, &p, &b, &sym))
		return 0;
	flame_title(&p, title, sizeof(title));
	snprintf(url, sizeof(url), "/debug/pprof/%s?seconds=%g%s%s", p.route->name, p.seconds,
		 http_request__query(r, "pid") ? "&pid=" : "",
		 http_request__query(r, "pid") ? http_request__query(r, "pid") : "");
	err = pprof_builder__encode(b, false, &pb, &len);
	if (!err) {
		err = flamegraph__render(pb, len, &info, &html, &hlen);
		free(pb);
	}
	pprof_builder__free(b);
	symbolizer__free(sym);
	if (err) {
		count_internal_error(sv);
		return http_respond_error(r, 500, "cannot render the flame graph: %s",
					  strerror(-err));
	}
	return http_respond_take(r, 200, "text/html; charset=utf-8", html, hlen);
}

/* --- symbol and cmdline --- */

struct addr_list {
	uint64_t *v;
	size_t n, cap;
	const char *bad;
	char bad_buf[40];
	bool too_many;
};

static void add_addrs(struct addr_list *a, const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && !a->bad && !a->too_many) {
		size_t j = i, n;
		char word[40], *end;
		unsigned long long v;
		uint64_t *nv;

		while (j < len && s[j] != '+' && s[j] != ' ' && s[j] != '\n' && s[j] != '\r')
			j++;
		n = j - i;
		if (n) {
			snprintf(word, sizeof(word), "%.*s", (int)(n < 39 ? n : 39), s + i);
			errno = 0;
			v = strtoull(word, &end, 0);
			if (n >= sizeof(word) || errno || *end || word[0] == '-') {
				snprintf(a->bad_buf, sizeof(a->bad_buf), "%s", word);
				a->bad = a->bad_buf;
				return;
			}
			if (a->n == MAX_SYMBOL_ADDRS) {
				a->too_many = true;
				return;
			}
			if (a->n == a->cap) {
				a->cap = a->cap ? a->cap * 2 : 64;
				nv = realloc(a->v, a->cap * sizeof(*nv));
				if (!nv) {
					a->too_many = true;
					return;
				}
				a->v = nv;
			}
			a->v[a->n++] = v;
		}
		i = j + 1;
	}
}

static void addrs_from_query(void *ctx, const char *key, const char *value)
{
	struct addr_list *a = ctx;

	/* GET /debug/pprof/symbol?pid=N&0x1234+0x5678: the addresses arrive as a key. */
	if (strcmp(key, "pid") == 0 || value)
		return;
	add_addrs(a, key, strlen(key));
}

/* x86-64: addresses from here up are the kernel's. */
#define KERNEL_ADDR_MIN 0xffff800000000000ull

/* Resolves a /symbol request's addresses as one batch: kernel ones in one streamed pass over
 * /proc/kallsyms that keeps only what they need (not the whole table per request), user ones
 * file by file. The lookups that follow are cache hits. */
static int symbol_prepare(struct symbolizer *sym, pid_t pid, const uint64_t *v, size_t n)
{
	struct sym_request *reqs = calloc(n, sizeof(*reqs));
	int err;

	if (!reqs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		reqs[i] = (struct sym_request){
			.addr = v[i], .pid = pid, .kernel = v[i] >= KERNEL_ADDR_MIN};
	err = symbolizer__prepare(sym, reqs, n);
	free(reqs);
	return err;
}

static int symbol(void *ctx, struct http_request *r)
{
	struct symbolizer_opts so = {.demangle = ((struct serve *)ctx)->o->demangle
							 ? SYM_DEMANGLE_FULL
							 : SYM_DEMANGLE_NONE,
				     .debug_dir = ((struct serve *)ctx)->o->debug_dir};
	struct capture_params p = {};
	struct addr_list a = {};
	struct strbuf out = {};
	struct symbolizer *sym = NULL;
	struct sym_result res;
	const char *body;
	size_t blen;
	char *text;
	int err = 0;

	if (!parse_pids(r, &p))
		return 0;
	if (p.npids > 1)
		return http_respond_error(r, 400, "symbol takes one pid");
	body = http_request__body(r, &blen);
	add_addrs(&a, body, blen);
	http_request__for_each_query(r, addrs_from_query, &a);
	if (a.bad || a.too_many) {
		free(a.v);
		if (a.bad)
			return http_respond_error(r, 400, "invalid address '%s': expected 0xHEX",
						  a.bad);
		return http_respond_error(r, 400, "too many addresses (at most %d)",
					  MAX_SYMBOL_ADDRS);
	}
	/* pprof only asks whether this is 0. Without a pid there is nothing to look in. */
	strbuf__printf(&out, "num_symbols: %d\n", p.npids ? 1 : 0);
	if (p.npids && a.n) {
		sym = symbolizer__new(&so);
		err = sym ? symbolizer__add_pid(sym, p.pids[0]) : -ENOMEM;
		if (err == -ESRCH || err == -ENOENT) {
			err = 0;
			strbuf__free(&out);
			symbolizer__free(sym);
			free(a.v);
			return http_respond_error(r, 404, "no such process: %d", p.pids[0]);
		}
	}
	if (sym && !err)
		err = symbol_prepare(sym, p.pids[0], a.v, a.n);
	for (size_t i = 0; sym && !err && i < a.n; i++) {
		bool kernel = a.v[i] >= KERNEL_ADDR_MIN;

		err = kernel ? symbolizer__kernel(sym, a.v[i], false, &res)
			     : symbolizer__user(sym, p.pids[0], a.v[i], false, &res);
		if (!err && res.mapping && res.mapping->has_functions)
			strbuf__printf(&out, "0x%" PRIx64 " %s\n", a.v[i], res.frames[0].function);
	}
	symbolizer__free(sym);
	free(a.v);
	if (err || strbuf__err(&out)) {
		strbuf__free(&out);
		return err ? err : -ENOMEM;
	}
	text = strbuf__take(&out, &blen);
	return http_respond_take(r, 200, "text/plain; charset=utf-8", text, blen);
}

static int cmdline(void *ctx, struct http_request *r)
{
	static const char *const known[] = {"pid", NULL};
	struct capture_params p = {};
	char path[64], *buf = NULL;
	size_t len = 0, n;
	FILE *f;

	(void)ctx;
	if (!check_known(r, known, "pid") || !parse_pids(r, &p))
		return 0;
	if (p.npids > 1)
		return http_respond_error(r, 400, "cmdline takes one pid");
	/* No pid: ours, as net/http/pprof answers with its own process's. */
	snprintf(path, sizeof(path), "/proc/%s/cmdline", p.npids ? "" : "self");
	if (p.npids)
		snprintf(path, sizeof(path), "/proc/%d/cmdline", p.pids[0]);
	f = fopen(path, "re");
	if (!f)
		return http_respond_error(r, 404, "no such process: %d", p.pids[0]);
	buf = malloc(1 << 16);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, (1 << 16) - 1, f);
	fclose(f);
	len = n;
	while (len && buf[len - 1] == '\0')
		len--;
	return http_respond_take(r, 200, "text/plain; charset=utf-8", buf, len);
}

/* --- index --- */

static void index_links(struct strbuf *b, const char *pid)
{
	char q[48];

	snprintf(q, sizeof(q), "%s%s", pid ? "pid=" : "", pid ? pid : "");
	for (size_t i = 0; i < NROUTES; i++) {
		if (!collector__find(pprof_routes[i].type) ||
		    strcmp(pprof_routes[i].name, "allocs") == 0)
			continue;
		strbuf__printf(b,
			       "<a href=\"flamegraph?%s%stype=%s&amp;seconds=%g\">%s</a> "
			       "<a class=pp href=\"%s?%s%sseconds=%g\" title=\"pprof "
			       "download\">&#8595;</a> ",
			       q, *q ? "&amp;" : "", pprof_routes[i].name, DEFAULT_FLAME_SECONDS,
			       strcmp(pprof_routes[i].name, "profile") ? pprof_routes[i].name
								       : "cpu",
			       pprof_routes[i].name, q, *q ? "&amp;" : "", DEFAULT_SECONDS);
	}
}

static const char index_head[] =
	"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><link rel=icon "
	"href=\"data:,\"><title>cprof-bpf "
	"/debug/pprof/</title><style>"
	"body{font:13px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu "
	"Sans',sans-serif;margin:16px 24px;color:#1d1d1f}"
	"h1{font-size:18px;margin:0 0 4px}h2{font-size:14px;margin:18px 0 6px}"
	"table{border-collapse:collapse}td,th{padding:3px 12px 3px 0;text-align:left;"
	"border-bottom:1px solid #eee;vertical-align:top}th{color:#6e6e73;font-weight:500}"
	"td.n{text-align:right;font-variant-numeric:tabular-nums}"
	"td.cmd{font-family:ui-monospace,'DejaVu Sans "
	"Mono',monospace;max-width:560px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}"
	"a{color:#0a66c2;text-decoration:none}a:hover{text-decoration:underline}a.pp{color:#6e6e73}"
	".muted{color:#6e6e73}code{background:#f5f5f7;padding:1px 4px;border-radius:3px}"
	"</style></head><body>";

static int index_page(void *ctx, struct http_request *r)
{
	struct serve *sv = ctx;
	struct proc_row *rows = NULL;
	struct strbuf b = {};
	char pid[16], *body;
	double interval = 0;
	size_t n = 0, len;
	int err;

	err = procs_table__get(sv->procs, &rows, &n, &interval);
	if (err)
		return err;
	strbuf__puts(&b, index_head);
	strbuf__printf(&b,
		       "<h1>/debug/pprof/</h1><div class=muted>cprof-bpf %s: profiles of any "
		       "process on this machine, as net/http/pprof serves them. "
		       "<code>go tool pprof '%s/debug/pprof/profile?pid=PID&amp;seconds=10'</code>"
		       "</div><h2>Profile types</h2><table><tr><th>route</th><th>type</th><th>"
		       "</th><th>what it shows</th></tr>",
		       CPROF_VERSION, http_server__url(sv->srv));
	for (size_t i = 0; i < NROUTES; i++) {
		const struct pprof_route *rt = &pprof_routes[i];
		bool have = collector__find(rt->type) != NULL;

		strbuf__printf(
			&b,
			"<tr><td><code>/debug/pprof/%s?pid=&amp;seconds=</code></td><td>%s</td>"
			"<td>%s</td><td>%s</td></tr>",
			rt->name, rt->type,
			have ? ""
			     : "<span class=muted>not compiled "
			       "in (501)</span>",
			rt->what);
	}
	strbuf__puts(&b, "<tr><td><code>/debug/pprof/flamegraph?pid=&amp;seconds=&amp;type=</code>"
			 "</td><td>any</td><td></td><td>the capture as an interactive flame "
			 "graph</td></tr>"
			 "<tr><td><code>/debug/pprof/symbol</code>, <code>/debug/pprof/cmdline?pid="
			 "</code></td><td></td><td></td><td>addresses to names; the command "
			 "line</td></tr>"
			 "<tr><td><code>/metrics</code>, <code>/healthz</code></td><td></td><td>"
			 "</td><td>the server's own counters; liveness</td></tr></table>");
	strbuf__printf(
		&b,
		"<h2>Processes</h2><div class=muted>%zu processes; CPU%% over the last "
		"%.1f s (100%% = one core). Links open a %g s flame graph; &#8595; downloads "
		"a %g s pprof profile.</div><table><tr><th>pid</th><th>CPU%%</th>"
		"<th>RSS</th><th>command</th><th>capture</th></tr>"
		"<tr><td>all</td><td></td><td></td><td class=cmd>whole system</td><td>",
		n, interval, DEFAULT_FLAME_SECONDS, DEFAULT_SECONDS);
	index_links(&b, NULL);
	strbuf__puts(&b, "</td></tr>");
	for (size_t i = 0; i < n; i++) {
		snprintf(pid, sizeof(pid), "%d", rows[i].pid);
		strbuf__printf(
			&b,
			"<tr><td class=n><a href=\"cmdline?pid=%d\">%d</a></td>"
			"<td class=n>%.1f</td><td class=n>%.1f MiB</td><td class=cmd title=\"",
			rows[i].pid, rows[i].pid, rows[i].cpu, rows[i].rss / 1048576.0);
		strbuf__html(&b, rows[i].cmdline);
		strbuf__puts(&b, "\">");
		strbuf__html(&b, rows[i].cmdline);
		strbuf__puts(&b, "</td><td>");
		index_links(&b, pid);
		strbuf__puts(&b, "</td></tr>");
	}
	strbuf__puts(&b, "</table></body></html>\n");
	free(rows);
	if (strbuf__err(&b)) {
		strbuf__free(&b);
		return -ENOMEM;
	}
	body = strbuf__take(&b, &len);
	return http_respond_take(r, 200, "text/html; charset=utf-8", body, len);
}

static int redirect_index(void *ctx, struct http_request *r)
{
	(void)ctx;
	http_request__add_header(r, "Location", "/debug/pprof/");
	return http_respond(r, 302, "text/plain; charset=utf-8", "/debug/pprof/\n", 14);
}

static int unknown_profile(void *ctx, struct http_request *r)
{
	(void)ctx;
	return http_respond_error(r, 404,
				  "unknown profile '%.64s' (known: profile, heap, allocs, mutex, "
				  "block, threadcreate, flamegraph, symbol, cmdline)",
				  http_request__path(r) + strlen("/debug/pprof/"));
}

/* --- the server --- */

static int serve_loop(struct serve *sv)
{
	struct sigaction sa = {.sa_handler = on_signal};
	struct sigaction ign = {.sa_handler = SIG_IGN};

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGPIPE, &ign, NULL);
	printf("cprof-bpf: serving %s/debug/pprof/\n", http_server__url(sv->srv));
	fflush(stdout);
	while (!exiting)
		usleep(100000);
	pr_info("stopping; running captures end now and send what they collected\n");
	return 0;
}

int serve__run(const struct serve_opts *o)
{
	struct serve sv = {.o = o, .started = time(NULL)};
	const struct http_route routes[] = {
		{"/debug/pprof/", NULL, index_page, &sv},
		{"/debug/pprof", NULL, redirect_index, &sv},
		{"/", NULL, redirect_index, &sv},
		{"/debug/pprof/profile", NULL, route_profile, &sv},
		{"/debug/pprof/heap", NULL, route_heap, &sv},
		{"/debug/pprof/allocs", NULL, route_allocs, &sv},
		{"/debug/pprof/mutex", NULL, route_mutex, &sv},
		{"/debug/pprof/block", NULL, route_block, &sv},
		{"/debug/pprof/threadcreate", NULL, route_threadcreate, &sv},
		{"/debug/pprof/flamegraph", NULL, flamegraph, &sv},
		{"/debug/pprof/symbol", "GET,POST", symbol, &sv},
		{"/debug/pprof/cmdline", NULL, cmdline, &sv},
		{"/debug/pprof/*", NULL, unknown_profile, &sv},
		{"/metrics", NULL, metrics, &sv},
		{"/healthz", NULL, healthz, &sv},
	};
	struct http_server_opts ho = {
		.listen = o->listen,
		.token_file = o->token_file,
		.tls_cert = o->tls_cert,
		.tls_key = o->tls_key,
		.idle_timeout = o->idle_timeout,
		.routes = routes,
		.nroutes = sizeof(routes) / sizeof(routes[0]),
		.on_request = on_request,
		.ctx = &sv,
	};
	int err;

	if (preflight__check())
		return 1;
	log__route_libbpf();
	collector__names(); /* fills its static buffer before threads race to */
	pthread_mutex_init(&sv.lock, NULL);
	sv.procs = procs_table__new();
	sv.pool = collector_pool__new();
	if (!sv.procs || !sv.pool) {
		procs_table__free(sv.procs);
		collector_pool__free(sv.pool);
		return 1;
	}
	err = http_server__new(&ho, &sv.srv);
	if (!err)
		err = http_server__start(sv.srv);
	if (!err)
		err = serve_loop(&sv);
	http_server__free(sv.srv);
	procs_table__free(sv.procs);
	collector_pool__free(sv.pool);
	pthread_mutex_destroy(&sv.lock);
	return err ? 1 : 0;
}
