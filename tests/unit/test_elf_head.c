/* Unit tests of util/elf_head: the build-id and the PT_LOAD segments read with pread equal
 * elfutils' (dwelf, gelf) for every ELF file of the system's library and binary directories; a
 * file without a build-id, a non-ELF file, a truncated one and a short buffer get their
 * errors. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <elfutils/libdwelf.h>
#include <gelf.h>

#include <cmocka.h>

#include "util/elf_head.h"

static const char *const DIRS[] = {"/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/sbin"};

/* elfutils' answer for fd: the build-id as hex ("" when it finds none) and the segments.
 * Returns whether fd is an ELF file. */
static bool elfutils_head(int fd, char *buf, size_t len, struct elf_head *h)
{
	const uint8_t *id;
	GElf_Phdr ph;
	size_t nph;
	ssize_t n;
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);

	buf[0] = '\0';
	memset(h, 0, sizeof(*h));
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		if (elf)
			elf_end(elf);
		return false;
	}
	n = dwelf_elf_gnu_build_id(elf, (const void **)&id);
	for (ssize_t i = 0; i < n && (size_t)(2 * i + 2) < len; i++)
		snprintf(buf + 2 * i, 3, "%02x", id[i]);
	if (elf_getphdrnum(elf, &nph))
		nph = 0;
	for (size_t i = 0; i < nph; i++) {
		if (!gelf_getphdr(elf, i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (ph.p_flags & PF_X)
			h->text_bytes += ph.p_filesz;
		if (h->nloads < ELF_HEAD_MAX_LOADS)
			h->loads[h->nloads++] =
				(struct elf_load){ph.p_offset, ph.p_vaddr, ph.p_filesz};
	}
	elf_end(elf);
	return true;
}

static void test_same_as_elfutils(void **state)
{
	char ours[160], theirs[160], path[4096];
	struct elf_head got, want;
	size_t compared = 0, with_id = 0;
	struct dirent *de;
	struct stat st;
	int fd, err;

	(void)state;
	elf_version(EV_CURRENT);
	for (size_t d = 0; d < sizeof(DIRS) / sizeof(DIRS[0]); d++) {
		DIR *dir = opendir(DIRS[d]);

		if (!dir)
			continue;
		while ((de = readdir(dir))) {
			snprintf(path, sizeof(path), "%s/%s", DIRS[d], de->d_name);
			if (stat(path, &st) || !S_ISREG(st.st_mode))
				continue;
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			if (elfutils_head(fd, theirs, sizeof(theirs), &want)) {
				err = elf_head__build_id(fd, ours, sizeof(ours));
				/* A file past the reader's bounds is left to libelf, never misread. */
				if (err != -ENOEXEC) {
					if (strcmp(ours, theirs))
						fail_msg("%s: %s, elfutils %s", path, ours, theirs);
					assert_int_equal(err, theirs[0] ? 0 : -ENOENT);
					assert_int_equal(elf_head__read(fd, &got), 0);
					assert_string_equal(got.build_id, theirs);
					assert_int_equal(got.nloads, want.nloads);
					assert_memory_equal(got.loads, want.loads,
							    sizeof(got.loads[0]) *
								    (size_t)got.nloads);
					assert_int_equal(got.text_bytes, want.text_bytes);
					compared++;
					with_id += theirs[0] != '\0';
				}
			}
			close(fd);
		}
		closedir(dir);
	}
	print_message("%zu ELF files compared, %zu with a build-id\n", compared, with_id);
	assert_true(compared >= 50);
	assert_true(with_id >= 50);
}

/* A copy of path in a temporary file, its build-id note's type changed when retype, cut to cut
 * bytes when cut is not 0. Returns the open copy (unlinked). */
static int copy_changed(const char *path, bool retype, size_t cut)
{
	char tmpl[] = "/tmp/cprof-build-id-XXXXXX", id[160];
	uint8_t bin[20], *data;
	struct stat st;
	size_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), out;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	data = malloc((size_t)st.st_size);
	assert_non_null(data);
	assert_int_equal(pread(fd, data, (size_t)st.st_size, 0), st.st_size);
	assert_int_equal(elf_head__build_id(fd, id, sizeof(id)), 0);
	close(fd);
	n = (size_t)st.st_size;
	if (retype) {
		/* The note is: namesz, descsz, type, "GNU\0", then the id. */
		uint8_t *at;

		assert_int_equal(strlen(id), 40);
		for (int i = 0; i < 20; i++)
			sscanf(id + 2 * i, "%2hhx", &bin[i]);
		at = memmem(data, n, bin, sizeof(bin));
		assert_non_null(at);
		assert_memory_equal(at - 4, "GNU", 4);
		at[-8] = 0x99; /* n_type, little-endian */
	}
	if (cut)
		n = cut;
	out = mkstemp(tmpl);
	assert_true(out >= 0);
	unlink(tmpl);
	assert_int_equal(write(out, data, n), (ssize_t)n);
	free(data);
	return out;
}

static void test_errors(void **state)
{
	const char *exe = "/proc/self/exe";
	char buf[160];
	int fd;

	(void)state;
	/* No build-id note. */
	fd = copy_changed(exe, true, 0);
	assert_int_equal(elf_head__build_id(fd, buf, sizeof(buf)), -ENOENT);
	assert_string_equal(buf, "");
	close(fd);
	/* Cut inside the ELF header; then inside the program headers. */
	fd = copy_changed(exe, false, 20);
	assert_int_equal(elf_head__build_id(fd, buf, sizeof(buf)), -ENOEXEC);
	close(fd);
	fd = copy_changed(exe, false, sizeof(Elf64_Ehdr) + 8);
	assert_int_equal(elf_head__build_id(fd, buf, sizeof(buf)), -ENOEXEC);
	close(fd);
	/* Not ELF. */
	fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(elf_head__build_id(fd, buf, sizeof(buf)), -ENOEXEC);
	close(fd);
	/* A buffer too small for 40 hex digits and the NUL. */
	fd = open(exe, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(elf_head__build_id(fd, buf, 40), -ERANGE);
	assert_int_equal(elf_head__build_id(fd, buf, 41), 0);
	assert_int_equal(strlen(buf), 40);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_as_elfutils),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
