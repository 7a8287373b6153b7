/* One-shot record session: targets from the command line, one capture, one output file. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "capture.h"
#include "threads/snapshot.h"
#include "proc/maps.h"
#include "record.h"
#include "util/bigpages.h"
#include "util/gentle.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/out_file.h"
#include "util/preflight.h"

/* How long a snapshot waits for a free CPU at the idle scheduling class (util/gentle.h). */
#define GENTLE_MS 250
/* The heap a snapshot fills on huge pages (util/bigpages.h): 1,000 threads take about 13 MB. */
#define BIGPAGES_HEAP (24u << 20)

static volatile sig_atomic_t exiting;

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

struct session {
	const struct cli_opts *o;
	pid_t child;	/* -- CMD */
	int child_gate; /* write end of the pipe the child waits on before exec */
	int exec_err;	/* read end of the pipe the child reports a failed exec on */
	int exec_errno; /* what that exec failed with (0: it ran) */
	bool child_exited;
	struct out_file *out;
	char cmd_path[PATH_MAX]; /* -- CMD: the file CMD runs, as check_command found it */
};

/* Opens the output before sampling starts, so a path that cannot be written fails now and not
 * after the whole duration (util/out_file.h: what is written or replaced, and how). */
static int open_output(struct session *s)
{
	const struct cli_opts *o = s->o;
	char default_path[64];
	const char *path = o->output;

	if (!path && o->format == FORMAT_PPROF) {
		snprintf(default_path, sizeof(default_path), "%s.pb.gz", o->type);
		path = default_path;
	}
	return out_file__open(path, &s->out);
}

static int finish_output(struct session *s, bool ok)
{
	int err;

	if (!ok)
		return 0; /* out_file__free discards what was not committed */
	err = out_file__commit(s->out);
	if (!err && strcmp(out_file__path(s->out), "-"))
		pr_info("wrote %s\n", out_file__path(s->out));
	return err;
}

/* Exit status of a shell for a command it cannot run: 127 not found, 126 found but not
 * executable. */
static int cannot_run_status(int err)
{
	return err == ENOENT || err == ENOTDIR || err == ELOOP || err == ENAMETOOLONG ? 127 : 126;
}

/* Whether CMD can be run, as execvp would find it; checked before anything is attached, so a
 * typo fails at once. Returns 0 with the file found in found (the heap profiler reads its
 * allocators before it runs), or the shell's exit status (with a message). */
static int check_command(const char *cmd, char *found, size_t found_len)
{
	const char *path = getenv("PATH"), *p, *colon;
	char buf[PATH_MAX];
	struct stat st;
	int seen = 0;

	if (strchr(cmd, '/')) {
		if (stat(cmd, &st)) {
			int e = errno;

			pr_err("cannot run %s: %s\n", cmd, strerror(e));
			return cannot_run_status(e);
		}
		if (S_ISDIR(st.st_mode) || access(cmd, X_OK)) {
			pr_err("cannot run %s: %s\n", cmd,
			       S_ISDIR(st.st_mode) ? strerror(EISDIR) : strerror(errno));
			return 126;
		}
		snprintf(found, found_len, "%s", cmd);
		return 0;
	}
	if (!path || !*path)
		path = "/bin:/usr/bin"; /* execvp's default */
	for (p = path; p; p = colon ? colon + 1 : NULL) {
		int len;

		colon = strchr(p, ':');
		len = colon ? (int)(colon - p) : (int)strlen(p);
		/* An empty entry is the current directory. */
		snprintf(buf, sizeof(buf), "%.*s/%s", len ? len : 1, len ? p : ".", cmd);
		if (stat(buf, &st) || S_ISDIR(st.st_mode))
			continue;
		if (access(buf, X_OK) == 0) {
			snprintf(found, found_len, "%s", buf);
			return 0;
		}
		seen = 1;
	}
	pr_err("cannot run %s: %s\n", cmd, seen ? strerror(EACCES) : "command not found");
	return seen ? 126 : 127;
}

/* Forks CMD stopped at a gate, so it becomes a target before it runs a single instruction. */
static int spawn_child(struct session *s)
{
	int gate[2], status[2], e;
	char c;

	if (pipe2(gate, O_CLOEXEC))
		return -errno;
	/* Closed by a successful exec; a failed one writes its errno there. */
	if (pipe2(status, O_CLOEXEC)) {
		e = -errno;
		close(gate[0]);
		close(gate[1]);
		return e;
	}
	s->child = fork();
	if (s->child < 0) {
		e = -errno;
		close(gate[0]);
		close(gate[1]);
		close(status[0]);
		close(status[1]);
		return e;
	}
	if (s->child == 0) {
		close(gate[1]);
		close(status[0]);
		signal(SIGPIPE, SIG_DFL); /* ignored by the profiler, not by CMD */
		if (read(gate[0], &c, 1) != 1)
			_exit(127); /* the profiler gave up before starting us */
		execvp(s->o->cmd[0], s->o->cmd);
		e = errno;
		if (write(status[1], &e, sizeof(e)) != sizeof(e))
			_exit(127);
		_exit(cannot_run_status(e));
	}
	close(gate[0]);
	close(status[1]);
	s->child_gate = gate[1];
	s->exec_err = status[0];
	return 0;
}

static void release_child(void *ctx)
{
	struct session *s = ctx;
	int e;

	if (s->child_gate < 0)
		return;
	if (write(s->child_gate, "x", 1) != 1)
		pr_warn("cannot start %s: %s\n", s->o->cmd[0], strerror(errno));
	close(s->child_gate);
	s->child_gate = -1;
	/* The status pipe ends (EOF) when exec succeeds, or brings its errno: wait for which. */
	if (s->exec_err >= 0 && read(s->exec_err, &e, sizeof(e)) == sizeof(e)) {
		s->exec_errno = e;
		pr_err("cannot run %s: %s\n", s->o->cmd[0], strerror(e));
		/* Said once, here: the rest (an empty capture) is noise, no profile is written. */
		log_verbosity = LOG_ERROR - 1;
	}
	if (s->exec_err >= 0) {
		close(s->exec_err);
		s->exec_err = -1;
	}
}

static bool should_stop(void *ctx)
{
	struct session *s = ctx;

	if (s->child > 0 && !s->child_exited && waitpid(s->child, NULL, WNOHANG) > 0)
		s->child_exited = true;
	return exiting || s->child_exited || s->exec_errno;
}

static int write_output(struct session *s, struct pprof_builder *b,
			const struct threads_snapshot *snap, struct symbolizer *sym)
{
	FILE *f = out_file__stream(s->out);
	int err = 0;

	if (!f)
		return -EIO;
	switch (s->o->format) {
	case FORMAT_PPROF:
		err = pprof_builder__write_pprof(b, f);
		break;
	case FORMAT_FOLDED:
		err = pprof_builder__write_folded(b, f, -1);
		break;
	case FORMAT_TOP:
		err = pprof_builder__write_top(b, f, -1, s->o->top_rows);
		break;
	case FORMAT_TEXT:
	case FORMAT_GROUPED:
		err = snap ? threads__write_text(snap, sym, f, s->o->format == FORMAT_TEXT ? 2 : 1)
			   : -EINVAL;
		break;
	}
	if (err)
		pr_err("cannot write %s: %s\n", out_file__path(s->out), strerror(-err));
	return err;
}

static int run(struct session *s)
{
	const struct cli_opts *o = s->o;
	struct symbolizer_opts so = {.demangle =
					     o->demangle ? SYM_DEMANGLE_FULL : SYM_DEMANGLE_NONE,
				     .no_kernel = o->no_kernel,
				     .debug_dir = o->debug_dir,
				     .release_dwarf = true};
	struct capture_opts co = {.opts = o, .should_stop = should_stop, .ctx = s};
	struct cli_opts cmd_opts; /* -- CMD: the options, with the child as the one target */
	struct threads_snapshot *snap = NULL;
	struct pprof_builder *b = NULL;
	const struct collector_ops *ops = collector__find(o->type);
	const char *big = getenv("CPROF_BIGPAGES");
	struct gentle *g = NULL;
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
		cmd_opts = *o;
		cmd_opts.pids = &s->child;
		cmd_opts.npids = 1;
		co.opts = &cmd_opts;
		co.follow_children = true;
		co.attached = release_child;
		co.target_desc = desc;
		co.exe_hint = s->cmd_path;
	}
	if (o->format == FORMAT_TEXT || o->format == FORMAT_GROUPED)
		co.threads_out = &snap;
	/* A snapshot takes no CPU from the target's threads while a CPU is free (a spinning thread
	 * kept waiting 4-5 ms otherwise on two cores), and waits at most GENTLE_MS for one. */
	if (!o->cmd && ops && ops->snapshot) {
		g = gentle__start(GENTLE_MS);
		/* (CPROF_BIGPAGES=0: without, to measure what it saves.) */
		if (!big || strcmp(big, "0"))
			bigpages__heap(BIGPAGES_HEAP);
	}
	err = capture__run(&co, sym, &b);
	gentle__stop(g);
	if (s->exec_errno) {
		err = -ECHILD; /* no profile: nothing ran (should_stop said why) */
		goto cleanup;
	}
	if (!err)
		err = write_output(s, b, snap, sym);
	mem__checkpoint("written");
cleanup:
	threads_snapshot__free(snap);
	pprof_builder__free(b);
	symbolizer__free(sym);
	return err;
}

int record__run(const struct cli_opts *o)
{
	struct session s = {.o = o, .child = -1, .child_gate = -1, .exec_err = -1};
	struct sigaction sa = {.sa_handler = on_signal};
	int err, status;

	mem__checkpoint("start");
	if (preflight__check())
		return 1;
	for (size_t i = 0; i < o->npids; i++) {
		/* A snapshot shows a zombie as one; a profile over time has nothing of it. */
		bool snapshot = collector__find(o->type) && collector__find(o->type)->snapshot;

		/* A pid that names no process is a wrong argument, as a malformed one is: a usage
		 * error, before anything is loaded (one that exits later is a runtime failure). */
		if (snapshot ? kill(o->pids[i], 0) && errno != EPERM
			     : proc__exists(o->pids[i]) != 0) {
			pr_err("no such process: %d\n", o->pids[i]);
			return 2;
		}
	}
	if (o->cmd && (status = check_command(o->cmd[0], s.cmd_path, sizeof(s.cmd_path))))
		return status;
	if (open_output(&s))
		return 1;
	/* No SA_RESTART: Ctrl-C also ends a wait for a FIFO's reader. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A reader that went away (a FIFO, a pipe on stdout) is a write error, not a kill. */
	signal(SIGPIPE, SIG_IGN);
	log__route_libbpf();

	err = run(&s);
	if (finish_output(&s, !err) && !err)
		err = -EIO;
	mem__checkpoint("committed");
	if (s.child > 0) {
		if (s.child_gate >= 0) {
			/* Still at the gate (nothing was attached): it exits without running CMD. */
			close(s.child_gate);
			s.child_gate = -1;
		}
		if (!s.child_exited) {
			/* The duration ended (or Ctrl-C) before CMD did: CMD stops with us. */
			kill(s.child, SIGTERM);
			waitpid(s.child, NULL, 0);
		}
	}
	if (s.exec_err >= 0)
		close(s.exec_err);
	out_file__free(s.out);
	if (s.exec_errno)
		return cannot_run_status(s.exec_errno);
	return err ? 1 : 0;
}
