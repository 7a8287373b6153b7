/* serve's query parameters: which processes (and whether the requester may profile them),
 * how long, how often, which profile type. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collect/collector.h"
#include "proc/stat.h"
#include "serve/serve_int.h"

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
bool params__check_known(struct http_request *r, const char *const *known, const char *list)
{
	struct unknown_param u = {known};

	http_request__for_each_query(r, find_unknown, &u);
	if (!u.bad)
		return true;
	http_respond_error(r, 400, "unknown parameter '%.64s' (known: %s)", u.bad, list);
	return false;
}

#define PF_KTHREAD 0x00200000 /* include/linux/sched.h: a kernel thread */

/* The requester may profile pid (answers 404, 403, or 400 for a kernel thread asked for heap
 * or mutex when not). */
static bool pid_allowed(struct http_request *r, struct capture_params *p, pid_t pid)
{
	struct proc_stat st = {};
	char why[256];
	int err = access__pid(&p->access, pid, why, sizeof(why));

	/* A zombie has exited: nothing of it runs or can be read any more. */
	if (err == -ESRCH ||
	    (!err && (proc_stat__read(pid, &st) || st.state == 'Z' || st.state == 'X'))) {
		http_respond_error(r, 404, "no such process: %d", pid);
		return false;
	}
	if (err) {
		http_respond_error(r, 403, "%s", why);
		return false;
	}
	if (p->route && strcmp(p->route->type, "heap") && strcmp(p->route->type, "mutex"))
		return true;
	/* A kernel thread has no user memory: nothing for the uprobes of heap and mutex. */
	if (p->route && (st.flags & PF_KTHREAD)) {
		http_respond_error(r, 400,
				   "pid %d is a kernel thread: it has no user-space %s to profile",
				   pid, p->route->type);
		return false;
	}
	return true;
}

/* Sets req as the table's option with the query parameter param does (same parser, same
 * range as the command-line flag), when the request has it. Answers 400 and returns false when
 * the value is refused. */
static bool apply_query(struct http_request *r, const char *param, struct cli_opts *req)
{
	const char *arg = http_request__query(r, param);
	char msg[512];

	if (!arg)
		return true;
	if (cli__apply(cli__query_option(param), param, arg, req, msg, sizeof(msg)) == 0)
		return true;
	http_respond_error(r, 400, "%s", msg);
	return false;
}

/* pid=N or pid=N,M,...; absent means the whole system (when the requester may). Answers
 * 400/403/404 itself. */
bool params__pids(struct http_request *r, struct capture_params *p)
{
	const char *arg = http_request__query(r, "pid");
	struct cli_opts req = {0};
	char why[256];
	bool ok;

	p->npids = 0;
	access__of_peer(http_request__peer(r), &p->access);
	if (!arg && p->route && access__system(&p->access, why, sizeof(why))) {
		http_respond_error(r, 403, "%s", why);
		return false;
	}
	if (arg && strlen(arg) >= 1024) {
		http_respond_error(r, 400, "pid list too long (at most %d pids)", MAX_PIDS);
		return false;
	}
	ok = apply_query(r, "pid", &req);
	for (size_t i = 0; ok && i < req.npids; i++) {
		if (p->npids == MAX_PIDS) {
			http_respond_error(r, 400, "too many pids (at most %d)", MAX_PIDS);
			ok = false;
		} else if ((ok = pid_allowed(r, p, req.pids[i]))) {
			p->pids[p->npids++] = req.pids[i];
		}
	}
	free(req.pids);
	return ok;
}

/* seconds= (as -d), hz= (-F), and for their types fraction= (--mutex-fraction) and rate=
 * (--block-rate): Go's SetMutexProfileFraction and SetBlockProfileRate for this capture.
 * Absent, the server's own options hold. (capture__run applies each to its type alone, so
 * that captures of other types share their programs: collector_pool.) */
static bool parse_query(struct serve *sv, struct http_request *r, struct capture_params *p,
			double def_seconds)
{
	struct cli_opts req = *sv->o; /* a shallow copy: the server's options, then the query's */
	bool mutex = collector__find(p->route->type) == collector__find("mutex");
	bool block = collector__find(p->route->type) == collector__find("offcpu");
	bool frac = http_request__query(r, "fraction"), rate = http_request__query(r, "rate");

	if ((frac && !mutex) || (rate && !block)) {
		http_respond_error(
			r, 400, "%s applies to /debug/pprof/%s only",
			frac && !mutex ? "fraction=" : "rate=", frac && !mutex ? "mutex" : "block");
		return false;
	}
	req.duration = def_seconds < sv->o->max_seconds ? def_seconds : sv->o->max_seconds;
	if (!apply_query(r, "seconds", &req) || !apply_query(r, "hz", &req) ||
	    !apply_query(r, "fraction", &req) || !apply_query(r, "rate", &req))
		return false;
	if (req.duration > sv->o->max_seconds) {
		http_respond_error(r, 400,
				   "seconds=%.32s is more than the cap of %g s (the server's "
				   "--max-seconds)",
				   http_request__query(r, "seconds"), sv->o->max_seconds);
		return false;
	}
	p->seconds = req.duration;
	p->freq = req.freq;
	p->fraction = req.mutex_fraction;
	p->rate = req.block_rate_ns;
	return true;
}

/* A route the flame graph can run: a plain capture, or a snapshot (goroutine), whose own
 * handler only adds text outputs. */
static bool capturable(const struct pprof_route *rt)
{
	const struct collector_ops *ops = collector__find(rt->type);

	return !rt->fn || (ops && ops->snapshot);
}

const struct pprof_route *params__route_by_name(const char *name)
{
	const struct pprof_route *rt = serve__pprof_routes;

	for (size_t i = 0; i < serve__npprof_routes; i++)
		if (capturable(&rt[i]) && strcmp(rt[i].name, name) == 0)
			return &rt[i];
	/* The type names work too: cpu, offcpu. */
	for (size_t i = 0; i < serve__npprof_routes; i++)
		if (capturable(&rt[i]) && strcmp(rt[i].type, name) == 0)
			return &rt[i];
	return NULL;
}

bool params__capture(struct serve *sv, struct http_request *r, struct capture_params *p,
		     double def_seconds)
{
	return params__pids(r, p) && parse_query(sv, r, p, def_seconds);
}
