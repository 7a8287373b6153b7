/* A check of the call-frame information an .eh_frame_hdr search table leads to, made before
 * libdw interprets it: libdw sizes a frame's register array by the largest register number the
 * CIE and FDE programs name, and re-runs an FDE's program from its start for every row looked
 * up. A file with a rule for register 119537649 costs gigabytes per lookup, one with a huge
 * program seconds: such files (never emitted by a compiler) get no table (frame pointers). */
#ifndef CPROF_UNWIND_CFI_CHECK_H
#define CPROF_UNWIND_CFI_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest DWARF register number accepted (x86-64 numbers its registers below 130). */
#define CFI_CHECK_MAX_REG 255
/* Longest CIE + FDE program accepted, in bytes (compilers emit tens to hundreds). */
#define CFI_CHECK_MAX_PROGRAM 16384

/* The CIE checked last: the FDEs of a file mostly share a few CIEs, each read once while the
 * FDEs that name it follow one another. Zero it before the first FDE of an image. */
struct cfi_check_cie {
	bool valid;
	bool z;		/* its augmentation starts with 'z' */
	int addr_size;	/* of the FDEs' addresses */
	uint64_t off;	/* its file offset */
	size_t program; /* the length of its program */
};

/* Checks the FDE at file offset fde (and its CIE, unless it is the one last says was checked
 * already) in the file image [image, image + size). Returns 0 (last then names the FDE's CIE),
 * or -EINVAL when it is malformed, -E2BIG when it is beyond the limits above. */
int cfi_check__fde(const uint8_t *image, size_t size, uint64_t fde, struct cfi_check_cie *last);

#endif
