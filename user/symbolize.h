/* `cprof-bpf symbolize`: addr2line for the symbolizer, so profiles' addresses can be resolved
 * offline and the symbolizer can be compared with addr2line and eu-addr2line. */
#ifndef CPROF_SYMBOLIZE_H
#define CPROF_SYMBOLIZE_H

/* Returns the exit status (0, 1 runtime failure, 2 usage error). */
int symbolize__run(int argc, char **argv);

#endif
