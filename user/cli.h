/* Command-line options of every subcommand, parsed in one place. */
#ifndef CPROF_CLI_H
#define CPROF_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum out_format {
	FORMAT_PPROF,
	FORMAT_FOLDED,
	FORMAT_TOP,
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
	uint64_t heap_sample_bytes; /* --heap-sample-bytes: mean bytes between heap samples */
	uint32_t heap_max_live;	    /* --heap-max-live: sampled blocks tracked until freed */
};

/* Parses argv for `record` (the default subcommand). Returns 0, 1 when it printed --help or
 * --version (exit 0), or -EINVAL after printing a one-line error (exit 2). */
int cli__parse_record(int argc, char **argv, struct record_opts *o);
void cli__free_record(struct record_opts *o);

/* Strictly parses a whole decimal number in [min, max]. Returns 0 or -EINVAL. */
int cli__parse_long(const char *s, long min, long max, long *out);
/* Strictly parses a decimal number of seconds (may have a fraction) in [min, max]. */
int cli__parse_seconds(const char *s, double min, double max, double *out);

#endif
