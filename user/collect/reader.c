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
#include "util/log.h"

struct notice_item {
	struct cprof_proc_event e;
	struct proc_read rd;
	struct proc_maps *pm; /* rd.pm, owned */
	char *exe, *cgroup;   /* rd.exe, rd.cgroup, owned */
};

struct notice_reader {
	struct bpf_map *mmap_pending;
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
 * sampled or mapped code (for the symbolizer and the unwinder), its identity and labels; at its
 * exec, its mappings and executable only (kept in case it is gone before its first sample). */
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
	if (proc__exe(pid, buf, sizeof(buf)) == 0)
		it->rd.exe = it->exe = strdup(buf);
	it->rd.stat_err = -ENODATA;
	if (kind == CPROF_PROC_EXEC)
		return;
	it->rd.stat_err = proc_stat__read(pid, &it->rd.st);
	if (!it->rd.stat_err && proc__cgroup(pid, buf, sizeof(buf)) == 0)
		it->rd.cgroup = it->cgroup = strdup(buf);
}

static int reader_event(void *ctx, void *data, size_t size)
{
	struct notice_reader *r = ctx;
	struct notice_item it = {}, *q;
	uint64_t one = 1;
	bool was_empty;

	if (size < sizeof(it.e))
		return 0;
	memcpy(&it.e, data, sizeof(it.e));
	read_proc(r, &it);
	pthread_mutex_lock(&r->lock);
	if (r->n == r->cap) {
		q = realloc(r->q, (r->cap ? r->cap * 2 : 64) * sizeof(*q));
		if (!q) {
			pthread_mutex_unlock(&r->lock);
			item__free(&it);
			return 0; /* the process is read again at its next notice, or when drained */
		}
		r->q = q;
		r->cap = r->cap ? r->cap * 2 : 64;
	}
	was_empty = r->n == 0;
	r->q[r->n++] = it;
	pthread_mutex_unlock(&r->lock);
	/* One wake-up per batch: a drain reads the eventfd before it takes the whole queue, so a
	 * notice queued behind others is taken with them. */
	if (was_empty && write(r->efd, &one, sizeof(one)) < 0)
		pr_debug("notice reader: eventfd: %s\n", strerror(errno));
	return 0;
}

static void *reader_main(void *arg)
{
	struct notice_reader *r = arg;
	int err;

	while (!atomic_load(&r->stop)) {
		err = ring_buffer__poll(r->rb, 100);
		if (err < 0 && err != -EINTR) {
			pr_err("reading process notices: %s\n", strerror(-err));
			break;
		}
	}
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
