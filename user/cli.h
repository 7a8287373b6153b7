/* Command-line options of record, serve, agent and watch: one table (cli__options, in
 * cli/table.c) says for every option its name, short flag, argument, parser, range, help text,
 * the commands that take it and serve's query parameter where it has one. The table drives
 * getopt_long, --help, the checks and their messages, and serve's per-request parameters;
 * every value lands in one struct cli_opts, handed to the command as it is.
 *
 *   cli.c         the driver: getopt_long from the table, --help, one-line errors
 *   cli/table.c   the table and the parsers of its own kinds of values
 *   cli/values.c  numbers, seconds, sizes, ages, pid lists, trigger rules
 *   cli/commands.c each command's usage text, defaults and checks across options */
#ifndef CPROF_CLI_H
#define CPROF_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

enum out_format {
	FORMAT_PPROF,
	FORMAT_FOLDED,
	FORMAT_TOP,
	FORMAT_TEXT,	/* threads: Go's goroutine dump (debug=2), a block per thread */
	FORMAT_GROUPED, /* threads: stacks grouped with their counts (Go's debug=1) */
};

enum cli_cmd {
	CLI_RECORD,
	CLI_SERVE,
	CLI_AGENT,
	CLI_WATCH, /* the agent's triggers only, for -p PID */
	CLI_NCMDS,
};
#define CLI_R (1u << CLI_RECORD)
#define CLI_S (1u << CLI_SERVE)
#define CLI_A (1u << CLI_AGENT)
#define CLI_W (1u << CLI_WATCH)

#define CLI_MAX_OPTIONS	       96 /* rows of the table */
#define CLI_MAX_LABELS	       6  /* --label; the samples carry 6 more of their own */
#define CLI_MAX_MUTEX_FRACTION 1000000000l
#define CLI_MAX_BLOCK_RATE     3600000000000l /* an hour */

#define TRIGGER_MAX_RULES 16

enum trigger_metric {
	TRIGGER_CPU,	 /* percent of one core, all threads */
	TRIGGER_RSS,	 /* bytes */
	TRIGGER_THREADS, /* count */
};

/* A --trigger rule (agent, watch; agent/trigger.c runs them). */
struct trigger_rule {
	enum trigger_metric metric;
	bool spike;	  /* value > factor x moving average (after warm-up), else value > limit */
	double limit;	  /* absolute threshold */
	double factor;	  /* spike factor */
	double min_delta; /* a spike must also exceed the average by this much (noise floor) */
	char text[48];	  /* as given: "cpu>80", "rss>2x" */
	char name[48];	  /* label-safe: "cpu_gt_80", "rss_spike_2x" */
};

struct cli_label {
	char *key, *value;
};

/* Every option of every command. A command reads the fields of the options it takes (the
 * table's cmds); the others keep their zero or default. */
struct cli_opts {
	enum cli_cmd command;
	bool given[CLI_MAX_OPTIONS]; /* by row of cli__options: on the command line */

	/* Targets (record -p/-a/-- CMD; agent --trigger-pid, watch -p) */
	pid_t *pids;
	size_t npids;
	bool all;
	char **cmd; /* -- CMD ARGS (NULL-terminated), or NULL */

	/* Capture: record, serve (defaults of every request), agent (windows) */
	const char *type;	    /* -t; "cpu" */
	double duration;	    /* -d seconds; 0 = until Ctrl-C / target exit / SIGTERM */
	int freq;		    /* -F Hz */
	uint32_t max_keys;	    /* --max-stacks: aggregation map entries; 0 = default */
	bool no_kernel;		    /* --no-kernel */
	bool demangle;		    /* --demangle=full|none */
	const char *debug_dir;	    /* --debug-dir: root of separate debug files, NULL: default */
	int unwind;		    /* --unwind: enum cprof_unwind_mode */
	uint64_t unwind_mem;	    /* --unwind-mem: bytes of unwind tables at most; 0 = default */
	double unwind_cpu;	    /* --unwind-cpu: percent of a core for building tables */
	const char *unwind_cache;   /* --unwind-cache: tables kept across restarts; NULL: off */
	uint64_t unwind_cache_size; /* --unwind-cache-size: bytes of it at most */
	uint64_t heap_sample_bytes; /* --heap-sample-bytes: mean bytes between heap samples */
	uint32_t heap_max_live;	    /* --heap-max-live: sampled blocks tracked until freed */
	bool heap_alloc_only;	    /* --heap-alloc-only: no free probes, alloc_* only */
	long min_wait_us;	    /* --min-wait (mutex) in microseconds, -1 = not given */
	long min_block_us;	    /* --min-block (offcpu) in microseconds, -1 = not given */
	uint32_t mutex_fraction;    /* --mutex-fraction N: about 1 lock wait in N; 0 = all */
	uint64_t block_rate_ns;	    /* --block-rate NS: Go's block profile rate; 0 = all */

	/* record's output */
	const char *output; /* -o; "-" = stdout; NULL = default for the format */
	enum out_format format;
	int top_rows; /* --format top: rows shown */

	/* serve */
	const char *listen;	/* --listen HOST:PORT (serve; agent: /metrics, NULL = none) */
	const char *token_file; /* --token-file */
	const char *tls_cert;	/* --tls-cert, --tls-key */
	const char *tls_key;
	int max_captures;	  /* --max-captures: captures running at once; more get 503 */
	double max_seconds;	  /* --max-seconds: the longest capture a request may ask for */
	unsigned idle_timeout;	  /* --idle-timeout: seconds an idle connection stays open */
	unsigned request_timeout; /* --request-timeout: seconds to send a request's head */
	unsigned max_connections; /* --max-connections: open connections at once */
	unsigned max_per_client;  /* --max-per-client: open connections from one address */

	/* agent and watch */
	bool watch;	  /* `watch`: triggers for -p PID only, no windows */
	double interval;  /* seconds per window */
	const char *host; /* host label; NULL: gethostname() */
	struct cli_label labels[CLI_MAX_LABELS];
	int nlabels;
	const char *out_dir; /* the local store */
	bool no_store;
	double max_age;		 /* seconds */
	uint64_t max_size;	 /* bytes of window files kept */
	uint64_t min_free;	 /* bytes the file system keeps free (bit 63: a percentage) */
	const char *push_url;	 /* Pyroscope base URL */
	const char *tenant;	 /* X-Scope-OrgID */
	char *basic_auth;	 /* user:password, read from --basic-auth-file */
	char *bearer_token;	 /* read from --bearer-token-file */
	const char *app_name;	 /* service name for every push; NULL: label or executable */
	double push_timeout;	 /* seconds per request */
	uint64_t queue_max_size; /* bytes of pushes waiting on disk */
	double retry_max;	 /* longest backoff between retries, seconds */
	struct trigger_rule rules[TRIGGER_MAX_RULES];
	int nrules;
	double trigger_duration;  /* seconds of full-rate capture */
	double trigger_cooldown;  /* seconds before the same rule fires again for a process */
	int trigger_warmup;	  /* checks before spike rules may fire */
	double trigger_check;	  /* seconds between checks */
	int trigger_freq;	  /* Hz of the triggered capture */
	const char *listen_token; /* --listen-token-file: /metrics needs this token */
	uint64_t max_rss;	  /* bytes; above it the symbol caches are dropped */
};

enum cli_kind {
	CLI_FLAG,    /* no argument: sets a bool */
	CLI_INT,     /* an integer in [min, max] */
	CLI_SECONDS, /* a number, fractions allowed, in [min, max] */
	CLI_SIZE, /* a size (K, M, G, T suffixes; plain numbers count unit bytes), in [min, max] */
	CLI_AGE,  /* 30, 90m, 24h, 7d: seconds in [min, max] */
	CLI_STRING,  /* kept as given */
	CLI_CUSTOM,  /* parse() */
	CLI_HELP,    /* -h: prints --help */
	CLI_VERSION, /* -V: prints the version */
};

/* The --help sections; a command names those it shows (cli/commands.c). */
enum cli_section {
	CLI_SEC_TARGET,
	CLI_SEC_SERVER,
	CLI_SEC_CAPTURE,
	CLI_SEC_STORE,
	CLI_SEC_PUSH,
	CLI_SEC_TRIGGER,
	CLI_SEC_OPS,
	CLI_SEC_GENERAL,
	CLI_NSECTIONS,
};

struct cli_option;
/* Parses arg into o. Returns 0, or -EINVAL / -ERANGE with msg empty (the driver writes
 * "invalid WHAT 'ARG': ..., expected RANGE") or holding a message of its own. */
typedef int (*cli_parse_fn)(const struct cli_option *opt, const char *arg, struct cli_opts *o,
			    char *msg, size_t len);

struct cli_option {
	const char *name; /* --name; NULL: a line of help only (record's "-- CMD") */
	int short_flag;	  /* -x; 0: none */
	enum cli_kind kind;
	unsigned cmds;	  /* CLI_R | CLI_S | CLI_A | CLI_W: the commands that take it */
	size_t off, size; /* its field in struct cli_opts (kinds but CLI_CUSTOM) */
	double min, max;  /* CLI_INT, CLI_SECONDS, CLI_SIZE (bytes), CLI_AGE */
	uint64_t unit;	  /* CLI_SIZE: bytes of a plain number */
	cli_parse_fn parse;
	const char *arg;   /* the value's name in --help */
	const char *help;  /* lines after the first are indented under it */
	const char *what;  /* errors: "invalid WHAT 'ARG'"; NULL: --name */
	const char *range; /* errors: "expected RANGE" */
	const char *type;  /* record: the profile type (-t) it applies to; NULL: any */
	const char *query; /* serve: the query parameter that sets it per request */
	enum cli_section sec;
	/* Why a flag (or short flag) that another row also has differs there: each of two rows
	 * with one name says why (the unit test holds the table to it). */
	const char *why;
};

extern const struct cli_option cli__options[];
extern const size_t cli__noptions;

/* Parses argv of a command (argv[0] is its name; record's may be the program). Returns 0, 1
 * when it printed --help or --version (exit 0), or -EINVAL after a one-line error (exit 2).
 * cli__free is due in every case. */
int cli__parse(enum cli_cmd cmd, int argc, char **argv, struct cli_opts *o);
void cli__free(struct cli_opts *o);
/* The defaults of cmd (what cli__parse starts from). */
void cli__defaults(enum cli_cmd cmd, struct cli_opts *o);
/* Writes cmd's --help. */
void cli__help(enum cli_cmd cmd, FILE *f);
/* The row of name ("freq") that cmd takes, or NULL. */
const struct cli_option *cli__find(enum cli_cmd cmd, const char *name);

/* --min-wait (type mutex) or --min-block (offcpu) in nanoseconds; 0 for other types or when
 * not given. */
uint64_t cli__min_wait_ns(const struct cli_opts *o, const char *type);

/* serve: the row whose query parameter is param (pid, seconds, hz, fraction, rate), or NULL. */
const struct cli_option *cli__query_option(const char *param);
/* Parses arg as opt does (its parser, its range) into o. On error msg is one line naming what
 * (NULL: the option's own name). Returns 0, -EINVAL or -ERANGE. */
int cli__apply(const struct cli_option *opt, const char *what, const char *arg, struct cli_opts *o,
	       char *msg, size_t len);

/* Writes "invalid WHAT 'ARG': NAN|out of range, expected RANGE" (nan NULL: "invalid WHAT 'ARG':
 * expected RANGE") into msg. Returns err, or -EINVAL when err is 0. */
int cli__bad_value(char *msg, size_t len, const char *what, const char *arg, int err,
		   const char *nan, const char *range);

/* --- cli/values.c: strict parsers; return 0, -EINVAL (not a number) or -ERANGE --- */
/* A whole decimal integer in [min, max]. */
int cli__parse_long(const char *s, long min, long max, long *out);
/* A decimal number of seconds (may have a fraction) in [min, max]. */
int cli__parse_seconds(const char *s, double min, double max, double *out);
/* A size: a number (fractions allowed) with an optional K, M, G or T suffix (binary; "B" or
 * "iB" may follow); a plain number counts plain_unit bytes. */
int cli__parse_size(const char *s, uint64_t plain_unit, uint64_t *out);
/* "30", "1.5", "10s", "5m", "2h", "7d": seconds, at most a year. -EINVAL when not. */
int cli__parse_age(const char *s, double *out);
/* "cpu>80", "rss>512M", "threads>100" (absolute) or "cpu>2x", "rss>1.5x" (spike). */
int trigger_rule__parse(const char *s, struct trigger_rule *r);

#endif
