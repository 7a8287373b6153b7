/* One-shot record session: targets from the command line, one capture, one output file. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "capture.h"
#include "proc/maps.h"
#include "record.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/preflight.h"

static volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

struct session {
	const struct record_opts *o;
	pid_t child;	/* -- CMD */
	int child_gate; /* write end of the pipe the child waits on before exec */
	bool child_exited;
	const char *out_path; /* NULL: stdout */
	char default_path[64];
	char *tmp_path; /* the output being written, renamed at the end */
	FILE *out;
};

/* Opens the output before sampling starts, so a path that cannot be written fails now and not
 * after the whole duration. A file is written beside its final name and renamed at the end. */
static int open_output(struct session *s)
{
	const struct record_opts *o = s->o;
	int fd, err;

	s->out_path = o->output;
	if (!s->out_path && o->format == FORMAT_PPROF) {
		snprintf(s->default_path, sizeof(s->default_path), "%s.pb.gz", o->type);
		s->out_path = s->default_path;
	}
	if (!s->out_path || strcmp(s->out_path, "-") == 0) {
		s->out_path = NULL;
		s->out = stdout;
		return 0;
	}
	if (asprintf(&s->tmp_path, "%s.tmp.%d", s->out_path, getpid()) < 0) {
		s->tmp_path = NULL;
		return -ENOMEM;
	}
	fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd >= 0 && (s->out = fdopen(fd, "w")))
		return 0;
	err = -errno;
	if (fd >= 0) {
		close(fd);
		unlink(s->tmp_path);
	}
	pr_err("cannot write %s: %s\n", s->out_path, strerror(-err));
	return err;
}

static int finish_output(struct session *s, bool ok)
{
	int err = 0;

	if (!s->out)
		return 0;
	if (s->out == stdout)
		return fflush(stdout) ? -errno : 0;
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

static void release_child(void *ctx)
{
	struct session *s = ctx;

	if (s->child_gate < 0)
		return;
	if (write(s->child_gate, "x", 1) != 1)
		pr_warn("cannot start %s: %s\n", s->o->cmd[0], strerror(errno));
	close(s->child_gate);
	s->child_gate = -1;
}

static bool should_stop(void *ctx)
{
	struct session *s = ctx;

	if (s->child > 0 && !s->child_exited && waitpid(s->child, NULL, WNOHANG) > 0)
		s->child_exited = true;
	return exiting || s->child_exited;
}

static int write_output(struct session *s, struct pprof_builder *b)
{
	int err = 0;

	switch (s->o->format) {
	case FORMAT_PPROF:
		err = pprof_builder__write_pprof(b, s->out);
		break;
	case FORMAT_FOLDED:
		err = pprof_builder__write_folded(b, s->out, -1);
		break;
	case FORMAT_TOP:
		err = pprof_builder__write_top(b, s->out, -1, s->o->top_rows);
		break;
	}
	if (err)
		pr_err("cannot write the profile: %s\n", strerror(-err));
	return err;
}

/* --min-wait (mutex) or --min-block (offcpu), whichever was given (cli.c checks the type). */
static uint64_t min_wait_ns(const struct record_opts *o)
{
	long us = o->min_wait_us >= 0 ? o->min_wait_us : o->min_block_us;

	return us > 0 ? (uint64_t)us * 1000 : 0;
}

static int run(struct session *s)
{
	const struct record_opts *o = s->o;
	struct symbolizer_opts so = {.demangle =
					     o->demangle ? SYM_DEMANGLE_FULL : SYM_DEMANGLE_NONE,
				     .no_kernel = o->no_kernel,
				     .debug_dir = o->debug_dir,
				     .release_dwarf = true};
	struct capture_opts co = {
		.type = o->type,
		.pids = o->pids,
		.npids = o->npids,
		.all = o->all,
		.duration = o->duration,
		.freq = o->freq,
		.max_keys = o->max_keys,
		.no_kernel = o->no_kernel,
		.heap_sample_bytes = o->heap_sample_bytes,
		.heap_max_live = o->heap_max_live,
		.heap_alloc_only = o->heap_alloc_only,
		.unwind = o->unwind,
		.unwind_mem = o->unwind_mem,
		.min_wait_ns = min_wait_ns(o),
		.mutex_fraction = o->mutex_fraction,
		.block_rate_ns = o->block_rate_ns,
		.should_stop = should_stop,
		.ctx = s,
	};
	struct pprof_builder *b = NULL;
	struct symbolizer *sym;
	char desc[256];
	int err;

	sym = symbolizer__new(&so);
	if (!sym)
		return -ENOMEM;
	if (o->cmd) {
		err = spawn_child(s);
		if (err) {
			pr_err("cannot start %s: %s\n", o->cmd[0], strerror(-err));
			goto cleanup;
		}
		snprintf(desc, sizeof(desc), "command %s (pid %d)", o->cmd[0], s->child);
		co.pids = &s->child;
		co.npids = 1;
		co.follow_children = true;
		co.attached = release_child;
		co.target_desc = desc;
		co.exe_hint = o->cmd[0];
	}
	err = capture__run(&co, sym, &b);
	if (!err)
		err = write_output(s, b);
	mem__checkpoint("written");
cleanup:
	pprof_builder__free(b);
	symbolizer__free(sym);
	return err;
}

int record__run(const struct record_opts *o)
{
	struct session s = {.o = o, .child = -1, .child_gate = -1};
	struct sigaction sa = {.sa_handler = on_signal};
	int err;

	if (preflight__check())
		return 1;
	for (size_t i = 0; i < o->npids; i++) {
		if (proc__exists(o->pids[i])) {
			pr_err("no such process: %d\n", o->pids[i]);
			return 1;
		}
	}
	if (open_output(&s)) {
		free(s.tmp_path);
		return 1;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	log__route_libbpf();

	err = run(&s);
	if (finish_output(&s, !err) && !err)
		err = -EIO;
	if (s.child > 0) {
		release_child(&s); /* a child still at the gate exits */
		if (!s.child_exited) {
			/* The duration ended (or Ctrl-C) before CMD did: CMD stops with us. */
			kill(s.child, SIGTERM);
			waitpid(s.child, NULL, 0);
		}
	}
	free(s.tmp_path);
	return err ? 1 : 0;
}
