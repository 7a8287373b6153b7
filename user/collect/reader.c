/* The notice reader: see reader.h. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <bpf/libbpf.h>

#include "collect/reader.h"
#include "proc/maps.h"
#include "util/clock.h"
#include "util/log.h"

/* An exec is read at the first of the reader's wake-ups this long after it, unless the process
 * was sampled, exited or did something else worth a notice by then (see struct pending_exec). */
#define EXEC_READ_DELAY_NS (10 * 1000000LL)
/* The longest the reader sleeps: how late a lazy notice (an exit, an exec) may be read. */
#define READER_PERIOD_MS 200
#define PENDING_MAX	 256

struct notice_item {
	struct cprof_proc_event e;
	struct proc_read rd;
	struct proc_maps *pm; /* rd.pm, owned */
	char *exe, *cgroup;   /* rd.exe, rd.cgroup, owned */
};

/* An exec notice not read yet. Most processes a busy machine starts (shell tools, compilers'
 * helpers) exit within milliseconds, unsampled: then nothing of them is ever needed, and
 * reading their mappings at exec was most of the agent's cost per process. One still running
 * EXEC_READ_DELAY_NS after its exec is read at the reader's next wake-up (what its first
 * sample will need); one that is sampled first, or exits, sends its exec notice on unread
 * (the handler still learns of the exec) ahead of that notice, which reads what it needs; one
 * that exits unsampled, and was not announced before its exec, is forgotten with its exit. The
 * cost: a sample in a process's first 10 to 210 ms walks without the tables that its exec's
 * reading would have mapped. */
struct pending_exec {
	struct cprof_proc_event e;
	int64_t due; /* CLOCK_MONOTONIC ns */
};

struct notice_reader {
	struct bpf_map *mmap_pending;
	struct pending_exec pending[PENDING_MAX]; /* the thread's own, in order of notice */
	size_t npending;
	atomic_uint_fast64_t execs, unread;
	notice_fn fn;
	void *ctx;
	struct ring_buffer *rb;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	int efd; /* counts pushes: what the poller waits on */
	pthread_mutex_t lock;
	struct notice_item *q; /* under lock */
	size_t n, cap;
};

static void item__free(struct notice_item *it)
{
	proc_maps__free(it->pm);
	free(it->exe);
	free(it->cgroup);
}

/* What a notice of this kind needs read now: the mappings of a process that is new, was
 * sampled or mapped code (for the symbolizer and the unwinder) and its identity (stat); the
 * labels of a new or sampled one; at its exec, its mappings and executable only (kept in case
 * it is gone before its first sample). */
static void read_proc(struct notice_reader *r, struct notice_item *it)
{
	char buf[PATH_MAX];
	pid_t pid = (pid_t)it->e.pid;
	uint32_t kind = it->e.kind;

	if (kind != CPROF_PROC_NEW && kind != CPROF_PROC_SAMPLED && kind != CPROF_PROC_MMAP &&
	    kind != CPROF_PROC_EXEC)
		return;
	/* Cleared before the mappings are read: a library mapped after this read is announced
	 * again (bpf/common.bpf.h, mmap_exec_seen). */
	if (kind == CPROF_PROC_MMAP && r->mmap_pending)
		bpf_map__delete_elem(r->mmap_pending, &it->e.pid, sizeof(it->e.pid), 0);
	if (proc_maps__read(pid, &it->pm)) {
		proc_maps__free(it->pm);
		it->pm = NULL;
	}
	it->rd.pm = it->pm;
	it->rd.read = true;
	it->rd.stat_err = kind == CPROF_PROC_EXEC ? -ENODATA : proc_stat__read(pid, &it->rd.st);
	if (kind == CPROF_PROC_MMAP || (kind != CPROF_PROC_EXEC && it->rd.stat_err))
		return; /* labelled already, or gone */
	if (proc__exe(pid, buf, sizeof(buf)) == 0)
		it->rd.exe = it->exe = strdup(buf);
	if (kind == CPROF_PROC_EXEC)
		return;
	it->rd.labels = true;
	if (proc__cgroup(pid, buf, sizeof(buf)) == 0)
		it->rd.cgroup = it->cgroup = strdup(buf);
}

/* Queues it for the poller (which owns it from then on). */
static void push(struct notice_reader *r, struct notice_item *it)
{
	struct notice_item *q;
	uint64_t one = 1;
	bool was_empty;

	pthread_mutex_lock(&r->lock);
	if (r->n == r->cap) {
		q = realloc(r->q, (r->cap ? r->cap * 2 : 64) * sizeof(*q));
		if (!q) {
			pthread_mutex_unlock(&r->lock);
			item__free(it);
			return; /* the process is read again at its next notice, or when drained */
		}
		r->q = q;
		r->cap = r->cap ? r->cap * 2 : 64;
	}
	was_empty = r->n == 0;
	r->q[r->n++] = *it;
	pthread_mutex_unlock(&r->lock);
	/* One wake-up per batch: a drain reads the eventfd before it takes the whole queue, so a
	 * notice queued behind others is taken with them. */
	if (was_empty && write(r->efd, &one, sizeof(one)) < 0)
		pr_debug("notice reader: eventfd: %s\n", strerror(errno));
}

/* Reads what e needs (read: now; else nothing, as for a process gone) and queues both. */
static void push_event(struct notice_reader *r, const struct cprof_proc_event *e, bool read)
{
	struct notice_item it = {.e = *e};

	if (read)
		read_proc(r, &it);
	else
		it.rd = (struct proc_read){.read = true, .stat_err = -ESRCH};
	push(r, &it);
}

/* Takes the pending exec of pid out of the list into *e; false when there is none. */
static bool take_pending(struct notice_reader *r, uint32_t pid, struct cprof_proc_event *e)
{
	for (size_t i = 0; i < r->npending; i++) {
		if (r->pending[i].e.pid != pid)
			continue;
		*e = r->pending[i].e;
		memmove(&r->pending[i], &r->pending[i + 1],
			(r->npending - i - 1) * sizeof(r->pending[0]));
		r->npending--;
		return true;
	}
	return false;
}

/* Before any other notice of pid, its pending exec: sent on unread; or forgotten, with the
 * notice, when the notice is its exit and nothing was announced of the process before its exec
 * (then no handler holds anything of it: it exited unread and unsampled). Returns whether the
 * notice is forgotten too. */
static bool settle_pending(struct notice_reader *r, const struct cprof_proc_event *e)
{
	struct cprof_proc_event exec;

	if (!take_pending(r, e->pid, &exec))
		return false;
	if (e->kind == CPROF_PROC_EXIT && !(exec.flags & CPROF_PROC_F_KNOWN)) {
		atomic_fetch_add(&r->unread, 1);
		return true;
	}
	push_event(r, &exec, false);
	return false;
}

/* Reads the pending execs that are due (all of them with all), in order. */
static void read_due(struct notice_reader *r, bool all)
{
	int64_t now = clock__ns(CLOCK_MONOTONIC);
	size_t i = 0;

	while (i < r->npending && (all || r->pending[i].due <= now))
		push_event(r, &r->pending[i++].e, true);
	memmove(r->pending, r->pending + i, (r->npending - i) * sizeof(r->pending[0]));
	r->npending -= i;
}

static int reader_event(void *ctx, void *data, size_t size)
{
	struct notice_reader *r = ctx;
	const struct cprof_proc_event *e = data;

	if (size < sizeof(*e))
		return 0;
	if (settle_pending(r, e))
		return 0;
	if (e->kind == CPROF_PROC_EXEC) {
		atomic_fetch_add(&r->execs, 1);
		if (r->npending == PENDING_MAX)
			read_due(r, true); /* a burst of execs: no more waiting */
		r->pending[r->npending++] = (struct pending_exec){
			.e = *e, .due = (int64_t)e->time_ns + EXEC_READ_DELAY_NS};
		return 0;
	}
	push_event(r, e, true);
	return 0;
}

/* Wakes for a notice that must be read at once (bpf/common.bpf.h, proc_event_submit) and every
 * READER_PERIOD_MS for the lazy ones (exits, execs), whose due execs it reads then. */
static void *reader_main(void *arg)
{
	struct notice_reader *r = arg;
	int err;

	while (!atomic_load(&r->stop)) {
		err = ring_buffer__poll(r->rb, READER_PERIOD_MS);
		if (err == 0)
			err = ring_buffer__consume(r->rb);
		if (err < 0 && err != -EINTR) {
			pr_err("reading process notices: %s\n", strerror(-err));
			break;
		}
		read_due(r, false);
	}
	read_due(r, true);
	return NULL;
}

int notice_reader__start(struct bpf_map *events, struct bpf_map *mmap_pending, notice_fn fn,
			 void *ctx, struct notice_reader **out)
{
	struct notice_reader *r = calloc(1, sizeof(*r));
	int err;

	if (!r)
		return -ENOMEM;
	r->mmap_pending = mmap_pending;
	r->fn = fn;
	r->ctx = ctx;
	pthread_mutex_init(&r->lock, NULL);
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->efd < 0) {
		err = -errno;
		goto fail;
	}
	r->rb = ring_buffer__new(bpf_map__fd(events), reader_event, r, NULL);
	if (!r->rb) {
		err = -errno;
		goto fail;
	}
	err = -pthread_create(&r->thread, NULL, reader_main, r);
	if (err)
		goto fail;
	r->started = true;
	*out = r;
	return 0;
fail:
	notice_reader__free(r);
	return err;
}

void notice_reader__free(struct notice_reader *r)
{
	if (!r)
		return;
	if (r->started) {
		atomic_store(&r->stop, true);
		pthread_join(r->thread, NULL);
	}
	ring_buffer__free(r->rb);
	for (size_t i = 0; i < r->n; i++)
		item__free(&r->q[i]);
	free(r->q);
	if (r->efd >= 0)
		close(r->efd);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

int notice_reader__drain(struct notice_reader *r, int timeout_ms)
{
	struct pollfd p = {.fd = r->efd, .events = POLLIN};
	struct notice_item *q;
	uint64_t v;
	size_t n;

	if (timeout_ms && poll(&p, 1, timeout_ms) < 0 && errno != EINTR)
		return -errno;
	if (read(r->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	pthread_mutex_lock(&r->lock);
	q = r->q;
	n = r->n;
	r->q = NULL;
	r->n = r->cap = 0;
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < n; i++) {
		r->fn(r->ctx, &q[i].e, &q[i].rd);
		item__free(&q[i]);
	}
	free(q);
	return (int)n;
}

int notice_reader__wake_fd(const struct notice_reader *r)
{
	return r->efd;
}

void notice_reader__counts(const struct notice_reader *r, uint64_t *execs, uint64_t *unread)
{
	*execs = atomic_load(&r->execs);
	*unread = atomic_load(&r->unread);
}
