/* What an ELF file's headers say (its GNU build-id, its PT_LOAD segments), read with pread:
 * the ELF header, the program headers and the notes, nothing mapped. libelf maps the whole file
 * to answer the same questions, and the unmapping that follows costs every other CPU that ran
 * one of our threads a TLB shootdown (an interrupt: on a virtual machine, an exit to the
 * hypervisor). 64-bit little-endian files only: others get -ENOEXEC (for another reader). */
#ifndef CPROF_UTIL_ELF_HEAD_H
#define CPROF_UTIL_ELF_HEAD_H

#include <stddef.h>
#include <stdint.h>

/* PT_LOAD segments kept at most (the first ones, in file order). */
#define ELF_HEAD_MAX_LOADS 8

struct elf_load {
	uint64_t offset, vaddr, filesz;
};

struct elf_head {
	char build_id[2 * 64 + 1]; /* lowercase hex, "" when the file has none */
	struct elf_load loads[ELF_HEAD_MAX_LOADS];
	int nloads;
	uint64_t text_bytes; /* file bytes of the executable segments (all of them) */
};

/* Writes the build-id of the file open at fd into buf as lowercase hex ("" first). Returns 0;
 * -ENOENT: the file has none; -ENOEXEC: not a 64-bit little-endian ELF file, or one past this
 * reader's bounds; -ERANGE: len too small; else -errno. */
int elf_head__build_id(int fd, char *buf, size_t len);
/* The GNU build-id among notes (size bytes of a PT_NOTE segment or SHT_NOTE section, align its
 * alignment: 8, else 4), as lowercase hex in buf. Returns 0, -ENOENT (none) or -ERANGE. */
int elf_head__notes_build_id(const void *notes, size_t size, size_t align, char *buf, size_t len);
/* bits (n bytes) as lowercase hex in buf. Returns 0, or -ERANGE when it does not fit. */
int elf_head__hex(const uint8_t *bits, size_t n, char *buf, size_t len);
/* Reads the segments and the build-id (h->build_id "" when none) of the file open at fd.
 * Returns 0, -ENOEXEC as above, or -errno. */
int elf_head__read(int fd, struct elf_head *h);

#endif
