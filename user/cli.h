/* Command-line options of every subcommand, parsed in one place. */
#ifndef CPROF_CLI_H
#define CPROF_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum out_format {
	FORMAT_PPROF,
	FORMAT_FOLDED,
	FORMAT_TOP,
	FORMAT_TEXT,	/* threads: Go's goroutine dump (debug=2), a block per thread */
	FORMAT_GROUPED, /* threads: stacks grouped with their counts (Go's debug=1) */
};

struct record_opts {
	const char *type; /* "cpu" */
	pid_t *pids;	  /* -p */
	size_t npids;
	bool all;	    /* -a */
	char **cmd;	    /* -- CMD ARGS (NULL-terminated), or NULL */
	double duration;    /* -d seconds; 0 = until Ctrl-C / target exit */
	int freq;	    /* -F Hz */
	const char *output; /* -o; "-" = stdout; NULL = default for the format */
	enum out_format format;
	int top_rows;		    /* --format top: rows shown */
	uint32_t max_keys;	    /* --max-stacks: aggregation map entries */
	bool no_kernel;		    /* --no-kernel */
	bool demangle;		    /* --demangle=full|none */
	int unwind;		    /* --unwind: enum cprof_unwind_mode */
	uint64_t unwind_mem;	    /* --unwind-mem: bytes of unwind tables at most; 0 = default */
	const char *debug_dir;	    /* --debug-dir: root of separate debug files, NULL: default */
	uint64_t heap_sample_bytes; /* --heap-sample-bytes: mean bytes between heap samples */
	uint32_t heap_max_live;	    /* --heap-max-live: sampled blocks tracked until freed */
	bool heap_alloc_only;	    /* --heap-alloc-only: no free probes, alloc_* only */

	/* --min-wait (mutex), --min-block (offcpu) in microseconds, -1 = not given */
	long min_wait_us;
	long min_block_us;
	uint32_t mutex_fraction; /* --mutex-fraction N: about 1 lock wait in N; 0 = all */
	uint64_t block_rate_ns;	 /* --block-rate NS: Go's block profile rate; 0 = all */
};

struct serve_opts {
	const char *listen;	/* --listen HOST:PORT (default 127.0.0.1:6060) */
	const char *token_file; /* --token-file */
	const char *tls_cert;	/* --tls-cert, --tls-key */
	const char *tls_key;
	int max_captures;	  /* --max-captures: captures running at once; more get 503 */
	double max_seconds;	  /* --max-seconds: the longest capture a request may ask for */
	unsigned idle_timeout;	  /* --idle-timeout: seconds an idle connection stays open */
	unsigned request_timeout; /* --request-timeout: seconds to send a request's head */
	unsigned max_connections; /* --max-connections: open connections at once */
	unsigned max_per_client;  /* --max-per-client: open connections from one address */
	int freq;		  /* -F: cpu Hz of captures (a request may say hz=) */
	uint32_t max_keys;	  /* --max-stacks */
	bool no_kernel;		  /* --no-kernel */
	bool demangle;		  /* --demangle */
	/* Per-type options of every capture, as record's (same flags, same checks). */
	uint64_t heap_sample_bytes; /* --heap-sample-bytes; 0 = default */
	uint32_t heap_max_live;	    /* --heap-max-live; 0 = default */
	long min_wait_us;	    /* --min-wait (mutex captures), -1 = not given */
	long min_block_us;	    /* --min-block (block captures), -1 = not given */
	uint32_t mutex_fraction;    /* --mutex-fraction (mutex captures; ?fraction=); 0 = all */
	uint64_t block_rate_ns;	    /* --block-rate (block captures; ?rate=); 0 = all */
	const char *debug_dir;	    /* --debug-dir; NULL = /usr/lib/debug */
	int unwind;		    /* --unwind: enum cprof_unwind_mode */
	uint64_t unwind_mem;	    /* --unwind-mem; 0 = default */
};

/* Parses argv for `serve` (argv[0] is "serve"). Returns as cli__parse_record does. */
int cli__parse_serve(int argc, char **argv, struct serve_opts *o);

/* Parses argv for `record` (the default subcommand). Returns 0, 1 when it printed --help or
 * --version (exit 0), or -EINVAL after printing a one-line error (exit 2). */
int cli__parse_record(int argc, char **argv, struct record_opts *o);
void cli__free_record(struct record_opts *o);

/* Strictly parses a whole decimal number in [min, max]. Returns 0 or -EINVAL. */
/* getopt_long over argv (from argv[1]) with the error handling every subcommand shares: -h
 * prints usage and -V the version (both return 1), an unknown option or a missing value is one
 * line on stderr pointing at help (-EINVAL); every other option goes to one(opt, optarg, ctx),
 * whose non-zero return ends the parse with it. optind is then at the first non-option. */
int cli__getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
		const char *usage, const char *help, int (*one)(int, const char *, void *),
		void *ctx);
/* A -p list, "PID[,PID...]", appended to *out (*n of them, malloc'ed), at most max in all.
 * Errors are one line on stderr. Returns 0, -EINVAL or -ENOMEM. */
int cli__parse_pids(const char *arg, size_t max, pid_t **out, size_t *n);
int cli__parse_long(const char *s, long min, long max, long *out);
/* --mutex-fraction / ?fraction=: 1 to CLI_MAX_MUTEX_FRACTION; --block-rate / ?rate=: ns, 1 to
 * CLI_MAX_BLOCK_RATE. Strict; return 0, -EINVAL (not an integer) or -ERANGE (out of range),
 * as cli__parse_long; nothing printed. */
#define CLI_MAX_MUTEX_FRACTION 1000000000l
#define CLI_MAX_BLOCK_RATE     3600000000000l /* an hour */
int cli__parse_mutex_fraction(const char *s, uint32_t *out);
int cli__parse_block_rate(const char *s, uint64_t *out);
/* Strictly parses a decimal number of seconds (may have a fraction) in [min, max]. */
int cli__parse_seconds(const char *s, double min, double max, double *out);
/* Parses a size: a number (fractions allowed) with an optional K, M, G or T suffix (binary;
 * "B" or "iB" may follow); a plain number counts plain_unit bytes. Returns 0 or -EINVAL. */
int cli__parse_size(const char *s, uint64_t plain_unit, uint64_t *out);

#endif
