/* Unit tests for sym/funcs: function offsets and DT_NEEDED of real files (this process's libc and
 * executable), checked against where the loader put them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "proc/maps.h"
#include "sym/funcs.h"

/* The file and file offset of a code address of this process. */
static int where(uintptr_t addr, char *path, size_t len, uint64_t *off)
{
	struct proc_maps *m;
	const struct proc_map *pm;

	if (proc_maps__read(getpid(), &m))
		return -1;
	pm = proc_maps__find(m, addr);
	if (!pm || !pm->path) {
		proc_maps__free(m);
		return -1;
	}
	snprintf(path, len, "%s", pm->path);
	*off = addr - pm->start + pm->offset;
	proc_maps__free(m);
	return 0;
}

static void test_offsets_match_the_loaded_code(void **state)
{
	const char *names[] = {"no_such_function_here", "getpid", "malloc", "pthread_create"};
	uint64_t offs[4], want;
	char libc[4096];

	(void)state;
	assert_int_equal(where((uintptr_t)&getpid, libc, sizeof(libc), &want), 0);
	assert_non_null(strstr(libc, "libc"));
	assert_int_equal(elf_funcs__find(libc, names, 4, offs), 3);
	assert_int_equal(offs[0], 0);
	assert_int_equal(offs[1], want); /* getpid, where the loader mapped it */
	assert_true(offs[2] > 0 && offs[3] > 0 && offs[2] != offs[3]);
}

static void test_needed_and_errors(void **state)
{
	char needed[16][256], exe[4096];
	uint64_t off;
	const char *names[] = {"malloc"};
	int n, libc = 0;

	(void)state;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	n = elf_funcs__needed(exe, &needed[0][0], sizeof(needed[0]), 16);
	assert_true(n > 0);
	for (int i = 0; i < n; i++)
		libc |= strcmp(needed[i], "libc.so.6") == 0;
	assert_true(libc);
	assert_int_equal(elf_funcs__find("/nonexistent/file", names, 1, &off), -ENOENT);
	assert_int_equal(elf_funcs__find("/proc/self/status", names, 1, &off), -ENOEXEC);
	assert_int_equal(elf_funcs__needed("/proc/self/status", &needed[0][0], 256, 16), -ENOEXEC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_offsets_match_the_loaded_code),
		cmocka_unit_test(test_needed_and_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
