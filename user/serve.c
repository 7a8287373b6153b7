/* serve: the routes of net/http/pprof for any pid, each capture run through capture__run(), on
 * the HTTP server of http/server.h. This file holds the URL table and the server's life; the
 * routes' work is in serve/ (see serve/serve_int.h for which file does what). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "collect/collector.h"
#include "collect/pool.h"
#include "http/procs.h"
#include "serve.h"
#include "serve/serve_int.h"
#include "util/log.h"
#include "util/preflight.h"

/* The profiles of /debug/pprof/NAME. A route that is not a capture of a collector's type names
 * its own handler in fn. */
const struct pprof_route serve__pprof_routes[] = {
	{"profile", "cpu", NULL, "CPU profile: where threads spend CPU time (seconds=S, hz=HZ)"},
	{"heap", "heap", "inuse_space", "memory in use, sampled allocations that are not freed"},
	{"allocs", "heap", "alloc_space",
	 "all sampled allocations (heap, shown by allocated bytes)", .no_index_link = true},
	{"mutex", "mutex", NULL, "lock contention: where threads wait for contended locks"},
	{"block", "offcpu", NULL, "off-CPU time: where threads block (sleep, I/O, locks)"},
	{"threadcreate", "threadcreate", NULL, "the stacks that created threads during the window"},
	{"goroutine", "threads", NULL,
	 "every thread now: state, wait, lock holder, stacks (debug=1 grouped, debug=2 a block per "
	 "thread)",
	 .fn = goroutine__route},
};
const size_t serve__npprof_routes = sizeof(serve__pprof_routes) / sizeof(serve__pprof_routes[0]);

#define MAX_ROUTES 32

volatile sig_atomic_t serve__exiting;

static void on_signal(int sig)
{
	(void)sig;
	serve__exiting = 1;
}

static int healthz(void *ctx, struct http_request *r)
{
	(void)ctx;
	return http_respond(r, 200, "text/plain; charset=utf-8", "ok\n", 3);
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
				  "block, threadcreate, goroutine, flamegraph, symbol, cmdline)",
				  http_request__path(r) + strlen("/debug/pprof/"));
}

/* The URL table: the fixed routes, one per profile of serve__pprof_routes, then the catch-all
 * of /debug/pprof/. paths and ctxs are the storage of the profile routes' paths and contexts. */
static size_t build_routes(struct serve *sv, struct http_route *routes, char (*paths)[64],
			   struct serve_route_ctx *ctxs)
{
	const struct http_route fixed[] = {
		{"/debug/pprof/", NULL, index__route, &ctxs[0]},
		{"/debug/pprof", NULL, redirect_index, NULL},
		{"/", NULL, redirect_index, NULL},
		{"/debug/pprof/flamegraph", NULL, profiles__flamegraph, &ctxs[0]},
		{"/debug/pprof/symbol", "GET,POST", symbol__route, &ctxs[0]},
		{"/debug/pprof/cmdline", NULL, symbol__cmdline, &ctxs[0]},
		{"/metrics", NULL, metrics__route, &ctxs[0]},
		{"/healthz", NULL, healthz, NULL},
	};
	size_t n = 0;

	ctxs[0] = (struct serve_route_ctx){sv, NULL};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		routes[n++] = fixed[i];
	for (size_t i = 0; i < serve__npprof_routes && n < MAX_ROUTES - 1; i++) {
		const struct pprof_route *rt = &serve__pprof_routes[i];

		snprintf(paths[i], sizeof(paths[i]), "/debug/pprof/%s", rt->name);
		ctxs[i + 1] = (struct serve_route_ctx){sv, rt};
		routes[n++] = (struct http_route){paths[i], NULL, rt->fn ? rt->fn : profiles__route,
						  &ctxs[i + 1]};
	}
	routes[n++] = (struct http_route){"/debug/pprof/*", NULL, unknown_profile, NULL};
	return n;
}

static int serve_loop(struct serve *sv)
{
	struct sigaction sa = {.sa_handler = on_signal};
	struct sigaction ign = {.sa_handler = SIG_IGN};

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGPIPE, &ign, NULL);
	printf("cprof-bpf: serving %s/debug/pprof/\n", http_server__url(sv->srv));
	fflush(stdout);
	while (!serve__exiting)
		usleep(100000);
	pr_info("stopping; running captures end now and send what they collected\n");
	return 0;
}

int serve__run(const struct cli_opts *o)
{
	struct serve sv = {.o = o, .started = time(NULL)};
	struct http_route routes[MAX_ROUTES];
	char paths[MAX_ROUTES][64];
	struct serve_route_ctx ctxs[MAX_ROUTES];
	struct http_server_opts ho = {
		.listen = o->listen,
		.token_file = o->token_file,
		.tls_cert = o->tls_cert,
		.tls_key = o->tls_key,
		.idle_timeout = o->idle_timeout,
		.max_connections = o->max_connections,
		.max_per_client = o->max_per_client,
		.head_timeout = o->request_timeout,
		.routes = routes,
		.nroutes = build_routes(&sv, routes, paths, ctxs),
		.on_request = metrics__on_request,
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
