#ifndef CPROF_RECORD_H
#define CPROF_RECORD_H

#include "cli.h"

/* Runs a one-shot session: attach, collect until the duration ends, Ctrl-C or the targets
 * exit, then write the profile. Returns the process exit status (0, 1). */
int record__run(const struct cli_opts *o);

#endif
