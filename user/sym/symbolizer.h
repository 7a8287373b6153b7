/* Symbolizer: turns (pid, address) into a mapping and a chain of frames (function, file, line),
 * innermost first. Symbol data is read lazily and cached by the file's build-id (or path +
 * inode when there is none) and shared by every process that maps the same file. A process's
 * mappings are snapshotted when symbolizer__add_pid() is called, so a process that exits later
 * can still be symbolized. Kernel addresses resolve through /proc/kallsyms. */
#ifndef CPROF_SYM_SYMBOLIZER_H
#define CPROF_SYM_SYMBOLIZER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Most frames one address can expand to (the function plus the functions inlined into it). */
#define SYM_MAX_INLINE 16

/* A mapping as pprof's Mapping message needs it. One object per (process, mapped file range);
 * pointers stay valid until symbolizer__free(), so callers may key on them. */
struct sym_mapping {
	uint64_t start, limit, offset;
	const char *path;     /* the file, as pprof shows it; "[kernel.kallsyms]", "[vdso]" */
	const char *build_id; /* lowercase hex GNU build-id, "" when the file has none */
	bool has_functions;   /* the file had a symbol table we could read */
	bool has_filenames;   /* DWARF line info was found */
	bool has_line_numbers;
	bool has_inline_frames;
};

struct sym_frame {
	const char *function;	 /* display name (demangled); never NULL: a stub "lib.so+0x12" */
	const char *system_name; /* the raw (mangled) symbol name; may equal function */
	const char *file;	 /* source file, or NULL */
	int64_t line;		 /* 0 when unknown */
	int64_t start_line;	 /* the function's first line, 0 when unknown */
};

struct sym_result {
	const struct sym_mapping *mapping;	 /* NULL: the address is in no known mapping */
	int nframes;				 /* >= 1 */
	struct sym_frame frames[SYM_MAX_INLINE]; /* innermost first */
};

enum sym_demangle {
	SYM_DEMANGLE_FULL = 0,
	SYM_DEMANGLE_NONE,
};

struct symbolizer_opts {
	enum sym_demangle demangle;
	bool no_kernel; /* do not name kernel addresses */
	/* Name kernel addresses from /proc/kallsyms only, never through the kernel's own lookup
	 * (sym/ksym_resolver.h): the tests of the /proc/kallsyms paths. */
	bool kallsyms_only;
	const char *debug_dir; /* root of separate debug files; NULL: /usr/lib/debug (copied) */
	/* Bounds of the caches; 0 for the defaults below (tests set small ones). */
	size_t max_cached_addrs;
	int max_dwarf_open;
	/* symbolizer__prepare closes each file's DWARF reader once it is done with the file, so
	 * one file's DWARF is in memory at a time (one-shot captures; a long-lived symbolizer
	 * keeps them open, up to max_dwarf_open). */
	bool release_dwarf;
};

/* Bounds of the caches (see README.md, "Symbols"): resolved addresses kept per symbolizer
 * (the cache is emptied when it fills), and DWARF readers kept open at once (the least recently
 * used is closed, and reopened if needed again). */
#define SYM_CACHE_MAX_ADDRS (1 << 18)
#define SYM_MAX_DWARF_OPEN  64

struct symbolizer;
struct proc_maps;

/* What the caches hold and how often they answer (the agent's /metrics). */
struct symbolizer_stats {
	uint64_t procs;			     /* processes with a snapshot */
	uint64_t files;			     /* ELF files read and kept (by build-id or identity) */
	uint64_t file_hits, file_misses;     /* mapped files found cached / read */
	uint64_t addrs, max_addrs;	     /* resolved addresses cached, and the cap */
	uint64_t addr_hits, addr_misses;     /* user addresses answered from / added to the cache */
	uint64_t dwarf_open, max_dwarf_open; /* DWARF readers open, and the cap */
};

struct symbolizer *symbolizer__new(const struct symbolizer_opts *opts);
void symbolizer__free(struct symbolizer *s);

/* Snapshots pid's mappings now (and opens what it needs to read them later: a deleted binary
 * is reached through /proc/PID/map_files). Calling it again for a known pid refreshes the
 * snapshot (after exec or dlopen); a process gone since an earlier snapshot keeps that one.
 * Returns 0 or -errno (-ESRCH: process gone). */
int symbolizer__add_pid(struct symbolizer *s, pid_t pid);
/* The same from mappings already read (pm: pid's, as /proc/PID/maps listed them, now or at an
 * earlier notice: a process gone since is snapshotted from what was read while it lived). */
int symbolizer__add_pid_maps(struct symbolizer *s, pid_t pid, const struct proc_maps *pm);
/* Whether pid has a snapshot. */
bool symbolizer__has_pid(struct symbolizer *s, pid_t pid);
/* Forgets pid's snapshot (pid reuse). */
void symbolizer__remove_pid(struct symbolizer *s, pid_t pid);
void symbolizer__stats(const struct symbolizer *s, struct symbolizer_stats *st);

/* One address a caller is about to ask about (symbolizer__user or symbolizer__kernel). */
struct sym_request {
	uint64_t addr;
	pid_t pid; /* user addresses */
	bool kernel;
	bool is_return;
};

/* Resolves a batch of addresses into the symbolizer's caches, in the order that costs least:
 * kernel addresses as symbolizer__prepare_kernel does, user addresses file by file and in
 * address order within a file (with release_dwarf, each file's DWARF is closed before the next
 * is read). The calls that follow for these addresses are cache hits. Optional: without it
 * every call resolves on its own. Sorts reqs. Returns 0 or -ENOMEM. */
int symbolizer__prepare(struct symbolizer *s, struct sym_request *reqs, size_t n);
/* The kernel addresses of reqs (the others are skipped) into the cache, each named once: in
 * runs of 64 through the kernel's own lookup, or in one streamed pass over /proc/kallsyms that
 * keeps only the symbols that name them. Returns 0 or -ENOMEM. */
int symbolizer__prepare_kernel(struct symbolizer *s, const struct sym_request *reqs, size_t n);

/* Resolves a user-space address of pid. is_return: addr is a return address (every frame but
 * the leaf), so look up addr - 1. Unknown pid: the pid is added first. Never fails: an address
 * that cannot be resolved gets a stub frame ("libfoo.so+0x1234", or "0x7f..." outside any
 * mapping). Returns 0, or -errno only for allocation failure. */
int symbolizer__user(struct symbolizer *s, pid_t pid, uint64_t addr, bool is_return,
		     struct sym_result *res);
/* Reads the Python code object at code in pid now (CPROF_PROC_PYCODE), while the process lives:
 * its frames then resolve after the process exits. */
void symbolizer__python_prefetch(struct symbolizer *s, pid_t pid, uint64_t code);
/* Python frames (bpf/python.h) resolved so far whose code object could not be read (the
 * process exited before its profile was symbolized). */
uint64_t symbolizer__python_unreadable(const struct symbolizer *s);
/* Resolves a link-time address of the ELF file at path (as addr2line -e path does); the file
 * is opened once and cached like a mapped one. res->mapping is NULL. Returns 0 (a "??" frame when
 * nothing is known), -errno when the file cannot be opened or is not ELF. */
int symbolizer__file(struct symbolizer *s, const char *path, uint64_t vaddr,
		     struct sym_result *res);
/* Resolves a kernel address ("[kernel.kallsyms]" mapping; module functions read "fn [mod]"). */
int symbolizer__kernel(struct symbolizer *s, uint64_t addr, bool is_return, struct sym_result *res);
/* Gets kernel names ready before the first kernel address: loads the program through which the
 * kernel names them (sym/ksym_resolver.h, a few ms), or where it cannot load, starts reading
 * the whole of /proc/kallsyms on a thread of its own, so that a caller with other work to do
 * first (loading BPF) finds the names ready (that costs the whole table's memory, where
 * symbolizer__prepare's streamed pass keeps only the names asked for). Nothing when kernel
 * frames are not named (--no-kernel) or this was done already. */
void symbolizer__preload_kernel(struct symbolizer *s);

#endif
