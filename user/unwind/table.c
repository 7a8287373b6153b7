/* Rows are read FDE by FDE, in the order of .eh_frame_hdr's sorted table, each in one pass
 * over its CFA program (unwind/cfi_rows.c). Where that reader meets a form it does not read,
 * the file's rows come from libdw instead, which has no row iterator: rows are enumerated by
 * asking for the frame at an address (dwarf_cfi_addrframe), taking the end of the range it
 * covers (dwarf_frame_info) and asking again there, FDE after FDE. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <dwarf.h>
#include <gelf.h>
#include <elfutils/libdw.h>

#include "unwind/cfi_check.h"
#include "unwind/cfi_read.h"
#include "unwind/cfi_rows.h"
#include "unwind/table.h"
#include "util/elf_head.h"

#define REG_RBP 6
#define REG_RSP 7
#define REG_RA	16

struct rows {
	struct cprof_unwind_row *v;
	size_t n, cap;
};

static int rows__push(struct rows *r, const struct cprof_unwind_row *row)
{
	struct cprof_unwind_row *v;

	if (r->n) {
		struct cprof_unwind_row *last = &r->v[r->n - 1];

		if (last->pc == row->pc) { /* a zero-length range: the later rule wins */
			*last = *row;
			return 0;
		}
		if (last->kind == row->kind && last->cfa_off == row->cfa_off &&
		    last->rbp_off == row->rbp_off && last->arg == row->arg)
			return 0;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 1024;

		if (cap > CPROF_UNWIND_MAX_ROWS)
			return -E2BIG;
		v = realloc(r->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n++] = *row;
	return 0;
}

static bool is_cfa_plus(const Dwarf_Op *ops, size_t nops, int64_t *off)
{
	if (nops != 2 || ops[0].atom != DW_OP_call_frame_cfa || ops[1].atom != DW_OP_plus_uconst)
		return false;
	*off = (int64_t)ops[1].number; /* two's complement: negative offsets come back huge */
	return true;
}

/* The linker's PLT rule: rsp + N + (((rip & 15) >= 11) << 3) (10 in older variants). */
static bool is_plt(const Dwarf_Op *ops, size_t nops, struct cprof_unwind_row *row)
{
	if (nops != 9 || ops[0].atom != DW_OP_breg7 || ops[1].atom != DW_OP_breg16 ||
	    ops[2].atom != DW_OP_lit15 || ops[3].atom != DW_OP_and ||
	    (ops[4].atom != DW_OP_lit10 && ops[4].atom != DW_OP_lit11) || ops[5].atom != DW_OP_ge ||
	    ops[6].atom != DW_OP_lit3 || ops[7].atom != DW_OP_shl || ops[8].atom != DW_OP_plus)
		return false;
	row->kind = CPROF_UNW_PLT;
	row->cfa_off = (int32_t)ops[0].number;
	row->arg = ops[4].atom - DW_OP_lit0;
	return true;
}

/* The rule of one libdw frame as a row (pc not set). */
static void frame_to_row(Dwarf_Frame *f, bool signal, struct cprof_unwind_row *row)
{
	Dwarf_Op mem[3], *ops;
	size_t nops;
	int64_t off;

	memset(row, 0, sizeof(*row));
	if (signal) {
		row->kind = CPROF_UNW_SIGNAL;
		return;
	}
	if (dwarf_frame_register(f, REG_RA, mem, &ops, &nops))
		return;
	if (nops == 0 && ops == mem) { /* undefined: the outermost frame */
		row->kind = CPROF_UNW_STOP;
		return;
	}
	if (!is_cfa_plus(ops, nops, &off) || off != -8)
		return;
	if (dwarf_frame_cfa(f, &ops, &nops))
		return;
	if (nops == 1 && ops[0].atom == DW_OP_bregx &&
	    (ops[0].number == REG_RSP || ops[0].number == REG_RBP)) {
		off = (int64_t)ops[0].number2;
		if (off < INT32_MIN || off > INT32_MAX)
			return;
		row->kind = ops[0].number == REG_RSP ? CPROF_UNW_CFA_RSP : CPROF_UNW_CFA_RBP;
		row->cfa_off = (int32_t)off;
	} else if (!is_plt(ops, nops, row)) {
		return;
	}
	if (dwarf_frame_register(f, REG_RBP, mem, &ops, &nops)) {
		row->kind = CPROF_UNW_INVALID;
		return;
	}
	if (ops == NULL || nops == 0) /* same value, or undefined: rbp is left as it is */
		return;
	if (!is_cfa_plus(ops, nops, &off) || off == 0 || off < INT16_MIN || off > INT16_MAX) {
		row->kind = CPROF_UNW_INVALID;
		row->cfa_off = 0;
		row->arg = 0;
		return;
	}
	row->rbp_off = (int16_t)off;
}

static int elf_build_id(Elf *elf, char *buf, size_t len);

/* An entry of .eh_frame_hdr's table: an FDE's first address and the FDE's own address. */
struct fde_ent {
	uint64_t start, fde;
};

static int fde_ent__cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct fde_ent *)a)->start, y = ((const struct fde_ent *)b)->start;

	return x < y ? -1 : x > y;
}

/* The file offset of vaddr through the PT_LOAD segments read_loads kept (those a mapping of
 * the file can name: unwinder.c); -1 if none maps it. */
static int64_t load_offset(const struct unwind_table *t, uint64_t vaddr)
{
	for (int i = 0; i < t->nloads; i++)
		if (vaddr >= t->loads[i].vaddr && vaddr - t->loads[i].vaddr < t->loads[i].filesz &&
		    t->loads[i].offset + (vaddr - t->loads[i].vaddr) < INT64_MAX)
			return (int64_t)(t->loads[i].offset + (vaddr - t->loads[i].vaddr));
	return -1;
}

static int check_fde(Elf *elf, const struct unwind_table *t, uint64_t vaddr,
		     struct cfi_check_cie *cie)
{
	int64_t off = load_offset(t, vaddr);
	size_t size;
	const char *raw = elf_rawfile(elf, &size);

	if (off < 0 || !raw)
		return -EINVAL;
	return cfi_check__fde((const uint8_t *)raw, size, (uint64_t)off, cie);
}

/* libdw prefers the .eh_frame_hdr and .eh_frame sections to the segments: they must be where
 * the segments checked above say, or libdw would read something else than was checked. */
static int check_sections(Elf *elf, const struct unwind_table *t, const GElf_Phdr *eh_frame_hdr)
{
	bool hdr = false, frame = false;
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	const char *name;
	size_t shstrndx;

	if (elf_getshdrstrndx(elf, &shstrndx))
		return 0; /* no sections: libdw uses PT_GNU_EH_FRAME too */
	while ((scn = elf_nextscn(elf, scn))) {
		if (!gelf_getshdr(scn, &sh) || !(name = elf_strptr(elf, shstrndx, sh.sh_name)))
			continue;
		if (strcmp(name, ".eh_frame_hdr") == 0) {
			if (sh.sh_offset != eh_frame_hdr->p_offset ||
			    sh.sh_addr != eh_frame_hdr->p_vaddr)
				return -EINVAL;
			hdr = true;
		}
		if (strcmp(name, ".eh_frame") == 0) {
			if (sh.sh_type != SHT_NOBITS &&
			    load_offset(t, sh.sh_addr) != (int64_t)sh.sh_offset)
				return -EINVAL;
			frame = true;
		}
	}
	/* An .eh_frame without its search table: libdw would scan every record, unchecked. */
	return frame && !hdr ? -EINVAL : 0;
}

/* The FDEs of .eh_frame_hdr's table (PT_GNU_EH_FRAME), sorted by first address; with check,
 * each checked as libdw needs it (cfi_check.h). */
static int fde_table(Elf *elf, const struct unwind_table *t, struct fde_ent **out, size_t *n,
		     bool check)
{
	struct cfi_check_cie cie = {};
	const uint8_t *p;
	struct cur c;
	uint64_t count, ign;
	struct fde_ent *v;
	Elf_Data *d = NULL;
	GElf_Phdr ph;
	size_t nph;
	uint64_t hdr_vaddr = 0;
	int err;

	if (elf_getphdrnum(elf, &nph))
		return -ENOEXEC;
	for (size_t i = 0; i < nph && !d; i++) {
		if (gelf_getphdr(elf, i, &ph) && ph.p_type == PT_GNU_EH_FRAME) {
			d = elf_getdata_rawchunk(elf, ph.p_offset, ph.p_filesz, ELF_T_BYTE);
			hdr_vaddr = ph.p_vaddr;
		}
	}
	if (!d || d->d_size < 4)
		return -ENOENT;
	p = d->d_buf;
	c = (struct cur){p + 4, p + d->d_size, false};
	if (p[0] != 1 || p[3] != (DW_EH_PE_datarel | DW_EH_PE_sdata4))
		return -ENOTSUP;
	/* eh_frame_ptr is pc-relative: its value is not needed, only its size. */
	err = cfi_read__ptr(&c, p[1], DW_EH_PE_pcrel, 0, true, &ign);
	if (!err)
		err = cfi_read__ptr(&c, p[2], DW_EH_PE_datarel, hdr_vaddr, false, &count);
	if (err)
		return err;
	if (count > (uint64_t)(c.end - c.p) / 8)
		return -EINVAL;
	v = malloc((count ? count : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint64_t i = 0; i < count && !err; i++) {
		cfi_read__ptr(&c, p[3], DW_EH_PE_datarel, hdr_vaddr, false, &v[i].start);
		cfi_read__ptr(&c, p[3], DW_EH_PE_datarel, hdr_vaddr, false, &v[i].fde);
		/* libdw reads this FDE for lookups in its range: check it first (cfi_check.h). */
		if (check)
			err = check_fde(elf, t, v[i].fde, &cie);
	}
	if (!err && check)
		err = check_sections(elf, t, &ph);
	if (err) {
		free(v);
		return err;
	}
	qsort(v, count, sizeof(*v), fde_ent__cmp);
	*out = v;
	*n = count;
	return 0;
}

/* The PT_LOAD segments, and the size of the executable ones. */
static void read_loads(Elf *elf, struct unwind_table *t)
{
	GElf_Phdr ph;
	size_t nph;

	if (elf_getphdrnum(elf, &nph))
		return;
	for (size_t i = 0; i < nph; i++) {
		if (!gelf_getphdr(elf, i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (ph.p_flags & PF_X)
			t->text_bytes += ph.p_filesz;
		if (t->nloads < UNWIND_TABLE_MAX_LOADS) {
			t->loads[t->nloads].offset = ph.p_offset;
			t->loads[t->nloads].vaddr = ph.p_vaddr;
			t->loads[t->nloads].filesz = ph.p_filesz;
			t->nloads++;
		}
	}
}

/* Appends the rows of the FDE at start, and of any FDE right after it, to r. Returns the end
 * of the covered range in *end. */
static int walk_from(Dwarf_CFI *cfi, uint64_t start, struct rows *r, struct unwind_table *t,
		     uint64_t *end)
{
	struct cprof_unwind_row row;
	uint64_t addr = start;
	Dwarf_Addr s, e;
	Dwarf_Frame *f;
	bool signal;
	int err = 0;

	while (dwarf_cfi_addrframe(cfi, addr, &f) == 0) {
		if (dwarf_frame_info(f, &s, &e, &signal) < 0 || e <= addr) {
			free(f);
			break;
		}
		frame_to_row(f, signal, &row);
		free(f);
		if (e > UINT32_MAX)
			return -E2BIG;
		row.pc = (uint32_t)addr;
		t->kinds[row.kind]++;
		err = rows__push(r, &row);
		if (err)
			return err;
		addr = e;
	}
	*end = addr;
	return 0;
}

/* The rows of fdes through libdw (see the top of this file). */
static int rows_libdw(Elf *elf, const struct fde_ent *fdes, size_t n, struct rows *r,
		      struct unwind_table *t)
{
	struct cprof_unwind_row gap = {.kind = CPROF_UNW_INVALID};
	Dwarf_CFI *cfi = dwarf_getcfi_elf(elf);
	uint64_t covered = 0;
	int err = 0;

	if (!cfi)
		return -ENOENT;
	for (size_t i = 0; i < n && !err; i++) {
		if (fdes[i].start < covered)
			continue; /* walked already, as the continuation of an earlier FDE */
		if (fdes[i].start > UINT32_MAX) {
			err = -E2BIG;
			break;
		}
		err = walk_from(cfi, fdes[i].start, r, t, &covered);
		if (!err && covered > fdes[i].start) {
			gap.pc = (uint32_t)covered;
			err = rows__push(r, &gap);
		}
	}
	dwarf_cfi_end(cfi);
	return err;
}

struct own_ctx {
	struct rows *r;
	struct unwind_table *t;
};

static int own_row(void *ctx, const struct cprof_unwind_row *row)
{
	struct own_ctx *o = ctx;

	o->t->kinds[row->kind]++;
	return rows__push(o->r, row);
}

/* The rows of fdes read by unwind/cfi_rows.c, as rows_libdw gives them: an FDE that starts
 * where the one before ended continues it, an INVALID row after the end of each run of them.
 * -ENOTSUP: a form it does not read. */
static int rows_own(Elf *elf, struct unwind_table *t, const struct fde_ent *fdes, size_t n,
		    struct rows *r)
{
	struct cprof_unwind_row gap = {.kind = CPROF_UNW_INVALID};
	struct cfi_rows_cie cache = {};
	struct own_ctx ctx = {r, t};
	uint64_t covered = 0, run_start = 0, start, end;
	const uint8_t *raw;
	size_t size, i;
	int64_t off;
	int err = 0;

	raw = (const uint8_t *)elf_rawfile(elf, &size);
	if (!raw)
		return -ENOTSUP;
	for (i = 0; i < n && !err; i++) {
		if (fdes[i].start < covered)
			continue;
		if (fdes[i].start > covered && covered > run_start) {
			gap.pc = (uint32_t)covered;
			err = rows__push(r, &gap);
		}
		if (fdes[i].start != covered)
			run_start = fdes[i].start;
		if (fdes[i].start > UINT32_MAX)
			err = -E2BIG;
		off = load_offset(t, fdes[i].fde);
		if (!err && off < 0)
			err = -ENOTSUP;
		if (!err)
			err = cfi_rows__fde(raw, size, (uint64_t)off, fdes[i].fde, &cache, own_row,
					    &ctx, &start, &end);
		if (!err && start != fdes[i].start)
			err = -ENOTSUP; /* the table and the FDE disagree: libdw's reading counts */
		if (!err && end > UINT32_MAX)
			err = -E2BIG;
		if (!err)
			covered = end > start ? end : start;
	}
	if (!err && covered > run_start) {
		gap.pc = (uint32_t)covered;
		err = rows__push(r, &gap);
	}
	return err;
}

static int build_elf(Elf *elf, struct unwind_table *t, bool libdw)
{
	struct fde_ent *fdes = NULL;
	struct rows r = {};
	size_t nfdes = 0;
	int err;

	memset(t, 0, sizeof(*t));
	if (!elf || elf_kind(elf) != ELF_K_ELF)
		return -ENOEXEC;
	read_loads(elf, t);
	elf_build_id(elf, t->build_id, sizeof(t->build_id));
	/* Our reader bounds every read by itself; libdw's route needs the FDEs checked. */
	err = fde_table(elf, t, &fdes, &nfdes, libdw);
	if (!err && !nfdes)
		err = -ENOENT;
	if (!err)
		err = libdw ? -ENOTSUP : rows_own(elf, t, fdes, nfdes, &r);
	if (err == -ENOTSUP) {
		free(r.v);
		r = (struct rows){};
		memset(t->kinds, 0, sizeof(t->kinds));
		free(fdes);
		fdes = NULL;
		err = fde_table(elf, t, &fdes, &nfdes, true);
		if (!err)
			err = rows_libdw(elf, fdes, nfdes, &r, t);
	}
	if (!err && !r.n)
		err = -ENOENT;
	if (err)
		goto cleanup;
	t->rows = r.v;
	t->n = r.n;
	r.v = NULL;
cleanup:
	free(r.v);
	free(fdes);
	return err;
}

static int build_fd(int fd, struct unwind_table *t, bool libdw)
{
	Elf *elf;
	int err;

	elf_version(EV_CURRENT);
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	err = build_elf(elf, t, libdw);
	if (elf)
		elf_end(elf);
	return err;
}

int unwind_table__build(int fd, struct unwind_table *t)
{
	return build_fd(fd, t, false);
}

int unwind_table__build_libdw(int fd, struct unwind_table *t)
{
	return build_fd(fd, t, true);
}

int unwind_table__build_mem(void *image, size_t size, struct unwind_table *t)
{
	Elf *elf;
	int err;

	elf_version(EV_CURRENT);
	elf = elf_memory(image, size);
	err = build_elf(elf, t, false);
	if (elf)
		elf_end(elf);
	return err;
}

static int elf_build_id(Elf *elf, char *buf, size_t len)
{
	GElf_Phdr ph;
	size_t nph;
	Elf_Data *d;
	int err = -ENOENT;

	if (len)
		buf[0] = '\0';
	if (elf_getphdrnum(elf, &nph))
		nph = 0;
	for (size_t i = 0; i < nph && err == -ENOENT; i++) {
		if (!gelf_getphdr(elf, i, &ph) || ph.p_type != PT_NOTE)
			continue;
		d = elf_getdata_rawchunk(elf, ph.p_offset, ph.p_filesz, ELF_T_BYTE);
		if (d)
			err = elf_head__notes_build_id(d->d_buf, d->d_size, ph.p_align, buf, len);
	}
	return err;
}

int unwind_table__build_id(int fd, char *buf, size_t len)
{
	Elf *elf;
	int err;

	err = elf_head__build_id(fd, buf, len);
	if (err != -ENOEXEC)
		return err;
	elf_version(EV_CURRENT);
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf)
		return -ENOEXEC;
	err = elf_build_id(elf, buf, len);
	elf_end(elf);
	return err;
}

void unwind_table__free(struct unwind_table *t)
{
	free(t->rows);
	t->rows = NULL;
	t->n = 0;
}

const struct cprof_unwind_row *unwind_table__find(const struct unwind_table *t, uint64_t vaddr)
{
	size_t lo = 0, hi = t->n;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->rows[mid].pc <= vaddr)
			lo = mid;
		else
			hi = mid;
	}
	if (!t->n || t->rows[lo].pc > vaddr)
		return NULL;
	return &t->rows[lo];
}

int unwind_table__main(int argc, char **argv)
{
	static const char *const kinds[] = {"invalid", "cfa_rsp", "cfa_rbp",
					    "plt",     "signal",  "stop"};
	struct unwind_table t;
	int fd, err;

	if (argc != 2) {
		fprintf(stderr, "cprof-bpf: usage: cprof-bpf unwind-table FILE\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "cprof-bpf: cannot open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	err = unwind_table__build(fd, &t);
	close(fd);
	if (err) {
		fprintf(stderr, "cprof-bpf: no unwind table for %s: %s\n", argv[1], strerror(-err));
		return 1;
	}
	for (size_t i = 0; i < t.n; i++)
		printf("%x %s %d %d %u\n", t.rows[i].pc, kinds[t.rows[i].kind], t.rows[i].cfa_off,
		       t.rows[i].rbp_off, t.rows[i].arg);
	fprintf(stderr, "rows %zu bytes %zu text %llu\n", t.n, t.n * sizeof(*t.rows),
		(unsigned long long)t.text_bytes);
	unwind_table__free(&t);
	return 0;
}
