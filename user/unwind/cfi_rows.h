/* Private to unwind/: the rows of one FDE, read straight from .eh_frame in one pass over its
 * CIE's and its own CFA programs. libdw (dwarf_cfi_addrframe) answers one address at a time,
 * re-running the FDE's program from its start for each: building a table row by row through it
 * cost about 0.75 us a row here (300k rows for the executables of a busy machine: a quarter of
 * the agent's CPU in a first run). This gives the same rows as that route (table.c keeps it as
 * the fallback for what this does not read, and the tests hold the two against each other). */
#ifndef CPROF_UNWIND_CFI_ROWS_H
#define CPROF_UNWIND_CFI_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include <linux/types.h>

#include "cprof.h"
#include "unwind.h"
#include "unwind/cfi_read.h"

/* Called for each row of the FDE in address order (pc set): the rule from pc to the next row's
 * pc, the last one's to the FDE's end. Returns 0, or stops the walk with its error. */
typedef int (*cfi_row_fn)(void *ctx, const struct cprof_unwind_row *row);

/* The CIE read last (off 0: none; zero it before the first FDE of an image). */
struct cfi_rows_cie {
	uint64_t off;
	struct cfi_cie cie;
};

/* The FDE at file offset fde of image [image, image + size), at link-time address fde_vaddr
 * (for pc-relative encodings); *cache is reused when the FDE names the same CIE. Calls fn for
 * each row; *start and *end get the FDE's range. Returns 0, -ENOTSUP for a form not read here
 * (the caller falls back to libdw), -EINVAL, -E2BIG when an address does not fit 32 bits, or
 * fn's error. */
int cfi_rows__fde(const uint8_t *image, size_t size, uint64_t fde, uint64_t fde_vaddr,
		  struct cfi_rows_cie *cache, cfi_row_fn fn, void *ctx, uint64_t *start,
		  uint64_t *end);

#endif
