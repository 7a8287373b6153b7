/* One-shot record session. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <bpf/libbpf.h>

#include "record.h"
#include "collect/collector.h"
#include "pprof/builder.h"
#include "proc/maps.h"
#include "sym/symbolizer.h"
#include "util/log.h"
#include "util/preflight.h"

static volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

static int64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

struct session {
	const struct record_opts *o;
	struct symbolizer *sym;
	struct collector *col;
	pid_t child;	/* -- CMD */
	int child_gate; /* write end of the pipe the child waits on before exec */
	int child_status;
	bool child_exited;
	const char *out_path; /* NULL: stdout */
	char default_path[64];
	char *tmp_path; /* the output being written, renamed at the end */
	FILE *out;
	uint64_t procs_seen;
	uint64_t procs_missed; /* processes gone before their mappings could be read */
};

static void on_proc(void *ctx, const struct cprof_proc_event *e)
{
	struct session *s = ctx;
	int err;

	if (e->kind == CPROF_PROC_NEW)
		s->procs_seen++;
	err = symbolizer__add_pid(s->sym, e->pid);
	if (err == -ESRCH || err == -ENOENT)
		s->procs_missed++;
	else if (err)
		pr_debug("cannot read the mappings of pid %u: %s\n", e->pid, strerror(-err));
}

/* Opens the output before sampling starts, so a path that cannot be written fails now and not
 * after the whole duration. A file is written beside its final name and renamed at the end. */
static int open_output(struct session *s)
{
	const struct record_opts *o = s->o;
	int fd;

	s->out_path = o->output;
	if (!s->out_path && o->format == FORMAT_PPROF) {
		snprintf(s->default_path, sizeof(s->default_path), "%s.pb.gz", o->type);
		s->out_path = s->default_path;
	}
	if (!s->out_path || strcmp(s->out_path, "-") == 0) {
		s->out = stdout;
		return 0;
	}
	if (asprintf(&s->tmp_path, "%s.tmp.%d", s->out_path, getpid()) < 0) {
		s->tmp_path = NULL;
		return -ENOMEM;
	}
	fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || !(s->out = fdopen(fd, "w"))) {
		int err = -errno;

		if (fd >= 0)
			close(fd);
		pr_err("cannot write %s: %s\n", s->out_path, strerror(-err));
		free(s->tmp_path);
		s->tmp_path = NULL;
		return err;
	}
	return 0;
}

static int finish_output(struct session *s, bool ok)
{
	int err = 0;

	if (!s->out || s->out == stdout) {
		if (s->out && fflush(stdout))
			err = -errno;
		return err;
	}
	if (fclose(s->out))
		err = -errno;
	s->out = NULL;
	if (ok && !err && rename(s->tmp_path, s->out_path))
		err = -errno;
	if (!ok || err)
		unlink(s->tmp_path);
	if (err)
		pr_err("cannot write %s: %s\n", s->out_path, strerror(-err));
	else if (ok)
		pr_info("wrote %s\n", s->out_path);
	return err;
}

/* Forks CMD stopped at a gate, so it becomes a target before it runs a single instruction. */
static int spawn_child(struct session *s)
{
	int gate[2];
	char c;

	if (pipe2(gate, O_CLOEXEC))
		return -errno;
	s->child = fork();
	if (s->child < 0) {
		close(gate[0]);
		close(gate[1]);
		return -errno;
	}
	if (s->child == 0) {
		close(gate[1]);
		if (read(gate[0], &c, 1) != 1)
			_exit(127); /* the profiler gave up before starting us */
		execvp(s->o->cmd[0], s->o->cmd);
		fprintf(stderr, "cprof-bpf: cannot run %s: %s\n", s->o->cmd[0], strerror(errno));
		_exit(127);
	}
	close(gate[0]);
	s->child_gate = gate[1];
	return 0;
}

static void release_child(struct session *s)
{
	if (s->child_gate >= 0) {
		if (write(s->child_gate, "x", 1) != 1)
			pr_warn("cannot start %s: %s\n", s->o->cmd[0], strerror(errno));
		close(s->child_gate);
		s->child_gate = -1;
	}
}

static int resolve_user(void *ctx, pid_t pid, uint64_t addr, bool is_return, struct sym_result *r)
{
	return symbolizer__user(ctx, pid, addr, is_return, r);
}

static int resolve_kernel(void *ctx, uint64_t addr, bool is_return, struct sym_result *r)
{
	return symbolizer__kernel(ctx, addr, is_return, r);
}

static bool targets_alive(const struct session *s)
{
	if (s->o->all)
		return true;
	if (s->o->cmd)
		return !s->child_exited;
	for (size_t i = 0; i < s->o->npids; i++)
		if (proc__exists(s->o->pids[i]) == 0)
			return true;
	return false;
}

static void reap_child(struct session *s)
{
	if (s->child > 0 && !s->child_exited && waitpid(s->child, &s->child_status, WNOHANG) > 0)
		s->child_exited = true;
}

static void collect_loop(struct session *s)
{
	int64_t deadline = s->o->duration > 0
				   ? now_ns(CLOCK_MONOTONIC) + (int64_t)(s->o->duration * 1e9)
				   : INT64_MAX;
	int64_t left;
	int err;

	while (!exiting) {
		left = deadline - now_ns(CLOCK_MONOTONIC);
		if (left <= 0)
			break;
		err = collector__poll(s->col, left < 100000000 ? (int)(left / 1000000) + 1 : 100);
		if (err) {
			pr_warn("polling process notices: %s\n", strerror(-err));
			break;
		}
		reap_child(s);
		if (!targets_alive(s)) {
			pr_info("the target exited; writing what was collected\n");
			break;
		}
	}
	/* Notices still queued name processes that may yet be alive: read them now. */
	collector__poll(s->col, 0);
}

struct drop {
	uint64_t n;
	const char *what;
};

/* Says what was lost, on stderr and in the profile's comments: never a silently short profile. */
static void report_drops(struct session *s, struct pprof_builder *b, const struct collect_stats *st)
{
	const struct drop drops[] = {
		{st->bpf[CPROF_STAT_KEYS_FULL],
		 "samples dropped: aggregation map full (--max-stacks)"},
		{st->bpf[CPROF_STAT_USTACK_COLLIDE],
		 "user stacks lost to stack-map hash collisions"},
		{st->bpf[CPROF_STAT_KSTACK_COLLIDE],
		 "kernel stacks lost to stack-map hash collisions"},
		{st->bpf[CPROF_STAT_USTACK_ERR], "user stacks that could not be read"},
		{st->bpf[CPROF_STAT_KSTACK_ERR], "kernel stacks that could not be read"},
		{st->lost_stack_reads, "stacks evicted before they were read"},
		{st->truncated_stacks, "stacks truncated at the depth limit"},
		{st->bpf[CPROF_STAT_EVENTS_LOST], "new-process notices lost (ring buffer full)"},
		{s->procs_missed, "processes that exited before their mappings were read"},
	};
	uint64_t total = 0;

	for (size_t i = 0; i < sizeof(drops) / sizeof(drops[0]); i++) {
		if (!drops[i].n)
			continue;
		total += drops[i].n;
		pprof_builder__add_comment(b, "dropped: %llu %s", (unsigned long long)drops[i].n,
					   drops[i].what);
		pr_warn("%llu %s\n", (unsigned long long)drops[i].n, drops[i].what);
	}
	if (!total)
		pprof_builder__add_comment(b, "dropped: nothing");
}

static void add_target_comment(struct session *s, struct pprof_builder *b)
{
	const struct record_opts *o = s->o;
	char comm[64];

	if (o->all) {
		pprof_builder__add_comment(b, "target: whole system");
	} else if (o->cmd) {
		pprof_builder__add_comment(b, "target: command %s (pid %d)", o->cmd[0], s->child);
	} else {
		for (size_t i = 0; i < o->npids; i++) {
			if (proc__comm(o->pids[i], comm, sizeof(comm)))
				snprintf(comm, sizeof(comm), "exited");
			pprof_builder__add_comment(b, "target: pid %d (%s)", o->pids[i], comm);
		}
	}
}

static int write_profile(struct session *s, int64_t t0, int64_t dur)
{
	const struct record_opts *o = s->o;
	struct pprof_resolver res = {resolve_user, resolve_kernel, s->sym};
	struct pprof_config cfg = {.time_nanos = t0, .duration_nanos = dur};
	struct pprof_builder *b;
	struct collect_stats st;
	int err;

	s->col->ops->pprof_config(s->col, &cfg);
	b = pprof_builder__new(&cfg, &res);
	if (!b)
		return -ENOMEM;
	pprof_builder__add_comment(b, "cprof-bpf %s", CPROF_VERSION);
	add_target_comment(s, b);
	pprof_builder__add_comment(b, "type: %s, %d Hz per CPU", o->type, o->freq);
	err = collector__drain(s->col, b);
	if (err) {
		pr_err("cannot read the collected samples: %s\n", strerror(-err));
		goto cleanup;
	}
	if (collector__stats(s->col, &st) == 0)
		report_drops(s, b, &st);
	pr_info("%zu distinct stacks, %llu samples\n", pprof_builder__nsamples(b),
		(unsigned long long)st.bpf[CPROF_STAT_SAMPLES]);
	if (st.bpf[CPROF_STAT_SAMPLES] == 0)
		pr_warn("no samples: the target did not run on a CPU while profiled\n");
	switch (o->format) {
	case FORMAT_PPROF:
		err = pprof_builder__write_pprof(b, s->out);
		break;
	case FORMAT_FOLDED:
		err = pprof_builder__write_folded(b, s->out, -1);
		break;
	case FORMAT_TOP:
		err = pprof_builder__write_top(b, s->out, -1, o->top_rows);
		break;
	}
	if (err)
		pr_err("cannot write the profile: %s\n", strerror(-err));
cleanup:
	pprof_builder__free(b);
	return err;
}

static int start_session(struct session *s)
{
	const struct record_opts *o = s->o;
	struct symbolizer_opts so = {.demangle =
					     o->demangle ? SYM_DEMANGLE_FULL : SYM_DEMANGLE_NONE,
				     .no_kernel = o->no_kernel};
	struct collect_opts co = {
		.all = o->all,
		.pids = o->pids,
		.npids = o->npids,
		.follow_children = o->cmd != NULL,
		.no_kernel_stacks = o->no_kernel,
		.freq = o->freq,
		.max_keys = o->max_keys,
		.on_proc = on_proc,
		.ctx = s,
	};
	int err;

	s->sym = symbolizer__new(&so);
	if (!s->sym)
		return -ENOMEM;
	for (size_t i = 0; i < o->npids; i++) {
		err = symbolizer__add_pid(s->sym, o->pids[i]);
		if (err)
			pr_warn("cannot read the mappings of pid %d: %s\n", o->pids[i],
				strerror(-err));
	}
	if (o->cmd) {
		err = spawn_child(s);
		if (err) {
			pr_err("cannot start %s: %s\n", o->cmd[0], strerror(-err));
			return err;
		}
		co.pids = &s->child;
		co.npids = 1;
	}
	err = collector__open(collector__find(o->type), &co, &s->col);
	if (err)
		return err;
	if (o->cmd)
		release_child(s);
	return 0;
}

int record__run(const struct record_opts *o)
{
	struct session s = {.o = o, .child = -1, .child_gate = -1};
	struct sigaction sa = {.sa_handler = on_signal};
	int64_t t0, m0, dur;
	int err;

	err = preflight__check();
	if (err)
		return 1;
	for (size_t i = 0; i < o->npids; i++) {
		if (proc__exists(o->pids[i])) {
			pr_err("no such process: %d\n", o->pids[i]);
			return 1;
		}
	}
	err = open_output(&s);
	if (err)
		return 1;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	log__route_libbpf();

	t0 = now_ns(CLOCK_REALTIME);
	m0 = now_ns(CLOCK_MONOTONIC);
	err = start_session(&s);
	if (!err) {
		pr_info("profiling (%s)%s\n", o->type,
			o->duration > 0 ? "" : "; Ctrl-C to stop and write");
		collect_loop(&s);
		dur = now_ns(CLOCK_MONOTONIC) - m0;
		err = write_profile(&s, t0, dur);
	}
	if (finish_output(&s, !err) && !err)
		err = -EIO;
	collector__free(s.col);
	if (s.child > 0) {
		release_child(&s); /* a child still at the gate exits */
		if (!s.child_exited) {
			/* The duration ended (or Ctrl-C) before CMD did: CMD stops with us. */
			kill(s.child, SIGTERM);
			waitpid(s.child, &s.child_status, 0);
		}
	}
	symbolizer__free(s.sym);
	free(s.tmp_path);
	return err ? 1 : 0;
}
