/* Unwind tables kept on disk across runs (the agent's --unwind-cache DIR): one file per
 * executable, named by a hash of its identity (its build-id, else device, inode, mtime and
 * size), so that a restart loads the tables of the machine's executables instead of compiling
 * their .eh_frame again. Every file is checked before it is used (magic, version, identity,
 * lengths, checksum); one that fails is removed and counted, never loaded into BPF. The
 * directory is bounded in bytes, the files used longest ago removed first. */
#ifndef CPROF_UNWIND_CACHE_H
#define CPROF_UNWIND_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "unwind/table.h"

struct unwind_cache_stats {
	uint64_t loads;	   /* tables read from the cache instead of built */
	uint64_t stores;   /* tables written */
	uint64_t rejected; /* files that failed a check (removed) */
	uint64_t removed;  /* files removed to stay within the size bound */
	uint64_t bytes;	   /* of the cache's files now */
	uint64_t load_ns;  /* CPU time of the loads */
};

struct unwind_cache;

/* Opens (creates, mode 0700) the cache directory dir, bounded to max_bytes. NULL, with one
 * warning line, when dir cannot be made or is unsafe to feed BPF maps from: not a directory,
 * a symlink, not owned by this user, or writable by others. */
struct unwind_cache *unwind_cache__open(const char *dir, uint64_t max_bytes);
void unwind_cache__free(struct unwind_cache *c);
/* Whether a key can be kept across runs: a build-id, or a file key with its mtime and size. */
bool unwind_cache__key_ok(const char *key);
/* Whether key has a file in the cache (not checked yet). */
bool unwind_cache__has(const struct unwind_cache *c, const char *key);
/* Reads key's table into t (freed with unwind_table__free). 0, -ENOENT (none), or -EBADMSG (a
 * file that failed a check: removed and counted). */
int unwind_cache__load(struct unwind_cache *c, const char *key, struct unwind_table *t);
/* Writes key's table (a temporary file renamed over the final name), then removes the files
 * used longest ago while the cache is over its bound. 0 or -errno. */
int unwind_cache__store(struct unwind_cache *c, const char *key, const struct unwind_table *t);
const struct unwind_cache_stats *unwind_cache__stats(const struct unwind_cache *c);

#endif
