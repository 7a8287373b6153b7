/* The agent's window loop: one system-wide cpu collector stays attached; every --interval its
 * aggregation map is drained (lookup-and-delete, so nothing between windows is lost) into a
 * pprof profile labelled per process, which is stored and/or pushed. Processes are announced by
 * BPF when first sampled, on exec and on exit; the collector's notice thread reads them at once
 * (short-lived processes keep their symbols) and procs.c keeps what is known of each until its
 * last window. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <curl/curl.h>

#include "agent/agent.h"
#include "agent/internal.h"
#include "agent/session.h"
#include "collect/collector.h"
#include "collect/drops.h"
#include "proc/maps.h"
#include "sym/symbolizer.h"
#include "util/clock.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/preflight.h"

/* The symbolizer's cache bounds for the agent (see sym/symbolizer.h). */
#define AGENT_SYM_CACHE_ADDRS (1 << 15)
#define AGENT_SYM_DWARF_OPEN  8
/* Python code objects announced, per (pid, code), kept at most: the hot ones of the machine's
 * Python processes stay; one evicted is announced again when sampled (one more notice). */
#define AGENT_PY_CODES 16384
/* The fewest entries of the stack map (stack_map_entries). */
#define AGENT_STACKS_MIN 4096

volatile sig_atomic_t agent_exiting;
/* Written by a stop signal to end the main thread's wait for notices (collector__wake_fd),
 * whichever thread the signal is delivered to; -1 outside a session. */
static volatile sig_atomic_t wake_fd = -1;

static void on_signal(int sig)
{
	uint64_t one = 1;
	int fd = wake_fd, saved = errno;

	(void)sig;
	agent_exiting = 1;
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
		/* the counter is full: a wake-up is pending anyway */
	}
	errno = saved;
}

/* Process notices are handled within a few ms even while a window is drained and written
 * (symbolizing a cold binary can take long): a process that lives 100 ms must not exit before
 * its mappings are read. Called between symbol lookups, when the symbolizer is not in use. */
#define NOTICE_LATENCY_NS 5000000

void session__poll(struct session *s)
{
	int64_t now = clock__ns(CLOCK_MONOTONIC);

	if (now - s->last_poll < NOTICE_LATENCY_NS)
		return;
	s->last_poll = now;
	collector__poll(s->col, 0);
}

static int resolve_user(void *ctx, pid_t pid, uint64_t addr, bool is_return, struct sym_result *r)
{
	struct session *s = ctx;

	session__poll(s);
	return symbolizer__user(s->sym, pid, addr, is_return, r);
}

static int resolve_kernel(void *ctx, uint64_t addr, bool is_return, struct sym_result *r)
{
	struct session *s = ctx;

	session__poll(s);
	return symbolizer__kernel(s->sym, addr, is_return, r);
}

/* The window's new kernel addresses, named in runs rather than one by one. */
static int prepare_kernel(void *ctx, struct sym_request *reqs, size_t n)
{
	struct session *s = ctx;

	return symbolizer__prepare_kernel(s->sym, reqs, n);
}

/* A window's profile builder, its header comments written. */
static struct pprof_builder *window_builder(struct session *s, int64_t t0, int64_t duration)
{
	/* User addresses are resolved one by one, polling notices in between (a short-lived
	 * process must be snapshotted while it lives); kernel ones in runs first. */
	struct pprof_resolver res = {resolve_user, resolve_kernel, s, prepare_kernel};
	struct pprof_config cfg = {.time_nanos = t0, .duration_nanos = duration};
	struct agent *a = s->a;
	struct pprof_builder *b;

	s->col->ops->pprof_config(s->col, &cfg);
	b = pprof_builder__new(&cfg, &res);
	if (!b)
		return NULL;
	pprof_builder__add_comment(b, "cprof-bpf %s", CPROF_VERSION);
	pprof_builder__add_comment(b, "target: whole system (agent on %s, window %llu)", a->host,
				   (unsigned long long)s->nwindow);
	pprof_builder__add_comment(b, "type: cpu, %d Hz per CPU", a->o->freq);
	return b;
}

/* Drains the window's samples into b and symbolizes them; *st gets the collector's counters
 * and *d what changed since the last window, which b's comments report as drops. */
static int window_collect(struct session *s, struct pprof_builder *b, struct collect_stats *st,
			  struct collect_stats *d)
{
	int err = collector__drain(s->col, b);

	/* Symbolized now, before a process's snapshot can be dropped. */
	if (!err)
		err = pprof_builder__resolve(b);
	if (err) {
		pr_err("cannot read the collected samples: %s\n", strerror(-err));
		return err;
	}
	if (collector__stats(s->col, st) == 0) {
		collect_stats__since(st, &s->prev, d);
		s->prev = *st;
	}
	d->procs_missed = s->procs_missed - s->procs_missed_prev;
	drops__report(b, d);
	return 0;
}

/* The window's profile as protobuf (raw, for splitting by service) and gzipped (stored and
 * pushed). Notices are polled around the slow steps. */
static int window_encode(struct session *s, struct pprof_builder *b, uint8_t **raw, size_t *rawlen,
			 uint8_t **gz, size_t *gzlen)
{
	int err;

	session__poll(s);
	err = pprof_builder__encode(b, false, raw, rawlen);
	if (!err)
		err = pprof__gzip(*raw, *rawlen, gz, gzlen);
	if (!err)
		session__poll(s);
	return err;
}

/* The agent's own cost at the end of a window: its CPU time so far (seconds), its share of one
 * core over the window (percent) and its RSS (bytes). */
struct window_cost {
	double cpu, cpu_pct;
	uint64_t rss;
};

/* Counts the written window in the agent's metrics, logs it, and moves the session on to the
 * next window. */
static void window_account(struct session *s, struct pprof_builder *b,
			   const struct collect_stats *st, const struct collect_stats *d,
			   const struct window_cost *cost, int64_t m1, size_t gzlen)
{
	struct agent *a = s->a;

	pthread_mutex_lock(&a->lock);
	a->m.windows++;
	a->m.samples += d->bpf[CPROF_STAT_SAMPLES];
	a->m.stacks += pprof_builder__nsamples(b);
	drops__add(a->m.dropped, d);
	a->m.trimmed_stacks += d->trimmed_stacks;
	a->m.own_cpu_pct = cost->cpu_pct;
	a->m.own_cpu_seconds = cost->cpu;
	a->m.own_rss = cost->rss;
	a->m.last_window_mono = m1;
	a->m.procs_tracked = hashmap__size(s->procs);
	a->m.unwind = st->unwind;
	a->m.execs = st->execs;
	a->m.execs_unread = st->execs_unread;
	symbolizer__stats(s->sym, &a->m.sym);
	pthread_mutex_unlock(&a->lock);
	pr_info("window %llu: %llu samples, %zu stacks, %zu bytes, %llu processes read; agent cpu "
		"%.2f%%, rss %.1f MB\n",
		(unsigned long long)s->nwindow, (unsigned long long)d->bpf[CPROF_STAT_SAMPLES],
		pprof_builder__nsamples(b), gzlen, (unsigned long long)s->procs_read, cost->cpu_pct,
		cost->rss / 1048576.0);
	s->procs_read = 0;
	s->cpu_prev = cost->cpu;
	s->procs_missed_prev = s->procs_missed;
	s->nwindow++;
}

/* Drains one window [t0, now) into a profile and stores / pushes it. */
static int window_flush(struct session *s, int64_t t0, int64_t m0)
{
	struct agent *a = s->a;
	struct collect_stats st = {}, d = {};
	struct window_cost cost;
	struct pprof_builder *b;
	uint8_t *raw = NULL, *gz = NULL;
	size_t rawlen = 0, gzlen = 0;
	int64_t t1 = clock__ns(CLOCK_REALTIME), m1 = clock__ns(CLOCK_MONOTONIC);
	char name[96];
	int err;

	s->next_t0 = t1;
	s->next_m0 = m1;
	b = window_builder(s, t0, m1 - m0);
	if (!b)
		return -ENOMEM;
	err = window_collect(s, b, &st, &d);
	if (err)
		goto out;
	metrics__self(&cost.cpu, &cost.rss);
	cost.cpu_pct = (cost.cpu - s->cpu_prev) * 1e9 / (double)(m1 - m0) * 100;
	pprof_builder__add_comment(b, "agent: own cpu %.2f%% of one core, rss %.1f MB",
				   cost.cpu_pct, cost.rss / 1048576.0);
	err = window_encode(s, b, &raw, &rawlen, &gz, &gzlen);
	if (err)
		goto out;
	agent__profile_name(name, sizeof(name), "cpu", t0, 0, NULL);
	agent__emit(a, name, raw, rawlen, gz, gzlen, t0 / 1000000000ll, t1 / 1000000000ll,
		    a->o->freq, NULL);
	window_account(s, b, &st, &d, &cost, m1, gzlen);
out:
	free(raw);
	free(gz);
	pprof_builder__free(b);
	return err;
}

static bool duration_over(const struct agent *a, int64_t start)
{
	return a->o->duration > 0 &&
	       clock__ns(CLOCK_MONOTONIC) - start >= (int64_t)(a->o->duration * 1e9);
}

/* The entries of the agent's stack map. A window's distinct kernel stacks (and user ones with
 * --unwind fp) are at most its samples, CPUs x Hz x seconds; with 32 entries a sample, a new
 * stack's chance of landing on a taken bucket (lost, counted) stays under 1/32 while its
 * window is read, and the kernel, which preallocates every entry (1 KiB each) when the agent
 * starts, does not fill 32 MiB on a machine that takes a few hundred samples a window. */
static uint32_t stack_map_entries(const struct agent *a)
{
	double want = (double)libbpf_num_possible_cpus() * a->o->freq * a->o->interval * 32;
	uint32_t n = AGENT_STACKS_MIN;

	if (a->o->unwind == CPROF_UNWIND_FP)
		want *= 2;
	while (n < want && n < CPROF_DEFAULT_MAX_STACKS)
		n *= 2;
	return n;
}

/* Sets up what the session's windows share: the symbolizer (its kernel names ready), the
 * process table and the cpu collector, whose opening starts sampling; *t0 and *m0 get the
 * start of the first window (wall clock and monotonic). On failure, session_stop frees what
 * was set up. */
static int session_start(struct session *s, int64_t *t0, int64_t *m0)
{
	struct agent *a = s->a;
	struct collect_opts co = {
		.all = true,
		.no_kernel_stacks = a->o->no_kernel,
		.unwind_mode = a->o->unwind,
		.unwind_mem = a->o->unwind_mem,
		.unwind_cpu = a->o->unwind_cpu,
		.unwind_cache = a->o->unwind_cache,
		.unwind_cache_size = a->o->unwind_cache_size,
		.unwind_lazy = true,
		.py_codes_max = AGENT_PY_CODES,
		.freq = a->o->freq,
		.max_keys = a->o->max_keys,
		.max_stacks = stack_map_entries(a),
		.live = true,
		.lifecycle = true,
		.on_proc = procs__on_proc,
		.notice_thread = true,
		.pid_labels = procs__labels,
		.ctx = s,
	};
	int err;

	s->sym = symbolizer__new(&s->so);
	s->procs = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	if (!s->sym || !s->procs)
		return -ENOMEM;
	/* Kernel names: the kernel's own lookup, opened now (or /proc/kallsyms, read meanwhile on
	 * a thread of its own where that cannot load), not in the first drain. */
	if (!a->o->no_kernel)
		symbolizer__preload_kernel(s->sym);
	/* The first window starts as sampling does, before the programs are attached. */
	*t0 = clock__ns(CLOCK_REALTIME);
	*m0 = clock__ns(CLOCK_MONOTONIC);
	err = collector__open(collector__find("cpu"), &co, &s->col);
	if (err)
		return err;
	s->seen = bpf_object__find_map_by_name(s->col->obj, "seen");
	metrics__self(&s->cpu_prev, &(uint64_t){0});
	return 0;
}

static void session_stop(struct session *s)
{
	collector__free(s->col);
	procs__free(s);
	symbolizer__free(s->sym);
}

/* When the window that started at m0 ends: --interval later, or earlier where --duration
 * (counted from start) ends first. */
static int64_t window_end(const struct agent *a, int64_t start, int64_t m0)
{
	int64_t end = m0 + (int64_t)(a->o->interval * 1e9);

	if (a->o->duration > 0 && start + (int64_t)(a->o->duration * 1e9) < end)
		end = start + (int64_t)(a->o->duration * 1e9);
	return end;
}

/* Handles process notices as they come until end (CLOCK_MONOTONIC ns) or a stop. Sleeps until
 * a notice, a stop signal (wake_fd) or the end, but 100 ms at most while tables wait for the
 * CPU budget: a wake-up of a thread is a good part of the agent's cost on a quiet machine. */
static int window_wait(struct session *s, int64_t end)
{
	int64_t left;
	int err, ms;

	while (!agent_exiting && (left = end - clock__ns(CLOCK_MONOTONIC)) > 0) {
		ms = (int)(left / 1000000) + 1; /* a window lasts a day at most (--interval) */
		if (ms > 100 && collector__has_work(s->col))
			ms = 100;
		err = collector__poll(s->col, ms);
		if (err) {
			pr_err("polling process notices: %s\n", strerror(-err));
			return err;
		}
	}
	return 0;
}

static int run_windows(struct agent *a)
{
	/* Smaller caches than a one-shot record: a window at 19 Hz resolves a few thousand
	 * addresses, and every open DWARF reader holds that file's line tables. */
	struct session s = {
		.a = a,
		.so = {.no_kernel = a->o->no_kernel,
		       .demangle = a->o->demangle ? SYM_DEMANGLE_FULL : SYM_DEMANGLE_NONE,
		       .debug_dir = a->o->debug_dir,
		       .max_cached_addrs = AGENT_SYM_CACHE_ADDRS,
		       .max_dwarf_open = AGENT_SYM_DWARF_OPEN}};
	int64_t start, t0, m0;
	int err;

	err = session_start(&s, &t0, &m0);
	if (err)
		goto cleanup;
	wake_fd = collector__wake_fd(s.col);
	pr_info("agent: profiling the whole system at %d Hz, %g s windows\n", a->o->freq,
		a->o->interval);
	/* --duration counts from when sampling starts; a stop during the set-up still writes the
	 * (short) first window. */
	start = clock__ns(CLOCK_MONOTONIC);
	do {
		err = window_wait(&s, window_end(a, start, m0));
		if (err)
			goto cleanup;
		/* Notices still queued name processes that may yet be alive: read them now. This
		 * is also the SIGTERM path: the window so far is written before exiting. */
		collector__poll(s.col, 0);
		err = window_flush(&s, t0, m0);
		if (err)
			goto cleanup;
		/* The next window starts where the drain started: a sample taken meanwhile is in
		 * one window or the other. */
		t0 = s.next_t0;
		m0 = s.next_m0;
		procs__evict(&s);
	} while (!agent_exiting && !duration_over(a, start));
cleanup:
	wake_fd = -1;
	session_stop(&s);
	return err;
}

static int run_watch(struct agent *a)
{
	int64_t start = clock__ns(CLOCK_MONOTONIC);

	while (!agent_exiting && !duration_over(a, start)) {
		for (size_t i = 0; i < a->o->npids; i++)
			if (proc__exists(a->o->pids[i]) == 0)
				goto alive;
		pr_info("watch: every watched process has exited\n");
		break;
	alive:
		usleep(100000);
	}
	return 0;
}

int agent__run(const struct cli_opts *o)
{
	struct sigaction sa = {.sa_handler = on_signal};
	struct agent a = {.o = o};
	int err = 0;

	if (preflight__check())
		return 1;
	/* A pid that names no process is a wrong argument, as for record: a usage error. */
	for (size_t i = 0; o->watch && i < o->npids; i++) {
		if (proc__exists(o->pids[i])) {
			pr_err("no such process: %d\n", o->pids[i]);
			return 2;
		}
	}
	pthread_mutex_init(&a.lock, NULL);
	a.m.started_mono = clock__ns(CLOCK_MONOTONIC);
	if (o->host)
		snprintf(a.host, sizeof(a.host), "%s", o->host);
	else if (gethostname(a.host, sizeof(a.host) - 1))
		snprintf(a.host, sizeof(a.host), "unknown");
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	log__route_libbpf();
	/* libcurl is loaded only to push (util/lazy_libs.c: 14 ms of start-up otherwise). */
	if (o->push_url)
		curl_global_init(CURL_GLOBAL_DEFAULT);

	if (!o->no_store)
		err = store__open(&a, &a.store);
	if (!err && o->push_url)
		err = pusher__start(&a, &a.push);
	if (!err && o->listen)
		err = agent_http__start(&a, &a.http);
	if (!err && o->nrules)
		err = triggers__start(&a, &a.trig);
	if (!err)
		err = o->watch ? run_watch(&a) : run_windows(&a);

	agent_exiting = 1;
	triggers__stop(a.trig); /* a capture under way stops and is written */
	agent_http__stop(a.http);
	pusher__stop(a.push, o->push_timeout);
	store__close(a.store);
	if (o->push_url)
		curl_global_cleanup();
	pthread_mutex_destroy(&a.lock);
	if (!err)
		pr_info("agent: stopped\n");
	return err ? 1 : 0;
}
