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
};

struct unwinder_stats {
	uint64_t tables;      /* executables with a table in BPF */
	uint64_t rows, bytes; /* in those tables */
	uint64_t text_bytes;  /* executable code those tables cover */
	uint64_t over_budget; /* executables left without a table: budget or table slots full */
	uint64_t no_cfi;      /* executables without usable .eh_frame: frame pointers only */
	uint64_t failed;      /* executables or mappings that could not be loaded otherwise */
};

struct unwinder;

struct unwinder *unwinder__new(const struct unwinder_opts *o);
void unwinder__free(struct unwinder *u);
/* (Re)reads pid's mappings, builds the tables missing, replaces its trie entries. With
 * defer_large, executables of 8 MiB or more not built yet are left to unwinder__idle(), so that
 * one big binary does not hold up the processes noticed after it. Returns 0 or -errno
 * (-ESRCH / -ENOENT when the process is gone). */
int unwinder__add_pid(struct unwinder *u, pid_t pid, bool defer_large);
/* Builds one deferred executable and maps it where it is still mapped. Returns whether more
 * are waiting. */
bool unwinder__idle(struct unwinder *u);
/* Forgets pid's trie entries (the process exited). */
void unwinder__remove_pid(struct unwinder *u, pid_t pid);
void unwinder__stats(const struct unwinder *u, struct unwinder_stats *st);

#endif
