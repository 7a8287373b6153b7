/* Unit tests of dir__list: which files of a directory it lists, their sizes and times, the two
 * orders, and a bad descriptor; and of dir__mkdirs. */
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

#include "util/dir.h"

static void put(int dirfd, const char *name, size_t size, time_t mtime)
{
	struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
	char buf[64] = {0};
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_true(size <= sizeof(buf));
	assert_int_equal(write(fd, buf, size), (ssize_t)size);
	assert_int_equal(futimens(fd, ts), 0);
	close(fd);
}

static void test_list(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char dir[4096];
	struct dir_file *v;
	size_t n;
	int dirfd;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/dirlist-XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(dirfd >= 0);
	put(dirfd, "b.push", 3, 1000);
	put(dirfd, "a.push", 5, 2000);
	put(dirfd, "c.push", 7, 1000);				   /* same time as b: by name */
	put(dirfd, ".hidden.push", 1, 10);			   /* hidden */
	put(dirfd, ".push", 1, 10);				   /* only the suffix */
	put(dirfd, "other.pb.gz", 1, 10);			   /* another suffix */
	assert_int_equal(mkdirat(dirfd, "d.push", 0755), 0);	   /* not a file */
	assert_int_equal(symlinkat("a.push", dirfd, "e.push"), 0); /* not followed */

	assert_int_equal(dir__list(dirfd, ".push", dir_file__cmp_name, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].name, "a.push");
	assert_int_equal(v[0].size, 5);
	assert_int_equal(v[0].mtime_ns, 2000 * 1000000000ll);
	assert_string_equal(v[1].name, "b.push");
	assert_string_equal(v[2].name, "c.push");
	free(v);

	/* Again (the shared offset is at the end now), oldest first. */
	assert_int_equal(dir__list(dirfd, ".push", dir_file__cmp_mtime, &v, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].name, "b.push");
	assert_string_equal(v[1].name, "c.push");
	assert_string_equal(v[2].name, "a.push");
	free(v);

	assert_int_equal(dir__list(dirfd, ".pb.gz", NULL, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].name, "other.pb.gz");
	assert_int_equal(v[0].size, 1);
	free(v);

	assert_int_equal(dir__list(dirfd, ".none", NULL, &v, &n), 0);
	assert_int_equal(n, 0);
	free(v);

	const char *names[] = {"a.push", "b.push",	"c.push", ".hidden.push",
			       ".push",	 "other.pb.gz", "e.push"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_int_equal(unlinkat(dirfd, names[i], 0), 0);
	assert_int_equal(unlinkat(dirfd, "d.push", AT_REMOVEDIR), 0);
	close(dirfd);
	assert_int_equal(rmdir(dir), 0);
}

static void test_bad_fd(void **state)
{
	struct dir_file dummy, *v = &dummy;
	size_t n = 7;

	(void)state;
	assert_int_equal(dir__list(-1, ".push", NULL, &v, &n), -EBADF);
	assert_int_equal(n, 0);
	assert_null(v);
}

static void test_mkdirs(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char root[4096], path[4200], file[4200];
	struct stat st;
	int fd;

	(void)state;
	snprintf(root, sizeof(root), "%s/cprof-mkdirs-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	assert_non_null(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/a/b/c", root);
	assert_int_equal(dir__mkdirs(path, 0750), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777 & ~0750, 0);
	assert_int_equal(dir__mkdirs(path, 0750), 0); /* already there */
	snprintf(file, sizeof(file), "%s/f", root);
	fd = open(file, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/f/x", root);
	assert_int_equal(dir__mkdirs(path, 0750), -ENOTDIR); /* through a file */
	unlink(file);
	snprintf(path, sizeof(path), "rm -r '%s'", root);
	assert_int_equal(system(path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_bad_fd),
		cmocka_unit_test(test_mkdirs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
