/* Feeds the BPF table unwinder (bpf/unwind.bpf.h): for each profiled process, compiles the
 * tables of its mapped executables (lazily, once per build-id, within a memory budget) into the
 * `unwind_tables` HASH_OF_MAPS and describes its mappings in the `unwind_mappings` LPM trie
 * (or, for sleepable programs, in one sorted array per process: `unwind_pid_maps`).
 * A pc no table covers is walked with frame pointers in BPF. */
#ifndef CPROF_UNWIND_UNWINDER_H
#define CPROF_UNWIND_UNWINDER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Default memory budget of all tables (--unwind-mem): 128 MiB, about 11M rows, enough for
 * 350-700 MiB of executable code (16k-31k rows per MiB). */
#define UNWINDER_DEFAULT_BUDGET (128ull << 20)

struct unwinder_opts {
	uint64_t budget_bytes; /* rows * 12 across all tables; 0 = default */
	int tables_fd;	       /* the HASH_OF_MAPS `unwind_tables` */
	int mappings_fd;       /* the LPM trie `unwind_mappings`, or -1 */
	/* The per-process mapping arrays `unwind_pid_maps` (HASH_OF_MAPS pid -> ARRAY, see
	 * bpf/unwind.h) of sleepable programs, which may not use the trie; or -1. */
	int pid_maps_fd;
	/* CPU budget of building tables, percent of one core (--unwind-cpu): building time is
	 * measured, and an executable met while over budget is queued and built by
	 * unwinder__idle() once the budget allows (its samples meanwhile walk frame pointers).
	 * 0 = no limit. */
	double cpu_pct;
	/* The ARRAY `unwind_used` (mmapped): when each table was last used by a walk, for
	 * evicting the least recently sampled first; or -1 (then by build time). */
	int used_fd;
	/* With defer, a new executable gets a table id but no table: its table is built (within
	 * cpu_pct) when a walk first needs it, as an evicted one is. Most files a sampled process
	 * maps are never in one of its sampled stacks. */
	bool on_demand;
	/* Tables kept on disk across runs (unwind/cache.h), or NULL; bounded to cache_bytes. */
	const char *cache_dir;
	uint64_t cache_bytes;
};

/* The agent's default --unwind-cpu: 1% of one core, plus a first allowance of
 * UNWINDER_CPU_BURST_MS so the tables of the machine's first busy processes come at once. */
#define UNWINDER_DEFAULT_CPU_PCT 1.0
#define UNWINDER_CPU_BURST_MS	 500

struct unwinder_stats {
	uint64_t tables;      /* executables with a table in BPF */
	uint64_t rows, bytes; /* in those tables */
	uint64_t text_bytes;  /* executable code those tables cover */
	uint64_t over_budget; /* executables left without a table: budget or table slots full */
	uint64_t no_cfi;      /* executables without usable .eh_frame: frame pointers only */
	uint64_t failed;      /* executables or mappings that could not be loaded otherwise */
	/* Where the time goes. */
	uint64_t builds, build_ns; /* tables compiled and loaded, and the time it took */
	uint64_t pids, pid_ns;	   /* processes mapped (maps read + trie updates), time */
	uint64_t execs;		   /* more processes, at exec: known tables only, no builds */
	uint64_t exe_hits;	   /* mappings of an executable already known: no work */
	uint64_t deferred;	   /* mappings queued (large file, or over the CPU budget) */
	uint64_t on_demand;	   /* executables named, their table built when a walk needs it */
	uint64_t queue_full;	   /* mappings not queued: the queue was full (frame pointers) */
	uint64_t pending;	   /* mappings waiting in the queue now */
	/* The memory budget: past --unwind-mem the least recently sampled tables are evicted;
	 * a process still mapping one walks it with frame pointers, and its next sample asks for
	 * it again (a miss), which rebuilds it within --unwind-cpu. */
	uint64_t budget_bytes; /* --unwind-mem */
	uint64_t evicted;      /* tables evicted */
	uint64_t rebuilds;     /* tables built again after an eviction (also in builds) */
	uint64_t misses;       /* walks that met an evicted table (notices, at most 1/s each) */
	uint64_t no_room;      /* rebuilds not done: the tables in use fill --unwind-mem */
	uint64_t records;      /* executables known now (with a table, mapped, or idle) */
	uint64_t procs;	       /* processes whose mappings the unwinder holds now */
	uint64_t forgotten;    /* idle records dropped (no process, no table) */
	uint64_t swept;	       /* processes forgotten without an exit notice */
	/* The tables kept on disk (--unwind-cache): read instead of built, written, files that
	 * failed their checks, removed for the size bound, bytes now, CPU time of the reads. */
	uint64_t cache_loads, cache_stores, cache_rejected, cache_removed, cache_bytes;
	uint64_t cache_load_ns;
};

struct unwinder;

struct unwinder *unwinder__new(const struct unwinder_opts *o);
void unwinder__free(struct unwinder *u);
/* (Re)reads pid's mappings, builds the tables missing, replaces its trie entries. With defer,
 * the executables not built yet are queued for unwinder__idle(), which builds them one at a
 * time between readings of the notices: no table holds up the notices behind it. Returns 0 or
 * -errno
 * (-ESRCH / -ENOENT when the process is gone). */
int unwinder__add_pid(struct unwinder *u, pid_t pid, bool defer);
/* Like unwinder__add_pid, but maps only the executables that already have a table (or are
 * known to have none) and builds nothing: for a process just exec'd and not sampled yet, whose
 * first samples then already walk with the shared tables. Costs a maps read and a few trie
 * updates. */
int unwinder__add_pid_known(struct unwinder *u, pid_t pid);
/* unwinder__add_pid and unwinder__add_pid_known on mappings the caller read (proc_maps__read),
 * for a caller that needs them for more than the unwinder; NULL when they could not be read
 * (the process is gone): what an earlier reading added goes, and -ESRCH is returned. */
struct proc_maps;
int unwinder__add_pid_maps(struct unwinder *u, pid_t pid, const struct proc_maps *maps, bool defer);
int unwinder__add_pid_known_maps(struct unwinder *u, pid_t pid, const struct proc_maps *maps);
/* Builds one deferred executable and maps it where it is still mapped. Returns whether more
 * are waiting. */
bool unwinder__idle(struct unwinder *u);
/* Whether executables are queued for unwinder__idle(). */
bool unwinder__pending(const struct unwinder *u);
/* A walk of pid met table id not loaded (CPROF_PROC_UNWIND_MISS): builds it (or queues it
 * within the CPU budget) from pid's mappings. Returns 0 or -errno. */
int unwinder__table_missed(struct unwinder *u, pid_t pid, uint32_t id);
/* Forgets pid's trie entries (the process exited). */
void unwinder__remove_pid(struct unwinder *u, pid_t pid);
void unwinder__stats(const struct unwinder *u, struct unwinder_stats *st);

#endif
