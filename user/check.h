#ifndef CPROF_CHECK_H
#define CPROF_CHECK_H

/* `cprof-bpf check`: loads every BPF program of every profile type, in each configuration the
 * tool uses, and prints the instructions the verifier processed. Returns the exit status. */
int check__run(int argc, char **argv);

#endif
