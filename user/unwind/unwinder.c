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
#include "unwind/table.h"
#include "unwind/unwinder.h"
#include "util/array.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/clock.h"

/* One executable file, shared by every process that maps it. A record lives while a process
 * maps it or while its table is in BPF (the cache of exited processes' executables, bounded by
 * --unwind-mem through eviction); records with neither are kept up to IDLE_MAX, oldest
 * dropped first. */
struct unw_exe {
	size_t idx;    /* in unwinder.all */
	uint32_t id;   /* table id (slot of unwind_used), 0: none (frame pointers) */
	bool resident; /* its table is in BPF; false with an id: evicted, rebuilt when sampled */
	bool stale;    /* its table could not be loaded, or changed: not tried again */
	uint32_t nrows;
	uint64_t text_bytes;
	uint32_t refs;	 /* readings of processes (struct unw_pid) that map it */
	int64_t idle_ns; /* CLOCK_MONOTONIC when it became idle (no refs, no table) */
	int64_t used_ns; /* when its table was built (unwind_used says when it was last used) */
	char **keys;	 /* the keys of unwinder.exes that lead here, owned */
	size_t nkeys, capkeys;
	struct {
		uint64_t offset, vaddr, filesz;
	} loads[UNWIND_TABLE_MAX_LOADS];
	int nloads;
};

/* Keys (paths to one file, merged by build-id) remembered per executable at most. */
#define EXE_MAX_KEYS 64
/* Records with no process and no table kept at most (executables known to have no table,
 * whose next process then costs nothing); past it the oldest half goes. */
#define IDLE_MAX 1024
/* A table used this recently is not evicted (a busy process is sampled every 50 ms at 19 Hz). */
#define KEEP_NS (250ll * 1000 * 1000)
/* Seconds between sweeps for processes whose exit notice was lost. */
#define SWEEP_NS (10ll * 1000 * 1000 * 1000)

/* Room for a file's key: "f:MAJ:MIN:INODE:MTIME.NS:SIZE". */
#define FKEY_LEN 96

/* The trie entries of one process, to remove them on exec or exit, and its mappings with a
 * table (the array of sleepable programs). */
struct unw_pid {
	struct cprof_unwind_lpm_key *keys;
	size_t n, cap;
	struct cprof_unwind_mapping *maps;
	size_t nmaps, capmaps;
	struct unw_exe **held; /* the executables it maps (one reference each) */
	size_t nheld, capheld;
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
	char fkey[FKEY_LEN];
};

/* Executables at least this large (file size) are deferred. */
#define DEFER_BYTES (8u << 20)
/* Mappings queued at most (each holds its file open). */
#define DEFER_MAX 256

struct unwinder {
	struct unwinder_opts o;
	/* "f:dev:ino", "b:build-id", "[vdso]" -> struct unw_exe (keys owned by the exe) */
	struct hashmap *exes;
	struct unw_exe **all; /* every record */
	size_t nall, capall;
	size_t nidle;					  /* records with no refs and no table */
	struct unw_exe *slots[CPROF_UNWIND_MAX_EXES + 1]; /* table id -> record */
	uint32_t next_slot;	 /* where the search for a free one starts */
	volatile uint64_t *used; /* unwind_used, mmapped: last use of each table id, or NULL */
	size_t used_len;
	struct hashmap *pids; /* pid -> struct unw_pid */
	uint64_t next_gen;
	struct unw_deferred deferred[DEFER_MAX]; /* pending, in no order */
	size_t ndeferred;
	struct unwinder_stats st;
	int64_t started_ns;	 /* CLOCK_MONOTONIC, for the CPU budget */
	int64_t swept_ns;	 /* last sweep for processes gone without an exit notice */
	uint64_t built_bytes;	 /* file bytes of the builds in build_ns */
	struct unw_exe *rebuild; /* the evicted table unwinder__table_missed asks for */
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
	u->next_slot = 1;
	u->started_ns = clock__ns(CLOCK_MONOTONIC);
	u->swept_ns = u->started_ns;
	u->exes = hashmap__new(hashmap__str_hash, hashmap__str_equal, NULL);
	u->pids = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	if (!u->exes || !u->pids) {
		unwinder__free(u);
		return NULL;
	}
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

static void exe_free(struct unw_exe *e)
{
	for (size_t i = 0; i < e->nkeys; i++)
		free(e->keys[i]);
	free(e->keys);
	free(e);
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
		exe_free(u->all[i]);
	free(u->all);
	hashmap__free(u->exes);
	if (u->pids)
		hashmap__for_each(u->pids, free_pid, NULL);
	hashmap__free(u->pids);
	if (u->used)
		munmap((void *)u->used, u->used_len);
	free(u);
}

void unwinder__stats(const struct unwinder *u, struct unwinder_stats *st)
{
	*st = u->st;
	st->pending = u->ndeferred;
	st->records = u->nall;
	st->procs = hashmap__size(u->pids);
	st->budget_bytes = u->o.budget_bytes;
}

/* --- records of executables --- */

static bool exe_idle(const struct unw_exe *e)
{
	return !e->refs && !e->resident;
}

/* Keeps u->nidle right after e changed (refs or table); was: exe_idle(e) before. */
static void exe_changed(struct unwinder *u, struct unw_exe *e, bool was)
{
	bool now = exe_idle(e);

	if (now == was)
		return;
	if (now) {
		u->nidle++;
		e->idle_ns = clock__ns(CLOCK_MONOTONIC);
	} else {
		u->nidle--;
	}
}

/* A new record (idle until it has a process or a table), or NULL. */
static struct unw_exe *exe_new(struct unwinder *u)
{
	struct unw_exe *e;

	if (array__reserve((void **)&u->all, &u->capall, u->nall + 1, sizeof(*u->all)))
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->idx = u->nall;
	u->all[u->nall++] = e;
	u->nidle++;
	e->idle_ns = clock__ns(CLOCK_MONOTONIC);
	return e;
}

/* Files e under key too, unless key leads somewhere already (or e has enough keys: then the
 * next mapping through key only costs reading its build-id again). */
static int exe_key(struct unwinder *u, struct unw_exe *e, const char *key)
{
	char *k;
	int err;

	if (hashmap__find(u->exes, key, NULL) || e->nkeys >= EXE_MAX_KEYS)
		return 0;
	if (array__reserve((void **)&e->keys, &e->capkeys, e->nkeys + 1, sizeof(*e->keys)))
		return -ENOMEM;
	k = strdup(key);
	if (!k)
		return -ENOMEM;
	err = hashmap__insert(u->exes, k, e);
	if (err) {
		free(k);
		return err;
	}
	e->keys[e->nkeys++] = k;
	return 0;
}

/* Forgets e: its keys, its table id, the record. Its table must be out of BPF already and no
 * process may hold it (their trie entries would name a reused id). */
static void exe_forget(struct unwinder *u, struct unw_exe *e)
{
	for (size_t i = 0; i < e->nkeys; i++)
		hashmap__delete(u->exes, e->keys[i], NULL, NULL);
	if (e->id)
		u->slots[e->id] = NULL;
	if (exe_idle(e))
		u->nidle--;
	u->all[e->idx] = u->all[--u->nall];
	u->all[e->idx]->idx = e->idx;
	exe_free(e);
}

/* When e's table was last used by a walk (or built). */
static int64_t exe_used_ns(const struct unwinder *u, const struct unw_exe *e)
{
	int64_t used = u->used && e->id ? (int64_t)u->used[e->id] : 0;

	return used > e->used_ns ? used : e->used_ns;
}

/* Takes e's table out of BPF: the walks of processes still mapping it use frame pointers
 * there, and ask for it again (CPROF_PROC_UNWIND_MISS). A record no process holds goes too. */
static void exe_evict(struct unwinder *u, struct unw_exe *e)
{
	__u32 id = e->id;

	if (u->used)
		u->used[id] = 0; /* the next walk that misses it asks at once */
	bpf_map_delete_elem(u->o.tables_fd, &id);
	u->st.tables--;
	u->st.rows -= e->nrows;
	u->st.bytes -= (uint64_t)e->nrows * sizeof(struct cprof_unwind_row);
	u->st.text_bytes -= e->text_bytes;
	u->st.evicted++;
	e->resident = false;
	exe_changed(u, e, false);
	pr_debug("unwind: evicted table %u (%u rows)\n", id, e->nrows);
	if (!e->refs)
		exe_forget(u, e);
}

/* The table least recently used, not keep's; only tables no process maps when unmapped. Never
 * one used in the last KEEP_NS: when the tables in use do not fit the budget, a new one waits
 * (frame pointers, counted) rather than evicting them by turns. */
static struct unw_exe *exe_lru(const struct unwinder *u, const struct unw_exe *keep, bool unmapped)
{
	int64_t recent = clock__ns(CLOCK_MONOTONIC) - KEEP_NS;
	struct unw_exe *best = NULL;
	int64_t best_ns = 0;

	for (size_t i = 0; i < u->nall; i++) {
		struct unw_exe *e = u->all[i];
		int64_t t;

		if (e == keep || !e->resident || (unmapped && e->refs))
			continue;
		t = exe_used_ns(u, e);
		if (t > recent)
			continue;
		if (!best || t < best_ns) {
			best = e;
			best_ns = t;
		}
	}
	return best;
}

/* A free table id for e (evicting the least recently used table no process maps if none is
 * free), or 0. */
static uint32_t exe_slot(struct unwinder *u, struct unw_exe *e)
{
	struct unw_exe *victim;

	for (uint32_t n = 0; n < CPROF_UNWIND_MAX_EXES; n++) {
		uint32_t id = (u->next_slot + n - 1) % CPROF_UNWIND_MAX_EXES + 1;

		if (!u->slots[id]) {
			u->slots[id] = e;
			u->next_slot = id % CPROF_UNWIND_MAX_EXES + 1;
			return id;
		}
	}
	victim = exe_lru(u, e, true);
	if (!victim)
		return 0;
	exe_evict(u, victim); /* forgotten with it: its id is free */
	return exe_slot(u, e);
}

/* Evicts the least recently used tables until bytes more fit --unwind-mem. */
static bool exe_room(struct unwinder *u, const struct unw_exe *keep, uint64_t bytes)
{
	if (bytes > u->o.budget_bytes)
		return false;
	while (u->st.bytes + bytes > u->o.budget_bytes) {
		struct unw_exe *victim = exe_lru(u, keep, false);

		if (!victim)
			return false;
		exe_evict(u, victim);
	}
	return true;
}

static int ns_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Drops the oldest half of the idle records once there are more than IDLE_MAX. */
static void exe_trim(struct unwinder *u)
{
	int64_t *ages, cut;
	size_t n = 0;

	if (u->nidle <= IDLE_MAX)
		return;
	ages = malloc(u->nidle * sizeof(*ages));
	if (!ages)
		return;
	for (size_t i = 0; i < u->nall && n < u->nidle; i++)
		if (exe_idle(u->all[i]))
			ages[n++] = u->all[i]->idle_ns;
	/* The median idle time: the records idle since before it go. */
	qsort(ages, n, sizeof(*ages), ns_cmp);
	cut = ages[n / 2];
	free(ages);
	for (size_t i = u->nall; i-- > 0;) {
		struct unw_exe *e = u->all[i];

		if (exe_idle(e) && e->idle_ns <= cut) {
			exe_forget(u, e);
			u->st.forgotten++;
		}
	}
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

/* Compiles e's table from fd, of size bytes, or from image of size bytes when fd < 0 (the
 * vDSO), and loads it, evicting the least recently used tables to make room. e keeps no table
 * (frame pointers) when that fails, which is counted. */
static void exe_build(struct unwinder *u, struct unw_exe *e, int fd, void *image, size_t size,
		      const char *fkey)
{
	struct unwind_table t = {};
	bool was = exe_idle(e), rebuild = e->id != 0;
	uint32_t id = e->id;
	uint64_t bytes;
	/* CPU time of this thread, not wall time: a busy machine does not eat the budget. */
	int64_t t0 = clock__ns(CLOCK_THREAD_CPUTIME_ID);
	int err;

	/* A rebuild knows its size: no build when the tables in use leave no room for it. */
	if (rebuild && !exe_room(u, e, (uint64_t)e->nrows * sizeof(struct cprof_unwind_row))) {
		u->st.no_room++;
		return;
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
	/* The processes holding e have trie entries that say how many rows its table has: a
	 * rebuild must give the same (it does, for the same file). */
	if (rebuild && (t.n != e->nrows || t.nloads != e->nloads)) {
		u->st.failed++;
		e->stale = true;
		pr_debug("unwind: %s changed since its table was built\n", fkey);
		goto done;
	}
	bytes = t.n * sizeof(struct cprof_unwind_row);
	if (!id)
		id = exe_slot(u, e);
	if (!id) {
		u->st.over_budget++;
		goto done;
	}
	/* Known from here on: rows and segments, so that its processes' entries can name the
	 * table before it is loaded. */
	e->id = id;
	e->nrows = t.n;
	e->text_bytes = t.text_bytes;
	memcpy(e->loads, t.loads, sizeof(e->loads));
	e->nloads = t.nloads;
	if (!exe_room(u, e, bytes)) {
		/* The tables in use fill --unwind-mem: this one waits, as if evicted, and its
		 * processes' samples ask for it (CPROF_PROC_UNWIND_MISS) until there is room. */
		u->st.over_budget++;
		goto done;
	}
	err = load_table(u, id, &t);
	if (err) {
		u->st.failed++;
		e->stale = true; /* not tried again */
		pr_warn("unwind: cannot load the table of %s: %s\n", fkey, strerror(-err));
		goto done;
	}
	e->resident = true;
	e->used_ns = clock__ns(CLOCK_MONOTONIC);
	if (u->used)
		u->used[id] = (uint64_t)e->used_ns;
	u->st.tables++;
	u->st.rows += t.n;
	u->st.bytes += bytes;
	u->st.text_bytes += t.text_bytes;
	u->st.builds++;
	if (rebuild)
		u->st.rebuilds++;
	pr_debug("unwind: %s: %zu rows for %" PRIu64 " bytes of text%s\n", fkey, t.n, t.text_bytes,
		 rebuild ? " (rebuilt)" : "");
done:
	/* Failed builds cost time too: they count against the budget. */
	u->st.build_ns += clock__ns(CLOCK_THREAD_CPUTIME_ID) - t0;
	u->built_bytes += size;
	unwind_table__free(&t);
	exe_changed(u, e, was);
}

/* Whether e is a table that was evicted: rebuilt when a process mapping it is sampled. */
static bool exe_evicted(const struct unw_exe *e)
{
	return e->id && !e->resident && !e->stale;
}

/* The executable behind fd (known by its build-id, else new, its table built), filed under
 * fkey; fd < 0: the vDSO image of size bytes. NULL when out of memory. */
static struct unw_exe *get_exe(struct unwinder *u, int fd, void *image, size_t size,
			       const char *fkey)
{
	struct unw_exe *e = NULL;
	char bkey[64];
	void *found;

	if (fd >= 0 && unwind_table__build_id(fd, bkey + 2, sizeof(bkey) - 2) == 0) {
		bkey[0] = 'b';
		bkey[1] = ':';
		if (hashmap__find(u->exes, bkey, &found))
			e = found;
	} else {
		bkey[0] = '\0';
	}
	if (!e) {
		e = exe_new(u);
		if (!e)
			return NULL;
		if (bkey[0] && exe_key(u, e, bkey)) {
			exe_forget(u, e);
			return NULL;
		}
		exe_build(u, e, fd, image, size, fkey);
	} else if (exe_evicted(e)) {
		exe_build(u, e, fd, image, size, fkey);
	}
	if (exe_key(u, e, fkey)) {
		if (exe_idle(e))
			exe_forget(u, e);
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

/* p (a reading of a process's mappings) maps e: e stays known while p lives. */
static int pid_hold(struct unwinder *u, struct unw_pid *p, struct unw_exe *e)
{
	bool was = exe_idle(e);

	for (size_t i = 0; i < p->nheld; i++)
		if (p->held[i] == e)
			return 0;
	if (array__reserve((void **)&p->held, &p->capheld, p->nheld + 1, sizeof(*p->held)))
		return -ENOMEM;
	p->held[p->nheld++] = e;
	e->refs++;
	exe_changed(u, e, was);
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
		   uint64_t offset, struct unw_exe *e);

static int defer_mapping(struct unwinder *u, struct unw_pid *p, pid_t pid, const struct proc_map *m,
			 int fd, const char *fkey, uint64_t size)
{
	struct unw_deferred *d;

	/* A rebuild asked for again while it waits (a second notice): one is enough. */
	for (size_t i = 0; i < u->ndeferred; i++)
		if (u->deferred[i].pid == pid && strcmp(u->deferred[i].fkey, fkey) == 0) {
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
	ADD_NOW,   /* build its table now */
	ADD_DEFER, /* now if small and within the CPU budget, else queue it for unwinder__idle() */
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
		if (mode == ADD_KNOWN_ONLY || !exe_evicted(e) || e != u->rebuild)
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
			exe_build(u, e, -1, image, size, fkey);
		else
			e = get_exe(u, -1, image, size, fkey);
		free(image);
		if (!e)
			return -ENOMEM;
	} else {
		struct stat st;

		fd = proc_map__open(pid, m);
		if (fd < 0)
			return e ? map_exe(u, p, pid, m->start, m->end, m->offset, e) : fd;
		if (fstat(fd, &st))
			st.st_size = 0;
		if (mode == ADD_DEFER && (over_cpu(u, st.st_size) || st.st_size >= DEFER_BYTES)) {
			err = defer_mapping(u, p, pid, m, fd, fkey, (uint64_t)st.st_size);
			/* An evicted table's entries stay meanwhile (frame pointers until then). */
			if (!err && e)
				err = map_exe(u, p, pid, m->start, m->end, m->offset, e);
			return err;
		}
		if (e)
			exe_build(u, e, fd, NULL, (size_t)st.st_size, fkey);
		else
			e = get_exe(u, fd, NULL, (size_t)st.st_size, fkey);
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
	/* now holds what it maps already: what only old mapped may become idle. */
	for (size_t i = 0; i < old->nheld; i++) {
		struct unw_exe *e = old->held[i];
		bool was = exe_idle(e);

		e->refs--;
		exe_changed(u, e, was);
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
	exe_trim(u);
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
	pr_debug("unwind: pid %d met table %u evicted%s\n", (int)pid, id,
		 e && exe_evicted(e) ? "" : " (no longer)");
	/* Rebuilt since (or forgotten: its processes are gone). */
	if (!e || !exe_evicted(e))
		return 0;
	/* Read again as a sampled process: that table is rebuilt (or queued, within
	 * --unwind-cpu), the others it maps stay as they are. */
	u->rebuild = e;
	err = add_pid(u, pid, ADD_DEFER);
	u->rebuild = NULL;
	return err;
}

bool unwinder__idle(struct unwinder *u)
{
	struct unw_deferred d;
	struct unw_exe *e = NULL;
	void *found;
	size_t pick = 0;
	bool known = false;

	sweep(u);
	exe_trim(u);
	if (!u->ndeferred)
		return false;
	/* Known by now (queued twice): no build. Else only within the CPU budget, smallest file
	 * first: the time a table takes grows with the file, so that gives the most processes
	 * their tables for the budget (the queue is short, DEFER_MAX). */
	for (size_t i = 0; i < u->ndeferred; i++) {
		if (hashmap__find(u->exes, u->deferred[i].fkey, &found) && !exe_evicted(found)) {
			known = true;
			pick = i;
			break;
		}
		if (u->deferred[i].size < u->deferred[pick].size)
			pick = i;
	}
	d = u->deferred[pick];
	if (!known && over_cpu(u, d.size))
		return false;
	u->deferred[pick] = u->deferred[--u->ndeferred];
	if (hashmap__find(u->exes, d.fkey, &found))
		e = found;
	if (!e)
		e = get_exe(u, d.fd, NULL, d.size, d.fkey);
	else if (exe_evicted(e))
		exe_build(u, e, d.fd, NULL, d.size, d.fkey);
	close(d.fd);
	/* The process may have exec'd or exited meanwhile: then its mappings are not these. An
	 * evicted table's entries were kept: they name the rebuilt one. */
	if (e && hashmap__find(u->pids, (void *)(uintptr_t)d.pid, &found) &&
	    ((struct unw_pid *)found)->gen == d.gen && !pid_holds(found, e) && e->id &&
	    map_exe(u, found, d.pid, d.start, d.end, d.offset, e) == 0)
		publish_pid_maps(u, d.pid, found);
	return u->ndeferred > 0;
}
