/* Defined functions of an ELF file, by name: where to attach uprobes. */
#ifndef CPROF_SYM_FUNCS_H
#define CPROF_SYM_FUNCS_H

#include <stddef.h>
#include <stdint.h>

/* Looks up each of names[0..n) among the global or weak functions the file at path defines
 * (.symtab and .dynsym; versioned names match without their @VERSION). offsets[i] gets the
 * function's file offset, or 0 when the file does not define it. Returns the number found, or
 * -errno (-ENOEXEC: not an ELF file). */
int elf_funcs__find(const char *path, const char *const *names, size_t n, uint64_t *offsets);

/* The DT_NEEDED names of a dynamic ELF file ("libc.so.6"), at most max of them, each copied
 * into names[i] (truncated to len). Returns how many, or -errno. */
int elf_funcs__needed(const char *path, char *names, size_t len, int max);

#endif
