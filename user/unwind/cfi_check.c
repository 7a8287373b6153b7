/* CIE/FDE reader just deep enough to see every register number a program names (cfi_check.h),
 * and the record readers the row builder shares (cfi_read.h).
 * Bounds-checked everywhere: the input is any file a profiled process maps. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <dwarf.h>

#include "unwind/cfi_check.h"
#include "unwind/cfi_read.h"

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
			cur_uleb(c);
			continue;
		}
		switch (op) {
		case DW_CFA_nop:
		case DW_CFA_remember_state:
		case DW_CFA_restore_state:
			break;
		case DW_CFA_set_loc:
			cur_skip(c, (uint64_t)addr_size);
			break;
		case DW_CFA_advance_loc1:
			cur_skip(c, 1);
			break;
		case DW_CFA_advance_loc2:
			cur_skip(c, 2);
			break;
		case DW_CFA_advance_loc4:
			cur_skip(c, 4);
			break;
		case DW_CFA_def_cfa_offset:
		case DW_CFA_def_cfa_offset_sf:
		case DW_CFA_GNU_args_size:
			cur_uleb(c); /* an sleb has the same length */
			break;
		case DW_CFA_def_cfa_expression:
			cur_skip(c, cur_uleb(c));
			break;
		case DW_CFA_restore_extended:
		case DW_CFA_undefined:
		case DW_CFA_same_value:
		case DW_CFA_def_cfa_register:
			reg = cur_uleb(c);
			break;
		case DW_CFA_offset_extended:
		case DW_CFA_def_cfa:
		case DW_CFA_offset_extended_sf:
		case DW_CFA_def_cfa_sf:
		case DW_CFA_val_offset:
		case DW_CFA_val_offset_sf:
		case DW_CFA_GNU_negative_offset_extended:
			reg = cur_uleb(c);
			cur_uleb(c);
			break;
		case DW_CFA_register: {
			uint64_t to;

			reg = cur_uleb(c);
			to = cur_uleb(c);
			if (to > reg)
				reg = to;
			break;
		}
		case DW_CFA_expression:
		case DW_CFA_val_expression:
			reg = cur_uleb(c);
			cur_skip(c, cur_uleb(c));
			break;
		default:
			return -EINVAL;
		}
		if (reg > CFI_CHECK_MAX_REG)
			return -E2BIG;
	}
	return c->bad ? -EINVAL : 0;
}

int cfi_read__enc_size(uint8_t enc)
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

int cfi_read__ptr(struct cur *c, uint8_t enc, uint8_t rel, uint64_t base, bool range, uint64_t *out)
{
	uint64_t v;
	int size = cfi_read__enc_size(enc);

	if (size <= 0 || (enc & 0x80)) /* indirect: never in .eh_frame */
		return -ENOTSUP;
	v = cur_un(c, size);
	if ((enc & 0x0f) == DW_EH_PE_sdata4)
		v = (uint64_t)(int64_t)(int32_t)v;
	else if ((enc & 0x0f) == DW_EH_PE_sdata2)
		v = (uint64_t)(int64_t)(int16_t)v;
	if (!range && (enc & 0x70) == rel)
		v += base;
	else if (!range && (enc & 0x70) != DW_EH_PE_absptr)
		return -ENOTSUP; /* a range is a plain size whatever the encoding's base */
	*out = v;
	return c->bad ? -EINVAL : 0;
}

int cfi_read__record(const uint8_t *image, size_t size, uint64_t off, struct cur *body)
{
	struct cur c = {.p = image, .end = image + size};
	uint32_t len;

	if (off > size)
		return -EINVAL;
	c.p += off;
	len = (uint32_t)cur_un(&c, 4);
	if (c.bad || len == 0 || len == 0xffffffff) /* 64-bit records: never in .eh_frame */
		return -EINVAL;
	if (len > (uint64_t)(c.end - c.p))
		return -EINVAL;
	*body = (struct cur){.p = c.p, .end = c.p + len};
	return 0;
}

int cfi_read__fde(const uint8_t *image, size_t size, uint64_t fde, struct cur *body,
		  uint64_t *cie_off)
{
	if (cfi_read__record(image, size, fde, body))
		return -EINVAL;
	/* The CIE pointer counts back from its own position. */
	*cie_off = (uint64_t)(body->p - image);
	*cie_off -= cur_un(body, 4);
	return body->bad || *cie_off >= fde ? -EINVAL : 0;
}

int cfi_read__cie(const uint8_t *image, size_t size, uint64_t off, struct cfi_cie *out)
{
	struct cur cie, aug_data;
	const char *aug;
	uint64_t aug_len;
	uint8_t version;

	memset(out, 0, sizeof(*out));
	out->ptr_enc = DW_EH_PE_absptr;
	if (cfi_read__record(image, size, off, &cie) || cur_un(&cie, 4) != 0)
		return -EINVAL;
	if (cie.p >= cie.end)
		return -EINVAL;
	version = *cie.p++;
	if (version != 1 && version != 3)
		return -EINVAL;
	aug = (const char *)cie.p;
	if (!memchr(aug, 0, (size_t)(cie.end - cie.p)))
		return -EINVAL;
	cie.p += strlen(aug) + 1;
	out->caf = cur_uleb(&cie);
	out->daf = cur_sleb(&cie);
	out->ra = version == 1 ? cur_un(&cie, 1) : cur_uleb(&cie);
	if (aug[0] == 'z') {
		aug_len = cur_uleb(&cie);
		aug_data = (struct cur){.p = cie.p, .end = cie.p};
		cur_skip(&cie, aug_len);
		aug_data.end = cie.p;
		for (const char *a = aug + 1; *a && !aug_data.bad; a++) {
			if (*a == 'R' || *a == 'L') {
				uint8_t e = aug_data.p < aug_data.end ? *aug_data.p : 0;

				cur_skip(&aug_data, 1);
				if (*a == 'R')
					out->ptr_enc = e;
			} else if (*a == 'P') {
				uint8_t e = aug_data.p < aug_data.end ? *aug_data.p : 0;

				cur_skip(&aug_data, 1);
				if (cfi_read__enc_size(e) < 0)
					return -EINVAL;
				cur_skip(&aug_data, (uint64_t)cfi_read__enc_size(e));
			} else if (*a == 'S') {
				out->signal = true;
			} else {
				break; /* unknown: the data length above still holds */
			}
		}
	} else if (aug[0]) {
		return -EINVAL; /* no 'z': the rest cannot be found */
	}
	if (cie.bad)
		return -EINVAL;
	out->z = aug[0] == 'z';
	out->addr_size = cfi_read__enc_size(out->ptr_enc);
	out->program = cie;
	return out->addr_size <= 0 ? -EINVAL : 0;
}

int cfi_check__fde(const uint8_t *image, size_t size, uint64_t fde, struct cfi_check_cie *last)
{
	struct cfi_cie c;
	struct cur f, cie = {};
	uint64_t cie_off;
	bool z, known;
	int addr_size, err;
	size_t program;

	if (cfi_read__fde(image, size, fde, &f, &cie_off))
		return -EINVAL;
	known = last->valid && last->off == cie_off;
	if (known) {
		z = last->z;
		addr_size = last->addr_size;
		program = last->program;
	} else {
		err = cfi_read__cie(image, size, cie_off, &c);
		if (err)
			return err;
		if (c.ra > CFI_CHECK_MAX_REG)
			return -E2BIG;
		cie = c.program;
		z = c.z;
		addr_size = c.addr_size;
		program = (size_t)(cie.end - cie.p);
	}
	cur_skip(&f, 2 * (uint64_t)addr_size); /* pc_begin, pc_range */
	if (z)
		cur_skip(&f, cur_uleb(&f));
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
