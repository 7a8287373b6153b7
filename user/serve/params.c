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

/* pid=N or pid=N,M,...; absent means the whole system (when the requester may). Answers
 * 400/403/404 itself. */
bool params__pids(struct http_request *r, struct capture_params *p)
{
	const char *arg = http_request__query(r, "pid");
	char buf[1024], *tok, *save = NULL, why[256];
	long v;

	p->npids = 0;
	access__of_peer(http_request__peer(r), &p->access);
	if (!arg && p->route && access__system(&p->access, why, sizeof(why))) {
		http_respond_error(r, 403, "%s", why);
		return false;
	}
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
		if (!pid_allowed(r, p, (pid_t)v))
			return false;
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

static uint64_t us_to_ns(long us)
{
	return us > 0 ? (uint64_t)us * 1000 : 0;
}

/* fraction= (mutex) and rate= (block): Go's SetMutexProfileFraction and SetBlockProfileRate
 * for this capture, or the server's --mutex-fraction and --block-rate; and the server's
 * --min-wait (mutex) or --min-block (block). Other types keep all three 0, so that captures
 * differing only in them share their programs (collector_pool). */
static bool parse_sampling(struct serve *sv, struct http_request *r, struct capture_params *p)
{
	const char *frac = http_request__query(r, "fraction");
	const char *rate = http_request__query(r, "rate");
	bool mutex = collector__find(p->route->type) == collector__find("mutex");
	bool block = collector__find(p->route->type) == collector__find("offcpu");

	p->fraction = 0;
	p->rate = p->min_wait_ns = 0;
	if (mutex) {
		p->fraction = sv->o->mutex_fraction;
		p->min_wait_ns = us_to_ns(sv->o->min_wait_us);
	} else if (block) {
		p->rate = sv->o->block_rate_ns;
		p->min_wait_ns = us_to_ns(sv->o->min_block_us);
	}
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
	return params__pids(r, p) && parse_seconds(sv, r, def_seconds, &p->seconds) &&
	       parse_freq(sv, r, &p->freq) && parse_sampling(sv, r, p);
}
