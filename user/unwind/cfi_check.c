/* CIE/FDE reader just deep enough to see every register number a program names (cfi_check.h).
 * Bounds-checked everywhere: the input is any file a profiled process maps. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <dwarf.h>

#include "unwind/cfi_check.h"

struct cur {
	const uint8_t *p, *end;
	bool bad;
};

static uint64_t uleb(struct cur *c)
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

static void skip(struct cur *c, uint64_t n)
{
	if (n > (uint64_t)(c->end - c->p)) {
		c->bad = true;
		c->p = c->end;
		return;
	}
	c->p += n;
}

static uint32_t u32(struct cur *c)
{
	uint32_t v = 0;

	if (c->end - c->p < 4) {
		c->bad = true;
		c->p = c->end;
		return 0;
	}
	memcpy(&v, c->p, 4);
	c->p += 4;
	return v;
}

/* Size of a pointer of encoding enc (DW_EH_PE_*), -1 if unknown. */
static int enc_size(uint8_t enc)
{
	if (enc == DW_EH_PE_omit)
		return 0;
	switch (enc & 0x0f) {
	case DW_EH_PE_absptr:
	case DW_EH_PE_udata8:
	case DW_EH_PE_sdata8:
		return 8;
	case DW_EH_PE_udata4:
	case DW_EH_PE_sdata4:
		return 4;
	case DW_EH_PE_udata2:
	case DW_EH_PE_sdata2:
		return 2;
	default:
		return -1;
	}
}

/* Walks a CFA program; fails on an unknown opcode or a register beyond the limit. */
static int check_program(struct cur *c, int addr_size)
{
	while (c->p < c->end && !c->bad) {
		uint8_t op = *c->p++;
		uint64_t reg = 0;

		switch (op & 0xc0) {
		case DW_CFA_advance_loc:
		case DW_CFA_restore:
			continue; /* register, if any, in the low 6 bits */
		case DW_CFA_offset:
			uleb(c);
			continue;
		}
		switch (op) {
		case DW_CFA_nop:
		case DW_CFA_remember_state:
		case DW_CFA_restore_state:
			break;
		case DW_CFA_set_loc:
			skip(c, (uint64_t)addr_size);
			break;
		case DW_CFA_advance_loc1:
			skip(c, 1);
			break;
		case DW_CFA_advance_loc2:
			skip(c, 2);
			break;
		case DW_CFA_advance_loc4:
			skip(c, 4);
			break;
		case DW_CFA_def_cfa_offset:
		case DW_CFA_def_cfa_offset_sf:
		case DW_CFA_GNU_args_size:
			uleb(c); /* an sleb has the same length */
			break;
		case DW_CFA_def_cfa_expression:
			skip(c, uleb(c));
			break;
		case DW_CFA_restore_extended:
		case DW_CFA_undefined:
		case DW_CFA_same_value:
		case DW_CFA_def_cfa_register:
			reg = uleb(c);
			break;
		case DW_CFA_offset_extended:
		case DW_CFA_def_cfa:
		case DW_CFA_offset_extended_sf:
		case DW_CFA_def_cfa_sf:
		case DW_CFA_val_offset:
		case DW_CFA_val_offset_sf:
		case DW_CFA_GNU_negative_offset_extended:
			reg = uleb(c);
			uleb(c);
			break;
		case DW_CFA_register: {
			uint64_t to;

			reg = uleb(c);
			to = uleb(c);
			if (to > reg)
				reg = to;
			break;
		}
		case DW_CFA_expression:
		case DW_CFA_val_expression:
			reg = uleb(c);
			skip(c, uleb(c));
			break;
		default:
			return -EINVAL;
		}
		if (reg > CFI_CHECK_MAX_REG)
			return -E2BIG;
	}
	return c->bad ? -EINVAL : 0;
}

/* One CIE or FDE record at off: its content in *body (after the length), or an error. */
static int record(const uint8_t *image, size_t size, uint64_t off, struct cur *body)
{
	struct cur c = {.p = image, .end = image + size};
	uint32_t len;

	if (off > size)
		return -EINVAL;
	c.p += off;
	len = u32(&c);
	if (c.bad || len == 0 || len == 0xffffffff) /* 64-bit records: never in .eh_frame */
		return -EINVAL;
	if (len > (uint64_t)(c.end - c.p))
		return -EINVAL;
	*body = (struct cur){.p = c.p, .end = c.p + len};
	return 0;
}

/* Reads the CIE at cie_off up to its program, left in *cie; *z and *addr_size as in struct
 * cfi_check_cie. */
static int read_cie(const uint8_t *image, size_t size, uint64_t cie_off, struct cur *cie, bool *z,
		    int *addr_size)
{
	struct cur aug_data;
	const char *aug;
	uint64_t aug_len;
	uint8_t version, ptr_enc = DW_EH_PE_absptr;

	if (record(image, size, cie_off, cie) || u32(cie) != 0)
		return -EINVAL;
	if (cie->p >= cie->end)
		return -EINVAL;
	version = *cie->p++;
	if (version != 1 && version != 3)
		return -EINVAL;
	aug = (const char *)cie->p;
	if (!memchr(aug, 0, (size_t)(cie->end - cie->p)))
		return -EINVAL;
	cie->p += strlen(aug) + 1;
	uleb(cie); /* code alignment */
	uleb(cie); /* data alignment (an sleb has the same length) */
	if (version == 1)
		skip(cie, 1);
	else if (uleb(cie) > CFI_CHECK_MAX_REG) /* return address column */
		return -E2BIG;
	if (aug[0] == 'z') {
		aug_len = uleb(cie);
		aug_data = (struct cur){.p = cie->p, .end = cie->p};
		skip(cie, aug_len);
		aug_data.end = cie->p;
		for (const char *a = aug + 1; *a && !aug_data.bad; a++) {
			if (*a == 'R' || *a == 'L') {
				uint8_t e = aug_data.p < aug_data.end ? *aug_data.p : 0;

				skip(&aug_data, 1);
				if (*a == 'R')
					ptr_enc = e;
			} else if (*a == 'P') {
				uint8_t e = aug_data.p < aug_data.end ? *aug_data.p : 0;

				skip(&aug_data, 1);
				if (enc_size(e) < 0)
					return -EINVAL;
				skip(&aug_data, (uint64_t)enc_size(e));
			} else if (*a != 'S') {
				break; /* unknown: the data length above still holds */
			}
		}
	} else if (aug[0]) {
		return -EINVAL; /* no 'z': the rest cannot be found */
	}
	if (cie->bad)
		return -EINVAL;
	*z = aug[0] == 'z';
	*addr_size = enc_size(ptr_enc);
	return *addr_size <= 0 ? -EINVAL : 0;
}

int cfi_check__fde(const uint8_t *image, size_t size, uint64_t fde, struct cfi_check_cie *last)
{
	struct cur f, cie = {};
	uint64_t cie_off;
	bool z, known;
	int addr_size, err;
	size_t program;

	if (record(image, size, fde, &f))
		return -EINVAL;
	/* The CIE pointer counts back from its own position. */
	cie_off = (uint64_t)(f.p - image);
	cie_off -= u32(&f);
	if (f.bad || cie_off >= fde)
		return -EINVAL;
	known = last->valid && last->off == cie_off;
	if (known) {
		z = last->z;
		addr_size = last->addr_size;
		program = last->program;
	} else {
		err = read_cie(image, size, cie_off, &cie, &z, &addr_size);
		if (err)
			return err;
		program = (size_t)(cie.end - cie.p);
	}
	skip(&f, 2 * (uint64_t)addr_size); /* pc_begin, pc_range */
	if (z)
		skip(&f, uleb(&f));
	if (f.bad)
		return -EINVAL;
	if (program + (size_t)(f.end - f.p) > CFI_CHECK_MAX_PROGRAM)
		return -E2BIG;
	if (!known) {
		err = check_program(&cie, addr_size);
		if (err)
			return err;
		*last = (struct cfi_check_cie){.valid = true,
					       .z = z,
					       .addr_size = addr_size,
					       .off = cie_off,
					       .program = program};
	}
	return check_program(&f, addr_size);
}
