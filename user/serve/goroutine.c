/* /debug/pprof/goroutine?pid=N[&debug=0|1|2]: a snapshot of every thread of the processes (Go's
 * goroutine profile for any process). debug=0 (the default) is the pprof, debug=1 the stacks
 * grouped with their counts, debug=2 a block per thread (Go's goroutine dump). The snapshot is
 * taken at once: seconds= is accepted (the index's links carry it) and ignored. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pprof/builder.h"
#include "serve/serve_int.h"
#include "sym/symbolizer.h"
#include "threads/snapshot.h"

static bool parse_debug(struct http_request *r, int *debug)
{
	const char *v = http_request__query(r, "debug");

	*debug = 0;
	if (!v || !*v)
		return true;
	if ((v[0] == '0' || v[0] == '1' || v[0] == '2') && v[1] == '\0') {
		*debug = v[0] - '0';
		return true;
	}
	http_respond_error(r, 400, "debug=%.16s: 0 (pprof), 1 (grouped) or 2 (a block per thread)",
			   v);
	return false;
}

/* The snapshot as text (debug 1 or 2). */
static int respond_text(struct serve *sv, struct http_request *r, const struct threads_snapshot *s,
			struct symbolizer *sym, int debug)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int err;

	if (!f)
		err = -ENOMEM;
	else {
		err = threads__write_text(s, sym, f, debug);
		if (fclose(f) && !err)
			err = -ENOMEM;
	}
	if (err) {
		free(text);
		metrics__count_internal_error(sv);
		return http_respond_error(r, 500, "cannot write the threads: %s", strerror(-err));
	}
	return http_respond_take(r, 200, "text/plain; charset=utf-8", text, len);
}

int goroutine__route(void *ctx, struct http_request *r)
{
	/* seconds: the index's links carry it; a snapshot takes no time and ignores it. */
	static const char *const known[] = {"pid", "debug", "seconds", NULL};
	const struct pprof_route *rt = ((struct serve_route_ctx *)ctx)->route;
	struct serve *sv = ((struct serve_route_ctx *)ctx)->sv;
	struct capture_params p = {.route = rt};
	struct threads_snapshot *snap = NULL;
	struct pprof_builder *b = NULL;
	struct symbolizer *sym = NULL;
	int debug, ret;

	if (!params__check_known(r, known, "pid, debug, seconds (ignored)") ||
	    !parse_debug(r, &debug) || !params__pids(r, &p) ||
	    profiles__capture(sv, r, &p, &b, &sym, debug ? &snap : NULL))
		return 0;
	if (debug) {
		ret = snap ? respond_text(sv, r, snap, sym, debug)
			   : http_respond_error(r, 500, "the snapshot was not kept");
		threads_snapshot__free(snap);
		pprof_builder__free(b);
		symbolizer__free(sym);
		return ret;
	}
	return profiles__respond_pprof(sv, r, rt->name, b, sym);
}
