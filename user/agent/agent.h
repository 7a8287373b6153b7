/* cprof-bpf agent: always-on, system-wide CPU profiling in windows, stored locally and/or pushed
 * to Pyroscope, plus triggered full-rate captures. `watch` runs only the triggers. */
#ifndef CPROF_AGENT_AGENT_H
#define CPROF_AGENT_AGENT_H

#include "cli.h"

/* Runs until SIGTERM/SIGINT (or --duration). Returns the exit status: 0, or 1 on failure. */
int agent__run(const struct cli_opts *o);

#endif
