/* Allocator discovery for the heap collector: which functions of the malloc family a process
 * (or the system, or a command not started yet) has, in which of its objects, in the order the
 * dynamic linker would bind them; and where to put a breakpoint on one of them so that it costs
 * one trap (x86-64 prologue decoding). Knows nothing of BPF. */
#ifndef CPROF_COLLECT_ALLOCATORS_H
#define CPROF_COLLECT_ALLOCATORS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* What a probed function does, which decides the BPF program that probes it. */
enum alloc_role {
	ALLOC_MALLOC, /* size in the first argument (malloc, valloc, operator new...) */
	ALLOC_CALLOC,
	ALLOC_REALLOC,
	ALLOC_REALLOCARRAY,
	ALLOC_POSIX_MEMALIGN,
	ALLOC_ALIGNED, /* aligned_alloc, memalign: size in the second argument */
	ALLOC_FREE,
	ALLOC_OWN_FREE,	  /* a release function of an allocator that does not go through free */
	ALLOC_FREE_DEDUP, /* free, when the same object's operator delete is probed */
};

/* One function looked for. `own_free`: a release function of an allocator that does not go
 * through free (jemalloc's operator delete, sdallocx): probed only in the object that provides
 * malloc, since libstdc++'s operator delete calls free, which is probed already. */
struct alloc_func {
	const char *name;
	enum alloc_role role;
	bool own_free;
};

#define ALLOC_NFUNCS	  32
#define ALLOC_FUNC_MALLOC 0 /* alloc_funcs[] index of malloc */
#define ALLOC_FUNC_FREE	  9 /* and of free */
extern const struct alloc_func alloc_funcs[];

/* Objects of one process considered as providers (distinct executable mappings). */
#define ALLOC_MAX_OBJS 512

/* A candidate provider: one mapped object of a target. */
struct alloc_obj {
	char path[PATH_MAX];		/* as the process names it */
	char open_path[PATH_MAX];	/* as we reach it (through /proc/PID/root) */
	int rank;			/* lookup preference, lower first */
	uint64_t offsets[ALLOC_NFUNCS]; /* file offset of each alloc_funcs[] entry, 0: absent */
};

/* The objects pid has mapped executable, appended to objs[*n] (ALLOC_MAX_OBJS at most).
 * Returns 0 or -errno. */
int allocators__of_pid(pid_t pid, struct alloc_obj *objs, int *n);
/* A command not started yet (exe_hint, the path of its executable, as record's check found it
 * in PATH, or NULL) or the whole system: the command's executable and the libraries it needs, and this system's libc and
 * libstdc++. Returns 0 or -errno. */
int allocators__of_system(const char *exe_hint, struct alloc_obj *objs, int *n);
/* Whether one of objs defines malloc. */
bool allocators__have_malloc(const struct alloc_obj *objs, int n);
/* The one-line error when none does. pid < 0: the system. */
void allocators__no_malloc_error(pid_t pid, const struct alloc_obj *objs, int n);
/* For each alloc_funcs[f], the index in objs of the object that provides it (-1: none), and
 * the role it is probed with (free becomes ALLOC_FREE_DEDUP beside an own operator delete). */
void allocators__choose(const struct alloc_obj *objs, int n, int prov[ALLOC_NFUNCS],
			enum alloc_role roles[ALLOC_NFUNCS]);
/* Whether a role releases memory (the free family). */
bool allocators__is_release(enum alloc_role role);

/* -a: every allocator that a running process has linked in or preloaded, apart from the
 * system's runtimes in sys: fn is called once per distinct file (device and inode) of some
 * process's mappings that defines both malloc and free. Returns 0 or -errno. */
typedef void (*alloc_found_fn)(void *ctx, const struct alloc_obj *o, pid_t pid);
int allocators__running(const struct alloc_obj *sys, int nsys, alloc_found_fn fn, void *ctx);

/* Where to put the breakpoint of a function at file offset off of the file at path (x86-64):
 * past an endbr64, and, for a function whose first argument is a pointer (ptr_arg), past
 * glibc free's `if (!p) return` test when a push follows. */
uint64_t allocators__probe_offset(const char *path, uint64_t off, bool ptr_arg);

#endif
