/* Unit tests of shared collectors (collect/pool.c) on real cpu collectors profiling this test
 * process: captures with the same options share one collector, each window reports only what
 * happened while it was open, a pid stays a target while a window has it, the last leave frees
 * the collector, and a window without a pool has a pool of its own. Needs root (BPF). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "collect/collector.h"
#include "collect/pool.h"
#include "pprof/builder.h"
#include "profile.pb-c.h"
#include "util/log.h"

#define FREQ 499

static pid_t self;

static struct collect_opts opts_of(int freq)
{
	return (struct collect_opts){
		.pids = &self,
		.npids = 1,
		.freq = freq,
		.no_kernel_stacks = true,
		.unwind_mode = CPROF_UNWIND_FP,
	};
}

/* Burns s seconds of this thread's CPU time, so that samples come however busy the machine. */
static void spin(double s)
{
	struct timespec t;
	double start, now;
	volatile uint64_t x = 0;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	start = t.tv_sec + t.tv_nsec / 1e9;
	do {
		for (int i = 0; i < 100000; i++)
			x += i;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
		now = t.tv_sec + t.tv_nsec / 1e9;
	} while (now - start < s);
}

/* The samples a window's drain reports: the sum of the first value of every sample. */
static uint64_t drain_samples(struct collector_window *w)
{
	struct collector *c = collector_window__collector(w);
	struct pprof_resolver res = {};
	struct pprof_config cfg = {};
	struct collect_stats st;
	struct pprof_builder *b;
	Perftools__Profiles__Profile *p;
	uint64_t n = 0;
	uint8_t *raw;
	size_t len;

	c->ops->pprof_config(c, &cfg);
	b = pprof_builder__new(&cfg, &res);
	assert_non_null(b);
	assert_int_equal(collector_window__drain(w, b, &st), 0);
	assert_true(st.bpf[CPROF_STAT_SAMPLES] > 0);
	assert_int_equal(pprof_builder__encode(b, false, &raw, &len), 0);
	p = perftools__profiles__profile__unpack(NULL, len, raw);
	assert_non_null(p);
	for (size_t i = 0; i < p->n_sample; i++)
		n += (uint64_t)p->sample[i]->value[0];
	perftools__profiles__profile__free_unpacked(p, NULL);
	free(raw);
	pprof_builder__free(b);
	return n;
}

static struct collector_pool_stats pool_stats(struct collector_pool *p)
{
	struct collector_pool_stats st;

	collector_pool__stats(p, collector__find("cpu"), &st);
	return st;
}

static struct collector_window *join(struct collector_pool *p, int freq)
{
	struct collect_opts o = opts_of(freq);
	struct collector_window *w = NULL;

	assert_int_equal(collector_pool__join(p, collector__find("cpu"), &o, &w), 0);
	assert_non_null(w);
	return w;
}

static int setup(void **state)
{
	struct collector_pool *p = collector_pool__new();
	struct collector_window *w = NULL;
	struct collect_opts o = opts_of(FREQ);

	(void)state;
	self = getpid();
	log_verbosity = LOG_ERROR - 1; /* quiet: failures are expected in one test */
	log__route_libbpf();
	if (geteuid() != 0 || !p)
		goto skip;
	/* A kernel or user that cannot load BPF: nothing to test here. */
	if (collector_pool__join(p, collector__find("cpu"), &o, &w)) {
		collector_pool__free(p);
		goto skip;
	}
	collector_window__leave(w);
	collector_pool__free(p);
	return 0;
skip:
	fprintf(stderr, "test_pool: needs root and BPF; skipped\n");
	return -1;
}

/* Same options: one collector; other options: another; the last leave frees each. */
static void test_join_shares_and_last_leave_frees(void **state)
{
	struct collector_pool *p = collector_pool__new();
	struct collector_window *a, *b, *c;
	struct collector_pool_stats st;

	(void)state;
	assert_non_null(p);
	a = join(p, FREQ);
	st = pool_stats(p);
	assert_int_equal(st.loaded, 1);
	assert_int_equal(st.windows, 1);
	assert_int_equal(st.opened, 1);
	assert_int_equal(st.joined, 0);
	b = join(p, FREQ);
	assert_ptr_equal(collector_window__collector(a), collector_window__collector(b));
	c = join(p, FREQ + 2);
	assert_ptr_not_equal(collector_window__collector(a), collector_window__collector(c));
	st = pool_stats(p);
	assert_int_equal(st.loaded, 2);
	assert_int_equal(st.windows, 3);
	assert_int_equal(st.opened, 2);
	assert_int_equal(st.joined, 1);
	assert_int_equal(st.most_windows, 2);
	collector_window__leave(c);
	assert_int_equal(pool_stats(p).loaded, 1);
	collector_window__leave(a);
	st = pool_stats(p);
	assert_int_equal(st.loaded, 1); /* b still has it */
	assert_int_equal(st.windows, 1);
	collector_window__leave(b);
	st = pool_stats(p);
	assert_int_equal(st.loaded, 0);
	assert_int_equal(st.windows, 0);
	/* The next join loads a new one: no keep-warm. */
	a = join(p, FREQ);
	assert_int_equal(pool_stats(p).opened, 3);
	collector_window__leave(a);
	collector_pool__free(p); /* ASan: nothing of the collectors is left */
}

/* A window reports what happened while it was open: B, open for a third of A's CPU time, gets
 * about a third of A's samples, and leaving B does not take the pid away from A. */
static void test_windows_count_their_own_part(void **state)
{
	struct collector_pool *p = collector_pool__new();
	struct collector_window *a, *b;
	uint64_t na, nb;

	(void)state;
	assert_non_null(p);
	a = join(p, FREQ);
	spin(0.4);
	b = join(p, FREQ);
	spin(0.4);
	nb = drain_samples(b);
	collector_window__leave(b);
	spin(0.4);
	na = drain_samples(a);
	collector_window__leave(a);
	collector_pool__free(p);
	fprintf(stderr, "test_pool: window A %llu samples, window B %llu\n", (unsigned long long)na,
		(unsigned long long)nb);
	assert_true(nb > 0);
	assert_true(na > nb);
	assert_true(nb * 10 >= na * 1 && nb * 10 <= na * 6); /* a third, within noise */
	/* A's pid stayed a target after B left: A's last third counted. */
	assert_true(na >= nb * 2);
}

/* Without a pool, the window has one of its own: everything since its collector started, and
 * the leave frees the pool with the collector. */
static void test_pool_of_one(void **state)
{
	struct collector_window *w = join(NULL, FREQ);
	uint64_t n;

	(void)state;
	collector_window__set_deadline(w, INT64_MAX);
	spin(0.3);
	n = drain_samples(w);
	collector_window__leave(w); /* ASan: the pool and its collector are freed */
	assert_true(n > 0);
}

/* A join that cannot load its collector fails, leaves nothing loaded, and frees its window. */
static void test_failed_join_leaves_nothing(void **state)
{
	struct collector_pool *p = collector_pool__new();
	struct collector_window *w = NULL;
	struct collect_opts o = opts_of(FREQ);

	(void)state;
	collector_window__leave(NULL);
	o.max_keys = UINT32_MAX; /* an aggregation map the kernel cannot allocate */
	assert_true(collector_pool__join(p, collector__find("cpu"), &o, &w) < 0);
	assert_null(w);
	assert_int_equal(pool_stats(p).loaded, 0);
	assert_int_equal(pool_stats(p).windows, 0);
	assert_true(collector_pool__join(NULL, collector__find("cpu"), &o, &w) < 0);
	assert_null(w);
	collector_pool__free(p); /* ASan: the failed windows were freed */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_join_shares_and_last_leave_frees),
		cmocka_unit_test(test_windows_count_their_own_part),
		cmocka_unit_test(test_pool_of_one),
		cmocka_unit_test(test_failed_join_leaves_nothing),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
