/* See unwind/cfi_rows.h. The rule of a row is what table.c's frame_to_row makes of libdw's
 * frame at that address, decided here from the same three rules: the CFA's, the return
 * address's and rbp's. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <dwarf.h>

#include "unwind/cfi_rows.h"

#define REG_RBP 6
#define REG_RSP 7
#define REG_RA	16
/* remember_state nesting followed (compilers use one or two levels). */
#define STATE_STACK 8

enum rule {
	RULE_SAME,   /* same value (also the ABI's default for rbp) */
	RULE_UNDEF,  /* undefined */
	RULE_OFFSET, /* saved at CFA + off */
	RULE_OTHER,  /* anything else: no row can follow it */
};

struct reg_rule {
	enum rule kind;
	int64_t off;
};

struct cfa_rule {
	bool expr;    /* an expression: e, len */
	uint64_t reg; /* else reg + off */
	int64_t off;
	const uint8_t *e;
	uint64_t len;
};

struct state {
	struct cfa_rule cfa;
	struct reg_rule ra, rbp;
};

struct walk {
	struct state cur, init, stack[STATE_STACK];
	int depth;
	uint64_t loc, end; /* the next row's address; the FDE's end */
	const struct cfi_cie *cie;
	cfi_row_fn fn;
	void *ctx;
};

/* The linker's PLT rule as a CFA expression: breg7 N; breg16 M; lit15; and; lit10|lit11; ge;
 * lit3; shl; plus. */
static bool plt_rule(const struct cfa_rule *cfa, struct cprof_unwind_row *row)
{
	struct cur c = {.p = cfa->e, .end = cfa->e + cfa->len};
	static const uint8_t tail[] = {DW_OP_and, 0, DW_OP_ge, DW_OP_lit3, DW_OP_shl, DW_OP_plus};
	int64_t n;
	uint8_t lit;

	if (cur_un(&c, 1) != DW_OP_breg7)
		return false;
	n = cur_sleb(&c);
	if (cur_un(&c, 1) != DW_OP_breg16)
		return false;
	cur_sleb(&c);
	if (cur_un(&c, 1) != DW_OP_lit15 || c.bad || c.end - c.p != (long)sizeof(tail))
		return false;
	if (c.p[0] != DW_OP_and || memcmp(c.p + 2, tail + 2, sizeof(tail) - 2))
		return false;
	lit = c.p[1];
	if (lit != DW_OP_lit10 && lit != DW_OP_lit11)
		return false;
	row->kind = CPROF_UNW_PLT;
	row->cfa_off = (int32_t)n;
	row->arg = lit - DW_OP_lit0;
	return true;
}

/* The row of state s (pc not set), as frame_to_row makes it. */
static void state_row(const struct state *s, bool signal, struct cprof_unwind_row *row)
{
	memset(row, 0, sizeof(*row));
	if (signal) {
		row->kind = CPROF_UNW_SIGNAL;
		return;
	}
	if (s->ra.kind == RULE_UNDEF) {
		row->kind = CPROF_UNW_STOP;
		return;
	}
	if (s->ra.kind != RULE_OFFSET || s->ra.off != -8)
		return;
	if (!s->cfa.expr && (s->cfa.reg == REG_RSP || s->cfa.reg == REG_RBP)) {
		if (s->cfa.off < INT32_MIN || s->cfa.off > INT32_MAX)
			return;
		row->kind = s->cfa.reg == REG_RSP ? CPROF_UNW_CFA_RSP : CPROF_UNW_CFA_RBP;
		row->cfa_off = (int32_t)s->cfa.off;
	} else if (!s->cfa.expr || !plt_rule(&s->cfa, row)) {
		return;
	}
	if (s->rbp.kind == RULE_SAME || s->rbp.kind == RULE_UNDEF)
		return;
	if (s->rbp.kind != RULE_OFFSET || s->rbp.off == 0 || s->rbp.off < INT16_MIN ||
	    s->rbp.off > INT16_MAX) {
		memset(row, 0, sizeof(*row));
		return;
	}
	row->rbp_off = (int16_t)s->rbp.off;
}

/* v * f as the two's complement machine computes it (a malformed factor must not be undefined
 * behaviour). */
static int64_t scale(int64_t v, int64_t f)
{
	return (int64_t)((uint64_t)v * (uint64_t)f);
}

/* The rule of register reg in s, or NULL for a register no row depends on. */
static struct reg_rule *reg_of(struct state *s, uint64_t reg)
{
	return reg == REG_RA ? &s->ra : reg == REG_RBP ? &s->rbp : NULL;
}

static void set_rule(struct state *s, uint64_t reg, enum rule kind, int64_t off)
{
	struct reg_rule *r = reg_of(s, reg);

	if (r)
		*r = (struct reg_rule){kind, off};
}

/* DW_CFA_restore: reg's rule back to what the CIE left it (not read in a CIE's own program). */
static int restore_rule(struct walk *w, uint64_t reg, bool in_cie)
{
	struct reg_rule *r = reg_of(&w->cur, reg);

	if (in_cie)
		return -ENOTSUP;
	if (r)
		*r = *reg_of(&w->init, reg);
	return 0;
}

/* Emits the row for [w->loc, to) and moves to to. */
static int advance(struct walk *w, uint64_t to)
{
	struct cprof_unwind_row row;
	int err;

	if (to <= w->loc)
		return to == w->loc ? 0 : -EINVAL;
	if (w->loc >= w->end) { /* a program running past its FDE: those rows are never asked */
		w->loc = to;
		return 0;
	}
	if (w->loc > UINT32_MAX)
		return -E2BIG;
	state_row(&w->cur, w->cie->signal, &row);
	row.pc = (uint32_t)w->loc;
	err = w->fn(w->ctx, &row);
	w->loc = to;
	return err;
}

/* The operations on the CFA rule; -ENOENT for any other opcode. */
static int run_cfa(struct walk *w, struct cur *c, uint8_t op)
{
	struct state *s = &w->cur;
	uint64_t reg, len;
	int64_t off;

	switch (op) {
	case DW_CFA_def_cfa:
		s->cfa = (struct cfa_rule){.reg = cur_uleb(c)};
		s->cfa.off = (int64_t)cur_uleb(c);
		return 0;
	case DW_CFA_def_cfa_sf:
		s->cfa = (struct cfa_rule){.reg = cur_uleb(c)};
		s->cfa.off = scale(cur_sleb(c), w->cie->daf);
		return 0;
	case DW_CFA_def_cfa_register:
		reg = cur_uleb(c);
		if (s->cfa.expr)
			return -ENOTSUP;
		s->cfa.reg = reg;
		return 0;
	case DW_CFA_def_cfa_offset:
		off = (int64_t)cur_uleb(c);
		if (s->cfa.expr)
			return -ENOTSUP;
		s->cfa.off = off;
		return 0;
	case DW_CFA_def_cfa_offset_sf:
		off = scale(cur_sleb(c), w->cie->daf);
		if (s->cfa.expr)
			return -ENOTSUP;
		s->cfa.off = off;
		return 0;
	case DW_CFA_def_cfa_expression:
		len = cur_uleb(c);
		s->cfa = (struct cfa_rule){.expr = true, .e = c->p, .len = len};
		cur_skip(c, len);
		return 0;
	default:
		return -ENOENT;
	}
}

/* The operations on a register's rule; -ENOENT for any other opcode. */
static int run_reg(struct walk *w, struct cur *c, uint8_t op, bool in_cie)
{
	struct state *s = &w->cur;
	uint64_t reg, len;
	int64_t off;

	switch (op) {
	case DW_CFA_offset_extended:
		reg = cur_uleb(c);
		set_rule(s, reg, RULE_OFFSET, scale((int64_t)cur_uleb(c), w->cie->daf));
		return 0;
	case DW_CFA_offset_extended_sf:
		reg = cur_uleb(c);
		set_rule(s, reg, RULE_OFFSET, scale(cur_sleb(c), w->cie->daf));
		return 0;
	case DW_CFA_GNU_negative_offset_extended:
		reg = cur_uleb(c);
		set_rule(s, reg, RULE_OFFSET,
			 (int64_t)(0 - (uint64_t)scale((int64_t)cur_uleb(c), w->cie->daf)));
		return 0;
	case DW_CFA_restore_extended:
		return restore_rule(w, cur_uleb(c), in_cie);
	case DW_CFA_undefined:
		set_rule(s, cur_uleb(c), RULE_UNDEF, 0);
		return 0;
	case DW_CFA_same_value:
		set_rule(s, cur_uleb(c), RULE_SAME, 0);
		return 0;
	case DW_CFA_register:
		reg = cur_uleb(c);
		cur_uleb(c);
		set_rule(s, reg, RULE_OTHER, 0);
		return 0;
	case DW_CFA_expression:
	case DW_CFA_val_expression:
		reg = cur_uleb(c);
		len = cur_uleb(c);
		/* libdw reads "CFA; plus_uconst N" as a save at CFA + N, as DW_CFA_offset. */
		if (op == DW_CFA_expression && len >= 2 && c->end - c->p >= (long)len &&
		    c->p[0] == DW_OP_plus_uconst) {
			struct cur e = {.p = c->p + 1, .end = c->p + len};

			off = (int64_t)cur_uleb(&e);
			if (!e.bad && e.p == e.end) {
				set_rule(s, reg, RULE_OFFSET, off);
				cur_skip(c, len);
				return 0;
			}
		}
		set_rule(s, reg, RULE_OTHER, 0);
		cur_skip(c, len);
		return 0;
	case DW_CFA_val_offset:
	case DW_CFA_val_offset_sf:
		reg = cur_uleb(c);
		if (op == DW_CFA_val_offset)
			cur_uleb(c);
		else
			cur_sleb(c);
		set_rule(s, reg, RULE_OTHER, 0);
		return 0;
	default:
		return -ENOENT;
	}
}

/* The operations whose opcode carries no operand in its low bits. */
static int run_extended(struct walk *w, struct cur *c, uint8_t op, bool in_cie)
{
	struct state *s = &w->cur;
	uint64_t len;
	int err;

	switch (op) {
	case DW_CFA_nop:
		return 0;
	case DW_CFA_set_loc:
		return -ENOTSUP; /* never emitted in .eh_frame by compilers */
	case DW_CFA_advance_loc1:
	case DW_CFA_advance_loc2:
	case DW_CFA_advance_loc4: {
		int size = op == DW_CFA_advance_loc1 ? 1 : op == DW_CFA_advance_loc2 ? 2 : 4;

		len = cur_un(c, size) * w->cie->caf;
		return in_cie ? -ENOTSUP : advance(w, w->loc + len);
	}
	case DW_CFA_remember_state:
		if (w->depth == STATE_STACK)
			return -ENOTSUP;
		w->stack[w->depth++] = *s;
		return 0;
	case DW_CFA_restore_state:
		if (!w->depth)
			return -EINVAL;
		*s = w->stack[--w->depth]; /* every rule, the CFA's too */
		return 0;
	case DW_CFA_GNU_args_size:
		cur_uleb(c);
		return 0;
	default:
		err = run_reg(w, c, op, in_cie);
		if (err == -ENOENT)
			err = run_cfa(w, c, op);
		return err == -ENOENT ? -ENOTSUP : err;
	}
}

static int run(struct walk *w, struct cur *c, uint64_t end, bool in_cie)
{
	int err = 0;

	while (c->p < c->end && !err) {
		uint8_t op = *c->p++;

		switch (op & 0xc0) {
		case DW_CFA_advance_loc:
			err = in_cie ? -ENOTSUP : advance(w, w->loc + (op & 0x3f) * w->cie->caf);
			break;
		case DW_CFA_offset:
			set_rule(&w->cur, op & 0x3f, RULE_OFFSET,
				 scale((int64_t)cur_uleb(c), w->cie->daf));
			break;
		case DW_CFA_restore:
			err = restore_rule(w, op & 0x3f, in_cie);
			break;
		default:
			err = run_extended(w, c, op, in_cie);
		}
		if (c->bad)
			err = -EINVAL;
	}
	if (!err && !in_cie && w->loc < end)
		err = advance(w, end);
	return err;
}

int cfi_rows__fde(const uint8_t *image, size_t size, uint64_t fde, uint64_t fde_vaddr,
		  struct cfi_rows_cie *cache, cfi_row_fn fn, void *ctx, uint64_t *start,
		  uint64_t *end)
{
	struct walk w = {.fn = fn, .ctx = ctx};
	struct cur f, prog;
	uint64_t cie_off, range;
	int err;

	if (cfi_read__fde(image, size, fde, &f, &cie_off))
		return -EINVAL;
	if (cache->off != cie_off || !cache->off) {
		err = cfi_read__cie(image, size, cie_off, &cache->cie);
		if (err)
			return err;
		cache->off = cie_off;
	}
	w.cie = &cache->cie;
	if (w.cie->ra != REG_RA)
		return -ENOTSUP;
	/* The address field's vaddr: the FDE's, plus the 8 bytes of length and CIE pointer. */
	err = cfi_read__ptr(&f, w.cie->ptr_enc, DW_EH_PE_pcrel, fde_vaddr + 8, false, start);
	if (!err)
		err = cfi_read__ptr(&f, w.cie->ptr_enc, DW_EH_PE_pcrel, 0, true, &range);
	if (err)
		return err;
	if (w.cie->z)
		cur_skip(&f, cur_uleb(&f));
	if (f.bad)
		return -EINVAL;
	*end = *start + range;
	/* The ABI's rules before the CIE's (libdw's x86-64 defaults): the return address at
	 * CFA - 8, rbp unchanged, the CFA at rsp + 8. */
	w.cur = (struct state){
		.cfa = {.reg = REG_RSP, .off = 8}, .ra = {RULE_OFFSET, -8}, .rbp = {RULE_SAME, 0}};
	prog = w.cie->program;
	err = run(&w, &prog, 0, true);
	if (err)
		return err;
	w.init = w.cur;
	w.loc = *start;
	w.end = *end;
	return run(&w, &f, *end, false);
}
