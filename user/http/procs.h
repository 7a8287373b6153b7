/* The process table of the index page: pid, command, CPU% and RSS of every user process. CPU% is
 * measured between two readings of /proc/PID/stat (100% = one core busy), like top: the first
 * call reads twice 100 ms apart, later calls measure since the previous reading and reuse a
 * table younger than a second, so a busy index page costs little. Thread safe. */
#ifndef CPROF_HTTP_PROCS_H
#define CPROF_HTTP_PROCS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct proc_row {
	pid_t pid;
	char comm[16];
	char cmdline[160]; /* arguments joined by spaces, cut; "[comm]" when empty */
	double cpu;	   /* percent of one core */
	uint64_t rss;	   /* bytes */
};

struct procs_table;

struct procs_table *procs_table__new(void);
void procs_table__free(struct procs_table *t);
/* A copy of the current table, busiest first (free() it). *interval is the measuring window in
 * seconds. Returns 0 or -errno. */
int procs_table__get(struct procs_table *t, struct proc_row **rows, size_t *n, double *interval);

#endif
