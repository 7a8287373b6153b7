#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <gelf.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include "proc/mem.h"
#include "proc/maps.h"
#include "unwind/internal.h"
#include "unwind/cache.h"
#include "util/array.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/clock.h"

struct unwinder *unwinder__new(const struct unwinder_opts *o)
{
	struct unwinder *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->o = *o;
	if (!u->o.budget_bytes)
		u->o.budget_bytes = UNWINDER_DEFAULT_BUDGET;
	u->next_slot = 1;
	u->started_ns = clock__ns(CLOCK_MONOTONIC);
	u->swept_ns = u->started_ns;
	u->exes = hashmap__new(hashmap__str_hash, hashmap__str_equal, NULL);
	u->pids = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	if (!u->exes || !u->pids) {
		unwinder__free(u);
		return NULL;
	}
	if (u->o.cache_dir)
		u->cache = unwind_cache__open(u->o.cache_dir, u->o.cache_bytes);
	if (u->o.used_fd >= 0) {
		long page = sysconf(_SC_PAGESIZE);
		size_t len = (CPROF_UNWIND_MAX_EXES + 1) * sizeof(uint64_t);
		void *m;

		len = (len + (size_t)page - 1) / (size_t)page * (size_t)page;
		m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, u->o.used_fd, 0);
		if (m == MAP_FAILED) {
			/* Eviction then goes by build time, not by use. */
			pr_debug("unwind: cannot map unwind_used: %s\n", strerror(errno));
		} else {
			u->used = m;
			u->used_len = len;
		}
	}
	return u;
}

static void free_pid(const void *key, void *value, void *ctx)
{
	struct unw_pid *p = value;

	(void)key;
	(void)ctx;
	free(p->keys);
	free(p->maps);
	free(p->held);
	free(p);
}

void unwinder__free(struct unwinder *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->ndeferred; i++)
		close(u->deferred[i].fd);
	for (size_t i = 0; i < u->nall; i++)
		unw_exe__free(u->all[i]);
	free(u->all);
	hashmap__free(u->exes);
	if (u->pids)
		hashmap__for_each(u->pids, free_pid, NULL);
	hashmap__free(u->pids);
	if (u->used)
		munmap((void *)u->used, u->used_len);
	unwind_cache__free(u->cache);
	free(u);
}

void unwinder__stats(const struct unwinder *u, struct unwinder_stats *st)
{
	*st = u->st;
	st->pending = u->ndeferred;
	st->records = u->nall;
	st->procs = hashmap__size(u->pids);
	st->budget_bytes = u->o.budget_bytes;
	if (u->cache) {
		const struct unwind_cache_stats *cs = unwind_cache__stats(u->cache);

		st->cache_loads = cs->loads;
		st->cache_stores = cs->stores;
		st->cache_rejected = cs->rejected;
		st->cache_removed = cs->removed;
		st->cache_bytes = cs->bytes;
		st->cache_load_ns = cs->load_ns;
	}
}

/* A copy of the vDSO as pid maps it (the same image for every process of this kernel). */
static int read_vdso(pid_t pid, const struct proc_map *m, void **image, size_t *size)
{
	size_t len = m->end - m->start;
	void *buf;
	int err;

	if (len == 0 || len > (64u << 10))
		return -EINVAL;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	err = proc_mem__read(pid, m->start, buf, len);
	if (err) {
		free(buf);
		return err;
	}
	*image = buf;
	*size = len;
	return 0;
}

static int pid_push_map(struct unw_pid *p, const struct cprof_unwind_mapping *m)
{
	if (array__reserve((void **)&p->maps, &p->capmaps, p->nmaps + 1, sizeof(*p->maps)))
		return -ENOMEM;
	p->maps[p->nmaps++] = *m;
	return 0;
}

/* p (a reading of a process's mappings) maps e: e stays known while p lives. */
static int pid_hold(struct unwinder *u, struct unw_pid *p, struct unw_exe *e)
{
	bool was = unw_exe__idle(e);

	for (size_t i = 0; i < p->nheld; i++)
		if (p->held[i] == e)
			return 0;
	if (array__reserve((void **)&p->held, &p->capheld, p->nheld + 1, sizeof(*p->held)))
		return -ENOMEM;
	p->held[p->nheld++] = e;
	e->refs++;
	unw_exe__changed(u, e, was);
	return 0;
}

static int map_start_cmp(const void *a, const void *b)
{
	const struct cprof_unwind_mapping *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Publishes pid's mappings as the sorted array of sleepable programs: entry 0 a header that
 * says how many follow. Replaces the array it had. */
static int publish_pid_maps(struct unwinder *u, pid_t pid, struct unw_pid *p)
{
	struct cprof_unwind_mapping *all;
	__u32 n;
	int err;

	if (u->o.pid_maps_fd < 0)
		return 0;
	if (p->nmaps >= CPROF_UNWIND_MAX_PID_MAPS) {
		u->st.failed++;
		return -E2BIG;
	}
	if (p->nmaps)
		qsort(p->maps, p->nmaps, sizeof(*p->maps), map_start_cmp);
	n = (__u32)p->nmaps;
	all = calloc((size_t)n + 1, sizeof(*all));
	if (!all) {
		u->st.failed++;
		return -ENOMEM;
	}
	all[0].nrows = n;
	if (n)
		memcpy(&all[1], p->maps, n * sizeof(*all));
	err = unwinder__put_inner_array(u->o.pid_maps_fd, (__u32)pid, "cprof_unw_pmaps",
					sizeof(struct cprof_unwind_mapping), n + 1, all);
	free(all);
	if (err)
		u->st.failed++;
	return err;
}

static int map_exe(struct unwinder *u, struct unw_pid *p, pid_t pid, uint64_t start, uint64_t end,
		   uint64_t offset, struct unw_exe *e);

static int defer_mapping(struct unwinder *u, struct unw_pid *p, pid_t pid, const struct proc_map *m,
			 int fd, const char *fkey, uint64_t size)
{
	struct unw_deferred *d;

	/* Queued already (a second notice, a rebuild asked for again): one is enough, but for
	 * this reading of the mappings, the one the built table is mapped into. */
	for (size_t i = 0; i < u->ndeferred; i++)
		if (u->deferred[i].pid == pid && strcmp(u->deferred[i].fkey, fkey) == 0) {
			d = &u->deferred[i];
			d->gen = p->gen;
			d->start = m->start;
			d->end = m->end;
			d->offset = m->offset;
			close(fd);
			return 0;
		}
	if (u->ndeferred >= DEFER_MAX) {
		/* Full: the largest waiting file gives way to a smaller one (smallest go first). */
		size_t big = 0;

		for (size_t i = 0; i < u->ndeferred; i++)
			if (u->deferred[i].size > u->deferred[big].size)
				big = i;
		u->st.queue_full++;
		if (u->deferred[big].size <= size) {
			close(fd);
			return 0;
		}
		close(u->deferred[big].fd);
		u->deferred[big] = u->deferred[--u->ndeferred];
	}
	d = &u->deferred[u->ndeferred++];
	*d = (struct unw_deferred){.pid = pid,
				   .gen = p->gen,
				   .start = m->start,
				   .end = m->end,
				   .offset = m->offset,
				   .fd = fd,
				   .size = size};
	snprintf(d->fkey, sizeof(d->fkey), "%s", fkey);
	u->st.deferred++;
	return 0;
}

/* How add_mapping treats an executable it has no table for yet. */
enum add_mode {
	ADD_NOW,	/* build its table now */
	ADD_DEFER,	/* queue it for unwinder__idle() (built within the CPU budget) */
	ADD_KNOWN_ONLY, /* skip it: only executables already known, nothing opened */
};

/* The identity of the file m maps: its device and inode, and its mtime and size when they can
 * be read (a stat through /proc/PID/map_files, nothing opened), so that a file rewritten in
 * place is another file with another table. */
static void file_key(pid_t pid, const struct proc_map *m, char *key, size_t len)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, m->start,
		 m->end);
	if (stat(path, &st) == 0 && (uint64_t)st.st_ino == m->inode)
		snprintf(key, len, "f:%u:%u:%" PRIu64 ":%lld.%09ld:%lld", m->dev_major,
			 m->dev_minor, m->inode, (long long)st.st_mtim.tv_sec,
			 (long)st.st_mtim.tv_nsec, (long long)st.st_size);
	else
		snprintf(key, len, "f:%u:%u:%" PRIu64, m->dev_major, m->dev_minor, m->inode);
}

static int add_mapping(struct unwinder *u, struct unw_pid *p, pid_t pid, const struct proc_map *m,
		       enum add_mode mode)
{
	struct unw_exe *e = NULL;
	char fkey[FKEY_LEN];
	void *found;
	int fd, err;

	if (m->path)
		file_key(pid, m, fkey, sizeof(fkey));
	else
		snprintf(fkey, sizeof(fkey), "[vdso]");
	if (hashmap__find(u->exes, fkey, &found)) {
		e = found;
		u->st.exe_hits++;
		/* Known. An evicted table is rebuilt when a walk met it (unwinder__table_missed),
		 * not for every process that maps it: those walk it with frame pointers meanwhile,
		 * and their samples ask for it. */
		if (mode == ADD_KNOWN_ONLY || !unw_exe__evicted(e) || e != u->rebuild)
			return map_exe(u, p, pid, m->start, m->end, m->offset, e);
	} else if (mode == ADD_KNOWN_ONLY) {
		return 0;
	}
	if (!m->path) {
		void *image = NULL;
		size_t size = 0;

		err = read_vdso(pid, m, &image, &size);
		if (err)
			return err;
		if (e)
			unw_exe__build(u, e, -1, image, size, fkey);
		else
			e = unwinder__get_exe(u, -1, image, size, fkey);
		free(image);
		if (!e)
			return -ENOMEM;
	} else {
		struct stat st;

		fd = proc_map__open(pid, m);
		if (fd < 0)
			return e ? map_exe(u, p, pid, m->start, m->end, m->offset, e) : fd;
		/* On demand: named now, built when a walk first needs it. */
		if (mode == ADD_DEFER && !e && u->o.on_demand) {
			e = unwinder__waiting_exe(u, fd, fkey);
			if (e) {
				close(fd);
				return map_exe(u, p, pid, m->start, m->end, m->offset, e);
			}
		}
		if (fstat(fd, &st))
			st.st_size = 0;
		if (mode == ADD_DEFER) {
			err = defer_mapping(u, p, pid, m, fd, fkey, (uint64_t)st.st_size);
			/* An evicted table's entries stay meanwhile (frame pointers until then). */
			if (!err && e)
				err = map_exe(u, p, pid, m->start, m->end, m->offset, e);
			return err;
		}
		if (e)
			unw_exe__build(u, e, fd, NULL, (size_t)st.st_size, fkey);
		else
			e = unwinder__get_exe(u, fd, NULL, (size_t)st.st_size, fkey);
		close(fd);
		if (!e)
			return -ENOMEM;
	}
	return map_exe(u, p, pid, m->start, m->end, m->offset, e);
}

/* Puts the trie entries of one mapping of e. */
static int map_exe(struct unwinder *u, struct unw_pid *p, pid_t pid, uint64_t start, uint64_t end,
		   uint64_t offset, struct unw_exe *e)
{
	struct cprof_unwind_mapping val = {};

	if (pid_hold(u, p, e))
		return -ENOMEM;
	if (!e->id)
		return 0; /* no table: frame pointers in BPF, nothing to tell it */
	for (int i = 0; i < e->nloads; i++) {
		uint64_t lo = e->loads[i].offset & ~4095ull;

		if (offset < lo || offset >= e->loads[i].offset + e->loads[i].filesz)
			continue;
		val.exe_id = e->id;
		val.bias = start - offset + e->loads[i].offset - e->loads[i].vaddr;
		val.start = start;
		val.end = end;
		if (u->o.pid_maps_fd >= 0 && pid_push_map(p, &val))
			return -ENOMEM;
		if (u->o.mappings_fd < 0)
			return 0;
		return unwinder__add_range(u, p, pid, start, end, &val);
	}
	return 0;
}

static double now_ms(void)
{
	return (double)clock__ns(CLOCK_MONOTONIC) / 1e6;
}

static bool vdso_mapping(const struct proc_map *m)
{
	return m->path && strcmp(m->path, "[vdso]") == 0;
}

/* Deletes the trie entries of old that now (may be NULL) did not write again, and frees old. */
static void unw_pid__retire(struct unwinder *u, struct unw_pid *old, const struct unw_pid *now)
{
	for (size_t i = 0; i < old->n; i++) {
		bool kept = false;

		for (size_t j = 0; now && j < now->n && !kept; j++)
			kept = memcmp(&old->keys[i], &now->keys[j], sizeof(old->keys[i])) == 0;
		if (!kept)
			bpf_map_delete_elem(u->o.mappings_fd, &old->keys[i]);
	}
	/* now holds what it maps already: what only old mapped may become idle. */
	for (size_t i = 0; i < old->nheld; i++) {
		struct unw_exe *e = old->held[i];
		bool was = unw_exe__idle(e);

		e->refs--;
		unw_exe__changed(u, e, was);
	}
	free(old->keys);
	free(old->maps);
	free(old->held);
	free(old);
}

void unwinder__remove_pid(struct unwinder *u, pid_t pid)
{
	const void *key;
	void *val;

	if (hashmap__delete(u->pids, (void *)(uintptr_t)pid, &key, &val))
		unw_pid__retire(u, val, NULL);
	if (u->o.pid_maps_fd >= 0) {
		__u32 k = (__u32)pid;

		bpf_map_delete_elem(u->o.pid_maps_fd, &k);
	}
}

/* maps: pid's mappings as proc_maps__read gave them, NULL when that failed with read_err. */
static int add_pid_maps(struct unwinder *u, pid_t pid, const struct proc_maps *maps, int read_err,
			enum add_mode mode)
{
	struct unw_pid *p = NULL, *old;
	const void *okey;
	void *oval;
	double t0 = now_ms();
	int err;

	if (pid <= 0)
		return -EINVAL;
	/* The entries of an earlier reading stay in the trie while the new ones are written (a
	 * walk meanwhile finds one or the other, never none); those not written again (an exec
	 * replaced what was mapped) are deleted after. */
	if (!hashmap__delete(u->pids, (void *)(uintptr_t)pid, &okey, &oval))
		oval = NULL;
	old = oval;
	if (!maps) {
		if (old)
			unw_pid__retire(u, old, NULL);
		return read_err ? read_err : -ESRCH;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		err = -ENOMEM;
		goto cleanup;
	}
	p->gen = ++u->next_gen;
	err = hashmap__insert(u->pids, (void *)(uintptr_t)pid, p);
	if (err) {
		free(p);
		p = NULL;
		goto cleanup;
	}
	u->reading = maps;
	for (size_t i = 0; i < maps->n; i++) {
		const struct proc_map *m = &maps->maps[i];

		if (m->perms[2] != 'x')
			continue;
		if (vdso_mapping(m)) {
			struct proc_map v = *m;

			v.path = NULL; /* add_mapping's mark of the vDSO */
			err = add_mapping(u, p, pid, &v, mode == ADD_KNOWN_ONLY ? mode : ADD_NOW);
		} else if (m->path && m->path[0] == '/') {
			err = add_mapping(u, p, pid, m, mode);
		} else {
			continue;
		}
		if (err == -ENOMEM)
			goto cleanup;
		if (err)
			pr_debug("unwind: pid %d: %s: %s\n", (int)pid, m->path, strerror(-err));
		err = 0;
	}
	publish_pid_maps(u, pid, p);
cleanup:
	u->reading = NULL;
	if (old)
		unw_pid__retire(u, old, p);
	if (mode == ADD_KNOWN_ONLY)
		u->st.execs++;
	else
		u->st.pids++;
	u->st.pid_ns += (uint64_t)((now_ms() - t0) * 1e6);
	unwinder__trim_exes(u);
	pr_debug("unwind: pid %d: %zu trie entries, %.1f ms%s\n", (int)pid, p ? p->n : 0,
		 (now_ms() - t0), mode == ADD_KNOWN_ONLY ? " (known executables only)" : "");
	return err;
}

static int add_pid(struct unwinder *u, pid_t pid, enum add_mode mode)
{
	struct proc_maps *maps = NULL;
	int err;

	if (pid <= 0)
		return -EINVAL;
	err = proc_maps__read(pid, &maps);
	err = add_pid_maps(u, pid, err ? NULL : maps, err, mode);
	proc_maps__free(maps);
	return err;
}

int unwinder__add_pid(struct unwinder *u, pid_t pid, bool defer)
{
	return add_pid(u, pid, defer ? ADD_DEFER : ADD_NOW);
}

int unwinder__add_pid_known(struct unwinder *u, pid_t pid)
{
	return add_pid(u, pid, ADD_KNOWN_ONLY);
}

int unwinder__add_pid_maps(struct unwinder *u, pid_t pid, const struct proc_maps *maps, bool defer)
{
	return add_pid_maps(u, pid, maps, 0, defer ? ADD_DEFER : ADD_NOW);
}

int unwinder__add_pid_known_maps(struct unwinder *u, pid_t pid, const struct proc_maps *maps)
{
	return add_pid_maps(u, pid, maps, 0, ADD_KNOWN_ONLY);
}

static bool pid_holds(const struct unw_pid *p, const struct unw_exe *e)
{
	for (size_t i = 0; i < p->nheld; i++)
		if (p->held[i] == e)
			return true;
	return false;
}

struct sweep {
	pid_t *gone;
	size_t n, cap;
};

static void sweep_pid(const void *key, void *value, void *ctx)
{
	struct sweep *sw = ctx;
	pid_t pid = (pid_t)(uintptr_t)key;

	(void)value;
	if (kill(pid, 0) == 0 || errno != ESRCH)
		return;
	if (array__reserve((void **)&sw->gone, &sw->cap, sw->n + 1, sizeof(*sw->gone)) == 0)
		sw->gone[sw->n++] = pid;
}

/* Forgets the processes that are gone though no exit notice said so (lost, or not asked for):
 * what they held may then be evicted and forgotten. */
static void sweep(struct unwinder *u)
{
	int64_t now = clock__ns(CLOCK_MONOTONIC);
	struct sweep sw = {};

	if (now - u->swept_ns < SWEEP_NS)
		return;
	u->swept_ns = now;
	hashmap__for_each(u->pids, sweep_pid, &sw);
	for (size_t i = 0; i < sw.n; i++)
		unwinder__remove_pid(u, sw.gone[i]);
	u->st.swept += sw.n;
	free(sw.gone);
}

int unwinder__table_missed(struct unwinder *u, pid_t pid, uint32_t id)
{
	struct unw_exe *e = id && id <= CPROF_UNWIND_MAX_EXES ? u->slots[id] : NULL;
	int err;

	u->st.misses++;
	pr_debug("unwind: pid %d met table %u not loaded%s\n", (int)pid, id,
		 e && unw_exe__evicted(e) ? "" : " (no longer)");
	/* Built since (or forgotten: its processes are gone). */
	if (!e || !unw_exe__evicted(e))
		return 0;
	/* Read again as a sampled process: that table is built (or queued, within
	 * --unwind-cpu), the others it maps stay as they are. */
	u->rebuild = e;
	err = add_pid(u, pid, ADD_DEFER);
	u->rebuild = NULL;
	return err;
}

bool unwinder__pending(const struct unwinder *u)
{
	return u->ndeferred > 0;
}

bool unwinder__idle(struct unwinder *u)
{
	struct unw_deferred d;
	struct unw_exe *e = NULL;
	void *found;
	size_t pick = 0;
	bool known = false;

	sweep(u);
	unwinder__trim_exes(u);
	if (!u->ndeferred)
		return false;
	/* Known by now (queued twice): no build. Else only within the CPU budget, smallest file
	 * first: the time a table takes grows with the file, so that gives the most processes
	 * their tables for the budget (the queue is short, DEFER_MAX). */
	for (size_t i = 0; i < u->ndeferred; i++) {
		if (hashmap__find(u->exes, u->deferred[i].fkey, &found) &&
		    !unw_exe__evicted(found)) {
			known = true;
			pick = i;
			break;
		}
		if (u->deferred[i].size < u->deferred[pick].size)
			pick = i;
	}
	d = u->deferred[pick];
	if (!known && unwinder__over_cpu(u, d.size) && !unwinder__cached(u, d.fd, d.fkey))
		return false;
	u->deferred[pick] = u->deferred[--u->ndeferred];
	if (hashmap__find(u->exes, d.fkey, &found))
		e = found;
	if (!e)
		e = unwinder__get_exe(u, d.fd, NULL, d.size, d.fkey);
	else if (unw_exe__evicted(e))
		unw_exe__build(u, e, d.fd, NULL, d.size, d.fkey);
	close(d.fd);
	/* The process may have exec'd or exited meanwhile: then its mappings are not these. An
	 * evicted table's entries were kept: they name the rebuilt one. */
	if (e && hashmap__find(u->pids, (void *)(uintptr_t)d.pid, &found) &&
	    ((struct unw_pid *)found)->gen == d.gen && !pid_holds(found, e) && e->id &&
	    map_exe(u, found, d.pid, d.start, d.end, d.offset, e) == 0)
		publish_pid_maps(u, d.pid, found);
	return u->ndeferred > 0;
}
