/* What cli.c (the driver) needs of each command: cli/commands.c. */
#ifndef CPROF_CLI_INTERNAL_H
#define CPROF_CLI_INTERNAL_H

#include "cli.h"

struct cli_section_title {
	enum cli_section sec;
	const char *title; /* NULL: the rows follow the section before without a heading */
};

struct cli_command {
	const char *name;
	const char *see;    /* errors end with "see SEE" */
	bool stop_at_arg;   /* getopt stops at the first non-option (record's -- CMD -x) */
	const char *usage;  /* --help before the options */
	const char *footer; /* --help after them */
	struct cli_section_title sections[CLI_NSECTIONS]; /* in --help's order */
	size_t nsections;
	void (*defaults)(struct cli_opts *o);
	/* Checks across options once all are parsed; argv[optind..] are the non-options. Prints
	 * one line and returns -EINVAL when they do not go together. */
	int (*check)(struct cli_opts *o, int argc, char **argv);
};

extern const struct cli_command cli__commands[CLI_NCMDS];

#endif
