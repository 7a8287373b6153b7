/* Private to sym/: the DWARF of one object file, read through elfutils' libdwfl. Finds separate
 * debug info the way gdb does (by build-id under each debug root's .build-id/, then by
 * .gnu_debuglink next to the file, in .debug/, and under the debug root), and through
 * debuginfod when DEBUGINFOD_URLS is set (libdwfl asks libdebuginfod, which caches in
 * ~/.cache/debuginfod_client). Everything is read on first use. */
#ifndef CPROF_SYM_DWARF_H
#define CPROF_SYM_DWARF_H

#include <stdbool.h>
#include <stdint.h>

/* Where separate debug files are looked for when the caller names no directory. */
#define SYM_DEBUG_DIR_DEFAULT "/usr/lib/debug"

struct sym_dwarf_frame {
	const char *name; /* linkage (mangled) name when DWARF has one, else the plain name */
	const char *file; /* NULL when unknown */
	const char *dir;  /* the compilation directory when file is relative to it, else NULL */
	int line;	  /* 0 when unknown */
	int start_line;	  /* the function's declaration line, 0 when unknown */
};

struct sym_dwarf;

/* Prepares reading the DWARF of the ELF file open at fd (which is duplicated: the caller keeps
 * its fd). path names the file for .gnu_debuglink lookups (its directory); debug_dir is the
 * debug root (NULL: SYM_DEBUG_DIR_DEFAULT). Nothing is read yet. Returns 0 or -errno. */
int sym_dwarf__open(int fd, const char *path, const char *debug_dir, struct sym_dwarf **out);
void sym_dwarf__free(struct sym_dwarf *d);

/* Whether DWARF was found (in the file or a separate debug file); reads it on first call. */
bool sym_dwarf__present(struct sym_dwarf *d);
/* The chain of frames at link-time address vaddr, innermost (the deepest inlined callee) first,
 * the function that holds them last. Returns how many (0: no DWARF covers vaddr). Strings
 * stay valid until sym_dwarf__free. */
int sym_dwarf__frames(struct sym_dwarf *d, uint64_t vaddr, struct sym_dwarf_frame *frames, int max);
/* The symbol at vaddr from the symbol table of the file or of its debug file (a stripped
 * binary's .symtab lives in its debug file). NULL when none. */
const char *sym_dwarf__symbol(struct sym_dwarf *d, uint64_t vaddr);

#endif
