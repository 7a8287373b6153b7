/* libFuzzer target for the unwind table compiler (user/unwind/table.c, with util/elf_head.c),
 * which reads the .eh_frame_hdr and .eh_frame of every executable a profiled process maps, the
 * way cprof-bpf reads them: from a file descriptor, from a memory image (a vDSO), and for the
 * build-id alone. A table it returns must be what the BPF unwinder can binary-search: pcs
 * strictly ascending,
 * every kind known; the search itself is run at a few addresses. Any crash, leak, sanitizer
 * report or broken invariant (abort) is a bug. Run by `make fuzz` and, briefly, `make test`.
 *
 * An input is either a whole ELF file, or (so that mutations reach the CFI rather than break
 * the ELF around it) the content of an .eh_frame section that this target wraps into a small
 * ELF with a matching .eh_frame_hdr:
 *   byte 0 = 0xff: the search table is derived from the records, as a linker does;
 *   byte 0 = k < 0xff: k % 33 table entries follow (u32 pc, u32 offset of the FDE in
 *   .eh_frame), sorted here, taken as they are otherwise.
 * The rest is the .eh_frame. Seeds (make fuzz-build) are real programs' .eh_frame sections. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <elf.h>
#include <sys/mman.h>
#include <unistd.h>

#include "unwind/table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct unwind_table *t, const uint8_t *data, size_t size)
{
	uint64_t probe;

	if (!t->n || !t->rows)
		abort(); /* success means rows */
	for (size_t i = 0; i < t->n; i++) {
		if (t->rows[i].kind > CPROF_UNW_STOP)
			abort();
		if (i && t->rows[i - 1].pc >= t->rows[i].pc)
			abort();
	}
	if (unwind_table__find(t, t->rows[0].pc) != &t->rows[0])
		abort();
	if (t->rows[0].pc && unwind_table__find(t, t->rows[0].pc - 1))
		abort();
	if (unwind_table__find(t, (uint64_t)t->rows[t->n - 1].pc + 1) != &t->rows[t->n - 1])
		abort();
	if (size >= 8) {
		memcpy(&probe, data + size - 8, 8);
		unwind_table__find(t, probe);
	}
}

#define HDR_OFF	    (sizeof(Elf64_Ehdr) + 2 * sizeof(Elf64_Phdr))
#define MAX_ENTRIES 4096
#define ALIGN8(x)   (((x) + 7) & ~(size_t)7)
static const char shstrtab[] = "\0.eh_frame_hdr\0.eh_frame\0.shstrtab";

struct entry {
	int64_t pc, fde; /* both as addresses in the image */
};

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	return x->pc < y->pc ? -1 : x->pc > y->pc;
}

/* The FDEs of an .eh_frame at vaddr, with pc_begin read as pcrel sdata4 (what gcc emits). */
static size_t scan_fdes(const uint8_t *ef, size_t n, uint64_t vaddr, struct entry *out)
{
	size_t off = 0, k = 0;
	uint32_t len, id;
	int32_t pc;

	while (off + 12 <= n && k < MAX_ENTRIES) {
		memcpy(&len, ef + off, 4);
		if (len == 0 || len == 0xffffffff || len > n - off - 4)
			break;
		memcpy(&id, ef + off + 4, 4);
		if (id != 0) {
			memcpy(&pc, ef + off + 8, 4);
			out[k].pc = (int64_t)(vaddr + off + 8) + pc;
			out[k].fde = (int64_t)(vaddr + off);
			k++;
		}
		off += 4 + (size_t)len;
	}
	return k;
}

/* Wraps an .eh_frame (with the table entries the input asks for) into an ELF image. */
static uint8_t *wrap(const uint8_t *data, size_t size, size_t *out_size)
{
	static struct entry e[MAX_ENTRIES];
	size_t k = 0, hdr_size, ef_off, ef_size, str_off, sh_off, total;
	const uint8_t *ef;
	Elf64_Ehdr *eh;
	Elf64_Phdr *ph;
	Elf64_Shdr *sh;
	uint8_t *img, *h;
	int32_t v;

	if (!size)
		return NULL;
	if (data[0] == 0xff) {
		ef = data + 1;
		ef_size = size - 1;
	} else {
		k = data[0] % 33;
		if (size < 1 + 8 * k)
			return NULL;
		ef = data + 1 + 8 * k;
		ef_size = size - 1 - 8 * k;
	}
	hdr_size = 12 + 8 * (data[0] == 0xff ? MAX_ENTRIES : k);
	ef_off = ALIGN8(HDR_OFF + hdr_size);
	if (data[0] == 0xff) {
		k = scan_fdes(ef, ef_size, ef_off, e);
	} else {
		for (size_t i = 0; i < k; i++) {
			uint32_t pc, fde;

			memcpy(&pc, data + 1 + 8 * i, 4);
			memcpy(&fde, data + 5 + 8 * i, 4);
			e[i].pc = pc;
			e[i].fde = (int64_t)ef_off + (ef_size ? fde % ef_size : 0);
		}
	}
	qsort(e, k, sizeof(e[0]), cmp_entry);
	str_off = ef_off + ef_size;
	sh_off = ALIGN8(str_off + sizeof(shstrtab));
	total = sh_off + 4 * sizeof(Elf64_Shdr);
	img = calloc(1, total);
	if (!img)
		return NULL;

	eh = (Elf64_Ehdr *)img;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_DYN;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_phoff = sizeof(*eh);
	eh->e_shoff = sh_off;
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 2;
	eh->e_shentsize = sizeof(Elf64_Shdr);
	eh->e_shnum = 4;
	eh->e_shstrndx = 3;

	ph = (Elf64_Phdr *)(img + sizeof(*eh));
	ph[0] = (Elf64_Phdr){.p_type = PT_LOAD,
			     .p_flags = PF_R | PF_X,
			     .p_filesz = str_off,
			     .p_memsz = str_off,
			     .p_align = 0x1000};
	ph[1] = (Elf64_Phdr){.p_type = PT_GNU_EH_FRAME,
			     .p_flags = PF_R,
			     .p_offset = HDR_OFF,
			     .p_vaddr = HDR_OFF,
			     .p_paddr = HDR_OFF,
			     .p_filesz = 12 + 8 * k,
			     .p_memsz = 12 + 8 * k,
			     .p_align = 4};

	h = img + HDR_OFF;
	h[0] = 1;
	h[1] = 0x1b; /* eh_frame_ptr: pcrel sdata4 */
	h[2] = 0x03; /* fde_count: udata4 */
	h[3] = 0x3b; /* table: datarel sdata4 */
	v = (int32_t)(ef_off - (HDR_OFF + 4));
	memcpy(h + 4, &v, 4);
	memcpy(h + 8, &(uint32_t){(uint32_t)k}, 4);
	for (size_t i = 0; i < k; i++) {
		v = (int32_t)(e[i].pc - (int64_t)HDR_OFF);
		memcpy(h + 12 + 8 * i, &v, 4);
		v = (int32_t)(e[i].fde - (int64_t)HDR_OFF);
		memcpy(h + 16 + 8 * i, &v, 4);
	}
	memcpy(img + ef_off, ef, ef_size);
	memcpy(img + str_off, shstrtab, sizeof(shstrtab));

	sh = (Elf64_Shdr *)(img + sh_off);
	sh[1] = (Elf64_Shdr){.sh_name = 1,
			     .sh_type = SHT_PROGBITS,
			     .sh_flags = SHF_ALLOC,
			     .sh_addr = HDR_OFF,
			     .sh_offset = HDR_OFF,
			     .sh_size = 12 + 8 * k,
			     .sh_addralign = 4};
	sh[2] = (Elf64_Shdr){.sh_name = 15,
			     .sh_type = SHT_PROGBITS,
			     .sh_flags = SHF_ALLOC,
			     .sh_addr = ef_off,
			     .sh_offset = ef_off,
			     .sh_size = ef_size,
			     .sh_addralign = 8};
	sh[3] = (Elf64_Shdr){.sh_name = 25,
			     .sh_type = SHT_STRTAB,
			     .sh_offset = str_off,
			     .sh_size = sizeof(shstrtab),
			     .sh_addralign = 1};
	*out_size = total;
	return img;
}

/* The table of one ELF image, through the fd path, the memory path and the build-id path. */
static void build_all(const uint8_t *data, size_t size)
{
	struct unwind_table t;
	char id[41];
	void *img;
	int fd;

	fd = memfd_create("fuzz-unwind", MFD_CLOEXEC);
	if (fd < 0)
		return;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return;
	}
	if (unwind_table__build(fd, &t) == 0) {
		check(&t, data, size);
		unwind_table__free(&t);
	}
	unwind_table__build_id(fd, id, sizeof(id));
	close(fd);
	img = malloc(size ? size : 1);
	if (!img)
		return;
	memcpy(img, data, size);
	if (unwind_table__build_mem(img, size, &t) == 0) {
		check(&t, data, size);
		unwind_table__free(&t);
	}
	free(img);
}

/* FUZZ_UNWIND_DUMP=FILE writes the ELF an input was wrapped into, to look at with readelf. */
static void dump(const uint8_t *img, size_t n)
{
	const char *path = getenv("FUZZ_UNWIND_DUMP");
	FILE *f;

	if (!path || !(f = fopen(path, "w")))
		return;
	fwrite(img, 1, n, f);
	fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *img;
	size_t n;

	if (size >= SELFMAG && memcmp(data, ELFMAG, SELFMAG) == 0) {
		build_all(data, size);
		return 0;
	}
	img = wrap(data, size, &n);
	if (img) {
		dump(img, n);
		build_all(img, n);
		free(img);
	}
	return 0;
}
