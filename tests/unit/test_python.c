/* Unit tests for python/: the line tables of CPython 3.10 and 3.11+, the tagged frame encoding,
 * the layout table's presence, and the probe's answer for a process that is no Python. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "python/cpython.h"

/* A 3.11+ location table, first line 10: every entry form once. */
static const uint8_t loc311[] = {
	0xe9, 0x02,		      /* code 13 (no column), 2 units, line +1: 11 */
	0xe2, 0x05, 0x09,	      /* code 12 (one line), 3 units, line +2: 13 */
	0xf8,			      /* code 15, 1 unit: no location */
	0xf0, 0x07, 0x00, 0x00, 0x00, /* code 14 (long), 1 unit, line -3: 10 */
	0x81, 0x11,		      /* code 0 (short), 2 units: 10 */
	0xe8, 0x48, 0x03,	      /* code 13, 1 unit, line +100 (two-chunk varint): 110 */
};

static void test_line_311(void **state)
{
	static const struct {
		uint64_t idx;
		int64_t line;
	} want[] = {{0, 11}, {1, 11}, {2, 13}, {4, 13},	 {5, 0},
		    {6, 10}, {7, 10}, {8, 10}, {9, 110}, {10, 0}};

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_int_equal(python__line_311(loc311, sizeof(loc311), 10, want[i].idx),
				 want[i].line);
	/* Out of step (no entry byte): no line rather than a wrong one. */
	assert_int_equal(python__line_311((const uint8_t *)"\x01\x02", 2, 10, 0), 0);
	assert_int_equal(python__line_311(NULL, 0, 10, 0), 0);
	/* Truncated operands never read past the end. */
	assert_int_equal(python__line_311((const uint8_t *)"\xf0\x47", 2, 10, 5), 0);
}

/* A 3.10 line table, first line 5: (bytes, line delta) pairs; -128 (0x80): no line. */
static const uint8_t tab310[] = {6, 1, 4, 0x80, 0, 2, 10, 1};

static void test_line_310(void **state)
{
	(void)state;
	assert_int_equal(python__line_310(tab310, sizeof(tab310), 5, 0), 6);
	assert_int_equal(python__line_310(tab310, sizeof(tab310), 5, 2), 6);
	assert_int_equal(python__line_310(tab310, sizeof(tab310), 5, 3), 0);
	assert_int_equal(python__line_310(tab310, sizeof(tab310), 5, 5), 9);
	assert_int_equal(python__line_310(tab310, sizeof(tab310), 5, 9), 9);
	assert_int_equal(python__line_310(tab310, sizeof(tab310), 5, 10), 0);
	assert_int_equal(python__line_310(tab310, 3, 5, 0), 6); /* odd length: last byte ignored */
}

static void test_frame_tag(void **state)
{
	uint64_t code = 0x7f12345678f0ull, ip = CPROF_PY_FRAME(code, 1234);

	(void)state;
	assert_true(CPROF_PY_IS_FRAME(ip));
	assert_int_equal(CPROF_PY_CODE(ip), code);
	assert_int_equal(CPROF_PY_IDX(ip), 1234);
	ip = CPROF_PY_FRAME(code, CPROF_PY_IDX_UNKNOWN);
	assert_int_equal(CPROF_PY_IDX(ip), CPROF_PY_IDX_UNKNOWN);
	assert_int_equal(CPROF_PY_CODE(ip), code);
	/* No user-space address carries the tag. */
	assert_false(CPROF_PY_IS_FRAME(0x00007fffffffffffull));
}

static void test_layouts(void **state)
{
	(void)state;
	assert_null(python__layout(9));
	assert_null(python__layout(13)); /* 3.13 publishes its own */
	for (int minor = 10; minor <= 12; minor++) {
		const struct cprof_py_layout *l = python__layout(minor);

		assert_non_null(l);
		assert_int_not_equal(l->tstate_thread_id, CPROF_PY_NONE_OFF);
		assert_int_not_equal(l->frame_code, CPROF_PY_NONE_OFF);
		assert_int_not_equal(l->code_filename, CPROF_PY_NONE_OFF);
	}
	assert_int_equal(python__layout(10)->code_qualname, CPROF_PY_NONE_OFF);
	assert_int_not_equal(python__layout(11)->code_qualname, CPROF_PY_NONE_OFF);
}

static void test_probe_not_python(void **state)
{
	struct cprof_py_proc p;
	char why[128];

	(void)state;
	/* The unit test binary maps no CPython. */
	assert_int_equal(python__probe(getpid(), &p, why, sizeof(why)), -ENOENT);
	assert_int_equal(python__probe(0x7ffffff0, &p, NULL, 0) < 0, 1);
}

static void test_syms_gone_process(void **state)
{
	struct python_syms *ps = python_syms__new();
	struct python_frame f;

	(void)state;
	assert_non_null(ps);
	/* A pid that does not exist: an error, never a made-up frame. */
	assert_true(python_syms__resolve(ps, 0x7ffffff0, CPROF_PY_FRAME(0x1000, 0), &f) < 0);
	assert_null(f.function);
	python_syms__forget(ps, 0x7ffffff0);
	python_syms__free(ps);
	python_syms__free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_311),	 cmocka_unit_test(test_line_310),
		cmocka_unit_test(test_frame_tag),	 cmocka_unit_test(test_layouts),
		cmocka_unit_test(test_probe_not_python), cmocka_unit_test(test_syms_gone_process),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
