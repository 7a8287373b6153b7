/* Triggers: a thread reads /proc/PID/stat of the watched processes every --trigger-check
 * seconds and, when a rule fires, captures that process at full rate on a second thread. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/internal.h"
#include "cli.h"
#include "agent/trigger.h"
#include "capture.h"
#include <linux/types.h>

#include "cprof.h"
#include "unwind.h"
#include "proc/maps.h"
#include "proc/stat.h"
#include "util/clock.h"
#include "util/hashmap.h"
#include "util/log.h"

int trigger__check(const struct trigger_rule *rules, int nrules, int warmup, double cooldown,
		   struct trigger_state *st, const double value[3], double now, double *avg_out)
{
	/* An exponential moving average over about `warmup` checks. */
	double alpha = 2.0 / (warmup + 1);
	int fired = -1;

	for (int i = 0; i < nrules && fired < 0; i++) {
		const struct trigger_rule *r = &rules[i];
		double v = value[r->metric], avg = st->avg[r->metric];
		bool hit;

		if (st->last_fire[i] > 0 && now - st->last_fire[i] < cooldown)
			continue;
		if (r->spike)
			hit = st->nobs >= warmup && v > r->factor * avg && v - avg >= r->min_delta;
		else
			hit = v > r->limit;
		if (hit) {
			st->last_fire[i] = now;
			fired = i;
			if (avg_out)
				*avg_out = avg;
		}
	}
	for (int m = 0; m < 3; m++)
		st->avg[m] = st->nobs ? st->avg[m] + alpha * (value[m] - st->avg[m]) : value[m];
	st->nobs++;
	return fired;
}

struct watched {
	pid_t pid;
	uint64_t starttime, cpu_ticks;
	double t;	/* monotonic seconds of the last read */
	uint64_t epoch; /* scan that last saw it */
	struct trigger_state st;
};

struct capture_job {
	pid_t pid;
	int rule;
	double value, avg;
};

struct triggers {
	struct agent *a;
	pthread_t thread, cap_thread;
	bool started, cap_running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	struct hashmap *watched; /* pid -> struct watched */
	uint64_t epoch;
	struct capture_job job;
};

static double mono_s(void)
{
	return clock__ns(CLOCK_MONOTONIC) / 1e9;
}

static bool cap_should_stop(void *ctx)
{
	struct triggers *t = ctx;
	bool stop;

	pthread_mutex_lock(&t->lock);
	stop = t->stop;
	pthread_mutex_unlock(&t->lock);
	return stop || agent_exiting;
}

static void fmt_value(enum trigger_metric m, double v, char *buf, size_t len)
{
	if (m == TRIGGER_CPU)
		snprintf(buf, len, "%.1f%%", v);
	else if (m == TRIGGER_RSS)
		snprintf(buf, len, "%.1fMB", v / (1024 * 1024));
	else
		snprintf(buf, len, "%.0f", v);
}

/* A threads-count trigger: the snapshot of every thread of pid at that moment, stored beside
 * the CPU capture as goroutine-STAMP-pidN-RULE.pb.gz (Go's name of the profile; holmes stores
 * the goroutine profile on a goroutine spike). Stored only: a push receiver takes CPU
 * profiles. */
/* Runs capture co with sym and encodes its profile, raw and gzipped (both the caller's to free). */
static int capture_gz(const struct capture_opts *co, struct symbolizer *sym, uint8_t **raw,
		      size_t *rawlen, uint8_t **gz, size_t *gzlen)
{
	struct pprof_builder *b = NULL;
	int err;

	*raw = *gz = NULL;
	err = sym ? capture__run(co, sym, &b) : -ENOMEM;
	if (!err)
		err = pprof_builder__encode(b, false, raw, rawlen);
	if (!err)
		err = pprof__gzip(*raw, *rawlen, gz, gzlen);
	pprof_builder__free(b);
	return err;
}

/* The agent's options for a capture of one process: type, pid, duration and frequency as
 * given, the tables of that process built (--unwind auto: one process, its tables are worth
 * it), the aggregation map at its default. (The agent takes no heap or lock options.) */
static struct cli_opts trigger_opts(const struct cli_opts *o, const char *type, pid_t *pid,
				    double duration, int freq)
{
	struct cli_opts one = *o;

	one.type = type;
	one.pids = pid;
	one.npids = 1;
	one.all = false;
	one.duration = duration;
	one.freq = freq;
	one.unwind = CPROF_UNWIND_AUTO;
	one.max_keys = 0; /* the default map: --max-stacks sizes the windows' */
	return one;
}

/* (sym: the capture's symbolizer, NULL when it could not be made.) */
static void snapshot_threads(struct triggers *t, pid_t pid, const struct trigger_rule *r,
			     const char *desc, struct symbolizer *sym)
{
	struct cli_opts one = trigger_opts(t->a->o, "threads", &pid, 0, 0);
	struct capture_opts co = {.opts = &one, .target_desc = desc};
	uint8_t *raw, *gz;
	size_t rawlen, gzlen;
	int64_t t0 = clock__ns(CLOCK_REALTIME);
	char name[192];
	int err;

	if (!t->a->store)
		return;
	err = capture_gz(&co, sym, &raw, &rawlen, &gz, &gzlen);
	if (!err) {
		agent__profile_name(name, sizeof(name), "goroutine", t0, pid, r->name);
		err = store__write(t->a->store, name, gz, gzlen);
	}
	if (err)
		pr_warn("threads snapshot of pid %d failed: %s\n", pid, strerror(-err));
	free(raw);
	free(gz);
}

static void *capture_main(void *arg)
{
	struct triggers *t = arg;
	const struct cli_opts *o = t->a->o;
	const struct capture_job *j = &t->job;
	const struct trigger_rule *r = &o->rules[j->rule];
	struct symbolizer_opts so = {.no_kernel = o->no_kernel,
				     .demangle =
					     o->demangle ? SYM_DEMANGLE_FULL : SYM_DEMANGLE_NONE,
				     .debug_dir = o->debug_dir};
	struct cli_opts one =
		trigger_opts(o, "cpu", (pid_t *)&j->pid, o->trigger_duration, o->trigger_freq);
	struct capture_opts co = {.opts = &one, .should_stop = cap_should_stop, .ctx = t};
	char desc[256], comm[64], val[32], avg[32], name[192], labels[96];
	struct symbolizer *sym = symbolizer__new(&so);
	uint8_t *raw, *gz;
	size_t rawlen, gzlen;
	int64_t t0 = clock__ns(CLOCK_REALTIME);
	time_t secs = t0 / 1000000000ll;
	int err;

	if (proc__comm(j->pid, comm, sizeof(comm)))
		snprintf(comm, sizeof(comm), "exited");
	fmt_value(r->metric, j->value, val, sizeof(val));
	fmt_value(r->metric, j->avg, avg, sizeof(avg));
	if (r->spike)
		snprintf(desc, sizeof(desc), "pid %d (%s), trigger %s: %s against an average of %s",
			 j->pid, comm, r->text, val, avg);
	else
		snprintf(desc, sizeof(desc), "pid %d (%s), trigger %s: %s", j->pid, comm, r->text,
			 val);
	co.target_desc = desc;
	if (r->metric == TRIGGER_THREADS)
		snapshot_threads(t, j->pid, r, desc, sym);
	pr_warn("trigger %s fired for %s; capturing %g s at %d Hz\n", r->text, desc,
		o->trigger_duration, o->trigger_freq);
	err = capture_gz(&co, sym, &raw, &rawlen, &gz, &gzlen);
	if (!err) {
		agent__profile_name(name, sizeof(name), "trigger", t0, j->pid, r->name);
		snprintf(labels, sizeof(labels), "trigger=%s", r->name);
		agent__emit(t->a, name, raw, rawlen, gz, gzlen, secs,
			    clock__ns(CLOCK_REALTIME) / 1000000000ll, o->trigger_freq, labels);
		pthread_mutex_lock(&t->a->lock);
		t->a->m.trigger_captures++;
		pthread_mutex_unlock(&t->a->lock);
	} else {
		pr_warn("trigger capture of pid %d failed: %s\n", j->pid, strerror(-err));
	}
	free(raw);
	free(gz);
	symbolizer__free(sym);
	pthread_mutex_lock(&t->lock);
	t->cap_running = false;
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void fire(struct triggers *t, pid_t pid, int rule, double value, double avg)
{
	pthread_mutex_lock(&t->lock);
	pthread_mutex_lock(&t->a->lock);
	t->a->m.triggers_fired++;
	pthread_mutex_unlock(&t->a->lock);
	if (t->cap_running || t->stop) {
		pthread_mutex_unlock(&t->lock);
		pr_info("trigger %s fired for pid %d during another capture: skipped\n",
			t->a->o->rules[rule].text, pid);
		pthread_mutex_lock(&t->a->lock);
		t->a->m.triggers_skipped++;
		pthread_mutex_unlock(&t->a->lock);
		return;
	}
	if (t->job.pid) /* the previous capture thread has finished */
		pthread_join(t->cap_thread, NULL);
	t->job = (struct capture_job){pid, rule, value, avg};
	t->cap_running = pthread_create(&t->cap_thread, NULL, capture_main, t) == 0;
	if (!t->cap_running)
		t->job.pid = 0;
	pthread_mutex_unlock(&t->lock);
}

/* One observation of pid; fires at most one rule. */
static void observe(struct triggers *t, pid_t pid)
{
	const struct cli_opts *o = t->a->o;
	struct proc_stat ps;
	struct watched *w;
	double now = mono_s(), value[3], avg = 0, dt;
	void *found;
	int rule;

	if (proc_stat__read(pid, &ps) || ps.state == 'Z')
		return;
	if (hashmap__find(t->watched, (void *)(uintptr_t)pid, &found)) {
		w = found;
		if (w->starttime != ps.starttime) { /* the pid was reused: a new process */
			memset(w, 0, sizeof(*w));
			w->pid = pid;
		}
	} else {
		w = calloc(1, sizeof(*w));
		if (!w || hashmap__insert(t->watched, (void *)(uintptr_t)pid, w)) {
			free(w);
			return;
		}
		w->pid = pid;
	}
	w->epoch = t->epoch;
	if (!w->starttime) { /* first sight: CPU% needs two reads */
		w->starttime = ps.starttime;
		w->cpu_ticks = ps.cpu_ticks;
		w->t = now;
		return;
	}
	dt = now - w->t;
	if (dt <= 0)
		return;
	value[TRIGGER_CPU] =
		(double)(ps.cpu_ticks - w->cpu_ticks) / sysconf(_SC_CLK_TCK) / dt * 100;
	value[TRIGGER_RSS] = (double)ps.rss_bytes;
	value[TRIGGER_THREADS] = ps.num_threads;
	w->cpu_ticks = ps.cpu_ticks;
	w->t = now;
	rule = trigger__check(o->rules, o->nrules, o->trigger_warmup, o->trigger_cooldown, &w->st,
			      value, now, &avg);
	if (rule >= 0)
		fire(t, pid, rule, value[o->rules[rule].metric], avg);
}

struct sweep {
	struct triggers *t;
	pid_t gone[256];
	int n;
};

static void find_gone(const void *key, void *value, void *ctx)
{
	struct sweep *s = ctx;
	struct watched *w = value;

	(void)key;
	if (w->epoch != s->t->epoch && s->n < (int)(sizeof(s->gone) / sizeof(s->gone[0])))
		s->gone[s->n++] = w->pid;
}

/* Forgets processes not seen in this scan. */
static void sweep(struct triggers *t)
{
	struct sweep s = {.t = t};
	void *w;

	hashmap__for_each(t->watched, find_gone, &s);
	for (int i = 0; i < s.n; i++)
		if (hashmap__delete(t->watched, (void *)(uintptr_t)s.gone[i], NULL, &w))
			free(w);
}

static void scan(struct triggers *t)
{
	const struct cli_opts *o = t->a->o;
	struct dirent *de;
	char *end;
	long pid;
	DIR *d;

	t->epoch++;
	if (o->npids) {
		for (size_t i = 0; i < o->npids; i++)
			observe(t, o->pids[i]);
	} else if ((d = opendir("/proc"))) {
		while ((de = readdir(d))) {
			pid = strtol(de->d_name, &end, 10);
			if (*end || pid <= 0 || pid == getpid())
				continue;
			observe(t, (pid_t)pid);
		}
		closedir(d);
	}
	sweep(t);
}

static void *triggers_main(void *arg)
{
	struct triggers *t = arg;
	struct timespec until;

	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		pthread_mutex_unlock(&t->lock);
		scan(t);
		pthread_mutex_lock(&t->lock);
		until = clock__realtime_in((int64_t)(t->a->o->trigger_check * 1e9));
		while (!t->stop && pthread_cond_timedwait(&t->cond, &t->lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int triggers__start(struct agent *a, struct triggers **out)
{
	struct triggers *t = calloc(1, sizeof(*t));
	int err;

	if (!t)
		return -ENOMEM;
	t->a = a;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->watched = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	if (!t->watched) {
		triggers__stop(t);
		return -ENOMEM;
	}
	err = -pthread_create(&t->thread, NULL, triggers_main, t);
	if (err) {
		triggers__stop(t);
		return err;
	}
	t->started = true;
	*out = t;
	return 0;
}

static void free_watched(const void *key, void *value, void *ctx)
{
	(void)key;
	(void)ctx;
	free(value);
}

void triggers__stop(struct triggers *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	if (t->started)
		pthread_join(t->thread, NULL);
	if (t->job.pid)
		pthread_join(t->cap_thread, NULL); /* it sees stop and writes what it has */
	if (t->watched) {
		hashmap__for_each(t->watched, free_watched, NULL);
		hashmap__free(t->watched);
	}
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
