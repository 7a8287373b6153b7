/* Unit tests of allocator discovery (collect/allocators.c): the function table, the choice of
 * providers in the dynamic linker's order, and the x86-64 prologue decoding of breakpoints. */
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

#include "collect/allocators.h"

static int func_index(const char *name)
{
	for (int f = 0; f < ALLOC_NFUNCS; f++)
		if (strcmp(alloc_funcs[f].name, name) == 0)
			return f;
	return -1;
}

static void test_table(void **state)
{
	(void)state;
	assert_string_equal(alloc_funcs[ALLOC_FUNC_MALLOC].name, "malloc");
	assert_string_equal(alloc_funcs[ALLOC_FUNC_FREE].name, "free");
	for (int f = 0; f < ALLOC_NFUNCS; f++) {
		assert_non_null(alloc_funcs[f].name);
		assert_int_equal(func_index(alloc_funcs[f].name), f); /* no name twice */
		assert_true(!alloc_funcs[f].own_free || alloc_funcs[f].role == ALLOC_OWN_FREE);
	}
	assert_true(allocators__is_release(ALLOC_FREE));
	assert_true(allocators__is_release(ALLOC_OWN_FREE));
	assert_true(allocators__is_release(ALLOC_FREE_DEDUP));
	assert_false(allocators__is_release(ALLOC_MALLOC));
	assert_false(allocators__is_release(ALLOC_REALLOC));
}

/* The executable wins over a library, a library over libstdc++, libstdc++ over libc; an own
 * operator delete is probed only in malloc's provider, and then free is deduplicated. */
static void test_choose(void **state)
{
	struct alloc_obj *objs = calloc(3, sizeof(*objs));
	int prov[ALLOC_NFUNCS], del = func_index("_ZdlPv"), nw = func_index("_Znwm");
	enum alloc_role roles[ALLOC_NFUNCS];

	(void)state;
	assert_non_null(objs);
	assert_true(del >= 0 && nw >= 0);
	objs[0].rank = 3; /* libc: malloc and free */
	objs[0].offsets[ALLOC_FUNC_MALLOC] = 0x100;
	objs[0].offsets[ALLOC_FUNC_FREE] = 0x200;
	objs[1].rank = 2; /* libstdc++: new and delete */
	objs[1].offsets[nw] = 0x300;
	objs[1].offsets[del] = 0x400;
	objs[2].rank = 1; /* an allocator library with malloc, free and delete */
	allocators__choose(objs, 3, prov, roles);
	assert_int_equal(prov[ALLOC_FUNC_MALLOC], 0);
	assert_int_equal(prov[nw], 1);
	assert_int_equal(prov[del], -1); /* libstdc++'s delete calls free, which is probed */
	assert_int_equal(roles[ALLOC_FUNC_FREE], ALLOC_FREE);

	objs[2].offsets[ALLOC_FUNC_MALLOC] = 0x10;
	objs[2].offsets[ALLOC_FUNC_FREE] = 0x20;
	objs[2].offsets[del] = 0x30;
	allocators__choose(objs, 3, prov, roles);
	assert_int_equal(prov[ALLOC_FUNC_MALLOC], 2);
	assert_int_equal(prov[ALLOC_FUNC_FREE], 2);
	assert_int_equal(prov[del], 2);
	assert_int_equal(prov[nw], 1);
	assert_int_equal(roles[ALLOC_FUNC_FREE], ALLOC_FREE_DEDUP);
	assert_int_equal(roles[del], ALLOC_OWN_FREE);
	assert_true(allocators__have_malloc(objs, 3));
	assert_false(allocators__have_malloc(objs + 1, 1));
	free(objs);
}

/* Writes code at offset 16 of a scratch file and returns probe_offset's answer minus 16. */
static uint64_t offset_of(const unsigned char *code, size_t len, bool ptr_arg)
{
	unsigned char buf[64] = {0};
	char path[] = "/tmp/cprof-prologue-XXXXXX";
	int fd = mkstemp(path);
	uint64_t off;

	assert_true(fd >= 0);
	memcpy(buf + 16, code, len);
	assert_int_equal(write(fd, buf, sizeof(buf)), sizeof(buf));
	close(fd);
	off = allocators__probe_offset(path, 16, ptr_arg);
	unlink(path);
	return off - 16;
}

static void test_probe_offset(void **state)
{
	static const unsigned char endbr_push[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x55};
	/* glibc free: endbr64; test %rdi,%rdi; je +N; push %r12 */
	static const unsigned char free_short[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x85,
						   0xff, 0x74, 0x10, 0x41, 0x54};
	static const unsigned char free_near[] = {0x48, 0x85, 0xff, 0x0f, 0x84, 0, 1, 0, 0, 0x53};
	static const unsigned char test_mov[] = {0x48, 0x85, 0xff, 0x74, 0x10, 0x48, 0x89, 0xf8};
	static const unsigned char cmp[] = {0x48, 0x83, 0xff, 0x00};

	(void)state;
	assert_int_equal(offset_of(endbr_push, sizeof(endbr_push), false), 4);
	assert_int_equal(offset_of(free_short, sizeof(free_short), true), 9);
	assert_int_equal(offset_of(free_short, sizeof(free_short), false), 4);
	assert_int_equal(offset_of(free_near, sizeof(free_near), true), 9);
	assert_int_equal(offset_of(test_mov, sizeof(test_mov), true), 0); /* no push follows */
	assert_int_equal(offset_of(cmp, sizeof(cmp), true), 0);
	assert_int_equal(allocators__probe_offset("/nonexistent/file", 16, true), 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_choose),
		cmocka_unit_test(test_probe_offset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
