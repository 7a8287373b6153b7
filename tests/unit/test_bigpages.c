/* Unit tests of util/bigpages: after bigpages__heap, a large block (that malloc would otherwise
 * map on its own) and a block allocated by a thread started afterwards both come from one
 * stretch of memory the kernel was told to back with huge pages (VmFlags "hg" in smaps). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/bigpages.h"

/* Whether the mapping of this process holding p is advised for huge pages. */
static bool advised_huge(const void *p)
{
	uintptr_t a = (uintptr_t)p, lo = 0, hi = 0;
	char line[512];
	bool in = false, huge = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		/* A mapping's first line: "lo-hi perms ..."; its fields' lines read "Name: ...". */
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &lo, &hi) == 2) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			huge = strstr(line, " hg") != NULL;
			break;
		}
	}
	fclose(f);
	return huge;
}

static void *thread_alloc(void *arg)
{
	void **out = arg;

	*out = malloc(1 << 20);
	return NULL;
}

static void test_heap_on_huge_pages(void **state)
{
	void *big, *from_thread = NULL;
	pthread_t t;
	int err;

	(void)state;
	err = bigpages__heap(16 << 20);
	if (err == -EOPNOTSUPP)
		skip(); /* transparent huge pages are off here */
	assert_int_equal(err, 0);
	big = malloc(6 << 20); /* above malloc's usual threshold for a mapping of its own */
	assert_non_null(big);
	memset(big, 1, 6 << 20);
	/* Its middle: the block starts where the heap does, maybe before the first huge page. */
	assert_true(advised_huge((char *)big + (3 << 20)));
	assert_int_equal(pthread_create(&t, NULL, thread_alloc, &from_thread), 0);
	pthread_join(t, NULL);
	assert_non_null(from_thread);
	assert_true(advised_huge(from_thread));
	free(from_thread);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_heap_on_huge_pages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
