#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sym/funcs.h"

/* File offset of a link-time address, through the PT_LOAD that holds it. */
static int vaddr_to_offset(Elf *elf, uint64_t vaddr, uint64_t *off)
{
	size_t phnum, i;
	GElf_Phdr ph;

	if (elf_getphdrnum(elf, &phnum))
		return -ENOEXEC;
	for (i = 0; i < phnum; i++) {
		if (!gelf_getphdr(elf, i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_filesz) {
			*off = vaddr - ph.p_vaddr + ph.p_offset;
			return 0;
		}
	}
	return -ENOENT;
}

static int name_index(const char *name, const char *const *names, size_t n)
{
	size_t len = strcspn(name, "@");

	for (size_t i = 0; i < n; i++)
		if (strncmp(name, names[i], len) == 0 && names[i][len] == '\0')
			return (int)i;
	return -1;
}

static int scan_symbols(Elf *elf, Elf_Scn *scn, const GElf_Shdr *sh, const char *const *names,
			size_t n, uint64_t *offsets)
{
	Elf_Data *data = elf_getdata(scn, NULL);
	size_t count, i;
	const char *name;
	uint64_t off;
	GElf_Sym sym;
	int idx, found = 0;

	if (!data || !sh->sh_entsize)
		return 0;
	count = sh->sh_size / sh->sh_entsize;
	for (i = 0; i < count; i++) {
		if (!gelf_getsym(data, (int)i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
		    sym.st_shndx == SHN_UNDEF || !sym.st_value)
			continue;
		if (GELF_ST_BIND(sym.st_info) != STB_GLOBAL &&
		    GELF_ST_BIND(sym.st_info) != STB_WEAK)
			continue;
		name = elf_strptr(elf, sh->sh_link, sym.st_name);
		if (!name || (idx = name_index(name, names, n)) < 0 || offsets[idx])
			continue;
		if (vaddr_to_offset(elf, sym.st_value, &off) == 0 && off) {
			offsets[idx] = off;
			found++;
		}
	}
	return found;
}

/* Opens the ELF file at path for reading its sections. Returns the fd (*elf set; elf_close
 * ends both) or -errno (-ENOEXEC: not ELF). */
static int elf_open(const char *path, Elf **elf)
{
	int fd;

	if (elf_version(EV_CURRENT) == EV_NONE)
		return -ENOEXEC;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!*elf || elf_kind(*elf) != ELF_K_ELF) {
		elf_end(*elf);
		close(fd);
		return -ENOEXEC;
	}
	return fd;
}

static void elf_close(int fd, Elf *elf)
{
	elf_end(elf);
	close(fd);
}

int elf_funcs__find(const char *path, const char *const *names, size_t n, uint64_t *offsets)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	Elf *elf;
	int fd, found = 0;

	memset(offsets, 0, n * sizeof(*offsets));
	fd = elf_open(path, &elf);
	if (fd < 0)
		return fd;
	while ((scn = elf_nextscn(elf, scn))) {
		if (!gelf_getshdr(scn, &sh) ||
		    (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM))
			continue;
		found += scan_symbols(elf, scn, &sh, names, n, offsets);
	}
	elf_close(fd, elf);
	return found;
}

static int read_needed(Elf *elf, Elf_Scn *scn, const GElf_Shdr *sh, char *names, size_t len,
		       int max)
{
	Elf_Data *data = elf_getdata(scn, NULL);
	const char *name;
	GElf_Dyn dyn;
	int n = 0;

	if (!data || !sh->sh_entsize)
		return 0;
	for (size_t i = 0; i < sh->sh_size / sh->sh_entsize && n < max; i++) {
		if (!gelf_getdyn(data, (int)i, &dyn) || dyn.d_tag != DT_NEEDED)
			continue;
		name = elf_strptr(elf, sh->sh_link, dyn.d_un.d_val);
		if (name)
			snprintf(names + (size_t)n++ * len, len, "%s", name);
	}
	return n;
}

int elf_funcs__needed(const char *path, char *names, size_t len, int max)
{
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	Elf *elf;
	int fd, n = 0;

	fd = elf_open(path, &elf);
	if (fd < 0)
		return fd;
	while ((scn = elf_nextscn(elf, scn)) && !n)
		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_DYNAMIC)
			n = read_needed(elf, scn, &sh, names, len, max);
	elf_close(fd, elf);
	return n;
}
