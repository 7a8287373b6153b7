/* The ELF headers read: see elf_head.h. */
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/elf_head.h"

/* Bounds of what is read on the stack; a file past them is left to another reader (-ENOEXEC). */
#define PHDRS_MAX 64
#define NOTES_MAX 4096
#define SHDRS_MAX 4096

/* Reads exactly len bytes at off. */
static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n = pread(fd, buf, len, (off_t)off);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -ENOEXEC;
}

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

int elf_head__hex(const uint8_t *bits, size_t n, char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	if (n * 2 + 1 > len)
		return -ERANGE;
	for (size_t i = 0; i < n; i++) {
		buf[2 * i] = hex[bits[i] >> 4];
		buf[2 * i + 1] = hex[bits[i] & 15];
	}
	buf[2 * n] = '\0';
	return 0;
}

int elf_head__notes_build_id(const void *notes, size_t size, size_t align, char *buf, size_t len)
{
	const uint8_t *p = notes;
	Elf64_Nhdr nh;
	size_t off = 0, name, desc;

	align = align == 8 ? 8 : 4;

	while (size - off >= sizeof(nh)) {
		memcpy(&nh, p + off, sizeof(nh));
		name = off + sizeof(nh);
		if (nh.n_namesz > size - name)
			break;
		desc = align_up(name + nh.n_namesz, align);
		if (desc > size || nh.n_descsz > size - desc)
			break;
		if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
		    !memcmp(p + name, "GNU", 4) && nh.n_descsz)
			return elf_head__hex(p + desc, nh.n_descsz, buf, len);
		off = align_up(desc + nh.n_descsz, align);
	}
	return -ENOENT;
}

/* The build-id in the notes of a segment or section at off, of size bytes. */
static int read_notes(int fd, uint64_t off, uint64_t size, uint64_t align, char *buf, size_t len)
{
	uint8_t notes[NOTES_MAX];
	int err;

	if (size > NOTES_MAX)
		return -ENOEXEC;
	err = read_at(fd, notes, size, off);
	return err ? err : elf_head__notes_build_id(notes, size, align, buf, len);
}

/* The build-id in the SHT_NOTE sections: a Go binary's is not in a PT_NOTE segment. */
static int sections_build_id(int fd, const Elf64_Ehdr *eh, char *buf, size_t len)
{
	Elf64_Shdr *sh;
	int err;

	if (!eh->e_shoff || !eh->e_shnum)
		return -ENOENT;
	if (eh->e_shentsize != sizeof(*sh) || eh->e_shnum > SHDRS_MAX)
		return -ENOEXEC;
	sh = malloc(eh->e_shnum * sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	err = read_at(fd, sh, eh->e_shnum * sizeof(*sh), eh->e_shoff);
	if (!err)
		err = -ENOENT;
	for (int i = 0; err == -ENOENT && i < eh->e_shnum; i++)
		if (sh[i].sh_type == SHT_NOTE && sh[i].sh_size)
			err = read_notes(fd, sh[i].sh_offset, sh[i].sh_size, sh[i].sh_addralign,
					 buf, len);
	free(sh);
	return err;
}

/* Reads the ELF header and the program headers (ph: PHDRS_MAX). */
static int read_headers(int fd, Elf64_Ehdr *eh, Elf64_Phdr *ph)
{
	int err = read_at(fd, eh, sizeof(*eh), 0);

	if (err)
		return err;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_phentsize != sizeof(Elf64_Phdr) ||
	    eh->e_phnum == PN_XNUM || eh->e_phnum > PHDRS_MAX)
		return -ENOEXEC;
	return read_at(fd, ph, eh->e_phnum * sizeof(ph[0]), eh->e_phoff);
}

/* The build-id in the PT_NOTE segments, else in the SHT_NOTE sections. */
static int find_build_id(int fd, const Elf64_Ehdr *eh, const Elf64_Phdr *ph, char *buf, size_t len)
{
	int err;

	if (!len)
		return -ERANGE;
	buf[0] = '\0';
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_NOTE || !ph[i].p_filesz)
			continue;
		err = read_notes(fd, ph[i].p_offset, ph[i].p_filesz, ph[i].p_align, buf, len);
		if (err != -ENOENT)
			return err;
	}
	return sections_build_id(fd, eh, buf, len);
}

int elf_head__build_id(int fd, char *buf, size_t len)
{
	Elf64_Phdr ph[PHDRS_MAX];
	Elf64_Ehdr eh;
	int err;

	if (len)
		buf[0] = '\0';
	err = read_headers(fd, &eh, ph);
	return err ? err : find_build_id(fd, &eh, ph, buf, len);
}

int elf_head__read(int fd, struct elf_head *h)
{
	Elf64_Phdr ph[PHDRS_MAX];
	Elf64_Ehdr eh;
	int err;

	memset(h, 0, sizeof(*h));
	err = read_headers(fd, &eh, ph);
	if (err)
		return err;
	for (int i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		if (ph[i].p_flags & PF_X)
			h->text_bytes += ph[i].p_filesz;
		if (h->nloads < ELF_HEAD_MAX_LOADS)
			h->loads[h->nloads++] = (struct elf_load){.offset = ph[i].p_offset,
								  .vaddr = ph[i].p_vaddr,
								  .filesz = ph[i].p_filesz};
	}
	err = find_build_id(fd, &eh, ph, h->build_id, sizeof(h->build_id));
	return err == -ENOENT ? 0 : err;
}
