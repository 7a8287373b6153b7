/* Unit tests of the drop-reason table (bpf/cprof.h's CPROF_COUNTERS, collect/drops.c): every
 * reason has a name and a text, its own count, and reaches the profile's comments, stderr, and
 * the Prometheus text of serve's and the agent's /metrics. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/internal.h"
#include "collect/drops.h"
#include "pprof/builder.h"
#include "profile.pb-c.h"
#include "util/strbuf.h"

/* Every drop reason gets a different non-zero count: bpf slots 1000 + slot, user-side fields
 * 2000 + k. */
static void fill_stats(struct collect_stats *st)
{
	*st = (struct collect_stats){};
	for (int i = 0; i < CPROF_STAT_NR; i++)
		st->bpf[i] = 1000 + i;
	st->lost_stack_reads = 2001;
	st->truncated_stacks = 2002;
	st->procs_missed = 2003;
	st->unwind.over_budget = 2004;
	st->unwind.failed = 2005;
	st->prog_misses = 2006;
	st->unwind.evicted = 2007;
}

static void test_every_reason_has_a_name_and_text(void **state)
{
	(void)state;
	assert_true(CPROF_DROP_NR >= 20);
	for (int d = 0; d < CPROF_DROP_NR; d++) {
		const struct drop_reason *r = drops__reason(d);

		assert_non_null(r->name);
		assert_non_null(r->text);
		assert_true(strlen(r->name) > 2 && strlen(r->text) > 10);
		assert_int_equal(strspn(r->name, "abcdefghijklmnopqrstuvwxyz_"), strlen(r->name));
		for (int e = 0; e < d; e++) {
			assert_string_not_equal(r->name, drops__reason(e)->name);
			assert_string_not_equal(r->text, drops__reason(e)->text);
		}
	}
}

/* Each reason reads its own counter: all counts differ, none is zero. */
static void test_every_reason_has_its_count(void **state)
{
	struct collect_stats st;
	uint64_t sum[CPROF_DROP_NR] = {};

	(void)state;
	fill_stats(&st);
	for (int d = 0; d < CPROF_DROP_NR; d++) {
		assert_true(drops__count(&st, d) >= 1000);
		for (int e = 0; e < d; e++)
			assert_true(drops__count(&st, d) != drops__count(&st, e));
	}
	assert_int_equal(drops__count(&st, CPROF_DROP_KEYS_FULL), 1000 + CPROF_STAT_KEYS_FULL);
	assert_int_equal(drops__count(&st, CPROF_DROP_PROCS_MISSED), 2003);
	drops__add(sum, &st);
	drops__add(sum, &st);
	for (int d = 0; d < CPROF_DROP_NR; d++)
		assert_int_equal(sum[d], 2 * drops__count(&st, d));
}

static Perftools__Profiles__Profile *report(const struct collect_stats *st, char *err_text,
					    size_t err_len)
{
	struct pprof_config cfg = {.nvalues = 1,
				   .sample_types = {{"samples", "count"}},
				   .period_type = {"samples", "count"},
				   .period = 1};
	struct pprof_resolver res = {};
	struct pprof_builder *b;
	Perftools__Profiles__Profile *p;
	FILE *tmp = tmpfile();
	int fd = tmp ? fileno(tmp) : -1, saved = dup(2);
	uint8_t *raw;
	size_t len;
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0);
	b = pprof_builder__new(&cfg, &res);
	assert_non_null(b);
	/* stderr goes to the file while the report is written. */
	fflush(stderr);
	dup2(fd, 2);
	drops__report(b, st);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, err_text, err_len - 1, 0);
	fclose(tmp);
	err_text[n > 0 ? n : 0] = 0;
	assert_int_equal(pprof_builder__encode(b, false, &raw, &len), 0);
	p = perftools__profiles__profile__unpack(NULL, len, raw);
	assert_non_null(p);
	free(raw);
	pprof_builder__free(b);
	return p;
}

static bool has_comment(const Perftools__Profiles__Profile *p, const char *want)
{
	for (size_t i = 0; i < p->n_comment; i++)
		if (strcmp(p->string_table[p->comment[i]], want) == 0)
			return true;
	return false;
}

static void test_every_reason_reaches_comments_and_stderr(void **state)
{
	struct collect_stats st;
	Perftools__Profiles__Profile *p;
	static char err[16384];
	char line[512];

	(void)state;
	fill_stats(&st);
	p = report(&st, err, sizeof(err));
	assert_int_equal(p->n_comment, CPROF_DROP_NR);
	for (int d = 0; d < CPROF_DROP_NR; d++) {
		snprintf(line, sizeof(line), "dropped: %llu %s",
			 (unsigned long long)drops__count(&st, d), drops__reason(d)->text);
		assert_true(has_comment(p, line));
		snprintf(line, sizeof(line), "%llu %s\n", (unsigned long long)drops__count(&st, d),
			 drops__reason(d)->text);
		assert_non_null(strstr(err, line));
	}
	perftools__profiles__profile__free_unpacked(p, NULL);

	/* Nothing lost: one comment saying so, nothing on stderr. Counts that are no loss (samples,
	 * frames unwound) do not make a drop. */
	st = (struct collect_stats){};
	st.bpf[CPROF_STAT_SAMPLES] = 5;
	st.bpf[CPROF_STAT_UNWIND_TABLE_FRAMES] = 7;
	p = report(&st, err, sizeof(err));
	assert_int_equal(p->n_comment, 1);
	assert_true(has_comment(p, "dropped: nothing"));
	assert_string_equal(err, "");
	perftools__profiles__profile__free_unpacked(p, NULL);
}

static void test_prometheus_has_every_reason(void **state)
{
	struct strbuf b = {};
	uint64_t counts[CPROF_DROP_NR];
	char line[256];

	(void)state;
	for (int d = 0; d < CPROF_DROP_NR; d++)
		counts[d] = 300 + d;
	drops__prometheus(&b, "cprof_dropped_total", "type=\"cpu\"", counts);
	drops__prometheus(&b, "x_total", "", counts);
	assert_int_equal(strbuf__err(&b), 0);
	for (int d = 0; d < CPROF_DROP_NR; d++) {
		snprintf(line, sizeof(line), "cprof_dropped_total{type=\"cpu\",reason=\"%s\"} %d\n",
			 drops__reason(d)->name, 300 + d);
		assert_non_null(strstr(b.s, line));
		snprintf(line, sizeof(line), "x_total{reason=\"%s\"} %d\n", drops__reason(d)->name,
			 300 + d);
		assert_non_null(strstr(b.s, line));
	}
	strbuf__free(&b);
}

/* The agent's /metrics: every reason, with what the windows summed. */
static void test_agent_metrics_have_every_reason(void **state)
{
	struct agent a = {};
	char line[256], *text;

	(void)state;
	pthread_mutex_init(&a.lock, NULL);
	for (int d = 0; d < CPROF_DROP_NR; d++)
		a.m.dropped[d] = 500 + d;
	text = metrics__render(&a);
	assert_non_null(text);
	assert_non_null(strstr(text, "# TYPE cprof_agent_dropped_total counter\n"));
	for (int d = 0; d < CPROF_DROP_NR; d++) {
		snprintf(line, sizeof(line), "cprof_agent_dropped_total{reason=\"%s\"} %d\n",
			 drops__reason(d)->name, 500 + d);
		assert_non_null(strstr(text, line));
	}
	/* The older summary figures read the same table. */
	snprintf(line, sizeof(line), "cprof_agent_samples_dropped_total %d\n",
		 500 + CPROF_DROP_KEYS_FULL);
	assert_non_null(strstr(text, line));
	snprintf(line, sizeof(line), "cprof_agent_procs_missed_total %d\n",
		 500 + CPROF_DROP_PROCS_MISSED);
	assert_non_null(strstr(text, line));
	free(text);
	pthread_mutex_destroy(&a.lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_reason_has_a_name_and_text),
		cmocka_unit_test(test_every_reason_has_its_count),
		cmocka_unit_test(test_every_reason_reaches_comments_and_stderr),
		cmocka_unit_test(test_prometheus_has_every_reason),
		cmocka_unit_test(test_agent_metrics_have_every_reason),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
