/* Unit tests of unwind/cfi_rows.c: the rows read straight from .eh_frame are the rows libdw's
 * frame-at-an-address route gives (unwind_table__build_libdw), row for row, for every ELF
 * file with an .eh_frame_hdr in the machine's library and binary directories; and malformed
 * FDEs are refused without reading out of bounds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "unwind/cfi_rows.h"
#include "unwind/table.h"

/* Files compared, rows compared, and the time each route took (ns). */
struct tally {
	size_t files, rows, own_only;
	int64_t own_ns, libdw_ns;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void compare_file(const char *path, struct tally *tl)
{
	struct unwind_table own, ref;
	int fd = open(path, O_RDONLY | O_CLOEXEC), e1, e2;
	int64_t t0, t1, t2;

	if (fd < 0)
		return;
	t0 = now_ns();
	e1 = unwind_table__build(fd, &own);
	t1 = now_ns();
	e2 = unwind_table__build_libdw(fd, &ref);
	t2 = now_ns();
	close(fd);
	/* A program longer than libdw is trusted with (cfi_check.h): only our reader reads it. */
	if (e1 == 0 && e2 == -E2BIG) {
		tl->own_only++;
		unwind_table__free(&own);
		return;
	}
	if (e1 != e2)
		fprintf(stderr, "%s: %d (own) vs %d (libdw)\n", path, e1, e2);
	assert_int_equal(e1, e2);
	if (!e1) {
		if (own.n != ref.n || memcmp(own.rows, ref.rows, own.n * sizeof(*own.rows))) {
			size_t i = 0;

			while (i < own.n && i < ref.n &&
			       !memcmp(&own.rows[i], &ref.rows[i], sizeof(own.rows[i])))
				i++;
			fprintf(stderr, "%s: %zu rows vs %zu; first difference at row %zu\n", path,
				own.n, ref.n, i);
			if (i < own.n && i < ref.n)
				fprintf(stderr,
					"  own pc %#x kind %u cfa %d rbp %d arg %u / libdw pc "
					"%#x kind %u cfa %d rbp %d arg %u\n",
					own.rows[i].pc, own.rows[i].kind, own.rows[i].cfa_off,
					own.rows[i].rbp_off, own.rows[i].arg, ref.rows[i].pc,
					ref.rows[i].kind, ref.rows[i].cfa_off, ref.rows[i].rbp_off,
					ref.rows[i].arg);
			fail();
		}
		assert_memory_equal(own.kinds, ref.kinds, sizeof(own.kinds));
		tl->files++;
		tl->rows += own.n;
		tl->own_ns += t1 - t0;
		tl->libdw_ns += t2 - t1;
		unwind_table__free(&own);
		unwind_table__free(&ref);
	}
}

static void compare_dir(const char *dir, struct tally *tl)
{
	char path[4096];
	struct dirent *de;
	struct stat st;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &st) || !S_ISREG(st.st_mode) || st.st_size < 64 ||
		    st.st_size > (64 << 20))
			continue;
		compare_file(path, tl);
	}
	closedir(d);
}

static void test_same_rows_as_libdw(void **state)
{
	struct tally tl = {};

	(void)state;
	compare_dir("/usr/lib/x86_64-linux-gnu", &tl);
	compare_dir("/usr/bin", &tl);
	compare_dir("/usr/sbin", &tl);
	fprintf(stderr,
		"%zu files, %zu rows the same (%zu more read only here); %.1f ms own, %.1f ms "
		"through libdw\n",
		tl.files, tl.rows, tl.own_only, tl.own_ns / 1e6, tl.libdw_ns / 1e6);
	assert_true(tl.files >= 50);
}

static int count_row(void *ctx, const struct cprof_unwind_row *row)
{
	(void)row;
	++*(int *)ctx;
	return 0;
}

/* A CIE and an FDE written by hand, then every truncation of them. */
static void test_malformed(void **state)
{
	/* CIE: len, id 0, version 1, "zR", caf 1, daf -8, ra 16, aug len 1, enc pcrel|sdata4;
	 * def_cfa rsp+8, offset r16 at cfa-8, pad. */
	static const uint8_t cie[] = {0x14, 0,	  0,  0, 0,    0,    0, 0, 1,	 'z', 'R', 0,
				      1,    0x78, 16, 1, 0x1b, 0x0c, 7, 8, 0x90, 1,   0,   0};
	/* FDE: len, CIE pointer, pc_begin, pc_range 0x20, aug len 0; advance 4, def_cfa_offset
	 * 16, advance 8, def_cfa_offset 8, pads. */
	static const uint8_t fde[] = {0x18, 0,	  0,	0, 0x1c, 0, 0, 0,    0xe8, 0xff,
				      0xff, 0xff, 0x20, 0, 0,	 0, 0, 0x44, 0x0e, 16,
				      0x48, 0x0e, 8,	0, 0,	 0, 0, 0};
	uint8_t image[sizeof(cie) + sizeof(fde)];
	struct cfi_rows_cie cache;
	uint64_t start, end;
	int rows = 0, err;

	(void)state;
	memcpy(image, cie, sizeof(cie));
	memcpy(image + sizeof(cie), fde, sizeof(fde));
	cache = (struct cfi_rows_cie){};
	/* The FDE at vaddr 0x1000: pc_begin = 0x1008 - 0x18 = 0xff0. */
	assert_int_equal(cfi_rows__fde(image, sizeof(image), sizeof(cie), 0x1000, &cache, count_row,
				       &rows, &start, &end),
			 0);
	assert_int_equal(start, 0xff0);
	assert_int_equal(end, 0x1010);
	assert_int_equal(rows, 3);
	for (size_t cut = 0; cut < sizeof(image); cut++) {
		cache = (struct cfi_rows_cie){};
		err = cfi_rows__fde(image, cut, sizeof(cie), 0x1000, &cache, count_row, &rows,
				    &start, &end);
		assert_true(err == -EINVAL || err == 0 || err == -ENOTSUP);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_same_rows_as_libdw),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
