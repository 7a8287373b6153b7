/* Private to sym/: function names of Go executables from .gopclntab, the table the Go runtime
 * itself uses for tracebacks, so it survives `go build -ldflags='-s -w'` (no .symtab, no DWARF).
 * Layouts of Go 1.16-1.17 and 1.18 and later (magic 0xfffffffa, 0xfffffff0, 0xfffffff1). */
#ifndef CPROF_SYM_GOPCLNTAB_H
#define CPROF_SYM_GOPCLNTAB_H

#include <stddef.h>
#include <stdint.h>

/* Called once per function: [addr, end) in link-time addresses, name inside the table. */
typedef int (*gopclntab_fn)(void *ctx, uint64_t addr, uint64_t end, const char *name);

/* Walks the table at data (size bytes). text is the address of .text, used when the table
 * leaves its text start to a relocation (PIE). Returns 0, -ENOEXEC for a table it does not
 * read (unknown version, or out of bounds anywhere: nothing is trusted), or fn's error. */
int gopclntab__read(const uint8_t *data, size_t size, uint64_t text, gopclntab_fn fn, void *ctx);

#endif
