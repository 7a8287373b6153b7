/* Unit tests of the generic hash map: insert, find, duplicates and growth. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/hashmap.h"

/* A deliberately bad hash: every key collides, so probing alone must keep them apart. */
static uint64_t const_hash(const void *key, void *ctx)
{
	(void)key;
	(void)ctx;
	return 42;
}

static void count_visit(const void *key, void *value, void *ctx)
{
	(void)key;
	(void)value;
	(*(size_t *)ctx)++;
}

static void fill_and_check(struct hashmap *m, int n)
{
	char **keys = calloc(n, sizeof(*keys));
	void *val;
	int i;

	assert_non_null(keys);
	for (i = 0; i < n; i++) {
		assert_true(asprintf(&keys[i], "key-%d", i) > 0);
		assert_int_equal(hashmap__insert(m, keys[i], (void *)(uintptr_t)i), 0);
	}
	assert_int_equal(hashmap__size(m), n);
	for (i = 0; i < n; i++) {
		char probe[32];

		/* A different pointer with equal contents finds the entry. */
		snprintf(probe, sizeof(probe), "key-%d", i);
		assert_true(hashmap__find(m, probe, &val));
		assert_int_equal((uintptr_t)val, i);
		assert_int_equal(hashmap__insert(m, probe, NULL), -EEXIST);
	}
	assert_false(hashmap__find(m, "missing", &val));
	assert_false(hashmap__find(m, "key-", NULL));
	for (i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

static void test_insert_find_grow(void **state)
{
	struct hashmap *m = hashmap__new(hashmap__str_hash, hashmap__str_equal, NULL);

	(void)state;
	assert_non_null(m);
	fill_and_check(m, 10000);
	hashmap__free(m);
}

static void test_collisions(void **state)
{
	struct hashmap *m = hashmap__new(const_hash, hashmap__str_equal, NULL);

	(void)state;
	assert_non_null(m);
	fill_and_check(m, 200);
	hashmap__free(m);
	hashmap__free(NULL);
}

static void test_hash_helpers(void **state)
{
	uint64_t a, b;

	(void)state;
	/* Chaining keeps field boundaries: ("ab", "c") differs from ("a", "bc"). */
	a = hashmap__hash_str(hashmap__hash_str(HASHMAP_HASH_INIT, "ab"), "c");
	b = hashmap__hash_str(hashmap__hash_str(HASHMAP_HASH_INIT, "a"), "bc");
	assert_int_not_equal(a, b);
	assert_int_equal(hashmap__hash_u64(HASHMAP_HASH_INIT, 7),
			 hashmap__hash_u64(HASHMAP_HASH_INIT, 7));
	assert_int_not_equal(hashmap__hash_u64(HASHMAP_HASH_INIT, 7),
			     hashmap__hash_u64(HASHMAP_HASH_INIT, 8));
}

/* Deletes every other key, in maps where all keys collide (one long run) and where they spread,
 * and checks that every remaining key is still found and every deleted one is gone. */
static void check_delete(hashmap_hash_fn hash)
{
	enum {
		N = 2000
	};
	struct hashmap *m = hashmap__new(hash, hashmap__int_equal, NULL);
	const void *old_key;
	void *old_value;
	size_t visited = 0;

	assert_non_null(m);
	for (uintptr_t i = 1; i <= N; i++)
		assert_int_equal(hashmap__insert(m, (void *)i, (void *)(i * 10)), 0);
	for (uintptr_t i = 2; i <= N; i += 2) {
		assert_true(hashmap__delete(m, (void *)i, &old_key, &old_value));
		assert_ptr_equal(old_key, (void *)i);
		assert_ptr_equal(old_value, (void *)(i * 10));
	}
	assert_false(hashmap__delete(m, (void *)(uintptr_t)2, NULL, NULL));
	assert_int_equal(hashmap__size(m), N / 2);
	for (uintptr_t i = 1; i <= N; i++) {
		void *v = NULL;

		assert_int_equal(hashmap__find(m, (void *)i, &v), i % 2 == 1);
		if (i % 2)
			assert_ptr_equal(v, (void *)(i * 10));
	}
	hashmap__for_each(m, count_visit, &visited);
	assert_int_equal(visited, N / 2);
	/* Deleted slots are reusable. */
	assert_int_equal(hashmap__insert(m, (void *)(uintptr_t)2, NULL), 0);
	assert_true(hashmap__find(m, (void *)(uintptr_t)2, NULL));
	hashmap__free(m);
}

static void test_delete(void **state)
{
	(void)state;
	check_delete(hashmap__int_hash);
	check_delete(const_hash);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_insert_find_grow),
		cmocka_unit_test(test_collisions),
		cmocka_unit_test(test_hash_helpers),
		cmocka_unit_test(test_delete),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
