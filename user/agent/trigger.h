/* Triggers: rules on a process's CPU%, RSS and thread count, checked every few seconds from
 * /proc, that start a full-rate CPU capture of that process when they fire (the idea of
 * mosn/holmes, from outside the process, for any process). */
#ifndef CPROF_AGENT_TRIGGER_H
#define CPROF_AGENT_TRIGGER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cli.h"

/* The rules themselves (struct trigger_rule) are option values: cli.h parses them. */

struct agent;
struct triggers;

/* Starts the watcher thread. Returns 0 or -errno. */
int triggers__start(struct agent *a, struct triggers **out);
/* Stops the thread and waits for a capture under way (it stops early and is written). */
void triggers__stop(struct triggers *t);

/* For tests of the rule logic: one observation of one process; returns the index of the rule
 * that fires, or -1. state is per process, zeroed at first. */
struct trigger_state {
	double avg[3];			     /* moving average per metric */
	int nobs;			     /* observations so far */
	double last_fire[TRIGGER_MAX_RULES]; /* monotonic seconds, 0: never */
};
int trigger__check(const struct trigger_rule *rules, int nrules, int warmup, double cooldown,
		   struct trigger_state *st, const double value[3], double now, double *avg_out);

#endif
