/* Unit tests of util/gentle: the idle scheduling class for the caller and the threads it starts,
 * back to the caller's class at the deadline (a watchdog at the caller's class) or at the stop. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/gentle.h"

static void *policy_of_new_thread(void *arg)
{
	*(int *)arg = sched_getscheduler(0);
	return NULL;
}

static void test_idle_until_stopped(void **state)
{
	struct gentle *g;
	pthread_t t;
	int child = -1;

	(void)state;
	assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
	g = gentle__start(60 * 1000);
	assert_non_null(g);
	assert_int_equal(sched_getscheduler(0), SCHED_IDLE);
	assert_int_equal(pthread_create(&t, NULL, policy_of_new_thread, &child), 0);
	pthread_join(t, NULL);
	assert_int_equal(child, SCHED_IDLE); /* threads started meanwhile inherit it */
	gentle__stop(g);
	assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
}

static void test_deadline_restores(void **state)
{
	struct timespec tick = {0, 10 * 1000000};
	struct gentle *g;
	int i;

	(void)state;
	g = gentle__start(50);
	assert_non_null(g);
	assert_int_equal(sched_getscheduler(0), SCHED_IDLE);
	/* The watchdog puts us back after 50 ms (waiting up to 10 s for it, on a loaded machine). */
	for (i = 0; i < 1000 && sched_getscheduler(0) == SCHED_IDLE; i++)
		nanosleep(&tick, NULL);
	assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
	gentle__stop(g);
	assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
}

static void test_stop_null(void **state)
{
	(void)state;
	gentle__stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle_until_stopped),
		cmocka_unit_test(test_deadline_restores),
		cmocka_unit_test(test_stop_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
