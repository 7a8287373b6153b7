/* libFuzzer target for the symbolizer's ELF and DWARF entry points: each input is an object
 * file, opened the way the symbolizer opens a mapped file (an fd, then libelf and libdwfl) and
 * the way it opens a vDSO (an image in memory), then looked up at a few addresses. Built and
 * run by `make fuzz`; any crash, leak or sanitizer report is a bug. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sym/module.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Never ask a server about fuzzed build-ids. */
	unsetenv("DEBUGINFOD_URLS");
	return 0;
}

/* Addresses to look up: offsets into the file mapped through its PT_LOADs, and one taken from
 * the input itself. */
static void probe(struct sym_module *m, const uint8_t *data, size_t size)
{
	struct sym_dwarf_frame frames[16];
	uint64_t offs[4] = {0, size / 3, size / 2, size ? size - 1 : 0}, vaddr;
	const char *name;
	size_t i;

	for (i = 0; i < 4; i++) {
		if (sym_module__offset_to_vaddr(m, offs[i], &vaddr))
			continue;
		sym_module__lookup(m, vaddr, &name);
		sym_module__frames(m, vaddr, frames, 16);
	}
	if (size >= 8) {
		memcpy(&vaddr, data + size - 8, 8);
		sym_module__lookup(m, vaddr, &name);
		sym_module__frames(m, vaddr, frames, 16);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sym_module *m;
	void *img;
	int fd;

	fd = memfd_create("fuzz-elf", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	if (!sym_module__open_fd(fd, "/nonexistent/fuzz", "/nonexistent", &m)) {
		probe(m, data, size);
		sym_module__free(m);
	}
	img = malloc(size ? size : 1);
	if (!img)
		return 0;
	memcpy(img, data, size);
	if (!sym_module__open_mem(img, size, &m)) {
		probe(m, data, size);
		sym_module__free(m);
	}
	return 0;
}
