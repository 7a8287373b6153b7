/* `cprof-bpf serve`: net/http/pprof's URLs for every process on the machine, a flame graph page,
 * /metrics and /healthz, on the HTTP server of http/server.h. Runs until SIGINT or SIGTERM;
 * captures still running then end early and send what they collected. */
#ifndef CPROF_SERVE_H
#define CPROF_SERVE_H

#include "cli.h"

/* Returns the exit status: 0, or 1 after a one-line error. */
int serve__run(const struct cli_opts *o);

#endif
