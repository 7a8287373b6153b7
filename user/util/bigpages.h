/* A short job's heap on transparent huge pages. Where touching fresh memory is slow (on this
 * project's test VM, a 4 KiB page fault costs about 15 us: a snapshot's 13 MB of heap is 40 ms
 * of faults), the heap a one-shot snapshot is about to fill is set up so that the kernel backs
 * it with 2 MiB pages: a few hundred faults fewer per megabyte. What malloc would have put in
 * separate mappings (libbpf's 5.5 MB copy of the kernel's BTF) comes from that heap too. */
#ifndef CPROF_UTIL_BIGPAGES_H
#define CPROF_UTIL_BIGPAGES_H

#include <stddef.h>

/* Serves the allocations of up to bytes (and their sum, up to about bytes) of the calling thread
 * and of the threads it creates from now on from one stretch of the main heap advised for huge
 * pages (MADV_HUGEPAGE), kept when freed. Returns 0, or -errno where it cannot (-EOPNOTSUPP:
 * transparent huge pages off, or malloc is not glibc's). bytes is at most 31 MiB. Call once, from the main thread, before the allocations and
 * the threads. */
int bigpages__heap(size_t bytes);

#endif
