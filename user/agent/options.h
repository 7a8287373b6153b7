/* Options of `cprof-bpf agent` and `cprof-bpf watch`, parsed in one place. */
#ifndef CPROF_AGENT_OPTIONS_H
#define CPROF_AGENT_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/trigger.h"

#define AGENT_MAX_LABELS 6 /* user labels (--label); the samples carry 6 more of their own */

struct agent_label {
	char *key, *value;
};

struct agent_opts {
	bool watch; /* `watch`: triggers for -p PID only, no windows */
	/* Windows */
	double interval;   /* seconds per window */
	int freq;	   /* Hz per CPU */
	uint32_t max_keys; /* --max-stacks */
	bool no_kernel;
	int unwind;	     /* enum cprof_unwind_mode */
	uint64_t unwind_mem; /* bytes of unwind tables; 0 = default */
	double unwind_cpu;   /* --unwind-cpu: percent of a core for building tables; 0 = no limit */
	const char *host;    /* host label; NULL: gethostname() */
	struct agent_label labels[AGENT_MAX_LABELS];
	int nlabels;
	double duration; /* stop after this many seconds (tests, benchmarks); 0: until SIGTERM */
	/* Local store */
	const char *out_dir;
	bool no_store;
	double max_age;	   /* seconds */
	uint64_t max_size; /* bytes of window files kept */
	uint64_t min_free; /* bytes the file system keeps free; windows are dropped before */
	/* Push */
	const char *push_url;	 /* Pyroscope base URL */
	const char *tenant;	 /* X-Scope-OrgID */
	char *basic_auth;	 /* user:password, read from --basic-auth-file */
	char *bearer_token;	 /* read from --bearer-token-file */
	const char *app_name;	 /* service name for every push; NULL: label or executable */
	double push_timeout;	 /* seconds per request */
	uint64_t queue_max_size; /* bytes of pushes waiting on disk */
	double retry_max;	 /* longest backoff between retries, seconds */
	/* Triggers */
	struct trigger_rule rules[TRIGGER_MAX_RULES];
	int nrules;
	double trigger_duration; /* seconds of full-rate capture */
	double trigger_cooldown; /* seconds before the same rule fires again for a process */
	int trigger_warmup;	 /* checks before spike rules may fire */
	double trigger_check;	 /* seconds between checks */
	int trigger_freq;	 /* Hz of the triggered capture */
	pid_t *pids;		 /* watch -p / agent --trigger-pid: only these processes */
	size_t npids;
	/* Operations */
	const char *listen;	  /* --listen ADDR:PORT for /metrics and /healthz */
	const char *listen_token; /* --listen-token-file: /metrics needs this token */
	uint64_t max_rss;	  /* bytes; above it the symbol caches are dropped */
};

/* Parses argv of `agent` (watch false) or `watch`. Returns 0, 1 when it printed --help
 * (exit 0), or -EINVAL after a one-line error (exit 2). */
int agent_opts__parse(int argc, char **argv, bool watch, struct agent_opts *o);
void agent_opts__free(struct agent_opts *o);

/* "30", "1.5", "10s", "5m", "2h", "7d": seconds. Returns 0 or -EINVAL. */
int agent_opts__parse_duration(const char *s, double *out);

#endif
