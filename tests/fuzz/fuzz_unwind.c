/* libFuzzer target for the unwind table compiler (user/unwind/table.c), which reads the
 * .eh_frame_hdr and .eh_frame of every executable a profiled process maps, the way cprof-bpf
 * reads them: from a file descriptor, from a memory image (a vDSO), and for the build-id alone.
 * A table it returns must be what the BPF unwinder can binary-search: pcs strictly ascending,
 * every kind known; the search itself is run at a few addresses. Any crash, leak, sanitizer
 * report or broken invariant (abort) is a bug. Run by `make fuzz` and, briefly, `make test`. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct unwind_table t;
	char id[41];
	void *img;
	int fd;

	fd = memfd_create("fuzz-unwind", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	if (unwind_table__build(fd, &t) == 0) {
		check(&t, data, size);
		unwind_table__free(&t);
	}
	unwind_table__build_id(fd, id, sizeof(id));
	close(fd);
	img = malloc(size ? size : 1);
	if (!img)
		return 0;
	memcpy(img, data, size);
	if (unwind_table__build_mem(img, size, &t) == 0) {
		check(&t, data, size);
		unwind_table__free(&t);
	}
	free(img);
	return 0;
}
