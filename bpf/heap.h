/* Types shared by bpf/heap.bpf.c and user/collect/heap.c. Include nothing here (see cprof.h). */
#ifndef CPROF_HEAP_H
#define CPROF_HEAP_H

#include "cprof.h"

/* Entries of the table of sampling intervals user space fills before load: exponential
 * variates of mean sample_bytes, picked at random per sample. A power of two. */
#ifndef HEAP_NINTERVALS
#define HEAP_NINTERVALS 4096
#endif

/* Default capacity of the live map: sampled allocations not yet freed (--heap-max-live). */
#ifndef HEAP_DEFAULT_MAX_LIVE
#define HEAP_DEFAULT_MAX_LIVE 262144
#endif

/* Slots of the counting filter in front of the live map (see live_filter in heap.bpf.c): 2^bits
 * u32 counters, 128 KiB. */
#ifndef HEAP_FILTER_BITS
#define HEAP_FILTER_BITS 15
#endif
#define HEAP_FILTER_SLOTS (1u << HEAP_FILTER_BITS)

/* How an allocator entry point passes its size (and pointers); one BPF program per kind. */
enum heap_kind {
	HEAP_KIND_MALLOC = 1,	  /* malloc, valloc, pvalloc, operator new: (size) */
	HEAP_KIND_CALLOC,	  /* (n, size) */
	HEAP_KIND_REALLOC,	  /* (ptr, size) */
	HEAP_KIND_REALLOCARRAY,	  /* (ptr, n, size) */
	HEAP_KIND_POSIX_MEMALIGN, /* (void **out, align, size) -> int */
	HEAP_KIND_ALIGNED,	  /* aligned_alloc, memalign: (align, size) */
};

/* Aggregation key: a stack and the size of one allocation, as Go's heap profile buckets by
 * both (the `bytes` label). */
struct heap_key {
	struct cprof_key k;
	__u64 size;
};

/* Raw sampled counts of one key. inuse = allocations whose free has not been seen. */
struct heap_val {
	__u64 alloc_objects;
	__u64 alloc_bytes;
	__u64 inuse_objects;
	__u64 inuse_bytes;
};

/* Live map key: an address in a process. */
struct heap_addr {
	__u32 pid;
	__u32 pad;
	__u64 addr;
};

#ifndef __bpf__
_Static_assert(sizeof(struct heap_key) == 40, "heap_key layout is shared with BPF");
_Static_assert(sizeof(struct heap_val) == 32, "heap_val layout is shared with BPF");
_Static_assert(sizeof(struct heap_addr) == 16, "heap_addr layout is shared with BPF");
#endif

#endif /* CPROF_HEAP_H */
