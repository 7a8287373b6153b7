/* Private to sym/: the symbolizer's parts, shared by its files and by nothing else:
 *   symbolizer.c   the symbolizer's life (new, free), interned strings and display names, and
 *                  the per-address front: symbolizer__user, symbolizer__file, JIT and Python
 *   snapshot.c     process snapshots: a process's executable mappings (add_pid, remove_pid)
 *   module_cache.c the file behind a mapping, opened once per file (build-id, else identity)
 *                  and shared by every process; vDSO images, parsed once per kernel
 *   resolve.c      a file's link-time address to frames (DWARF, symbol table), the address
 *                  cache, the open DWARF readers, and the batch step (symbolizer__prepare)
 *   kernel.c       kernel addresses: the kernel's own lookup through BPF, else
 *                  /proc/kallsyms, whole or in one streamed pass */
#ifndef CPROF_SYM_INTERNAL_H
#define CPROF_SYM_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sym/symbolizer.h"

struct hashmap;
struct kallsyms;
struct ksym_resolver;
struct perfmap;
struct proc_map;
struct python_syms;
struct sym_module;

#define KALLSYMS_PATH  "/proc/kallsyms"
#define KERNEL_MAPPING "[kernel.kallsyms]"
/* Anonymous executable memory: JIT code, named through the process's perf map. */
#define ANON_MAPPING "[anon]"

/* One executable file mapping of a process, as snapshotted by add_pid. */
struct sym_entry {
	uint64_t start, end, offset;
	struct sym_mapping *mapping;
	struct sym_module *module; /* NULL: the file could not be opened or is not ELF */
	const char *base;	   /* the file's basename, for stubs */
	bool anon;		   /* anonymous memory (JIT code): no file behind it */
};

struct sym_proc {
	pid_t pid;
	struct sym_entry *entries; /* sorted by start */
	size_t n;
	struct perfmap *jit; /* its perf map, when it has anonymous code */
};

/* A growable array of owned pointers. */
struct ptr_vec {
	void **items;
	size_t n, cap;
};

/* A resolved (module, link-time address): the frames, innermost first, strings interned. */
struct sym_addr_key {
	const struct sym_module *module;
	uint64_t vaddr;
};

struct sym_cached {
	struct sym_addr_key key;
	int nframes;
	struct sym_frame frames[];
};

/* A module whose DWARF reader is open, and when it was last used. */
struct sym_open_dwarf {
	struct sym_module *module;
	uint64_t tick;
};

struct symbolizer {
	struct symbolizer_opts opts;
	char *debug_dir;
	struct hashmap *addrs;	   /* struct sym_addr_key * -> struct sym_cached * */
	struct hashmap *demangled; /* interned raw name -> interned display name */
	struct sym_open_dwarf open_dwarf[SYM_MAX_DWARF_OPEN];
	int nopen_dwarf;
	uint64_t tick;
	struct hashmap *procs;	 /* pid -> struct sym_proc * */
	struct hashmap *modules; /* interned key -> struct sym_module * (NULL: unreadable) */
	struct hashmap *strings; /* interned strings, key == value */
	struct ptr_vec mods;	 /* every struct sym_module; they live until symbolizer__free */
	struct ptr_vec mappings; /* every struct sym_mapping handed out */
	size_t own_vdso_size;	 /* our own [vdso]'s (0: none), read once */
	bool own_vdso_tried;
	struct kallsyms *ksyms; /* the whole table, read when an address was not prepared */
	bool ksyms_tried;
	/* symbolizer__preload_kernel's thread reading the whole table, joined before any kernel
	 * address is looked at (symbolizer__kernel_join). */
	pthread_t ksyms_thread;
	bool ksyms_loading;
	struct kallsyms *ksyms_loaded; /* what the thread read (its own until joined) */
	int ksyms_err;
	/* The kernel's own lookup (sym/ksym_resolver.h), opened at the first kernel address;
	 * /proc/kallsyms is read only where it cannot load or names nothing. */
	struct ksym_resolver *kres;
	bool kres_tried;
	struct hashmap *kaddrs; /* known kernel lookup address -> interned name, or NULL */
	bool kernel_mapped;	/* kernel_mapping was set (from any source of kernel names) */
	struct sym_mapping kernel_mapping;
	struct python_syms *py;	       /* code objects of CPython processes (bpf/python.h) */
	struct sym_mapping py_mapping; /* every Python frame's */
	uint64_t py_unreadable;	       /* Python frames whose code object could not be read */
	struct symbolizer_stats st;    /* the counters of symbolizer__stats */
};

/* The address to look up for a frame: a return address (every frame but the leaf) points
 * after its call, so the call itself is at addr - 1. */
static inline uint64_t sym_lookup_addr(uint64_t addr, bool is_return)
{
	return is_return && addr ? addr - 1 : addr;
}

/* symbolizer.c */
/* The one copy of str this symbolizer keeps (until symbolizer__free); NULL: out of memory. */
const char *symbolizer__intern(struct symbolizer *s, const char *str);
/* Interned raw symbol name -> interned display name: demangled C++/Rust unless
 * --demangle=none. NULL only when out of memory. */
const char *symbolizer__display_name(struct symbolizer *s, const char *name);
int ptr_vec__push(struct ptr_vec *v, void *item);
/* res becomes one frame named name (an interned raw name; NULL: out of memory) in mapping.
 * Returns 0 or -ENOMEM. */
int symbolizer__set_frame(struct symbolizer *s, struct sym_result *res,
			  const struct sym_mapping *mapping, const char *name);
/* A frame for an address nothing resolves: "lib.so+0x1234" (file offset), or "0x7f..". */
int symbolizer__stub(struct symbolizer *s, struct sym_result *res,
		     const struct sym_mapping *mapping, const char *base, uint64_t value);

/* snapshot.c */
void sym_proc__free(struct sym_proc *p);
/* The entry holding addr, NULL when no executable mapping does. */
const struct sym_entry *sym_proc__find(const struct sym_proc *p, uint64_t addr);
/* pid's snapshot, taken now when there is none (a process gone gets an empty one, so that its
 * other frames do not retry). Returns 0 or -ENOMEM. */
int symbolizer__proc(struct symbolizer *s, pid_t pid, struct sym_proc **out);

/* module_cache.c: each returns 0 with *out NULL when the file cannot be read (its frames are
 * stubs), or -ENOMEM. */
/* The module of the file pid maps at map (same_root: pid sees our root directory). */
int symbolizer__file_module(struct symbolizer *s, pid_t pid, const struct proc_map *map,
			    bool same_root, struct sym_module **out);
/* The module of pid's vDSO image at map. */
int symbolizer__vdso_module(struct symbolizer *s, pid_t pid, const struct proc_map *map,
			    struct sym_module **out);
/* The module of the ELF file at path (symbolizer__file). Returns 0 (*out NULL: not ELF) or
 * -errno (-ENOENT and the like: the file cannot be opened). */
int symbolizer__path_module(struct symbolizer *s, const char *path, struct sym_module **out);

/* resolve.c */
/* Resets the address cache (symbolizer__new, and when it is full). Returns 0 or -ENOMEM. */
int symbolizer__new_addrs(struct symbolizer *s);
/* Frees the address cache's entries (symbolizer__free). */
void symbolizer__free_addrs(struct symbolizer *s);
/* The frames at m's link-time address vaddr, from the address cache or resolved now (and then
 * cached); res->nframes 0 when nothing is known. res->mapping is left alone. Returns 0 or
 * -ENOMEM. */
int symbolizer__frames(struct symbolizer *s, struct sym_module *m, uint64_t vaddr,
		       struct sym_result *res);
/* What m offers, now that it was read: the mapping's has_* flags become true where true. */
void symbolizer__mapping_flags(struct sym_mapping *mp, struct sym_module *m);

/* kernel.c */
/* Waits for symbolizer__preload_kernel's thread, if one runs, and takes what it read. */
void symbolizer__kernel_join(struct symbolizer *s);

#endif
