/* Unit tests for the agent's pure parts: trigger rules and their firing logic (warm-up, moving
 * average, cooldown), /proc/PID/stat and cgroup parsing, size and duration options, and the
 * per-service split of a profile. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <zlib.h>

#include "agent/internal.h"
#include "cli.h"
#include "agent/trigger.h"
#include "pprof/builder.h"
#include "proc/stat.h"
#include "profile.pb-c.h"

static void test_rule_parse(void **state)
{
	struct trigger_rule r;

	(void)state;
	assert_int_equal(trigger_rule__parse("cpu>80", &r), 0);
	assert_int_equal(r.metric, TRIGGER_CPU);
	assert_false(r.spike);
	assert_true(r.limit == 80);
	assert_string_equal(r.name, "cpu_gt_80");
	assert_int_equal(trigger_rule__parse("rss>512M", &r), 0);
	assert_true(r.limit == 512.0 * 1024 * 1024);
	assert_int_equal(trigger_rule__parse("threads>1.5x", &r), 0);
	assert_true(r.spike && r.factor == 1.5);
	assert_string_equal(r.name, "threads_spike_1_5x");
}

static void test_rule_parse_rejects(void **state)
{
	static const char *const bad[] = {"cpu",    "cpu>",    "mem>3",	  "cpu>0",   "cpu>1x",
					  "cpu>-5", "rss>12Q", "cpu>3xx", "cpu>80%", ">5"};
	struct trigger_rule r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(trigger_rule__parse(bad[i], &r), -EINVAL);
}

static int check(const struct trigger_rule *rules, int n, struct trigger_state *st, double cpu,
		 double now)
{
	const double v[3] = {cpu, 100e6, 4};

	return trigger__check(rules, n, 3, 10.0, st, v, now, NULL);
}

static void test_absolute_and_cooldown(void **state)
{
	struct trigger_rule r;
	struct trigger_state st = {};

	(void)state;
	assert_int_equal(trigger_rule__parse("cpu>50", &r), 0);
	assert_int_equal(check(&r, 1, &st, 10, 1), -1);
	assert_int_equal(check(&r, 1, &st, 60, 2), 0);	/* no warm-up for absolute rules */
	assert_int_equal(check(&r, 1, &st, 90, 3), -1); /* cooldown (10 s) */
	assert_int_equal(check(&r, 1, &st, 90, 11.9), -1);
	assert_int_equal(check(&r, 1, &st, 90, 12.1), 0); /* cooled down */
}

static void test_spike_warmup_and_floor(void **state)
{
	struct trigger_rule r;
	struct trigger_state st = {};

	(void)state;
	assert_int_equal(trigger_rule__parse("cpu>3x", &r), 0);
	/* A spike during warm-up (3 checks) does not fire. */
	assert_int_equal(check(&r, 1, &st, 1, 1), -1);
	assert_int_equal(check(&r, 1, &st, 40, 2), -1);
	st = (struct trigger_state){};
	for (int i = 0; i < 5; i++)
		assert_int_equal(check(&r, 1, &st, 1, i), -1);
	/* 4x the average but only 3 points above it: under the noise floor. */
	assert_int_equal(check(&r, 1, &st, 4, 6), -1);
	st = (struct trigger_state){};
	for (int i = 0; i < 5; i++)
		assert_int_equal(check(&r, 1, &st, 2, i), -1);
	assert_int_equal(check(&r, 1, &st, 30, 6), 0);
	/* Steady high load is no spike: the average follows it. */
	st = (struct trigger_state){};
	for (int i = 0; i < 20; i++)
		assert_int_equal(check(&r, 1, &st, 90, i), -1);
}

static void test_first_rule_that_fires_wins(void **state)
{
	struct trigger_rule r[2];
	struct trigger_state st = {};
	const double v[3] = {10, 900e6, 4};

	(void)state;
	assert_int_equal(trigger_rule__parse("cpu>50", &r[0]), 0);
	assert_int_equal(trigger_rule__parse("rss>512M", &r[1]), 0);
	assert_int_equal(trigger__check(r, 2, 3, 60, &st, v, 1, NULL), 1);
	assert_int_equal(trigger__check(r, 2, 3, 60, &st, v, 2, NULL), -1);
}

static void test_stat_parse(void **state)
{
	/* comm with spaces and a parenthesis; fields as the kernel writes them. */
	static const char text[] =
		"4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 0 0 20 0 7 0 "
		"123456 10000000 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
	struct proc_stat st;

	(void)state;
	assert_int_equal(proc_stat__parse(text, &st), 0);
	assert_int_equal(st.state, 'S');
	assert_int_equal(st.flags, 4194560);
	assert_int_equal(st.cpu_ticks, 200);
	assert_int_equal(st.num_threads, 7);
	assert_int_equal(st.starttime, 123456);
	assert_int_equal(st.rss_bytes, 2560ull * sysconf(_SC_PAGESIZE));
	assert_int_equal(proc_stat__parse("12 (x) S 1", &st), -EINVAL);
	assert_int_equal(proc_stat__parse("garbage", &st), -EINVAL);
}

static void test_container_id(void **state)
{
	char id[16];

	(void)state;
	assert_int_equal(proc__container_id(
				 "/system.slice/docker-"
				 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
				 ".scope",
				 id, sizeof(id)),
			 0);
	assert_string_equal(id, "0123456789ab");
	assert_int_equal(proc__container_id("/kubepods/burstable/pod1234/"
					    "fedcba9876543210fedcba9876543210fedcba9876543210fed"
					    "cba9876543210",
					    id, sizeof(id)),
			 0);
	assert_string_equal(id, "fedcba987654");
	assert_int_equal(
		proc__container_id("/user.slice/user-0.slice/session-1.scope", id, sizeof(id)),
		-ENOENT);
	/* 65 hex digits is not an id. */
	assert_int_equal(proc__container_id("/x/0123456789abcdef0123456789abcdef0123456789abcdef"
					    "0123456789abcdef0",
					    id, sizeof(id)),
			 -ENOENT);
}

static void test_sizes_and_durations(void **state)
{
	uint64_t v;
	double d;

	(void)state;
	assert_int_equal(cli__parse_size("4096", 1, &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(cli__parse_size("1.5K", 1, &v), 0);
	assert_int_equal(v, 1536);
	assert_int_equal(cli__parse_size("2G", 1, &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(cli__parse_size("256MiB", 1, &v), 0);
	assert_int_equal(v, 256ull << 20);
	assert_int_equal(cli__parse_size("12Q", 1, &v), -EINVAL);
	assert_int_equal(cli__parse_size("-1", 1, &v), -EINVAL);
	assert_int_equal(cli__parse_size("", 1, &v), -EINVAL);
	/* --unwind-mem: a plain number is MiB, a suffix still wins. */
	assert_int_equal(cli__parse_size("64", 1 << 20, &v), 0);
	assert_int_equal(v, 64ull << 20);
	assert_int_equal(cli__parse_size("64K", 1 << 20, &v), 0);
	assert_int_equal(v, 64ull << 10);
	assert_int_equal(cli__parse_age("90m", &d), 0);
	assert_true(d == 5400);
	assert_int_equal(cli__parse_age("7d", &d), 0);
	assert_true(d == 7 * 86400);
	assert_int_equal(cli__parse_age("1.5", &d), 0);
	assert_true(d == 1.5);
	assert_int_equal(cli__parse_age("5w", &d), -EINVAL);
	assert_int_equal(cli__parse_age("10mm", &d), -EINVAL);
}

static void test_sanitize(void **state)
{
	char out[32];

	(void)state;
	push__sanitize("prod-eu,1{x}=y z", out, sizeof(out));
	assert_string_equal(out, "prod-eu_1_x__y_z");
}

/* Two services in one profile: each part holds only its samples and what they reference. */
struct parts {
	int n;
	char svc[4][32];
	size_t nsamples[4], nlocs[4];
};

static uint8_t *gunzip(const uint8_t *gz, size_t len, size_t *out_len)
{
	size_t cap = 1 << 20;
	uint8_t *out = malloc(cap);
	z_stream zs = {.next_in = (Bytef *)gz, .avail_in = (uInt)len};

	assert_non_null(out);
	assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
	*out_len = zs.total_out;
	inflateEnd(&zs);
	return out;
}

static int on_part(void *ctx, const char *svc, const uint8_t *gz, size_t len)
{
	struct parts *p = ctx;
	Perftools__Profiles__Profile *prof;
	size_t rawlen;
	uint8_t *raw;
	int i = p->n++;

	assert_true(i < 4);
	snprintf(p->svc[i], sizeof(p->svc[i]), "%s", svc);
	raw = gunzip(gz, len, &rawlen);
	prof = perftools__profiles__profile__unpack(NULL, rawlen, raw);
	assert_non_null(prof);
	p->nsamples[i] = prof->n_sample;
	p->nlocs[i] = prof->n_location;
	/* Every location a sample names is in the part. */
	for (size_t k = 0; k < prof->n_sample; k++)
		for (size_t j = 0; j < prof->sample[k]->n_location_id; j++) {
			bool found = false;

			for (size_t l = 0; l < prof->n_location; l++)
				found |= prof->location[l]->id == prof->sample[k]->location_id[j];
			assert_true(found);
		}
	perftools__profiles__profile__free_unpacked(prof, NULL);
	free(raw);
	return 0;
}

static void test_split_by_service(void **state)
{
	struct pprof_config cfg = {.nvalues = 1,
				   .sample_types = {{"samples", "count"}},
				   .period_type = {"cpu", "nanoseconds"},
				   .period = 1};
	struct pprof_builder *b = pprof_builder__new(&cfg, NULL);
	uint64_t a_stack[] = {0x1000, 0x2000}, b_stack[] = {0x3000};
	struct pprof_raw_sample s = {.pid = 1, .ustack = a_stack, .nustack = 2, .values = {5}};
	struct parts parts = {};
	uint8_t *raw;
	size_t len;

	(void)state;
	assert_non_null(b);
	s.labels[0] = (struct pprof_label){.key = "exe", .str = "/usr/bin/alpha"};
	s.nlabels = 1;
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	s.pid = 2;
	s.ustack = b_stack;
	s.nustack = 1;
	s.labels[0] = (struct pprof_label){.key = "exe", .str = "/opt/beta"};
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	s.nlabels = 0; /* a kernel thread: no executable */
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	assert_int_equal(pprof_builder__encode(b, false, &raw, &len), 0);
	assert_int_equal(split__by_label(raw, len, "exe", true, "unknown", on_part, &parts), 0);
	assert_int_equal(parts.n, 3);
	assert_string_equal(parts.svc[0], "alpha");
	assert_string_equal(parts.svc[1], "beta");
	assert_string_equal(parts.svc[2], "unknown");
	assert_int_equal(parts.nsamples[0], 1);
	assert_int_equal(parts.nlocs[0], 2); /* alpha's two frames, not beta's */
	assert_int_equal(parts.nsamples[1], 1);
	assert_int_equal(parts.nlocs[1], 1);
	assert_int_equal(parts.nsamples[2], 1);
	assert_int_equal(
		split__by_label((const uint8_t *)"\xff\xff", 2, "exe", true, "u", on_part, &parts),
		-EINVAL);
	free(raw);
	pprof_builder__free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule_parse),
		cmocka_unit_test(test_rule_parse_rejects),
		cmocka_unit_test(test_absolute_and_cooldown),
		cmocka_unit_test(test_spike_warmup_and_floor),
		cmocka_unit_test(test_first_rule_that_fires_wins),
		cmocka_unit_test(test_stat_parse),
		cmocka_unit_test(test_container_id),
		cmocka_unit_test(test_sizes_and_durations),
		cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_split_by_service),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
