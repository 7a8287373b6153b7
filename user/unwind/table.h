/* Compiles an ELF file's call-frame information (.eh_frame) into the
 * row table the BPF unwinder searches (struct cprof_unwind_row, bpf/unwind.h): one row wherever
 * the rule changes, sorted by pc, identical neighbours merged, an INVALID row after every gap
 * between FDEs. */
#ifndef CPROF_UNWIND_TABLE_H
#define CPROF_UNWIND_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <linux/types.h>

#include "cprof.h"
#include "unwind.h"

#define UNWIND_TABLE_MAX_LOADS 8

struct unwind_table {
	struct cprof_unwind_row *rows;
	size_t n;
	uint64_t text_bytes; /* size of the executable PT_LOAD segments */
	/* Rows per kind before merging (index enum cprof_unwind_kind), for tests and -v. */
	uint64_t kinds[CPROF_UNW_STOP + 1];
	char build_id[41]; /* lowercase hex GNU build-id, "" when the file has none */
	/* The PT_LOAD segments, to turn a mapping's file offset into a link-time address. */
	struct {
		uint64_t offset, vaddr, filesz;
	} loads[UNWIND_TABLE_MAX_LOADS];
	int nloads;
};

/* Builds the table of the ELF file behind fd (not closed). Returns 0, -ENOEXEC when the file is
 * not ELF, -ENOENT when it has no usable CFI (.eh_frame_hdr), -E2BIG when addresses do not fit
 * 32 bits or rows exceed CPROF_UNWIND_MAX_ROWS, -ENOMEM. */
int unwind_table__build(int fd, struct unwind_table *t);
/* The same through libdw alone, the route the default one falls back to (the tests hold the
 * two against each other). */
int unwind_table__build_libdw(int fd, struct unwind_table *t);
/* The same for an ELF image in memory (a vDSO copied from a process). */
int unwind_table__build_mem(void *image, size_t size, struct unwind_table *t);
/* Only reads the build-id (cheap: pread, util/elf_head.h; libelf for a file it leaves; for
 * deduplication before building). */
int unwind_table__build_id(int fd, char *buf, size_t len);
void unwind_table__free(struct unwind_table *t);
/* `cprof-bpf unwind-table FILE`: prints FILE's table, one row a line ("pc kind cfa_off rbp_off
 * arg", pc in hex), for tests and debugging. Returns an exit status. */
int unwind_table__main(int argc, char **argv);
/* The row covering vaddr, or NULL (the same search the BPF side does). */
const struct cprof_unwind_row *unwind_table__find(const struct unwind_table *t, uint64_t vaddr);

#endif
