/* The agent's session (agent.c: its window loop) and its table of processes (procs.c: what is
 * known of each process for its labels and symbols, fed by the collector's notices). */
#ifndef CPROF_AGENT_SESSION_H
#define CPROF_AGENT_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/internal.h"
#include "collect/collector.h"
#include "sym/symbolizer.h"

/* What the agent knows of one process, for its labels. */
struct aproc {
	pid_t pid;
	uint64_t starttime;
	char *exe, *cgroup;
	char container[16];
	bool dead;	   /* exited: forget it once its last window is drained */
	bool exec_pending; /* exec'd since it was read: its labels are read again when seen */
	uint64_t dead_at;  /* the window being collected or drained when it was seen gone */
	/* Its code mappings at its exec, kept until it is read (at its first sample): a process
	 * gone by then is symbolized from these. */
	struct proc_maps *exec_maps;
};

struct session {
	struct agent *a;
	struct collector *col;
	struct symbolizer *sym;
	struct symbolizer_opts so;
	struct hashmap *procs; /* pid -> struct aproc */
	struct bpf_map *seen;
	uint64_t sym_adds;   /* processes added to sym since it was created */
	uint64_t procs_read; /* mappings snapshots taken (notices handled) */
	uint64_t procs_missed, procs_missed_prev;
	uint64_t procs_late; /* gone before read: snapshotted from what their exec saw */
	struct collect_stats prev;
	double cpu_prev;
	uint64_t nwindow;
	int64_t next_t0, next_m0; /* when the last drain started */
	int64_t last_poll;	  /* CLOCK_MONOTONIC ns of the last look at the notices */
};

/* Handles notices that came since the last look (at most every few ms). */
void session__poll(struct session *s);

/* The collector's on_proc: a process new, sampled, exec'd, mapping code or gone. */
void procs__on_proc(void *ctx, const struct cprof_proc_event *e, const struct proc_read *rd);
/* The collector's pid_labels: exe, cgroup, container_id, host and --label's. */
int procs__labels(void *ctx, pid_t pid, struct pprof_label *labels, int max);
/* After a window: forgets exited processes whose last window is written, and replaces the
 * symbolizer when it has taken many processes or the agent is over --max-rss. */
void procs__evict(struct session *s);
/* Frees the table. */
void procs__free(struct session *s);

#endif
