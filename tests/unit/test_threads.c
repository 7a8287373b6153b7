/* Unit tests of the threads snapshot's description (user/threads/describe.c): a futex wait in
 * pthread_mutex_lock names the mutex's owner (glibc's __owner at offset 8), wait-for cycles are
 * found with every member, a chain of waits is no deadlock, a free mutex links to nobody, and
 * states and durations read as ps and people say them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "threads/snapshot.h"

#define FUTEX_WAIT_PRIVATE 128
#define TASK_INTERRUPTIBLE 1

/* A thread of process 100 waiting in pthread_mutex_lock on the mutex at lock, whose __owner
 * is owner (0: free); or, with lock 0, sleeping in nanosleep. */
static void add(struct threads_snapshot *s, uint32_t tid, uint64_t lock, uint32_t owner)
{
	struct cprof_thread r = {
		.pid = 100, .tid = tid, .ns_tid = tid, .state = TASK_INTERRUPTIBLE};

	snprintf(r.comm, sizeof(r.comm), "t%u", tid);
	r.flags = CPROF_THREAD_USER_REGS | CPROF_THREAD_IN_SYSCALL;
	if (lock) {
		r.flags |= CPROF_THREAD_FUTEX_READ;
		r.syscall = 202; /* futex */
		r.args[0] = lock;
		r.args[1] = FUTEX_WAIT_PRIVATE;
		r.args[2] = 2;
		r.futex[0] = owner ? 2 : 0; /* __lock: locked with waiters, or free */
		r.futex[1] = owner;	    /* __owner, at offset 8 */
	} else {
		r.syscall = 230; /* clock_nanosleep */
	}
	assert_int_equal(threads_snapshot__add(s, &r), 0);
}

static struct threads_snapshot *described(void)
{
	struct threads_snapshot *s = threads_snapshot__new();

	assert_non_null(s);
	return s;
}

static void finish(struct threads_snapshot *s)
{
	static const char *const fnames[] = {"__GI___lll_lock_wait", "pthread_mutex_lock"};

	threads_snapshot__sort(s);
	for (size_t i = 0; i < s->n; i++)
		threads__describe(&s->t[i], fnames, s->t[i].rec.syscall == 202 ? 2 : 0);
	assert_int_equal(threads__link(s), 0);
}

static void test_mutex_names_its_holder(void **state)
{
	struct threads_snapshot *s = described();
	char buf[256];

	(void)state;
	add(s, 11, 0, 0);	   /* the holder sleeps */
	add(s, 12, 0x1000, 11);	   /* waits for 11 */
	add(s, 13, 0x2000, 0);	   /* a mutex read as free */
	add(s, 14, 0x3000, 99999); /* an owner not in the snapshot */
	finish(s);
	assert_int_equal(s->t[1].wait, THREAD_WAIT_MUTEX);
	assert_string_equal(s->t[1].wait_label, "mutex");
	assert_int_equal(s->t[1].owner, 0);
	threads__wait_phrase(s, 1, buf, sizeof(buf));
	assert_string_equal(buf, "lock 0x1000 held by thread 11 (t11)");
	assert_true(s->t[2].lock_free);
	assert_int_equal(s->t[2].owner, -1);
	assert_int_equal(s->t[3].owner, -1);
	assert_int_equal(s->ncycles, 0);
	assert_string_equal(s->t[0].wait_label, "clock_nanosleep");
	assert_string_equal(s->t[0].state, "sleeping");
	threads_snapshot__free(s);
}

static void test_cycles_and_chains(void **state)
{
	struct threads_snapshot *s = described();
	char buf[512];

	(void)state;
	/* 21 -> 22 -> 23 -> 21: a deadlock of three; 24 -> 21 waits on the cycle but is not in
	 * it; 25 -> 26 -> 27 (asleep): a chain, no deadlock. */
	add(s, 21, 0xa1, 22);
	add(s, 22, 0xa2, 23);
	add(s, 23, 0xa3, 21);
	add(s, 24, 0xa1, 21);
	add(s, 25, 0xb1, 26);
	add(s, 26, 0xb2, 27);
	add(s, 27, 0, 0);
	finish(s);
	assert_int_equal(s->ncycles, 1);
	assert_int_equal(s->cycles[0].n, 3);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(s->t[i].deadlock, 1);
	for (size_t i = 3; i < s->n; i++)
		assert_int_equal(s->t[i].deadlock, 0);
	threads__cycle_text(s, &s->cycles[0], buf, sizeof(buf));
	assert_non_null(strstr(buf, "thread 21 (t21) waits for lock 0xa1 held by thread 22 (t22)"));
	assert_non_null(strstr(buf, "which waits for lock 0xa2 held by thread 23 (t23)"));
	assert_non_null(strstr(buf, "which waits for lock 0xa3 held by thread 21 (t21)"));
	threads_snapshot__free(s);
}

static void test_states_and_durations(void **state)
{
	char code, buf[32];

	(void)state;
	assert_string_equal(threads__state_name(0, 0, true, &code), "running");
	assert_int_equal(code, 'R');
	assert_string_equal(threads__state_name(1, 0, false, &code), "sleeping");
	assert_int_equal(code, 'S');
	assert_string_equal(threads__state_name(2, 0, false, &code), "disk sleep");
	assert_int_equal(code, 'D');
	assert_string_equal(threads__state_name(0, 32, false, &code), "zombie");
	assert_int_equal(code, 'Z');
	threads__format_duration(850000, buf, sizeof(buf));
	assert_string_equal(buf, "850us");
	threads__format_duration(2310000000ull, buf, sizeof(buf));
	assert_string_equal(buf, "2.31s");
	assert_string_equal(threads__syscall_name(202), "futex");
	assert_null(threads__syscall_name(100000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mutex_names_its_holder),
		cmocka_unit_test(test_cycles_and_chains),
		cmocka_unit_test(test_states_and_durations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
