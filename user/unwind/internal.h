/* Private to unwind/: the unwinder's records, shared by unwinder.c (processes: their mappings,
 * trie entries and per-process arrays, deferred builds, sweeps) and exe.c (executables: their
 * tables, built within the CPU budget, loaded into BPF, evicted least recently used first). */
#ifndef CPROF_UNWIND_INTERNAL_H
#define CPROF_UNWIND_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/bpf.h>

#include "unwind/table.h"
#include "unwind/unwinder.h"

/* One executable file, shared by every process that maps it. A record lives while a process
 * maps it or while its table is in BPF (the cache of exited processes' executables, bounded by
 * --unwind-mem through eviction); records with neither are kept up to IDLE_MAX, oldest
 * dropped first. */
struct unw_exe {
	size_t idx;	/* in unwinder.all */
	uint32_t id;	/* table id (slot of unwind_used), 0: none (frame pointers) */
	bool resident;	/* its table is in BPF; false with an id: evicted, rebuilt when sampled */
	bool stale;	/* its table could not be loaded, or changed: not tried again */
	uint32_t nrows; /* 0: not built yet (named on demand, unwinder__waiting_exe) */
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

/* A mapping whose executable is compiled later, by unwinder__idle(), one between two readings
 * of the notices, so that no build holds up the notices behind it. */
struct unw_deferred {
	pid_t pid;
	uint64_t gen;
	uint64_t start, end, offset;
	int fd;	       /* the file, kept open: the process may exit before its turn */
	uint64_t size; /* of the file: the smallest are built first */
	char fkey[FKEY_LEN];
};

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
	int64_t started_ns;	    /* CLOCK_MONOTONIC, for the CPU budget */
	int64_t swept_ns;	    /* last sweep for processes gone without an exit notice */
	uint64_t built_bytes;	    /* file bytes of the builds in build_ns */
	struct unw_exe *rebuild;    /* the evicted table unwinder__table_missed asks for */
	struct unwind_cache *cache; /* tables kept on disk, or NULL */
	/* The reading of the process being added (add_pid_maps), for add_range: NULL otherwise. */
	const struct proc_maps *reading;
};

/* trie.c */
/* Puts the mapping val of p (pid), [start, end), in the trie, each entry remembered in p. */
int unwinder__add_range(struct unwinder *u, struct unw_pid *p, pid_t pid, uint64_t start,
			uint64_t end, const struct cprof_unwind_mapping *val);

/* exe.c */
/* Whether building the table of a file of `size` bytes now would exceed the CPU budget
 * (--unwind-cpu), counting this build's estimate. */
bool unwinder__over_cpu(const struct unwinder *u, uint64_t size);
void unw_exe__free(struct unw_exe *e);
/* Whether e has no process and no table. */
bool unw_exe__idle(const struct unw_exe *e);
/* Keeps u->nidle right after e changed (refs or table); was: unw_exe__idle(e) before. */
void unw_exe__changed(struct unwinder *u, struct unw_exe *e, bool was);
/* Drops the oldest half of the idle records once there are more than IDLE_MAX. */
void unwinder__trim_exes(struct unwinder *u);
/* Creates an inner ARRAY of n values of value_size bytes each, fills it in one batch and puts
 * it in the map of maps outer_fd under key (replacing what was there). */
int unwinder__put_inner_array(int outer_fd, __u32 key, const char *name, __u32 value_size, __u32 n,
			      const void *values);
/* Compiles e's table from fd, of size bytes, or from image when fd < 0 (the vDSO), and loads
 * it, evicting the least recently used tables to make room; counted when it fails. */
void unw_exe__build(struct unwinder *u, struct unw_exe *e, int fd, void *image, size_t size,
		    const char *fkey);
/* Whether the table of the file behind fd (filed under fkey) is in the on-disk cache: read,
 * not built, so the CPU budget does not hold it back. */
bool unwinder__cached(const struct unwinder *u, int fd, const char *fkey);
/* Whether e has a table id but no table (evicted, or named on demand): built when a walk of a
 * process mapping it asks for it. */
bool unw_exe__evicted(const struct unw_exe *e);
/* The executable behind fd, filed under fkey, with a table id but no table yet (unwinder_opts
 * .on_demand): the first walk that needs it asks for it (CPROF_PROC_UNWIND_MISS), as for an
 * evicted one. Known already by its build-id: that record. NULL: out of memory or of table
 * ids, or a file whose headers this cannot read (then built as before). */
struct unw_exe *unwinder__waiting_exe(struct unwinder *u, int fd, const char *fkey);
/* The executable behind fd (known by its build-id, else new, its table built), filed under
 * fkey; fd < 0: the vDSO image of size bytes. NULL when out of memory. */
struct unw_exe *unwinder__get_exe(struct unwinder *u, int fd, void *image, size_t size,
				  const char *fkey);

#endif
