#include <errno.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sym/dwarf.h"
#include "util/elf_head.h"
#include "sym/gopclntab.h"
#include "sym/module.h"
#include "sym/names.h"

/* Build-ids are 20 bytes (SHA-1) in practice; longer ones are truncated to this. */
#define BUILD_ID_MAX 64
/* How many preceding symbols a lookup checks when the nearest one ends before the address
 * (a small symbol nested in a larger function, e.g. an assembly label typed as a function). */
#define LOOKUP_BACKSCAN 4

struct sym_load {
	uint64_t offset, filesz, memsz, vaddr;
};

struct sym_symbol {
	uint64_t addr;
	uint64_t end; /* holds st_size until sym_module__finish_symbols() */
	const char *name;
	int rank; /* binding preference when addresses tie: lower wins */
};

struct sym_module {
	Elf *elf;
	int fd;	     /* -1 for an image in memory */
	void *image; /* the image in memory, or NULL */
	char build_id[2 * BUILD_ID_MAX + 1];
	struct sym_load *loads;
	size_t nloads;
	bool has_symtab;
	bool loaded; /* the symbol table was read, or could not be and will not be retried */
	struct sym_symbol *syms; /* sorted by addr, one per address */
	size_t nsyms;
	size_t go_cap;		 /* capacity of syms while .gopclntab is read */
	char *strtabs[2];	 /* copies of the string tables of .symtab and .dynsym */
	char *path;		 /* for .gnu_debuglink lookups; NULL for an image in memory */
	char *debug_dir;	 /* debug root, NULL for the default */
	struct sym_dwarf *dwarf; /* opened on first use; NULL before or when unavailable */
	bool dwarf_tried;
	bool dwarf_absent; /* the file has no DWARF anywhere: its reader was closed for good */
	bool dwarf_seen;   /* the file has DWARF (its reader may be closed now) */
};

/* The build-id among the notes of data (a PT_NOTE segment or SHT_NOTE section, aligned to
 * align), if any, into m. */
static void sym_module__note_build_id(struct sym_module *m, Elf_Data *data, size_t align)
{
	if (data && data->d_buf)
		elf_head__notes_build_id(data->d_buf, data->d_size, align, m->build_id,
					 sizeof(m->build_id));
}

static int sym_module__read_phdrs(struct sym_module *m)
{
	Elf_Data *data;
	GElf_Phdr ph;
	size_t phnum, i;

	if (elf_getphdrnum(m->elf, &phnum))
		return -ENOEXEC;
	m->loads = calloc(phnum ? phnum : 1, sizeof(*m->loads));
	if (!m->loads)
		return -ENOMEM;
	for (i = 0; i < phnum; i++) {
		if (!gelf_getphdr(m->elf, i, &ph))
			continue;
		if (ph.p_type == PT_LOAD) {
			m->loads[m->nloads].offset = ph.p_offset;
			m->loads[m->nloads].filesz = ph.p_filesz;
			m->loads[m->nloads].memsz = ph.p_memsz;
			m->loads[m->nloads].vaddr = ph.p_vaddr;
			m->nloads++;
		} else if (ph.p_type == PT_NOTE && !m->build_id[0]) {
			data = elf_getdata_rawchunk(m->elf, ph.p_offset, ph.p_filesz,
						    ph.p_align == 8 ? ELF_T_NHDR8 : ELF_T_NHDR);
			sym_module__note_build_id(m, data, ph.p_align);
		}
	}
	return 0;
}

static void sym_module__scan_sections(struct sym_module *m)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;

	while ((scn = elf_nextscn(m->elf, scn))) {
		if (!gelf_getshdr(scn, &sh))
			continue;
		if ((sh.sh_type == SHT_SYMTAB || sh.sh_type == SHT_DYNSYM) && sh.sh_size)
			m->has_symtab = true;
		/* Files without PT_NOTE (rare) may still carry the note in a section. */
		if (sh.sh_type == SHT_NOTE && !m->build_id[0])
			sym_module__note_build_id(m, elf_getdata(scn, NULL), sh.sh_addralign);
	}
}

static int sym_module__init(struct sym_module *m, struct sym_module **out)
{
	int err;

	if (!m->elf || elf_kind(m->elf) != ELF_K_ELF) {
		err = -ENOEXEC;
		goto cleanup;
	}
	err = sym_module__read_phdrs(m);
	if (err)
		goto cleanup;
	sym_module__scan_sections(m);
	*out = m;
	return 0;
cleanup:
	sym_module__free(m);
	return err;
}

int sym_module__open_fd(int fd, const char *path, const char *debug_dir, struct sym_module **out)
{
	struct sym_module *m;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m) {
		close(fd);
		return -ENOMEM;
	}
	m->fd = fd;
	m->path = strdup(path ? path : "");
	m->debug_dir = debug_dir ? strdup(debug_dir) : NULL;
	if (!m->path || (debug_dir && !m->debug_dir)) {
		sym_module__free(m);
		return -ENOMEM;
	}
	elf_version(EV_CURRENT);
	m->elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	return sym_module__init(m, out);
}

int sym_module__open_mem(void *image, size_t size, struct sym_module **out)
{
	struct sym_module *m;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m) {
		free(image);
		return -ENOMEM;
	}
	m->fd = -1;
	m->image = image;
	elf_version(EV_CURRENT);
	m->elf = elf_memory(image, size);
	return sym_module__init(m, out);
}

void sym_module__free(struct sym_module *m)
{
	if (!m)
		return;
	sym_dwarf__free(m->dwarf);
	if (m->elf)
		elf_end(m->elf);
	if (m->fd >= 0)
		close(m->fd);
	free(m->image);
	free(m->loads);
	free(m->syms);
	free(m->strtabs[0]);
	free(m->strtabs[1]);
	free(m->path);
	free(m->debug_dir);
	free(m);
}

const char *sym_module__build_id(const struct sym_module *m)
{
	return m->build_id;
}

bool sym_module__has_symtab(const struct sym_module *m)
{
	return m->has_symtab;
}

size_t sym_module__nsyms(const struct sym_module *m)
{
	return m->nsyms;
}

int sym_module__offset_to_vaddr(const struct sym_module *m, uint64_t off, uint64_t *vaddr)
{
	const struct sym_load *l;
	size_t i;

	for (i = 0; i < m->nloads; i++) {
		l = &m->loads[i];
		if (off >= l->offset && off - l->offset < (l->filesz ? l->filesz : l->memsz)) {
			*vaddr = off - l->offset + l->vaddr;
			return 0;
		}
	}
	return -ENOENT;
}

static int sym_symbol__cmp(const void *pa, const void *pb)
{
	const struct sym_symbol *a = pa, *b = pb;

	if (a->addr != b->addr)
		return a->addr < b->addr ? -1 : 1;
	if (a->rank != b->rank)
		return a->rank < b->rank ? -1 : 1;
	return sym_name__cmp(a->name, b->name);
}

static int sym_symbol__rank(unsigned char bind)
{
	switch (bind) {
	case STB_GLOBAL:
		return 0;
	case STB_WEAK:
		return 1;
	default:
		return 2;
	}
}

/* Appends the function symbols of one symbol table section to m->syms. */
static int sym_module__read_symtab(struct sym_module *m, Elf_Scn *scn, const GElf_Shdr *sh,
				   int slot, size_t *cap)
{
	Elf_Data *data, *strd;
	Elf_Scn *strscn;
	struct sym_symbol *tmp, *s;
	size_t count, i;
	GElf_Sym sym;
	int type;

	data = elf_getdata(scn, NULL);
	strscn = elf_getscn(m->elf, sh->sh_link);
	strd = strscn ? elf_getdata(strscn, NULL) : NULL;
	if (!data || !strd || !strd->d_buf || !strd->d_size || !sh->sh_entsize || m->strtabs[slot])
		return 0;
	m->strtabs[slot] = malloc(strd->d_size + 1);
	if (!m->strtabs[slot])
		return -ENOMEM;
	memcpy(m->strtabs[slot], strd->d_buf, strd->d_size);
	m->strtabs[slot][strd->d_size] = '\0';

	count = sh->sh_size / sh->sh_entsize;
	if (m->nsyms + count > *cap) {
		tmp = realloc(m->syms, (m->nsyms + count) * sizeof(*tmp));
		if (!tmp)
			return -ENOMEM;
		m->syms = tmp;
		*cap = m->nsyms + count;
	}
	for (i = 0; i < count; i++) {
		if (!gelf_getsym(data, i, &sym))
			continue;
		type = GELF_ST_TYPE(sym.st_info);
		if (type != STT_FUNC && type != STT_GNU_IFUNC)
			continue;
		if (sym.st_shndx == SHN_UNDEF || !sym.st_value || !sym.st_name ||
		    sym.st_name >= strd->d_size)
			continue;
		s = &m->syms[m->nsyms++];
		s->addr = sym.st_value;
		s->end = sym.st_size;
		s->name = m->strtabs[slot] + sym.st_name;
		s->rank = sym_symbol__rank(GELF_ST_BIND(sym.st_info));
	}
	return 0;
}

/* The end of the PT_LOAD holding vaddr: where a last, sizeless symbol is taken to stop. */
static uint64_t sym_module__load_end(const struct sym_module *m, uint64_t vaddr)
{
	const struct sym_load *l;
	size_t i;

	for (i = 0; i < m->nloads; i++) {
		l = &m->loads[i];
		if (vaddr >= l->vaddr && vaddr - l->vaddr < l->memsz)
			return l->vaddr + l->memsz;
	}
	return vaddr + 1;
}

/* Sorts, keeps one symbol per address (global over weak over local, then sym_name__cmp) and
 * turns sizes into ends. */
static void sym_module__finish_symbols(struct sym_module *m)
{
	struct sym_symbol *s = m->syms;
	size_t i, n = 0;

	if (!m->nsyms)
		return;
	qsort(s, m->nsyms, sizeof(*s), sym_symbol__cmp);
	for (i = 0; i < m->nsyms; i++) {
		if (n && s[n - 1].addr == s[i].addr) {
			if (s[i].end > s[n - 1].end)
				s[n - 1].end = s[i].end;
			continue;
		}
		s[n++] = s[i];
	}
	m->nsyms = n;
	for (i = 0; i < n; i++) {
		if (s[i].end)
			s[i].end += s[i].addr;
		else if (i + 1 < n)
			s[i].end = s[i + 1].addr;
		else
			s[i].end = sym_module__load_end(m, s[i].addr);
	}
}

static int sym_module__add_go(void *ctx, uint64_t addr, uint64_t end, const char *name)
{
	struct sym_module *m = ctx;
	struct sym_symbol *tmp;

	if (m->nsyms == m->go_cap) {
		m->go_cap = m->go_cap ? m->go_cap * 2 : 1024;
		tmp = realloc(m->syms, m->go_cap * sizeof(*tmp));
		if (!tmp)
			return -ENOMEM;
		m->syms = tmp;
	}
	m->syms[m->nsyms].addr = addr;
	m->syms[m->nsyms].end = end - addr;
	m->syms[m->nsyms].name = name;
	m->syms[m->nsyms].rank = 0;
	m->nsyms++;
	return 0;
}

/* A Go executable without .symtab (-ldflags=-s) still has .gopclntab. Names point into the
 * section's data, which lives as long as the Elf handle. */
static int sym_module__read_gopclntab(struct sym_module *m)
{
	Elf_Scn *scn = NULL, *pcln = NULL;
	uint64_t text = 0;
	const char *name;
	Elf_Data *data;
	size_t shstrndx, len;
	GElf_Shdr sh;
	int err;

	if (elf_getshdrstrndx(m->elf, &shstrndx))
		return 0;
	while ((scn = elf_nextscn(m->elf, scn))) {
		if (!gelf_getshdr(scn, &sh))
			continue;
		name = elf_strptr(m->elf, shstrndx, sh.sh_name);
		if (!name)
			continue;
		/* ".data.rel.ro.gopclntab" in PIE builds. */
		len = strlen(name);
		if (len >= 10 && !strcmp(name + len - 10, ".gopclntab") &&
		    sh.sh_type == SHT_PROGBITS)
			pcln = scn;
		else if (!strcmp(name, ".text"))
			text = sh.sh_addr;
	}
	data = pcln ? elf_getdata(pcln, NULL) : NULL;
	if (!data || !data->d_buf)
		return 0;
	m->go_cap = m->nsyms;
	err = gopclntab__read(data->d_buf, data->d_size, text, sym_module__add_go, m);
	return err == -ENOEXEC ? 0 : err;
}

static int sym_module__load_symbols(struct sym_module *m)
{
	Elf_Scn *scn = NULL;
	bool symtab = false;
	size_t cap = 0;
	GElf_Shdr sh;
	int err;

	while ((scn = elf_nextscn(m->elf, scn))) {
		if (!gelf_getshdr(scn, &sh))
			continue;
		if (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM)
			continue;
		symtab |= sh.sh_type == SHT_SYMTAB;
		err = sym_module__read_symtab(m, scn, &sh, sh.sh_type == SHT_SYMTAB ? 0 : 1, &cap);
		if (err)
			return err;
	}
	if (!symtab) {
		err = sym_module__read_gopclntab(m);
		if (err)
			return err;
	}
	sym_module__finish_symbols(m);
	return 0;
}

int sym_module__lookup(struct sym_module *m, uint64_t vaddr, const char **name)
{
	int err = sym_module__lookup_own(m, vaddr, name);

	/* A stripped file's .symtab may live in its separate debug file. (libdwfl scans its
	 * table for each lookup: only when the file's own tables know nothing.) */
	if (err == -ENOENT && sym_module__dwarf(m)) {
		*name = sym_dwarf__symbol(m->dwarf, vaddr);
		err = *name ? 0 : -ENOENT;
	}
	return err;
}

int sym_module__lookup_own(struct sym_module *m, uint64_t vaddr, const char **name)
{
	size_t lo = 0, hi, mid, i;
	int err;

	*name = NULL;
	if (!m->loaded) {
		err = sym_module__load_symbols(m);
		if (err) {
			/* Drop the partial table; an allocation failure may pass, so retry later. */
			free(m->syms);
			free(m->strtabs[0]);
			free(m->strtabs[1]);
			m->syms = NULL;
			m->strtabs[0] = m->strtabs[1] = NULL;
			m->nsyms = 0;
			return err;
		}
		m->loaded = true;
	}
	hi = m->nsyms;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (m->syms[mid].addr <= vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (i = lo; i > 0 && lo - i < LOOKUP_BACKSCAN; i--) {
		if (vaddr < m->syms[i - 1].end) {
			*name = m->syms[i - 1].name;
			return 0;
		}
	}
	return -ENOENT;
}

struct sym_dwarf *sym_module__dwarf(struct sym_module *m)
{
	int err;

	if (m->dwarf_tried || m->dwarf_absent)
		return m->dwarf;
	m->dwarf_tried = true;
	/* An image in memory (the vDSO) has no file to hand libdwfl, and no DWARF. */
	if (m->fd < 0)
		return NULL;
	err = sym_dwarf__open(m->fd, m->path, m->debug_dir, &m->dwarf);
	if (err == -ENOMEM)
		m->dwarf_tried = false;
	return m->dwarf;
}

/* Opens the DWARF reader if it is not open, and says whether there is DWARF to read. */
static bool sym_module__load_dwarf(struct sym_module *m)
{
	const char *name;

	if (!sym_module__dwarf(m))
		return false;
	if (sym_dwarf__present(m->dwarf)) {
		m->dwarf_seen = true;
		return true;
	}
	/* No DWARF, now or later. The reader is closed (and never reopened) unless the file's
	 * own tables name nothing: then libdwfl's symbol lookup (a debug file's .symtab, or the
	 * .dynsym PT_DYNAMIC leads to) is all there is, and it is kept for that. */
	m->dwarf_absent = true;
	if (!m->loaded)
		sym_module__lookup_own(m, 0, &name);
	if (m->nsyms) {
		sym_dwarf__free(m->dwarf);
		m->dwarf = NULL;
	}
	return false;
}

bool sym_module__has_dwarf(struct sym_module *m)
{
	/* Known once found: a reader closed to save memory is not reopened just to ask. */
	if (m->dwarf_seen)
		return true;
	return !m->dwarf_absent && sym_module__load_dwarf(m);
}

bool sym_module__dwarf_absent(const struct sym_module *m)
{
	return m->dwarf_absent;
}

int sym_module__frames(struct sym_module *m, uint64_t vaddr, struct sym_dwarf_frame *frames,
		       int max)
{
	if (m->dwarf_absent || !sym_module__load_dwarf(m))
		return 0;
	return sym_dwarf__frames(m->dwarf, vaddr, frames, max);
}

void sym_module__drop_dwarf(struct sym_module *m)
{
	sym_dwarf__free(m->dwarf);
	m->dwarf = NULL;
	m->dwarf_tried = false;
}
