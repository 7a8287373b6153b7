/* Private to unwind/: a bounds-checked cursor over call-frame information, and a CIE's fields,
 * shared by the checker (cfi_check.c) and the row builder (cfi_rows.c). The input is any file
 * a profiled process maps: every read stops at the end and marks the cursor bad. */
#ifndef CPROF_UNWIND_CFI_READ_H
#define CPROF_UNWIND_CFI_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct cur {
	const uint8_t *p, *end;
	bool bad;
};

static inline uint64_t cur_uleb(struct cur *c)
{
	uint64_t v = 0;

	for (unsigned shift = 0; c->p < c->end; shift += 7) {
		uint8_t b = *c->p++;

		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	c->bad = true;
	return 0;
}

static inline int64_t cur_sleb(struct cur *c)
{
	uint64_t v = 0;
	unsigned shift = 0;
	uint8_t b = 0;

	while (c->p < c->end) {
		b = *c->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80)) {
			if (shift < 64 && (b & 0x40))
				v |= ~(uint64_t)0 << shift;
			return (int64_t)v;
		}
	}
	c->bad = true;
	return 0;
}

static inline void cur_skip(struct cur *c, uint64_t n)
{
	if (n > (uint64_t)(c->end - c->p)) {
		c->bad = true;
		c->p = c->end;
		return;
	}
	c->p += n;
}

/* A little-endian unsigned value of size bytes (1, 2, 4 or 8). */
static inline uint64_t cur_un(struct cur *c, int size)
{
	uint64_t v = 0;

	if (c->end - c->p < size) {
		c->bad = true;
		c->p = c->end;
		return 0;
	}
	for (int i = 0; i < size; i++)
		v |= (uint64_t)c->p[i] << (8 * i);
	c->p += size;
	return v;
}

/* What a CIE says of the FDEs that name it. */
struct cfi_cie {
	bool z;		    /* its augmentation starts with 'z': FDEs carry augmentation data */
	bool signal;	    /* 'S': a signal trampoline's frame */
	uint8_t ptr_enc;    /* the FDEs' address encoding (DW_EH_PE_*) */
	int addr_size;	    /* of the FDEs' addresses */
	uint64_t caf;	    /* code alignment factor */
	int64_t daf;	    /* data alignment factor */
	uint64_t ra;	    /* the return address column */
	struct cur program; /* its initial instructions */
};

/* One CIE or FDE record of .eh_frame at file offset off: its content (after the length) in
 * *body. Returns 0 or -EINVAL. */
int cfi_read__record(const uint8_t *image, size_t size, uint64_t off, struct cur *body);
/* The FDE record at file offset fde: its content after the CIE pointer in *body, the file
 * offset of its CIE in *cie_off. Returns 0 or -EINVAL. */
int cfi_read__fde(const uint8_t *image, size_t size, uint64_t fde, struct cur *body,
		  uint64_t *cie_off);
/* The CIE at file offset off. Returns 0 or -EINVAL (malformed, or a form not read here). */
int cfi_read__cie(const uint8_t *image, size_t size, uint64_t off, struct cfi_cie *cie);
/* Size of a pointer of encoding enc (DW_EH_PE_*), -1 if unknown. */
int cfi_read__enc_size(uint8_t enc);
/* A pointer of encoding enc at c: an absolute one as it is, one relative to rel (DW_EH_PE_pcrel
 * or DW_EH_PE_datarel: the base the caller's format uses) plus base; with range, the plain size
 * that follows an address (no base). Returns 0, -EINVAL (past the end) or -ENOTSUP (another
 * form: indirect, another base, LEB128). */
int cfi_read__ptr(struct cur *c, uint8_t enc, uint8_t rel, uint64_t base, bool range,
		  uint64_t *out);

#endif
