#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <gelf.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include "proc/mem.h"
#include "proc/maps.h"
#include "unwind/table.h"
#include "unwind/unwinder.h"
#include "util/array.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/clock.h"

/* One executable file, shared by every process that maps it. */
struct unw_exe {
	bool listed; /* in unwinder.all */
	uint32_t id; /* 0: no table (frame pointers) */
	uint32_t nrows;
	struct {
		uint64_t offset, vaddr, filesz;
	} loads[UNWIND_TABLE_MAX_LOADS];
	int nloads;
};

/* The trie entries of one process, to remove them on exec or exit, and its mappings with a
 * table (the array of sleepable programs). */
struct unw_pid {
	struct cprof_unwind_lpm_key *keys;
	size_t n, cap;
	struct cprof_unwind_mapping *maps;
	size_t nmaps, capmaps;
	uint64_t gen; /* which reading of the process's mappings this is */
};

/* A mapping whose (large) executable is compiled later, by unwinder__idle(), so that a big
 * binary does not hold up the tables of the processes noticed after it. */
struct unw_deferred {
	pid_t pid;
	uint64_t gen;
	uint64_t start, end, offset;
	int fd;	       /* the file, kept open: the process may exit before its turn */
	uint64_t size; /* of the file: the smallest are built first */
	char fkey[64];
};

/* Executables at least this large (file size) are deferred. */
#define DEFER_BYTES (8u << 20)
/* Mappings queued at most (each holds its file open). */
#define DEFER_MAX 256

struct unwinder {
	struct unwinder_opts o;
	struct hashmap *exes; /* "f:dev:ino" and "b:build-id" -> struct unw_exe (both keys) */
	struct unw_exe **all; /* each once, to free */
	size_t nall, capall;
	char **strs; /* the keys of exes */
	size_t nstrs, capstrs;
	struct hashmap *pids; /* pid -> struct unw_pid */
	uint32_t next_id;
	uint64_t next_gen;
	struct unw_deferred deferred[DEFER_MAX]; /* pending, in no order */
	size_t ndeferred;
	struct unwinder_stats st;
	int64_t started_ns;   /* CLOCK_MONOTONIC, for the CPU budget */
	uint64_t built_bytes; /* file bytes of the builds in build_ns */
};

/* Whether building the table of a file of `size` bytes now would exceed the CPU budget: the
 * CPU time spent building so far plus this build's estimate (the mean time per byte of the
 * builds so far) against cpu_pct of the time since the unwinder started, plus a first
 * allowance. */
static bool over_cpu(const struct unwinder *u, uint64_t size)
{
	double allowed, estimate = 0;

	if (u->o.cpu_pct <= 0)
		return false;
	if (u->built_bytes)
		estimate = (double)size * (double)u->st.build_ns / (double)u->built_bytes;
	allowed = (double)(clock__ns(CLOCK_MONOTONIC) - u->started_ns) * u->o.cpu_pct / 100 +
		  UNWINDER_CPU_BURST_MS * 1e6;
	return (double)u->st.build_ns + estimate > allowed;
}

struct unwinder *unwinder__new(const struct unwinder_opts *o)
{
	struct unwinder *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->o = *o;
	if (!u->o.budget_bytes)
		u->o.budget_bytes = UNWINDER_DEFAULT_BUDGET;
	u->next_id = 1;
	u->started_ns = clock__ns(CLOCK_MONOTONIC);
	u->exes = hashmap__new(hashmap__str_hash, hashmap__str_equal, NULL);
	u->pids = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	if (!u->exes || !u->pids) {
		unwinder__free(u);
		return NULL;
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
	free(p);
}

void unwinder__free(struct unwinder *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->ndeferred; i++)
		close(u->deferred[i].fd);
	for (size_t i = 0; i < u->nall; i++)
		free(u->all[i]);
	free(u->all);
	for (size_t i = 0; i < u->nstrs; i++)
		free(u->strs[i]);
	free(u->strs);
	hashmap__free(u->exes);
	if (u->pids)
		hashmap__for_each(u->pids, free_pid, NULL);
	hashmap__free(u->pids);
	free(u);
}

void unwinder__stats(const struct unwinder *u, struct unwinder_stats *st)
{
	*st = u->st;
	st->pending = u->ndeferred;
}

/* Creates an inner ARRAY of n values of value_size bytes each, fills it in one batch and puts
 * it in the map of maps outer_fd under key (replacing what was there). */
static int put_inner_array(int outer_fd, __u32 key, const char *name, __u32 value_size, __u32 n,
			   const void *values)
{
	LIBBPF_OPTS(bpf_map_create_opts, mo, .map_flags = BPF_F_INNER_MAP);
	LIBBPF_OPTS(bpf_map_batch_opts, bo);
	__u32 *keys = NULL, count = n;
	int fd, err;

	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, name, sizeof(__u32), value_size, n, &mo);
	if (fd < 0)
		return -errno;
	keys = malloc((size_t)n * sizeof(*keys));
	if (!keys) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (__u32 i = 0; i < n; i++)
		keys[i] = i;
	err = bpf_map_update_batch(fd, keys, values, &count, &bo);
	if (err)
		goto cleanup;
	err = bpf_map_update_elem(outer_fd, &key, &fd, BPF_ANY) ? -errno : 0;
cleanup:
	free(keys);
	close(fd); /* the outer map holds it now */
	return err;
}

/* Puts the table's rows in the HASH_OF_MAPS under id. */
static int load_table(struct unwinder *u, uint32_t id, const struct unwind_table *t)
{
	return put_inner_array(u->o.tables_fd, id, "cprof_unw_rows",
			       sizeof(struct cprof_unwind_row), (__u32)t->n, t->rows);
}

/* A copy of key owned by the unwinder (hashmap keys are borrowed pointers). */
static const char *intern(struct unwinder *u, const char *key)
{
	char *k;

	if (array__reserve((void **)&u->strs, &u->capstrs, u->nstrs + 1, sizeof(*u->strs)))
		return NULL;
	k = strdup(key);
	if (k)
		u->strs[u->nstrs++] = k;
	return k;
}

/* Files e under key (first time: also in the list of executables to free). */
static int remember(struct unwinder *u, struct unw_exe *e, const char *key)
{
	const char *k;

	if (hashmap__find(u->exes, key, NULL))
		return 0;
	if (!e->listed) {
		if (array__reserve((void **)&u->all, &u->capall, u->nall + 1, sizeof(*u->all)))
			return -ENOMEM;
		u->all[u->nall++] = e;
		e->listed = true;
	}
	k = intern(u, key);
	if (!k)
		return -ENOMEM;
	return hashmap__insert(u->exes, k, e);
}

/* Builds (or finds) the executable behind fd, of size bytes, or in image of size bytes when
 * fd < 0 (the vDSO). */
static struct unw_exe *get_exe(struct unwinder *u, int fd, void *image, size_t size,
			       const char *fkey)
{
	struct unwind_table t = {};
	struct unw_exe *e;
	char bkey[64];
	void *found;
	uint64_t bytes;
	/* CPU time of this thread, not wall time: a busy machine does not eat the budget. */
	int64_t t0 = clock__ns(CLOCK_THREAD_CPUTIME_ID);
	int err;

	if (fd >= 0 && unwind_table__build_id(fd, bkey + 2, sizeof(bkey) - 2) == 0) {
		bkey[0] = 'b';
		bkey[1] = ':';
		if (hashmap__find(u->exes, bkey, &found))
			return remember(u, found, fkey) ? NULL : found;
	} else {
		bkey[0] = '\0';
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	if (u->st.bytes >= u->o.budget_bytes || u->next_id > CPROF_UNWIND_MAX_EXES) {
		u->st.over_budget++;
		goto done;
	}
	err = fd >= 0 ? unwind_table__build(fd, &t) : unwind_table__build_mem(image, size, &t);
	if (err == -ENOENT || err == -ENOTSUP || err == -ENOEXEC) {
		u->st.no_cfi++;
		goto done;
	}
	if (err) {
		u->st.failed++;
		pr_debug("unwind: cannot build the table of %s: %s\n", fkey, strerror(-err));
		goto done;
	}
	bytes = t.n * sizeof(struct cprof_unwind_row);
	if (u->st.bytes + bytes > u->o.budget_bytes) {
		u->st.over_budget++;
		goto done;
	}
	err = load_table(u, u->next_id, &t);
	if (err) {
		u->st.failed++;
		pr_warn("unwind: cannot load the table of %s: %s\n", fkey, strerror(-err));
		goto done;
	}
	e->id = u->next_id++;
	e->nrows = t.n;
	memcpy(e->loads, t.loads, sizeof(e->loads));
	e->nloads = t.nloads;
	u->st.tables++;
	u->st.rows += t.n;
	u->st.bytes += bytes;
	u->st.text_bytes += t.text_bytes;
	u->st.builds++;
	pr_debug("unwind: %s: %zu rows for %" PRIu64 " bytes of text\n", fkey, t.n, t.text_bytes);
done:
	/* Failed builds cost time too: they count against the budget. */
	u->st.build_ns += clock__ns(CLOCK_THREAD_CPUTIME_ID) - t0;
	u->built_bytes += size;
	unwind_table__free(&t);
	if ((bkey[0] && remember(u, e, bkey)) || remember(u, e, fkey)) {
		if (!e->listed)
			free(e);
		return NULL;
	}
	return e;
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

static int pid_push(struct unw_pid *p, const struct cprof_unwind_lpm_key *k)
{
	if (array__reserve((void **)&p->keys, &p->cap, p->n + 1, sizeof(*p->keys)))
		return -ENOMEM;
	p->keys[p->n++] = *k;
	return 0;
}

static int pid_push_map(struct unw_pid *p, const struct cprof_unwind_mapping *m)
{
	if (array__reserve((void **)&p->maps, &p->capmaps, p->nmaps + 1, sizeof(*p->maps)))
		return -ENOMEM;
	p->maps[p->nmaps++] = *m;
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
	err = put_inner_array(u->o.pid_maps_fd, (__u32)pid, "cprof_unw_pmaps",
			      sizeof(struct cprof_unwind_mapping), n + 1, all);
	free(all);
	if (err)
		u->st.failed++;
	return err;
}

/* Covers [start, end) with aligned power-of-two blocks, one trie entry each. */
static int add_range(struct unwinder *u, struct unw_pid *p, pid_t pid, uint64_t start, uint64_t end,
		     const struct cprof_unwind_mapping *val)
{
	struct cprof_unwind_lpm_key k;
	int err;

	while (start < end) {
		int bits = start ? __builtin_ctzll(start) : 63;

		while (bits > 0 && (bits >= 64 || start + (1ull << bits) > end ||
				    start + (1ull << bits) < start))
			bits--;
		k.prefixlen = 32 + 64 - bits;
		k.pid_be = __builtin_bswap32((uint32_t)pid);
		k.addr_be = __builtin_bswap64(start);
		if (bpf_map_update_elem(u->o.mappings_fd, &k, val, BPF_ANY)) {
			u->st.failed++;
			return -errno;
		}
		err = pid_push(p, &k);
		if (err)
			return err;
		start += 1ull << bits;
	}
	return 0;
}

static int map_exe(struct unwinder *u, struct unw_pid *p, pid_t pid, uint64_t start, uint64_t end,
		   uint64_t offset, const struct unw_exe *e);

static int defer_mapping(struct unwinder *u, struct unw_pid *p, pid_t pid, const struct proc_map *m,
			 int fd, const char *fkey, uint64_t size)
{
	struct unw_deferred *d;

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
	ADD_NOW,   /* build its table now */
	ADD_DEFER, /* now if small and within the CPU budget, else queue it for unwinder__idle() */
	ADD_KNOWN_ONLY, /* skip it: only executables already known, nothing opened */
};

static int add_mapping(struct unwinder *u, struct unw_pid *p, pid_t pid, const struct proc_map *m,
		       enum add_mode mode)
{
	struct unw_exe *e;
	char fkey[64];
	void *found;
	int fd;

	snprintf(fkey, sizeof(fkey), "f:%u:%u:%" PRIu64, m->dev_major, m->dev_minor, m->inode);
	if (!m->path)
		snprintf(fkey, sizeof(fkey), "[vdso]");
	if (hashmap__find(u->exes, fkey, &found)) {
		e = found;
		u->st.exe_hits++;
	} else if (mode == ADD_KNOWN_ONLY) {
		return 0;
	} else if (!m->path) {
		void *image = NULL;
		size_t size = 0;
		int err = read_vdso(pid, m, &image, &size);

		if (err)
			return err;
		e = get_exe(u, -1, image, size, fkey);
		free(image);
		if (!e)
			return -ENOMEM;
	} else {
		struct stat st;

		fd = proc_map__open(pid, m);
		if (fd < 0)
			return fd;
		if (fstat(fd, &st))
			st.st_size = 0;
		if (mode == ADD_DEFER && (over_cpu(u, st.st_size) || st.st_size >= DEFER_BYTES))
			return defer_mapping(u, p, pid, m, fd, fkey, (uint64_t)st.st_size);
		e = get_exe(u, fd, NULL, (size_t)st.st_size, fkey);
		close(fd);
		if (!e)
			return -ENOMEM;
	}
	return map_exe(u, p, pid, m->start, m->end, m->offset, e);
}

/* Puts the trie entries of one mapping of e. */
static int map_exe(struct unwinder *u, struct unw_pid *p, pid_t pid, uint64_t start, uint64_t end,
		   uint64_t offset, const struct unw_exe *e)
{
	struct cprof_unwind_mapping val = {};

	if (!e->id)
		return 0; /* no table: frame pointers in BPF, nothing to tell it */
	for (int i = 0; i < e->nloads; i++) {
		uint64_t lo = e->loads[i].offset & ~4095ull;

		if (offset < lo || offset >= e->loads[i].offset + e->loads[i].filesz)
			continue;
		val.exe_id = e->id;
		val.nrows = e->nrows;
		val.bias = start - offset + e->loads[i].offset - e->loads[i].vaddr;
		val.start = start;
		val.end = end;
		if (u->o.pid_maps_fd >= 0 && pid_push_map(p, &val))
			return -ENOMEM;
		if (u->o.mappings_fd < 0)
			return 0;
		return add_range(u, p, pid, start, end, &val);
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
	free(old->keys);
	free(old->maps);
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
	if (old)
		unw_pid__retire(u, old, p);
	if (mode == ADD_KNOWN_ONLY)
		u->st.execs++;
	else
		u->st.pids++;
	u->st.pid_ns += (uint64_t)((now_ms() - t0) * 1e6);
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

int unwinder__add_pid(struct unwinder *u, pid_t pid, bool defer_large)
{
	return add_pid(u, pid, defer_large ? ADD_DEFER : ADD_NOW);
}

int unwinder__add_pid_known(struct unwinder *u, pid_t pid)
{
	return add_pid(u, pid, ADD_KNOWN_ONLY);
}

int unwinder__add_pid_maps(struct unwinder *u, pid_t pid, const struct proc_maps *maps,
			   bool defer_large)
{
	return add_pid_maps(u, pid, maps, 0, defer_large ? ADD_DEFER : ADD_NOW);
}

int unwinder__add_pid_known_maps(struct unwinder *u, pid_t pid, const struct proc_maps *maps)
{
	return add_pid_maps(u, pid, maps, 0, ADD_KNOWN_ONLY);
}

bool unwinder__idle(struct unwinder *u)
{
	struct unw_deferred d;
	struct unw_exe *e = NULL;
	void *found;
	size_t pick = 0;

	if (!u->ndeferred)
		return false;
	/* Known by now (queued twice): no build. Else only within the CPU budget, smallest file
	 * first: the time a table takes grows with the file, so that gives the most processes
	 * their tables for the budget (the queue is short, DEFER_MAX). */
	for (size_t i = 0; i < u->ndeferred; i++) {
		if (hashmap__find(u->exes, u->deferred[i].fkey, &found)) {
			e = found;
			pick = i;
			break;
		}
		if (u->deferred[i].size < u->deferred[pick].size)
			pick = i;
	}
	d = u->deferred[pick];
	if (!e && over_cpu(u, d.size))
		return false;
	u->deferred[pick] = u->deferred[--u->ndeferred];
	if (!e)
		e = get_exe(u, d.fd, NULL, d.size, d.fkey);
	close(d.fd);
	/* The process may have exec'd or exited meanwhile: then its mappings are not these. */
	if (e && hashmap__find(u->pids, (void *)(uintptr_t)d.pid, &found) &&
	    ((struct unw_pid *)found)->gen == d.gen && e->id &&
	    map_exe(u, found, d.pid, d.start, d.end, d.offset, e) == 0)
		publish_pid_maps(u, d.pid, found);
	return u->ndeferred > 0;
}
