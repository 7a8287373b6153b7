/* threads: a snapshot of every thread of the targets (Go's goroutine profile for any process).
 * Nothing is attached over time: the drain runs the sleepable task iterator of threads.bpf.c
 * once per target process (or once over every task, -a), reads one struct cprof_thread per
 * thread, describes them (threads/threads.h) and adds one sample per thread, which the builder
 * merges into one sample per distinct stack and labels: value = number of threads. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collect/collector.h"
#include "proc/maps.h"
#include "python/cpython.h"
#include "sym/symbolizer.h"
#include "threads.skel.h"
#include "threads/snapshot.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/mem.h"

/* User frames resolved to tell what a futex wait is for: the glibc function that waits is
 * within the first few (the syscall wrapper, the lock's slow path, the lock function). */
#define CLASSIFY_FRAMES 8
/* Bytes read from the iterator at a time: whole records, a few seq_file pages' worth. */
#define READ_RECORDS 32

struct threads_priv {
	struct threads_bpf *skel;
	uint64_t targets_gone; /* target processes gone before their threads were read */
};

/* How many of the target processes run a CPython whose frames can be walked (0 for the whole
 * system: its snapshot is native). Their mappings are kept for the unwinder's start. */
static int python_targets(struct collector *c)
{
	const struct collect_opts *o = &c->opts;
	struct cprof_py_proc py;
	int n = 0;

	if (o->all || !o->npids)
		return 0;
	c->target_maps = calloc(o->npids, sizeof(*c->target_maps));
	for (size_t i = 0; c->target_maps && i < o->npids; i++) {
		if (proc_maps__read(o->pids[i], &c->target_maps[i]) == 0 &&
		    python__probe_maps(c->target_maps[i], &py, NULL, 0) == 0)
			n++;
	}
	return n;
}

static int threads_open(struct collector *c)
{
	const struct collect_opts *o = &c->opts;
	struct threads_priv *p;
	int err, python;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	c->priv = p;
	/* The kernel's names are read on another CPU while BPF loads: a snapshot waits for
	 * both, one after the other, otherwise (about a third of its time). */
	if (o->sym)
		symbolizer__preload_kernel(o->sym);
	p->skel = threads_bpf__open();
	mem__checkpoint("threads: BPF opened");
	err = collector__opened(c, p->skel);
	if (err)
		return err;
	COLLECTOR_SET_COMMON_RODATA(p->skel, o);
	/* Maps of the shared headers this type never fills (stacks go into the records, nothing
	 * is announced from BPF, each thread's state searched once): the smallest sizes, since
	 * creating the preallocated ones (LRU hashes) costs more than the snapshot's read itself. */
	bpf_map__set_max_entries(p->skel->maps.stacks, 1);
	bpf_map__set_max_entries(p->skel->maps.ustacks, 1);
	bpf_map__set_max_entries(p->skel->maps.seen, 1);
	bpf_map__set_max_entries(p->skel->maps.mmap_pending, 1);
	bpf_map__set_max_entries(p->skel->maps.py_threads, 1);
	bpf_map__set_max_entries(p->skel->maps.py_codes_seen, 1);
	/* Python frames for the targets that run CPython; with none (or the whole system), the
	 * program carries no Python code: less to verify. */
	python = python_targets(c);
	p->skel->rodata->unwind_python = python > 0;
	bpf_map__set_max_entries(p->skel->maps.py_procs, python > 0 ? (uint32_t)python : 1);
	bpf_map__set_max_entries(p->skel->maps.proc_events, getpagesize());
	/* One table of mappings per target process. */
	if (!o->all && o->npids)
		bpf_map__set_max_entries(p->skel->maps.unwind_pid_maps, (uint32_t)o->npids);
	err = threads_bpf__load(p->skel);
	mem__checkpoint("threads: BPF loaded");
	if (err) {
		pr_err("cannot load the threads BPF program: %s\n", strerror(-err));
		return err;
	}
	/* Nothing to attach now: the iterator runs when the snapshot is taken (drain). */
	err = collector__bind(c, p->skel->obj);
	if (!python)
		c->py_procs = NULL; /* no process is probed for Python frames */
	return err;
}

static void threads_close(struct collector *c)
{
	struct threads_priv *p = c->priv;

	if (!p)
		return;
	threads_bpf__destroy(p->skel);
	free(p);
	c->priv = NULL;
}

/* Runs the iterator once, over pid's threads (0: every task), appending to snap. */
static int read_iter(struct threads_priv *p, pid_t pid, struct threads_snapshot *snap)
{
	const size_t rec = sizeof(struct cprof_thread), cap = READ_RECORDS * rec;
	LIBBPF_OPTS(bpf_iter_attach_opts, io);
	union bpf_iter_link_info li = {};
	struct bpf_link *link;
	size_t have = 0, whole;
	char *buf = NULL;
	ssize_t n;
	int fd = -1, err = 0;

	if (pid) {
		li.task.pid = (__u32)pid;
		io.link_info = &li;
		io.link_info_len = sizeof(li);
	}
	link = bpf_program__attach_iter(p->skel->progs.threads_snapshot, &io);
	if (!link)
		return -errno;
	fd = bpf_iter_create(bpf_link__fd(link));
	buf = malloc(cap);
	if (fd < 0 || !buf) {
		err = fd < 0 ? -errno : -ENOMEM;
		goto cleanup;
	}
	for (;;) {
		n = read(fd, buf + have, cap - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : 0;
			break;
		}
		have += (size_t)n;
		whole = have / rec * rec;
		for (size_t off = 0; off < whole && !err; off += rec)
			err = threads_snapshot__add(snap, (const struct cprof_thread *)(buf + off));
		if (err)
			break;
		memmove(buf, buf + whole, have - whole);
		have -= whole;
	}
cleanup:
	free(buf);
	if (fd >= 0)
		close(fd);
	bpf_link__destroy(link);
	return err;
}

/* -a: unwind tables for every process now (a snapshot has no later samples to wait for). */
static void tables_for_all(struct collector *c)
{
	struct dirent *de;
	DIR *d;
	char *end;
	long pid;

	if (!c->unw || !(d = opendir("/proc")))
		return;
	while ((de = readdir(d))) {
		pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0 || pid == getpid())
			continue;
		unwinder__add_pid(c->unw, (pid_t)pid, false);
	}
	closedir(d);
}

static int take(struct collector *c, struct threads_snapshot *snap)
{
	struct threads_priv *p = c->priv;
	int64_t t0;
	int err = 0;

	if (c->opts.all)
		tables_for_all(c);
	snap->time_ns = clock__ns(CLOCK_REALTIME);
	t0 = clock__ns(CLOCK_MONOTONIC);
	if (c->opts.all)
		err = read_iter(p, 0, snap);
	for (size_t i = 0; !c->opts.all && !err && i < c->opts.npids; i++) {
		err = read_iter(p, c->opts.pids[i], snap);
		if (err == -ESRCH || err == -ENOENT) {
			pr_warn("pid %d exited before its threads were read\n", c->opts.pids[i]);
			p->targets_gone++;
			err = 0;
		}
	}
	snap->read_ns = (uint64_t)(clock__ns(CLOCK_MONOTONIC) - t0);
	if (err)
		pr_err("cannot read the threads: %s\n", strerror(-err));
	return err;
}

/* Announces each process of the snapshot (symbolizer, executable label) where the capture
 * does not know it yet: the whole system's. */
static void announce(struct collector *c, const struct threads_snapshot *s)
{
	struct cprof_proc_event e = {.kind = CPROF_PROC_NEW};
	static const struct proc_read unread;

	if (!c->opts.on_proc || !c->opts.all)
		return;
	for (size_t i = 0; i < s->n; i++) {
		if (i && s->t[i].rec.pid == s->t[i - 1].rec.pid)
			continue;
		if (s->t[i].rec.flags & CPROF_THREAD_KTHREAD)
			continue;
		e.pid = s->t[i].rec.pid;
		memcpy(e.comm, s->t[i].rec.pcomm, sizeof(e.comm));
		c->opts.on_proc(c->opts.ctx, &e, &unread);
	}
}

/* Whether t waits in futex(2): then which glibc function waits says what the futex is. */
static bool futex_waiter(const struct thread_info *t)
{
	return (t->rec.flags & CPROF_THREAD_IN_SYSCALL) && t->rec.syscall == __NR_futex;
}

/* Describes thread t, naming the functions of its first user frames when it waits on a futex
 * (their addresses handed to the symbolizer before, by threads__prepare). */
static int describe(struct collector *c, struct thread_info *t)
{
	const char *names[CLASSIFY_FRAMES * 4];
	struct sym_result res;
	size_t nf = 0;
	int err;

	if (c->opts.sym && futex_waiter(t)) {
		for (uint32_t i = 0; i < t->rec.nustack && i < CLASSIFY_FRAMES; i++) {
			err = symbolizer__user(c->opts.sym, (pid_t)t->rec.pid, t->rec.ustack[i],
					       true, &res);
			if (err)
				return err;
			for (int j = 0; j < res.nframes && nf < sizeof(names) / sizeof(names[0]);
			     j++)
				names[nf++] = res.frames[j].function;
		}
	}
	threads__describe(t, names, nf);
	return 0;
}

static int add_samples(struct collector *c, const struct threads_snapshot *s,
		       struct pprof_builder *b)
{
	uint64_t kbuf[CPROF_MAX_STACK], ubuf[CPROF_MAX_STACK];
	char cycle[32];
	int err;

	for (size_t i = 0; i < s->n; i++) {
		const struct thread_info *t = &s->t[i];
		struct pprof_raw_sample smp = {
			.pid = t->rec.pid,
			.kstack = kbuf,
			.nkstack = t->rec.nkstack,
			.ustack = ubuf,
			.nustack = t->rec.nustack,
			.kernel_leaf_is_return = true,
			.user_leaf_is_return = t->rec.flags & CPROF_THREAD_IN_SYSCALL,
			.values = {1},
		};

		for (uint32_t k = 0; k < t->rec.nkstack; k++)
			kbuf[k] = t->rec.kstack[k];
		for (uint32_t k = 0; k < t->rec.nustack; k++)
			ubuf[k] = t->rec.ustack[k];
		smp.labels[0] = (struct pprof_label){.key = "pid", .num = t->rec.pid};
		smp.labels[1] = (struct pprof_label){.key = "comm", .str = t->rec.pcomm};
		smp.nlabels = 2;
		smp.nlabels +=
			threads__labels(s, i, &smp.labels[smp.nlabels],
					PPROF_MAX_LABELS - smp.nlabels, cycle, sizeof(cycle));
		if (c->opts.pid_labels)
			smp.nlabels += c->opts.pid_labels(c->opts.ctx, (pid_t)t->rec.pid,
							  &smp.labels[smp.nlabels],
							  PPROF_MAX_LABELS - smp.nlabels);
		err = pprof_builder__add_sample(b, &smp);
		if (err)
			return err;
	}
	return 0;
}

/* Says what the snapshot holds, what it could not see and the deadlocks, in the comments and
 * (deadlocks) on stderr. */
static void add_comments(struct collector *c, const struct threads_snapshot *s,
			 struct pprof_builder *b)
{
	struct threads_priv *p = c->priv;
	size_t nproc = 0, nostack = 0;
	char line[2048];

	for (size_t i = 0; i < s->n; i++) {
		nproc += i == 0 || s->t[i].rec.pid != s->t[i - 1].rec.pid;
		nostack += !(s->t[i].rec.flags & CPROF_THREAD_KTHREAD) && !s->t[i].rec.exit_state &&
			   s->t[i].rec.nustack == 0;
	}
	pprof_builder__add_comment(b, "threads: %zu in %zu processes, read in %.1f ms", s->n, nproc,
				   s->read_ns / 1e6);
	if (s->running)
		pprof_builder__add_comment(
			b,
			"running: %zu threads were on a CPU; their user stacks are from their "
			"last kernel entry (at most a scheduler tick old), without kernel stack",
			s->running);
	if (nostack)
		pprof_builder__add_comment(b, "no user stack: %zu threads", nostack);
	if (p->targets_gone)
		pprof_builder__add_comment(b,
					   "dropped: %llu target processes exited before "
					   "their threads were read",
					   (unsigned long long)p->targets_gone);
	for (size_t k = 0; k < s->ncycles; k++) {
		threads__cycle_text(s, &s->cycles[k], line, sizeof(line));
		pprof_builder__add_comment(b, "deadlock (cycle %zu): %s", k + 1, line);
		pr_warn("deadlock (cycle %zu): %s\n", k + 1, line);
	}
	if (!s->ncycles)
		pprof_builder__add_comment(b, "deadlocks: none");
}

static int threads_drain(struct collector *c, struct pprof_builder *b)
{
	struct threads_snapshot *s = threads_snapshot__new();
	int err;

	if (!s)
		return -ENOMEM;
	err = take(c, s);
	if (err)
		goto cleanup;
	mem__checkpoint("threads: read");
	threads_snapshot__sort(s);
	announce(c, s);
	/* Every frame of every thread at once, not only those that tell a futex wait's kind: the
	 * profile's and the text's frames then come from the symbolizer's cache, and each file's
	 * DWARF is read once, not for the waits and again for the profile (the maps of this type
	 * are small: resolving before they are freed costs little memory). */
	if (c->opts.sym)
		err = threads__prepare(s, c->opts.sym, NULL, true, CPROF_MAX_STACK);
	mem__checkpoint("threads: prepared");
	for (size_t i = 0; i < s->n && !err; i++)
		err = describe(c, &s->t[i]);
	mem__checkpoint("threads: described");
	if (!err)
		err = threads__link(s);
	if (!err)
		err = add_samples(c, s, b);
	if (err)
		goto cleanup;
	add_comments(c, s, b);
	pr_info("threads: %zu read in %.1f ms\n", s->n, s->read_ns / 1e6);
	if (c->opts.threads_out) {
		*c->opts.threads_out = s;
		s = NULL;
	}
cleanup:
	threads_snapshot__free(s);
	return err;
}

static void threads_pprof_config(const struct collector *c, struct pprof_config *cfg)
{
	(void)c;
	/* Go's goroutine profile: a count of goroutines (here threads) per stack. */
	cfg->nvalues = 1;
	cfg->sample_types[0] = (struct pprof_value_type){"goroutine", "count"};
	cfg->period_type = (struct pprof_value_type){"goroutine", "count"};
	cfg->period = 1;
}

const struct collector_ops threads_collector_ops = {
	.name = "threads",
	.open = threads_open,
	.drain = threads_drain,
	.close = threads_close,
	.pprof_config = threads_pprof_config,
	.snapshot = true,
};
