/* Unit tests of the table of options (user/cli/table.c) and its driver (user/cli.c): every
 * option of every command parses, in its short and long form, and lands in its field; every
 * limit holds at both ends; an option another command takes is refused; --help lists every
 * option; rows that share a flag say why they differ; serve's query parameters go through the
 * same rows. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cli.h"
#include "util/log.h"

static const char *const cmd_names[CLI_NCMDS] = {"record", "serve", "agent", "watch"};
static char secret_basic[4096], secret_bearer[4096];

static bool takes(const struct cli_option *opt, enum cli_cmd cmd)
{
	return opt->name && (opt->cmds & (1u << cmd));
}

static void write_file(char *path, size_t len, const char *name, const char *text)
{
	FILE *f;

	snprintf(path, len, "%s/cprof-test-cli-%d-%s", getenv("TMPDIR") ?: "/tmp", getpid(), name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	write_file(secret_basic, sizeof(secret_basic), "basic", "user:pass\n");
	write_file(secret_bearer, sizeof(secret_bearer), "bearer", "t0ken\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(secret_basic);
	unlink(secret_bearer);
	return 0;
}

/* A value the row takes (numbers: the top of the range; the limits are tested apart). */
static const char *good_value(const struct cli_option *opt, char *buf, size_t len)
{
	static const struct {
		const char *name, *value;
	} custom[] = {
		{"pid", "1,2"},		 {"trigger-pid", "3"},	    {"type", "heap"},
		{"format", "top"},	 {"label", "env=ci"},	    {"demangle", "none"},
		{"debug-dir", "/tmp"},	 {"unwind", "fp"},	    {"min-free", "10%"},
		{"push", "http://x:9"},	 {"trigger", "cpu>50"},	    {"listen", "127.0.0.1:0"},
		{"basic-auth-file", ""}, {"bearer-token-file", ""}, {"unwind-cache", "/tmp/c"},
	};

	if (strcmp(opt->name, "basic-auth-file") == 0)
		return secret_basic;
	if (strcmp(opt->name, "bearer-token-file") == 0)
		return secret_bearer;
	switch (opt->kind) {
	case CLI_INT:
	case CLI_SECONDS:
	case CLI_AGE:
		snprintf(buf, len, "%.17g", opt->max);
		return buf;
	case CLI_SIZE:
		snprintf(buf, len, "%.17g", opt->max / (double)opt->unit);
		return buf;
	case CLI_STRING:
		return "127.0.0.1:0";
	case CLI_CUSTOM:
		for (size_t i = 0; i < sizeof(custom) / sizeof(custom[0]); i++)
			if (strcmp(custom[i].name, opt->name) == 0)
				return custom[i].value;
		return NULL; /* -v, -q: no value */
	default:
		return NULL;
	}
}

/* argv of cmd with opt given as flag ("--name" or "-x"), plus what the command needs besides
 * (a target, a rule, the profile type the option applies to, the other half of a pair). */
static int build_argv(enum cli_cmd cmd, const struct cli_option *opt, const char *flag,
		      const char *value, char **argv)
{
	int n = 0;

	argv[n++] = (char *)cmd_names[cmd];
	argv[n++] = (char *)flag;
	if (value)
		argv[n++] = (char *)value;
	if (cmd == CLI_RECORD && strcmp(opt->name, "all") && strcmp(opt->name, "pid")) {
		argv[n++] = "-p";
		argv[n++] = "1";
	}
	if (cmd == CLI_RECORD && opt->type) {
		argv[n++] = "-t";
		argv[n++] = (char *)opt->type;
	}
	if (cmd == CLI_SERVE && strcmp(opt->name, "tls-cert") == 0) {
		argv[n++] = "--tls-key";
		argv[n++] = "k.pem";
	}
	if (cmd == CLI_SERVE && strcmp(opt->name, "tls-key") == 0) {
		argv[n++] = "--tls-cert";
		argv[n++] = "c.pem";
	}
	if ((cmd == CLI_AGENT || cmd == CLI_WATCH) && strcmp(opt->name, "push")) {
		argv[n++] = "--push";
		argv[n++] = "http://x:9";
	}
	if (cmd == CLI_WATCH) {
		argv[n++] = "-p";
		argv[n++] = "1";
		argv[n++] = "--trigger";
		argv[n++] = "cpu>2x";
	}
	argv[n] = NULL;
	return n;
}

/* The field a numeric row wrote, as a double. */
static double field_value(const struct cli_opts *o, const struct cli_option *opt)
{
	const char *p = (const char *)o + opt->off;

	if (opt->kind == CLI_SECONDS || opt->kind == CLI_AGE)
		return *(const double *)p;
	if (opt->kind == CLI_SIZE)
		return (double)*(const uint64_t *)p;
	if (opt->size == sizeof(int32_t))
		return (double)*(const uint32_t *)p; /* every range starts at 0 or more */
	return (double)*(const int64_t *)p;
}

static void parse_one_flag(enum cli_cmd cmd, const struct cli_option *opt, const char *flag)
{
	char *argv[16], buf[64];
	const char *value = good_value(opt, buf, sizeof(buf));
	int argc = build_argv(cmd, opt, flag, value, argv), verbosity = log_verbosity;
	struct cli_opts o;
	int err;

	int out = dup(STDOUT_FILENO), null = open("/dev/null", O_WRONLY);

	/* --help and --version print on stdout: not into the test's output. */
	fflush(stdout);
	dup2(null, STDOUT_FILENO);
	err = cli__parse(cmd, argc, argv, &o);
	fflush(stdout);
	dup2(out, STDOUT_FILENO);
	close(out);
	close(null);
	log_verbosity = verbosity;
	if (opt->kind == CLI_HELP || opt->kind == CLI_VERSION) {
		assert_int_equal(err, 1);
	} else {
		if (err)
			fail_msg("%s %s %s: %d", cmd_names[cmd], flag, value ?: "", err);
		assert_true(o.given[opt - cli__options]);
		if (opt->kind == CLI_FLAG)
			assert_true(*((bool *)((char *)&o + opt->off)));
		if (opt->kind == CLI_STRING)
			assert_ptr_equal(*(const char **)((char *)&o + opt->off), value);
		if (opt->kind == CLI_INT || opt->kind == CLI_SECONDS || opt->kind == CLI_SIZE)
			assert_true(field_value(&o, opt) == opt->max);
	}
	cli__free(&o);
}

static void test_every_flag_of_every_command_parses(void **state)
{
	(void)state;
	for (int cmd = 0; cmd < CLI_NCMDS; cmd++) {
		for (size_t i = 0; i < cli__noptions; i++) {
			const struct cli_option *opt = &cli__options[i];
			char flag[64];

			if (!takes(opt, cmd))
				continue;
			snprintf(flag, sizeof(flag), "--%s", opt->name);
			parse_one_flag(cmd, opt, flag);
			if (opt->short_flag) {
				snprintf(flag, sizeof(flag), "-%c", opt->short_flag);
				parse_one_flag(cmd, opt, flag);
			}
		}
	}
}

/* arg through opt: 0 or the error, whose message names the problem. */
static int apply(const struct cli_option *opt, const char *arg, const char *want)
{
	struct cli_opts o;
	char msg[512];
	int err;

	cli__defaults(CLI_RECORD, &o);
	err = cli__apply(opt, NULL, arg, &o, msg, sizeof(msg));
	if (err && want && !strstr(msg, want))
		fail_msg("--%s %s: '%s' lacks '%s'", opt->name, arg, msg, want);
	if (err && !strstr(msg, "invalid"))
		fail_msg("--%s %s: '%s'", opt->name, arg, msg);
	cli__free(&o);
	return err;
}

static void check_limits(const struct cli_option *opt)
{
	double unit = opt->kind == CLI_SIZE ? (double)opt->unit : 1;
	/* Just outside: one below and one above for integers; a little for the others. */
	double step = opt->kind == CLI_INT || opt->kind == CLI_CUSTOM ? 1
		      : opt->min				      ? opt->min / 100
								      : 0.001;
	char lo[64], hi[64], below[64], above[64];
	const char *range_word = opt->kind == CLI_AGE ? "expected" : "out of range";

	snprintf(lo, sizeof(lo), "%.17g", opt->min / unit);
	snprintf(hi, sizeof(hi), "%.17g", opt->max / unit);
	snprintf(below, sizeof(below), "%.17g", (opt->min - step) / unit);
	snprintf(above, sizeof(above), "%.17g",
		 (opt->max + (opt->max >= 1e18 ? opt->max : step)) / unit);
	if (apply(opt, lo, NULL) || apply(opt, hi, NULL))
		fail_msg("--%s: %s or %s refused", opt->name, lo, hi);
	/* A negative size is not a size at all. */
	assert_int_not_equal(
		apply(opt, below, opt->kind == CLI_SIZE && opt->min == 0 ? NULL : range_word), 0);
	assert_int_not_equal(apply(opt, above, range_word), 0);
	assert_int_not_equal(apply(opt, "x", opt->range), 0);
}

static void test_every_limit_at_both_ends(void **state)
{
	(void)state;
	for (size_t i = 0; i < cli__noptions; i++) {
		const struct cli_option *opt = &cli__options[i];

		if (!opt->name)
			continue;
		if (opt->kind == CLI_INT || opt->kind == CLI_SECONDS || opt->kind == CLI_SIZE ||
		    opt->kind == CLI_AGE || (opt->kind == CLI_CUSTOM && opt->max > 0)) {
			assert_non_null(opt->range);
			check_limits(opt);
		}
	}
}

static void test_flag_of_another_command_is_refused(void **state)
{
	(void)state;
	for (int cmd = 0; cmd < CLI_NCMDS; cmd++) {
		for (size_t i = 0; i < cli__noptions; i++) {
			const struct cli_option *opt = &cli__options[i];
			char *argv[16], flag[64], buf[64];
			struct cli_opts o;
			int argc, err;

			if (!opt->name || takes(opt, cmd) || cli__find(cmd, opt->name))
				continue;
			snprintf(flag, sizeof(flag), "--%s", opt->name);
			argc = build_argv(cmd, opt, flag, good_value(opt, buf, sizeof(buf)), argv);
			err = cli__parse(cmd, argc, argv, &o);
			if (err != -EINVAL)
				fail_msg("%s took %s (%d)", cmd_names[cmd], flag, err);
			cli__free(&o);
		}
	}
}

static void test_help_lists_every_flag(void **state)
{
	(void)state;
	for (int cmd = 0; cmd < CLI_NCMDS; cmd++) {
		char *text = NULL, want[80];
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);

		assert_non_null(f);
		cli__help(cmd, f);
		fclose(f);
		for (size_t i = 0; i < cli__noptions; i++) {
			const struct cli_option *opt = &cli__options[i];

			if (!takes(opt, cmd))
				continue;
			if (opt->short_flag)
				snprintf(want, sizeof(want), "  -%c, --%s", opt->short_flag,
					 opt->name);
			else
				snprintf(want, sizeof(want), "      --%s", opt->name);
			if (!strstr(text, want))
				fail_msg("%s --help lacks '%s'", cmd_names[cmd], want);
			if (cmd == CLI_SERVE && opt->query) {
				snprintf(want, sizeof(want), "(a request: %s=)", opt->query);
				assert_non_null(strstr(text, want));
			}
		}
		free(text);
	}
}

/* One flag, one meaning per command; a flag that two rows have is explained by both. */
static void test_shared_flags_say_why(void **state)
{
	(void)state;
	for (size_t i = 0; i < cli__noptions; i++) {
		const struct cli_option *a = &cli__options[i];

		for (size_t j = i + 1; a->name && j < cli__noptions; j++) {
			const struct cli_option *b = &cli__options[j];
			bool same_name = b->name && strcmp(a->name, b->name) == 0;
			bool same_short = a->short_flag && a->short_flag == b->short_flag;

			if (!same_name && !same_short)
				continue;
			if (a->cmds & b->cmds)
				fail_msg("--%s and --%s: one command has both", a->name, b->name);
			if (!a->why || !b->why)
				fail_msg("--%s and --%s share a flag without saying why", a->name,
					 b->name);
		}
	}
}

static void test_serve_queries_use_the_rows(void **state)
{
	static const char *const queries[] = {"pid", "seconds", "hz", "fraction", "rate"};
	struct cli_opts o;
	char msg[512];

	(void)state;
	for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++)
		assert_non_null(cli__query_option(queries[i]));
	assert_null(cli__query_option("bogus"));
	assert_ptr_equal(cli__query_option("hz"), cli__find(CLI_SERVE, "freq"));
	cli__defaults(CLI_SERVE, &o);
	assert_int_equal(cli__apply(cli__query_option("hz"), "hz", "0", &o, msg, sizeof(msg)),
			 -ERANGE);
	assert_string_equal(msg, "invalid hz '0': out of range, expected 1 to 10000 Hz");
	assert_int_equal(cli__apply(cli__query_option("hz"), "hz", "250", &o, msg, sizeof(msg)), 0);
	assert_int_equal(o.freq, 250);
	assert_int_equal(cli__apply(cli__query_option("pid"), "pid", "7,8", &o, msg, sizeof(msg)),
			 0);
	assert_int_equal(o.npids, 2);
	assert_int_equal(o.pids[1], 8);
	assert_int_not_equal(
		cli__apply(cli__query_option("pid"), "pid", "9,x", &o, msg, sizeof(msg)), 0);
	assert_string_equal(msg, "invalid pid 'x': not an integer, expected 1 to 4194304");
	cli__free(&o);
}

static void test_defaults_and_cross_checks(void **state)
{
	char *rec[] = {"record", "-p", "1", NULL};
	char *heap[] = {"record", "-p", "1", "--heap-alloc-only", NULL};
	char *agent[] = {"agent", "--no-store", NULL};
	struct cli_opts o;

	(void)state;
	assert_int_equal(cli__parse(CLI_RECORD, 3, rec, &o), 0);
	assert_string_equal(o.type, "cpu");
	assert_int_equal(o.freq, 99);
	assert_int_equal(o.min_wait_us, -1);
	cli__free(&o);
	assert_int_equal(cli__parse(CLI_RECORD, 4, heap, &o), -EINVAL);
	cli__free(&o);
	assert_int_equal(cli__parse(CLI_AGENT, 2, agent, &o), -EINVAL);
	cli__free(&o);
	cli__defaults(CLI_AGENT, &o);
	assert_int_equal(o.freq, 19);
	assert_string_equal(o.out_dir, "/var/lib/cprof-bpf");
	cli__defaults(CLI_WATCH, &o);
	assert_true(o.watch);
	assert_string_equal(o.out_dir, ".");
	cli__defaults(CLI_SERVE, &o);
	assert_string_equal(o.listen, "127.0.0.1:6060");
	assert_true(o.max_seconds == 3600);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_flag_of_every_command_parses),
		cmocka_unit_test(test_every_limit_at_both_ends),
		cmocka_unit_test(test_flag_of_another_command_is_refused),
		cmocka_unit_test(test_help_lists_every_flag),
		cmocka_unit_test(test_shared_flags_say_why),
		cmocka_unit_test(test_serve_queries_use_the_rows),
		cmocka_unit_test(test_defaults_and_cross_checks),
	};

	log_verbosity = LOG_ERROR;
	return cmocka_run_group_tests(tests, setup, teardown);
}
