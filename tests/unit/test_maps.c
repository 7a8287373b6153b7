/* Unit tests for proc/maps: parsing /proc/PID/maps text, lookups, and the small /proc helpers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "proc/maps.h"

static const char sample_maps[] =
	"55d0c0a00000-55d0c0a02000 r--p 00000000 fd:01 1234                       /usr/bin/my app\n"
	"55d0c0a02000-55d0c0a05000 r-xp 00002000 fd:01 1234                       /usr/bin/my app\n"
	"55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0                          [heap]\n"
	"7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"
	"7f0000001000-7f0000003000 r-xp 00001000 08:02 99    /tmp/lib gone.so (deleted)\n"
	"7f0000003000-7f0000004000 r-xp 00000000 08:02 100   /tmp/x (deleted) (deleted)\n"
	"7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n"
	"7ffd000f0000-7ffd000f2000 r-xp 00000000 00:00 0                          [vdso]\n"
	"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]";

static struct proc_maps *parse_string(const char *text)
{
	struct proc_maps *m = NULL;
	FILE *f = fmemopen((void *)text, strlen(text), "r");

	assert_non_null(f);
	assert_int_equal(proc_maps__parse(f, 42, &m), 0);
	fclose(f);
	assert_non_null(m);
	return m;
}

static void test_parse_fields(void **state)
{
	struct proc_maps *m = parse_string(sample_maps);
	const struct proc_map *p;

	(void)state;
	assert_int_equal(m->pid, 42);
	assert_int_equal(m->n, 9);
	p = &m->maps[1];
	assert_int_equal(p->start, 0x55d0c0a02000ULL);
	assert_int_equal(p->end, 0x55d0c0a05000ULL);
	assert_int_equal(p->offset, 0x2000);
	assert_int_equal(p->inode, 1234);
	assert_int_equal(p->dev_major, 0xfd);
	assert_int_equal(p->dev_minor, 1);
	assert_string_equal(p->perms, "r-xp");
	assert_string_equal(p->path, "/usr/bin/my app");
	assert_false(p->deleted);
	proc_maps__free(m);
}

static void test_parse_special_paths(void **state)
{
	struct proc_maps *m = parse_string(sample_maps);

	(void)state;
	assert_string_equal(m->maps[2].path, "[heap]");
	assert_null(m->maps[3].path); /* anonymous, trailing space only */
	assert_false(m->maps[3].deleted);
	assert_string_equal(m->maps[4].path, "/tmp/lib gone.so");
	assert_true(m->maps[4].deleted);
	/* Only the last suffix is the kernel's. */
	assert_string_equal(m->maps[5].path, "/tmp/x (deleted)");
	assert_true(m->maps[5].deleted);
	assert_string_equal(m->maps[6].path, "[stack]");
	assert_string_equal(m->maps[7].path, "[vdso]");
	assert_string_equal(m->maps[8].path, "[vsyscall]"); /* last line, no newline */
	assert_string_equal(m->maps[8].perms, "--xp");
	assert_int_equal(m->maps[8].end, 0xffffffffff601000ULL);
	proc_maps__free(m);
}

static void test_parse_skips_garbage(void **state)
{
	struct proc_maps *m = parse_string("garbage\n"
					   "1000-2000 r-xp 00000000 00:00 0\n"
					   "\n"
					   "3000-2000 r-xp 00000000 00:00 0 /bad/range\n"
					   "4000-5000 r-xp zz 00:00 0 /bad/offset\n"
					   "4000-5000 r-xp 0 00:00 12x /bad/inode\n"
					   "4000-5000 r-x\n"
					   "4000-10000000000000000 r-xp 0 00:00 0 /too/long\n"
					   "4000-5000 r-xp 0 00-00 0 /bad/dev");

	(void)state;
	assert_int_equal(m->n, 1);
	assert_int_equal(m->maps[0].start, 0x1000);
	assert_null(m->maps[0].path);
	proc_maps__free(m);

	m = parse_string("");
	assert_int_equal(m->n, 0);
	assert_null(proc_maps__find(m, 0x1000));
	proc_maps__free(m);
}

static void test_find(void **state)
{
	struct proc_maps *m = parse_string(sample_maps);

	(void)state;
	assert_null(proc_maps__find(m, 0));
	assert_null(proc_maps__find(m, 0x55d0c09fffffULL));
	/* start inclusive, end exclusive; adjacent mappings hand over exactly at the boundary */
	assert_ptr_equal(proc_maps__find(m, 0x55d0c0a00000ULL), &m->maps[0]);
	assert_ptr_equal(proc_maps__find(m, 0x55d0c0a01fffULL), &m->maps[0]);
	assert_ptr_equal(proc_maps__find(m, 0x55d0c0a02000ULL), &m->maps[1]);
	assert_ptr_equal(proc_maps__find(m, 0x55d0c0a04fffULL), &m->maps[1]);
	/* the gap after an end */
	assert_null(proc_maps__find(m, 0x55d0c0a05000ULL));
	assert_ptr_equal(proc_maps__find(m, 0x7ffd000f1234ULL), &m->maps[7]);
	assert_ptr_equal(proc_maps__find(m, 0xffffffffff600000ULL), &m->maps[8]);
	assert_null(proc_maps__find(m, 0xffffffffff601000ULL));
	assert_null(proc_maps__find(m, UINT64_MAX));
	assert_null(proc_maps__find(NULL, 0x1000));
	proc_maps__free(m);
	proc_maps__free(NULL);
}

static void test_copy_code(void **state)
{
	struct proc_maps *m = parse_string(sample_maps), *c;

	(void)state;
	c = proc_maps__copy_code(m);
	assert_non_null(c);
	assert_int_equal(c->pid, 42);
	/* The r-xp and --xp mappings only, in order, each with its own copy of the path. */
	assert_int_equal(c->n, 5);
	assert_int_equal(c->maps[0].start, 0x55d0c0a02000ULL);
	assert_string_equal(c->maps[0].path, "/usr/bin/my app");
	assert_ptr_not_equal(c->maps[0].path, m->maps[1].path);
	assert_int_equal(c->maps[0].offset, 0x2000);
	assert_int_equal(c->maps[0].inode, 1234);
	assert_true(c->maps[1].deleted);
	assert_string_equal(c->maps[1].path, "/tmp/lib gone.so");
	assert_string_equal(c->maps[3].path, "[vdso]");
	assert_string_equal(c->maps[4].perms, "--xp");
	for (size_t i = 0; i < c->n; i++)
		assert_int_equal(c->maps[i].perms[2], 'x');
	proc_maps__free(m);
	/* The copy outlives what it was copied from. */
	assert_string_equal(c->maps[2].path, "/tmp/x (deleted)");
	proc_maps__free(c);
}

static void test_read_self(void **state)
{
	struct proc_maps *m = NULL;
	const struct proc_map *p;
	char exe[4096];

	(void)state;
	assert_int_equal(proc_maps__read(getpid(), &m), 0);
	assert_true(m->n > 0);
	p = proc_maps__find(m, (uint64_t)(uintptr_t)&test_read_self);
	assert_non_null(p);
	assert_int_equal(p->perms[2], 'x');
	assert_int_equal(proc__exe(getpid(), exe, sizeof(exe)), 0);
	assert_string_equal(p->path, exe);
	proc_maps__free(m);
}

static void test_proc_helpers(void **state)
{
	struct proc_maps *m = (void *)1;
	char buf[64];
	pid_t child;
	int status;

	(void)state;
	assert_int_equal(proc__exists(getpid()), 0);
	assert_int_equal(proc__comm(getpid(), buf, sizeof(buf)), 0);
	assert_string_equal(buf, "test_maps");
	assert_int_equal(proc__exe(getpid(), buf, 4), -ENAMETOOLONG);

	/* A reaped child's pid is gone. */
	child = fork();
	assert_true(child >= 0);
	if (!child)
		_exit(0);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_int_equal(proc__exists(child), -ESRCH);
	assert_int_equal(proc__comm(child, buf, sizeof(buf)), -ESRCH);
	assert_int_equal(proc__exe(child, buf, sizeof(buf)), -ESRCH);
	assert_int_equal(proc_maps__read(child, &m), -ESRCH);
	assert_null(m);
	assert_int_equal(proc__exists(0), -ESRCH);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_fields),
		cmocka_unit_test(test_parse_special_paths),
		cmocka_unit_test(test_parse_skips_garbage),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_copy_code),
		cmocka_unit_test(test_read_self),
		cmocka_unit_test(test_proc_helpers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
