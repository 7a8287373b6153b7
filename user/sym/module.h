/* Private to sym/: one object file (an executable, a shared library, a vDSO image) as the
 * symbolizer sees it, shared by every process that maps it. The ELF handle is opened once; the
 * symbol table is read on the first lookup, DWARF (file:line, inline frames, in the file or in
 * a separate debug file) on the first frame lookup, so both are read once per file. */
#ifndef CPROF_SYM_MODULE_H
#define CPROF_SYM_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sym/dwarf.h"

struct sym_module;

/* Opens the ELF file behind fd, which the module owns from then on (also on failure).
 * Reads the build-id and program headers now. path (where the file is seen, for its
 * .gnu_debuglink) and debug_dir (the debug root, NULL: the default) are copied.
 * Returns 0 or -errno (-ENOEXEC: not ELF). */
int sym_module__open_fd(int fd, const char *path, const char *debug_dir, struct sym_module **out);
/* Same for an image in memory (a vDSO copied from a process); the module owns and frees it. */
int sym_module__open_mem(void *image, size_t size, struct sym_module **out);
void sym_module__free(struct sym_module *m);

/* Lowercase hex GNU build-id, "" when the file has none. */
const char *sym_module__build_id(const struct sym_module *m);
/* The file has a .symtab or .dynsym section (it may still hold no function). */
bool sym_module__has_symtab(const struct sym_module *m);
/* Maps a file offset to the link-time address through the PT_LOAD holding it.
 * Returns 0 or -ENOENT. */
int sym_module__offset_to_vaddr(const struct sym_module *m, uint64_t off, uint64_t *vaddr);
/* The function holding vaddr, from the file's symbol tables, else its debug file's. Reads the
 * symbol table on first use. Returns 0 with *name set,
 * -ENOENT when no function holds vaddr, or -ENOMEM. */
int sym_module__lookup(struct sym_module *m, uint64_t vaddr, const char **name);
/* The same from the file's own .symtab/.dynsym/.gopclntab only (never the debug file's). */
int sym_module__lookup_own(struct sym_module *m, uint64_t vaddr, const char **name);
/* Number of function symbols read so far (0 before the first lookup). */
size_t sym_module__nsyms(const struct sym_module *m);

/* The module's DWARF reader, opened on first call; NULL for an image in memory or when the
 * file cannot be handed to libdwfl. */
struct sym_dwarf *sym_module__dwarf(struct sym_module *m);
/* DWARF was found for the file (reads the debug info, or finds the debug file, on first call). */
bool sym_module__has_dwarf(struct sym_module *m);
/* The DWARF frames at vaddr, innermost first (see sym_dwarf__frames); 0 without DWARF. */
int sym_module__frames(struct sym_module *m, uint64_t vaddr, struct sym_dwarf_frame *frames,
		       int max);
/* The file was found to have no DWARF (in it or a debug file): it holds no reader. */
bool sym_module__dwarf_absent(const struct sym_module *m);
/* Closes the DWARF reader to give its memory back; the next frame lookup opens it again. */
void sym_module__drop_dwarf(struct sym_module *m);

#endif
