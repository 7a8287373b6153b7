/* Triggers: rules on a process's CPU%, RSS and thread count, checked every few seconds from
 * /proc, that start a full-rate CPU capture of that process when they fire (the idea of
 * mosn/holmes, from outside the process, for any process). */
#ifndef CPROF_AGENT_TRIGGER_H
#define CPROF_AGENT_TRIGGER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TRIGGER_MAX_RULES 16

enum trigger_metric {
	TRIGGER_CPU,	 /* percent of one core, all threads */
	TRIGGER_RSS,	 /* bytes */
	TRIGGER_THREADS, /* count */
};

struct trigger_rule {
	enum trigger_metric metric;
	bool spike;	  /* value > factor x moving average (after warm-up), else value > limit */
	double limit;	  /* absolute threshold */
	double factor;	  /* spike factor */
	double min_delta; /* a spike must also exceed the average by this much (noise floor) */
	char text[48];	  /* as given: "cpu>80", "rss>2x" */
	char name[48];	  /* label-safe: "cpu_gt_80", "rss_spike_2x" */
};

/* Parses "cpu>80", "rss>512M", "threads>100" (absolute) or "cpu>2x", "rss>1.5x" (spike).
 * Returns 0 or -EINVAL. */
int trigger_rule__parse(const char *s, struct trigger_rule *r);

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
