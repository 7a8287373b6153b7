/* Private to sym/: one object file (an executable, a shared library, a vDSO image) as the
 * symbolizer sees it, shared by every process that maps it. The ELF handle is opened once; the
 * symbol table is read on the first lookup. DWARF (file:line, inline frames) is meant to hang off
 * this object too, next to the ELF symbol table, so that it is read once per file as well. */
#ifndef CPROF_SYM_MODULE_H
#define CPROF_SYM_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sym_module;

/* Opens the ELF file behind fd, which the module owns from then on (also on failure).
 * Reads the build-id and program headers now. Returns 0 or -errno (-ENOEXEC: not ELF). */
int sym_module__open_fd(int fd, struct sym_module **out);
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
/* The function holding vaddr. Reads the symbol table on first use. Returns 0 with *name set,
 * -ENOENT when no function holds vaddr, or -ENOMEM. */
int sym_module__lookup(struct sym_module *m, uint64_t vaddr, const char **name);
/* Number of function symbols read so far (0 before the first lookup). */
size_t sym_module__nsyms(const struct sym_module *m);

#endif
