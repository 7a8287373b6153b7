/* The unwinder's executables: one record per file (keyed by identity, merged by build-id),
 * its .eh_frame table compiled within the CPU budget and loaded into BPF, and the tables
 * evicted least recently used first when --unwind-mem is reached. Processes are unwinder.c's. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <gelf.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include "unwind/internal.h"
#include "unwind/cache.h"
#include "util/array.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/clock.h"
#include "util/elf_head.h"

/* Whether building the table of a file of `size` bytes now would exceed the CPU budget: the
 * CPU time spent building so far plus this build's estimate (the mean time per byte of the
 * builds so far) against cpu_pct of the time since the unwinder started, plus a first
 * allowance. */
bool unwinder__over_cpu(const struct unwinder *u, uint64_t size)
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

void unw_exe__free(struct unw_exe *e)
{
	for (size_t i = 0; i < e->nkeys; i++)
		free(e->keys[i]);
	free(e->keys);
	free(e);
}

bool unw_exe__idle(const struct unw_exe *e)
{
	return !e->refs && !e->resident;
}

/* Keeps u->nidle right after e changed (refs or table); was: unw_exe__idle(e) before. */
void unw_exe__changed(struct unwinder *u, struct unw_exe *e, bool was)
{
	bool now = unw_exe__idle(e);

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
	if (unw_exe__idle(e))
		u->nidle--;
	u->all[e->idx] = u->all[--u->nall];
	u->all[e->idx]->idx = e->idx;
	unw_exe__free(e);
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
	unw_exe__changed(u, e, false);
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
void unwinder__trim_exes(struct unwinder *u)
{
	int64_t *ages, cut;
	size_t n = 0;

	if (u->nidle <= IDLE_MAX)
		return;
	ages = malloc(u->nidle * sizeof(*ages));
	if (!ages)
		return;
	for (size_t i = 0; i < u->nall && n < u->nidle; i++)
		if (unw_exe__idle(u->all[i]))
			ages[n++] = u->all[i]->idle_ns;
	/* The median idle time: the records idle since before it go. */
	qsort(ages, n, sizeof(*ages), ns_cmp);
	cut = ages[n / 2];
	free(ages);
	for (size_t i = u->nall; i-- > 0;) {
		struct unw_exe *e = u->all[i];

		if (unw_exe__idle(e) && e->idle_ns <= cut) {
			exe_forget(u, e);
			u->st.forgotten++;
		}
	}
}

/* Creates an inner ARRAY of n values of value_size bytes each, fills it in one batch and puts
 * it in the map of maps outer_fd under key (replacing what was there). */
int unwinder__put_inner_array(int outer_fd, __u32 key, const char *name, __u32 value_size, __u32 n,
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

/* Puts the table's rows in the HASH_OF_MAPS under id, after their header (bpf/unwind.h). */
static int load_table(struct unwinder *u, uint32_t id, const struct unwind_table *t)
{
	struct cprof_unwind_row *all = malloc((t->n + 1) * sizeof(*all));
	int err;

	if (!all)
		return -ENOMEM;
	all[0] = (struct cprof_unwind_row){.pc = (uint32_t)t->n, .kind = CPROF_UNW_INVALID};
	memcpy(&all[1], t->rows, t->n * sizeof(*all));
	err = unwinder__put_inner_array(u->o.tables_fd, id, "cprof_unw_rows", sizeof(*all),
					(__u32)t->n + 1, all);
	free(all);
	return err;
}

/* e's table t is in BPF now: e is resident, just used, and counted. */
static void exe_loaded(struct unwinder *u, struct unw_exe *e, const struct unwind_table *t,
		       bool rebuild, bool cached, const char *fkey)
{
	e->resident = true;
	e->used_ns = clock__ns(CLOCK_MONOTONIC);
	if (u->used)
		u->used[e->id] = (uint64_t)e->used_ns;
	u->st.tables++;
	u->st.rows += t->n;
	u->st.bytes += t->n * sizeof(struct cprof_unwind_row);
	u->st.text_bytes += t->text_bytes;
	if (!cached)
		u->st.builds++;
	if (rebuild)
		u->st.rebuilds++;
	pr_debug("unwind: %s: %zu rows for %" PRIu64 " bytes of text%s%s\n", fkey, t->n,
		 t->text_bytes, rebuild ? " (rebuilt)" : "", cached ? " (from the cache)" : "");
}

/* The key of the file behind fd in the on-disk cache: its build-id (e's "b:" key when e, its
 * record, has one: read already), else its file key. */
static void cache_key(const struct unw_exe *e, int fd, const char *fkey, char *key, size_t len)
{
	char id[48];

	for (size_t i = 0; e && i < e->nkeys; i++)
		if (!strncmp(e->keys[i], "b:", 2)) {
			snprintf(key, len, "%s", e->keys[i]);
			return;
		}
	if (unwind_table__build_id(fd, id, sizeof(id)) == 0 && id[0])
		snprintf(key, len, "b:%s", id);
	else
		snprintf(key, len, "%s", fkey);
}

bool unwinder__cached(const struct unwinder *u, int fd, const char *fkey)
{
	char key[FKEY_LEN];

	if (!u->cache)
		return false;
	cache_key(NULL, fd, fkey, key, sizeof(key));
	return unwind_cache__key_ok(key) && unwind_cache__has(u->cache, key);
}

/* The table of the file behind fd: read from the on-disk cache when it is there (*cached),
 * else compiled, and then written there. */
static int exe_table(struct unwinder *u, const struct unw_exe *e, int fd, const char *fkey,
		     struct unwind_table *t, bool *cached)
{
	char key[FKEY_LEN];
	int err;

	*cached = false;
	if (!u->cache)
		return unwind_table__build(fd, t);
	cache_key(e, fd, fkey, key, sizeof(key));
	if (!unwind_cache__key_ok(key))
		return unwind_table__build(fd, t);
	if (unwind_cache__load(u->cache, key, t) == 0) {
		*cached = true;
		return 0;
	}
	err = unwind_table__build(fd, t);
	if (err)
		return err;
	/* Not kept (a full disk): only the next run builds it again. */
	err = unwind_cache__store(u->cache, key, t);
	if (err)
		pr_debug("unwind cache: cannot keep the table of %s: %s\n", fkey, strerror(-err));
	return 0;
}

/* e, named by its processes' trie entries (e->id), will have no table: not tried again, and its
 * walks stop asking for it (BPF asks at most once a CPROF_UNWIND_MISS_NS after the time in its
 * unwind_used slot: a time far ahead). Frame pointers there. */
static void exe_give_up(struct unwinder *u, struct unw_exe *e)
{
	if (!e->id)
		return;
	e->stale = true;
	if (u->used)
		u->used[e->id] = UINT64_MAX / 2;
}

void unw_exe__build(struct unwinder *u, struct unw_exe *e, int fd, void *image, size_t size,
		    const char *fkey)
{
	struct unwind_table t = {};
	/* A table named before it was built (unwinder__waiting_exe) knows no rows yet. */
	bool was = unw_exe__idle(e), rebuild = e->id && e->nrows, cached = false;
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
	err = fd >= 0 ? exe_table(u, e, fd, fkey, &t, &cached)
		      : unwind_table__build_mem(image, size, &t);
	if (err == -ENOENT || err == -ENOTSUP || err == -ENOEXEC) {
		u->st.no_cfi++;
		exe_give_up(u, e);
		goto done;
	}
	if (err) {
		u->st.failed++;
		pr_debug("unwind: cannot build the table of %s: %s\n", fkey, strerror(-err));
		exe_give_up(u, e);
		goto done;
	}
	/* The processes holding e have trie entries whose bias comes from its segments: a table
	 * named before it was built, or rebuilt, must have the same (it does, for the same file). */
	if (e->id && (t.nloads != e->nloads ||
		      memcmp(t.loads, e->loads, sizeof(t.loads[0]) * (size_t)t.nloads))) {
		u->st.failed++;
		exe_give_up(u, e);
		pr_debug("unwind: %s changed since its table was named\n", fkey);
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
	exe_loaded(u, e, &t, rebuild, cached, fkey);
done:
	/* Failed builds cost time too: they count against the budget (and the reads of the
	 * cache, but their bytes do not make the estimate of a build per byte). */
	u->st.build_ns += clock__ns(CLOCK_THREAD_CPUTIME_ID) - t0;
	if (!cached)
		u->built_bytes += size;
	unwind_table__free(&t);
	unw_exe__changed(u, e, was);
}

/* Whether e has a table id but no table (evicted, or named on demand): built when a walk of a
 * process mapping it asks for it. */
bool unw_exe__evicted(const struct unw_exe *e)
{
	return e->id && !e->resident && !e->stale;
}

/* The executable behind fd (known by its build-id, else new, its table built), filed under
 * fkey; fd < 0: the vDSO image of size bytes. NULL when out of memory. */
struct unw_exe *unwinder__get_exe(struct unwinder *u, int fd, void *image, size_t size,
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
		unw_exe__build(u, e, fd, image, size, fkey);
	} else if (unw_exe__evicted(e)) {
		unw_exe__build(u, e, fd, image, size, fkey);
	}
	if (exe_key(u, e, fkey)) {
		if (unw_exe__idle(e))
			exe_forget(u, e);
		return NULL;
	}
	return e;
}

/* e's segments from the file's headers (util/elf_head.h): what its processes' trie entries need
 * before its table is built. 0, or -ENOEXEC. */
static int exe_segments(struct unw_exe *e, const struct elf_head *h)
{
	if (!h->nloads || h->nloads > UNWIND_TABLE_MAX_LOADS)
		return -ENOEXEC;
	for (int i = 0; i < h->nloads; i++) {
		e->loads[i].offset = h->loads[i].offset;
		e->loads[i].vaddr = h->loads[i].vaddr;
		e->loads[i].filesz = h->loads[i].filesz;
	}
	e->nloads = h->nloads;
	e->text_bytes = h->text_bytes;
	return 0;
}

struct unw_exe *unwinder__waiting_exe(struct unwinder *u, int fd, const char *fkey)
{
	struct unw_exe *e = NULL;
	struct elf_head h;
	char bkey[sizeof(h.build_id) + 2];
	void *found;

	if (elf_head__read(fd, &h))
		return NULL;
	snprintf(bkey, sizeof(bkey), "b:%s", h.build_id);
	if (h.build_id[0] && hashmap__find(u->exes, bkey, &found)) {
		e = found; /* another path to a known file */
	} else {
		e = exe_new(u);
		if (!e)
			return NULL;
		if (exe_segments(e, &h) || (h.build_id[0] && exe_key(u, e, bkey))) {
			exe_forget(u, e);
			return NULL;
		}
		e->id = exe_slot(u, e);
		if (!e->id) {
			exe_forget(u, e);
			return NULL;
		}
		/* Its first walk asks for it at once (bpf/unwind.bpf.h, table_missing). */
		if (u->used)
			u->used[e->id] = 0;
		u->st.on_demand++;
	}
	if (exe_key(u, e, fkey)) {
		if (unw_exe__idle(e))
			exe_forget(u, e);
		return NULL;
	}
	return e;
}
