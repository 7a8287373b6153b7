/* Drop reasons in user space: the rows of bpf/cprof.h's CPROF_COUNTERS table that count a loss,
 * each one's count in a collector's stats, and the places every reason is reported: the
 * profile's comments and stderr (drops__report), and Prometheus text for serve's and the
 * agent's /metrics (drops__prometheus). A new reason is a new row of the table; a USER_DROP row
 * also needs its field in drops__count (the compiler says so). */
#ifndef CPROF_COLLECT_DROPS_H
#define CPROF_COLLECT_DROPS_H

#include <stdint.h>

#include "collect/collector.h"
#include "cprof.h"

struct pprof_builder;
struct strbuf;

struct drop_reason {
	const char *name; /* the `reason` label of /metrics: [a-z_]+ */
	const char *text; /* "dropped: N text" in the comments, "N text" on stderr */
};

/* The reason d (d < CPROF_DROP_NR). */
const struct drop_reason *drops__reason(enum cprof_drop d);
/* How many of reason d st counts. */
uint64_t drops__count(const struct collect_stats *st, enum cprof_drop d);
/* Adds st's count of every reason to sum. */
void drops__add(uint64_t sum[CPROF_DROP_NR], const struct collect_stats *st);
/* Says what was lost: a "dropped: N text" comment and an "N text" stderr warning per reason
 * with a count, or the comment "dropped: nothing". Never a silently short profile. */
void drops__report(struct pprof_builder *b, const struct collect_stats *st);
/* One Prometheus sample per reason, zeros included: `metric{LABELS,reason="name"} N`. labels
 * is a list of `key="value"` pairs without braces, or "" for none. */
void drops__prometheus(struct strbuf *b, const char *metric, const char *labels,
		       const uint64_t counts[CPROF_DROP_NR]);

#endif
