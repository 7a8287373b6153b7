#ifndef CPROF_UTIL_PREFLIGHT_H
#define CPROF_UTIL_PREFLIGHT_H

/* Checks, before anything is attached, that this kernel and this user can run BPF profilers:
 * root or CAP_BPF + CAP_PERFMON, kernel BTF. Prints a one-line reason and returns -errno. */
int preflight__check(void);

#endif
