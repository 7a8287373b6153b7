/* Private to sym/: JIT symbol maps in perf's format (/tmp/perf-PID.map: "START SIZE name" per
 * line, hex), as written by Node (--perf-basic-prof), JVM perf-map agents, LuaJIT, .NET and
 * others. A JIT appends while it runs, so a map is read on first use and read again when an
 * address misses and the file has grown. */
#ifndef CPROF_SYM_PERFMAP_H
#define CPROF_SYM_PERFMAP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Most bytes of one map that are read; the rest is ignored (and counted as not read). */
#define PERFMAP_MAX_BYTES (256u << 20)

struct perfmap;

/* Where pid's map is: /tmp/perf-NSPID.map as pid sees it, through /proc/PID/root (its mount
 * namespace), NSPID being pid as its own pid namespace numbers it (the JIT names the file with
 * the pid it sees). Once pid has exited, /tmp/perf-PID.map is read instead when pid shared our
 * root and pid namespace (same_root). Nothing is read yet. Returns NULL when out of memory. */
struct perfmap *perfmap__new(pid_t pid, bool same_root);
void perfmap__free(struct perfmap *pm);

/* The name of the JIT function holding addr, or NULL. Valid until perfmap__free. */
const char *perfmap__lookup(struct perfmap *pm, uint64_t addr);

#endif
