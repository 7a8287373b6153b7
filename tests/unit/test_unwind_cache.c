/* Unit tests of the on-disk unwind-table cache (unwind/cache.h): a table written is read back
 * the same; a truncated file, a changed byte, another version or another key's file with the
 * same name is refused and removed; which keys may be kept; the size bound, oldest used out;
 * an unsafe directory refused. */
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
#include <unistd.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "unwind/cache.h"

static char dir[4096];

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");

	(void)state;
	snprintf(dir, sizeof(dir), "%s/cprof-unwcache-XXXXXX", tmp ? tmp : "/tmp");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[4200];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void table(struct unwind_table *t, size_t n, uint32_t seed)
{
	memset(t, 0, sizeof(*t));
	t->rows = calloc(n, sizeof(*t->rows));
	assert_non_null(t->rows);
	t->n = n;
	for (size_t i = 0; i < n; i++) {
		t->rows[i].pc = (uint32_t)(i * 16 + seed);
		t->rows[i].cfa_off = (int16_t)(8 + i % 7);
	}
	t->text_bytes = n * 16;
	t->nloads = 1;
	t->loads[0].offset = 0x1000;
	t->loads[0].vaddr = 0x401000;
	t->loads[0].filesz = n * 16;
	snprintf(t->build_id, sizeof(t->build_id), "%08x", seed);
}

/* The one table file of the directory (its name), or "" when there is none. */
static void only_file(char *name, size_t len)
{
	struct dirent *de;
	DIR *d = opendir(dir);

	assert_non_null(d);
	name[0] = '\0';
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".unw"))
			snprintf(name, len, "%s/%s", dir, de->d_name);
	closedir(d);
}

static void test_round_trip_and_checks(void **state)
{
	const char *key = "b:00112233445566778899aabbccddeeff00112233";
	struct unwind_table t, back;
	struct unwind_cache *c;
	char path[4400];
	unsigned char byte;
	int fd;

	(void)state;
	c = unwind_cache__open(dir, 1 << 20);
	assert_non_null(c);
	assert_int_equal(unwind_cache__load(c, key, &back), -ENOENT);
	table(&t, 1000, 3);
	assert_int_equal(unwind_cache__store(c, key, &t), 0);
	assert_true(unwind_cache__has(c, key));
	assert_int_equal(unwind_cache__load(c, key, &back), 0);
	assert_int_equal(back.n, t.n);
	assert_memory_equal(back.rows, t.rows, t.n * sizeof(*t.rows));
	assert_int_equal(back.text_bytes, t.text_bytes);
	assert_int_equal(back.nloads, 1);
	assert_int_equal(back.loads[0].vaddr, 0x401000);
	assert_string_equal(back.build_id, t.build_id);
	unwind_table__free(&back);
	/* Another key is not this file's, even under its name: nothing of it is loaded. */
	assert_int_equal(unwind_cache__load(c, "b:ffff", &back), -ENOENT);

	/* One byte of the rows changed: refused, removed. */
	only_file(path, sizeof(path));
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &byte, 1, 600), 1);
	byte ^= 0xff;
	assert_int_equal(pwrite(fd, &byte, 1, 600), 1);
	close(fd);
	assert_int_equal(unwind_cache__load(c, key, &back), -EBADMSG);
	assert_false(unwind_cache__has(c, key));
	assert_int_equal(unwind_cache__stats(c)->rejected, 1);

	/* Truncated. */
	assert_int_equal(unwind_cache__store(c, key, &t), 0);
	only_file(path, sizeof(path));
	assert_int_equal(truncate(path, 300), 0);
	assert_int_equal(unwind_cache__load(c, key, &back), -EBADMSG);
	assert_int_equal(unwind_cache__stats(c)->rejected, 2);

	/* Another version of the format. */
	assert_int_equal(unwind_cache__store(c, key, &t), 0);
	only_file(path, sizeof(path));
	fd = open(path, O_RDWR);
	byte = 99;
	assert_int_equal(pwrite(fd, &byte, 1, 8), 1);
	close(fd);
	assert_int_equal(unwind_cache__load(c, key, &back), -EBADMSG);
	unwind_table__free(&t);
	unwind_cache__free(c);
}

static void test_keys(void **state)
{
	(void)state;
	assert_true(unwind_cache__key_ok("b:0123abcd"));
	assert_false(unwind_cache__key_ok("b:"));
	assert_true(unwind_cache__key_ok("f:254:0:1234:1700000000.000000000:4096"));
	/* Without mtime and size (they could not be read): not kept across runs. */
	assert_false(unwind_cache__key_ok("f:254:0:1234"));
	assert_false(unwind_cache__key_ok("[vdso]"));
}

static void test_size_bound_oldest_used_out(void **state)
{
	struct unwind_table t;
	struct unwind_cache *c;
	char key[32];
	struct unwind_table back;

	(void)state;
	/* Each file is about 12 KB (1000 rows): a 40 KB bound holds three. */
	c = unwind_cache__open(dir, 40 << 10);
	assert_non_null(c);
	table(&t, 1000, 1);
	for (int i = 0; i < 3; i++) {
		snprintf(key, sizeof(key), "b:%04d", i);
		assert_int_equal(unwind_cache__store(c, key, &t), 0);
		usleep(20000); /* distinct mtimes */
	}
	/* b:0000 is used now: b:0001 is the one used longest ago. */
	assert_int_equal(unwind_cache__load(c, "b:0000", &back), 0);
	unwind_table__free(&back);
	usleep(20000);
	assert_int_equal(unwind_cache__store(c, "b:0003", &t), 0);
	assert_true(unwind_cache__has(c, "b:0000"));
	assert_false(unwind_cache__has(c, "b:0001"));
	assert_true(unwind_cache__has(c, "b:0002"));
	assert_true(unwind_cache__has(c, "b:0003"));
	assert_true(unwind_cache__stats(c)->bytes <= 40 << 10);
	assert_int_equal(unwind_cache__stats(c)->removed, 1);
	unwind_table__free(&t);
	unwind_cache__free(c);
}

static void test_unsafe_directory(void **state)
{
	char sub[4200];

	(void)state;
	snprintf(sub, sizeof(sub), "%s/open", dir);
	assert_int_equal(mkdir(sub, 0777), 0);
	assert_int_equal(chmod(sub, 0777), 0);
	assert_null(unwind_cache__open(sub, 1 << 20));
	snprintf(sub, sizeof(sub), "%s/link", dir);
	assert_int_equal(symlink("/tmp", sub), 0);
	assert_null(unwind_cache__open(sub, 1 << 20));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_and_checks, setup, teardown),
		cmocka_unit_test(test_keys),
		cmocka_unit_test_setup_teardown(test_size_bound_oldest_used_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsafe_directory, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
