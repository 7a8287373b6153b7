/* The driver of the table of options (cli/table.c): getopt_long over the rows a command takes,
 * one parse per row kind, the one-line errors, and --help. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli/internal.h"
#include "util/log.h"

#define HELP_COLUMN 27	  /* where the help text of an option starts */
#define LONG_VAL    0x100 /* getopt_long's val of row i: LONG_VAL + i */

static bool takes(const struct cli_option *opt, enum cli_cmd cmd)
{
	return opt->name && (opt->cmds & (1u << cmd));
}

const struct cli_option *cli__find(enum cli_cmd cmd, const char *name)
{
	for (size_t i = 0; i < cli__noptions; i++)
		if (takes(&cli__options[i], cmd) && strcmp(cli__options[i].name, name) == 0)
			return &cli__options[i];
	return NULL;
}

const struct cli_option *cli__query_option(const char *param)
{
	for (size_t i = 0; i < cli__noptions; i++)
		if (cli__options[i].query && strcmp(cli__options[i].query, param) == 0)
			return &cli__options[i];
	return NULL;
}

int cli__bad_value(char *msg, size_t len, const char *what, const char *arg, int err,
		   const char *nan, const char *range)
{
	if (nan)
		snprintf(msg, len, "invalid %s '%.128s': %s, expected %s", what, arg,
			 err == -ERANGE ? "out of range" : nan, range);
	else
		snprintf(msg, len, "invalid %s '%.128s': expected %s", what, arg, range);
	return err ? err : -EINVAL;
}

/* The row's message for a value it refused: numbers say whether they were out of range. */
static int bad_value(const struct cli_option *opt, const char *what, const char *arg, int err,
		     char *msg, size_t len)
{
	const char *nan = NULL;
	char dashed[64];

	if (!what)
		what = opt->what;
	if (!what) {
		snprintf(dashed, sizeof(dashed), "--%s", opt->name);
		what = dashed;
	}
	if (opt->kind == CLI_INT)
		nan = "not an integer";
	else if (opt->kind == CLI_SECONDS || opt->kind == CLI_SIZE)
		nan = "not a number";
	return cli__bad_value(msg, len, what, arg, err, nan, opt->range);
}

/* Stores v in a field of size bytes (int, unsigned, uint32_t: 4; long, uint64_t: 8). The
 * table's ranges keep v within the field's type. */
static void store_int(void *field, size_t size, long v)
{
	if (size == sizeof(int32_t)) {
		int32_t x = (int32_t)v;

		memcpy(field, &x, sizeof(x));
	} else {
		int64_t x = v;

		memcpy(field, &x, sizeof(x));
	}
}

/* A number-like kind into its field: 0, -EINVAL or -ERANGE. */
static int apply_number(const struct cli_option *opt, const char *arg, void *field)
{
	uint64_t u;
	double d;
	long v;
	int err;

	switch (opt->kind) {
	case CLI_INT:
		if (!(err = cli__parse_long(arg, (long)opt->min, (long)opt->max, &v)))
			store_int(field, opt->size, v);
		return err;
	case CLI_SECONDS:
		if (!(err = cli__parse_seconds(arg, opt->min, opt->max, &d)))
			memcpy(field, &d, sizeof(d));
		return err;
	case CLI_SIZE:
		err = cli__parse_size(arg, opt->unit, &u);
		if (!err && ((double)u < opt->min || (double)u > opt->max))
			err = -ERANGE;
		if (!err)
			memcpy(field, &u, sizeof(u));
		return err;
	case CLI_AGE:
		if (cli__parse_age(arg, &d) || d < opt->min || d > opt->max)
			return -EINVAL;
		memcpy(field, &d, sizeof(d));
		return 0;
	default:
		return -EINVAL;
	}
}

int cli__apply(const struct cli_option *opt, const char *what, const char *arg, struct cli_opts *o,
	       char *msg, size_t len)
{
	void *field = (char *)o + opt->off;
	bool yes = true;
	int err;

	msg[0] = 0;
	switch (opt->kind) {
	case CLI_FLAG:
		memcpy(field, &yes, sizeof(yes));
		return 0;
	case CLI_STRING:
		memcpy(field, &arg, sizeof(arg));
		return 0;
	case CLI_CUSTOM:
		err = opt->parse(opt, arg, o, msg, len);
		break;
	case CLI_HELP:
	case CLI_VERSION:
		return 0;
	default:
		err = apply_number(opt, arg, field);
	}
	if (err == -ENOMEM)
		snprintf(msg, len, "out of memory");
	else if (err && !msg[0])
		bad_value(opt, what, arg, err, msg, len);
	return err;
}

/* getopt_long's options and short flags of the rows cmd takes. */
static void getopt_table(enum cli_cmd cmd, struct option *longs, char *shorts)
{
	size_t nl = 0, ns = 0;

	if (cli__commands[cmd].stop_at_arg)
		shorts[ns++] = '+';
	for (size_t i = 0; i < cli__noptions; i++) {
		const struct cli_option *opt = &cli__options[i];
		bool arg = opt->kind != CLI_FLAG && opt->kind != CLI_HELP &&
			   opt->kind != CLI_VERSION && opt->arg;

		if (!takes(opt, cmd))
			continue;
		longs[nl++] = (struct option){opt->name, arg ? required_argument : no_argument,
					      NULL, LONG_VAL + (int)i};
		if (opt->short_flag) {
			shorts[ns++] = (char)opt->short_flag;
			if (arg)
				shorts[ns++] = ':';
		}
	}
	longs[nl] = (struct option){0};
	shorts[ns] = 0;
}

/* The row getopt_long returned: LONG_VAL + i for a long option, the character of a short. */
static int row_of(enum cli_cmd cmd, int val)
{
	if (val >= LONG_VAL)
		return val - LONG_VAL;
	for (size_t i = 0; i < cli__noptions; i++)
		if (takes(&cli__options[i], cmd) && cli__options[i].short_flag == val)
			return (int)i;
	return -1;
}

/* Says what getopt_long did not take: a value missing, an option of another command (or of
 * none). */
static int refused(enum cli_cmd cmd, char **argv)
{
	const char *see = cli__commands[cmd].see, *arg = argv[optind - 1];
	int i = optopt ? row_of(cmd, optopt) : -1;

	if (optopt >= LONG_VAL)
		pr_err("option --%s needs a value; see %s\n", cli__options[optopt - LONG_VAL].name,
		       see);
	else if (i >= 0)
		pr_err("option -%c needs a value; see %s\n", optopt, see);
	else if (optopt)
		pr_err("option -%c is unknown to %s; see %s\n", optopt, cli__commands[cmd].name,
		       see);
	else
		pr_err("unknown option '%s'; see %s\n", arg, see);
	return -EINVAL;
}

/* One option getopt_long found: 0, 1 (help or version printed) or -EINVAL (said why). */
static int one(enum cli_cmd cmd, int val, char **argv, struct cli_opts *o)
{
	int i = val == '?' ? -1 : row_of(cmd, val);
	char msg[512];

	if (i < 0)
		return refused(cmd, argv);
	if (cli__options[i].kind == CLI_HELP) {
		cli__help(cmd, stdout);
		return 1;
	}
	if (cli__options[i].kind == CLI_VERSION) {
		printf("cprof-bpf %s\n", CPROF_VERSION);
		return 1;
	}
	o->given[i] = true;
	if (cli__apply(&cli__options[i], NULL, optarg, o, msg, sizeof(msg))) {
		pr_err("%s\n", msg);
		return -EINVAL;
	}
	return 0;
}

void cli__defaults(enum cli_cmd cmd, struct cli_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->command = cmd;
	cli__commands[cmd].defaults(o);
}

int cli__parse(enum cli_cmd cmd, int argc, char **argv, struct cli_opts *o)
{
	struct option longs[CLI_MAX_OPTIONS + 1];
	char shorts[2 * CLI_MAX_OPTIONS + 2];
	int val, err;

	cli__defaults(cmd, o);
	getopt_table(cmd, longs, shorts);
	optind = 0; /* glibc: start afresh, even after an earlier parse stopped midway */
	opterr = 0;
	while ((val = getopt_long(argc, argv, shorts, longs, NULL)) != -1)
		if ((err = one(cmd, val, argv, o)))
			return err;
	return cli__commands[cmd].check(o, argc, argv);
}

void cli__free(struct cli_opts *o)
{
	for (int i = 0; i < o->nlabels; i++) {
		free(o->labels[i].key);
		free(o->labels[i].value);
	}
	o->nlabels = 0;
	free(o->pids);
	o->pids = NULL;
	o->npids = 0;
	free(o->basic_auth);
	free(o->bearer_token);
	o->basic_auth = o->bearer_token = NULL;
}

/* "  -F, --freq HZ            help", the help's further lines under its first. */
static void help_row(FILE *f, enum cli_cmd cmd, const struct cli_option *opt)
{
	const char *h = opt->help;
	int n;

	if (!opt->name)
		n = fprintf(f, "  %s", opt->arg);
	else if (opt->short_flag)
		n = fprintf(f, "  -%c, --%s", opt->short_flag, opt->name);
	else
		n = fprintf(f, "      --%s", opt->name);
	if (opt->name && opt->arg)
		n += fprintf(f, " %s", opt->arg);
	if (n < HELP_COLUMN - 1)
		fprintf(f, "%*s", HELP_COLUMN - n, "");
	else
		fprintf(f, "\n%*s", HELP_COLUMN, "");
	while (h) {
		const char *nl = strchr(h, '\n');

		fprintf(f, "%.*s\n", nl ? (int)(nl - h) : (int)strlen(h), h);
		h = nl ? nl + 1 : NULL;
		if (h)
			fprintf(f, "%*s", HELP_COLUMN, "");
	}
	if (cmd == CLI_SERVE && opt->query && (opt->cmds & CLI_S))
		fprintf(f, "%*s(a request: %s=)\n", HELP_COLUMN, "", opt->query);
}

void cli__help(enum cli_cmd cmd, FILE *f)
{
	const struct cli_command *c = &cli__commands[cmd];

	fputs(c->usage, f);
	for (size_t s = 0; s < c->nsections; s++) {
		bool titled = false;

		for (size_t i = 0; i < cli__noptions; i++) {
			const struct cli_option *opt = &cli__options[i];

			if (!(opt->cmds & (1u << cmd)) || opt->sec != c->sections[s].sec)
				continue;
			if (!titled && c->sections[s].title)
				fprintf(f, "%s\n", c->sections[s].title);
			titled = true;
			help_row(f, cmd, opt);
		}
	}
	fputs(c->footer, f);
}
