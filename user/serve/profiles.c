/* serve's capture routes: /debug/pprof/{profile,heap,allocs,mutex,block} and the flame graph
 * page, each one capture__run() with the request's parameters.
 *
 * Symbolizers: one per capture, never shared. A capture's symbolizer snapshots the mappings of
 * the processes it sees and is freed with its profile, so captures need no lock between them, a
 * pid reused between two captures cannot be symbolized with the old process's files, and memory
 * does not grow with the server's lifetime. The cost is that each capture reads the symbol
 * tables it needs again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collect/collector.h"
#include "http/flamegraph.h"
#include "proc/maps.h"
#include "serve/serve_int.h"
#include "sym/symbolizer.h"
#include "util/clock.h"

static bool request_gone(void *ctx)
{
	return serve__exiting || http_request__should_stop(ctx);
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

/* A capture that failed: the client's mistake (4xx) or ours (500). */
static void answer_failure(struct http_request *r, const struct pprof_route *rt, int err)
{
	if (err == -ESRCH || err == -ENOENT)
		http_respond_error(r, 404,
				   "the process exited before it could be profiled, or has no "
				   "user space to profile (%s)",
				   strerror(-err));
	else if (err == -EACCES || err == -EPERM)
		http_respond_error(r, 403, "%s capture not permitted: %s", rt->type,
				   strerror(-err));
	else
		http_respond_error(r, 500, "%s capture failed: %s (the server's log says more)",
				   rt->type, strerror(-err));
}

int profiles__capture(struct serve *sv, struct http_request *r, const struct capture_params *p,
		      struct pprof_builder **out, struct symbolizer **sym_out,
		      struct threads_snapshot **snap_out)
{
	const struct pprof_route *rt = p->route;
	/* Kernel stacks only for whom the kernel would show kernel addresses. */
	bool no_kernel = sv->o->no_kernel || !access__kernel(&p->access);
	struct symbolizer_opts so = {.demangle = sv->o->demangle ? SYM_DEMANGLE_FULL
								 : SYM_DEMANGLE_NONE,
				     .no_kernel = sv->o->no_kernel,
				     .debug_dir = sv->o->debug_dir};
	struct capture_stats st = {};
	/* The server's options, with what this request asked for (params.c) in their place. */
	struct cli_opts req = *sv->o;
	struct capture_opts co = {
		.opts = &req,
		.pool = sv->pool,
		.should_stop = request_gone,
		.ctx = r,
		.default_sample_type = rt->default_sample_type,
		.stats = &st,
		.threads_out = snap_out,
	};
	struct symbolizer *sym;
	double t0 = clock__mono_s();
	bool gone;
	int err;

	req.type = rt->type;
	req.pids = (pid_t *)p->pids;
	req.npids = p->npids;
	req.all = p->npids == 0;
	req.duration = p->seconds;
	req.freq = p->freq;
	req.no_kernel = no_kernel;
	req.mutex_fraction = p->fraction;
	req.block_rate_ns = p->rate;

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
	gone = http_request__should_stop(r) && !serve__exiting;
	metrics__count_capture(sv, rt->type,
			       err    ? CAPTURE_FAILED
			       : gone ? CAPTURE_CANCELLED
				      : CAPTURE_OK,
			       &st, clock__mono_s() - t0);
	if (err) {
		symbolizer__free(sym);
		answer_failure(r, rt, err);
		return err;
	}
	*sym_out = sym;
	return 0;
}

int profiles__respond_pprof(struct serve *sv, struct http_request *r, const char *name,
			    struct pprof_builder *b, struct symbolizer *sym)
{
	char disp[128];
	uint8_t *buf;
	size_t len;
	int err = pprof_builder__encode(b, true, &buf, &len);

	pprof_builder__free(b);
	symbolizer__free(sym);
	if (err) {
		metrics__count_internal_error(sv);
		return http_respond_error(r, 500, "cannot encode the profile: %s", strerror(-err));
	}
	snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", name);
	http_request__add_header(r, "Content-Disposition", disp);
	return http_respond_take(r, 200, "application/octet-stream", buf, len);
}

int profiles__route(void *ctx, struct http_request *r)
{
	static const char *const known[] = {"pid", "seconds", "hz", "fraction", "rate", NULL};
	const struct pprof_route *rt = ((struct serve_route_ctx *)ctx)->route;
	struct serve *sv = ((struct serve_route_ctx *)ctx)->sv;
	struct capture_params p = {.route = rt};
	struct pprof_builder *b = NULL;
	struct symbolizer *sym = NULL;

	if (!params__check_known(r, known, "pid, seconds, hz, fraction, rate") ||
	    !params__capture(sv, r, &p, DEFAULT_SECONDS) ||
	    profiles__capture(sv, r, &p, &b, &sym, NULL))
		return 0;
	return profiles__respond_pprof(sv, r, rt->name, b, sym);
}

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

int profiles__flamegraph(void *ctx, struct http_request *r)
{
	static const char *const known[] = {"pid",	"seconds", "hz", "type",
					    "fraction", "rate",	   NULL};
	struct serve *sv = ((struct serve_route_ctx *)ctx)->sv;
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

	if (!params__check_known(r, known, "pid, seconds, hz, type, fraction, rate"))
		return 0;
	p.route = params__route_by_name(type ? type : "profile");
	if (!p.route)
		return http_respond_error(
			r, 400,
			"unknown type '%.32s' (known: profile or cpu, heap, "
			"allocs, mutex, block or offcpu, threadcreate, goroutine)",
			type);
	if (!params__capture(sv, r, &p, DEFAULT_SECONDS) ||
	    profiles__capture(sv, r, &p, &b, &sym, NULL))
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
		metrics__count_internal_error(sv);
		return http_respond_error(r, 500, "cannot render the flame graph: %s",
					  strerror(-err));
	}
	return http_respond_take(r, 200, "text/html; charset=utf-8", html, hlen);
}
