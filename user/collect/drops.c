/* Drop reasons, from the CPROF_COUNTERS table of bpf/cprof.h. */
#include <inttypes.h>

#include "collect/drops.h"
#include "pprof/builder.h"
#include "util/log.h"
#include "util/strbuf.h"

#define REASON(id, kind, name, text) CPROF_IN_DROPS_##kind({name, text}, )
static const struct drop_reason reasons[CPROF_DROP_NR] = {CPROF_COUNTERS(REASON)};

const struct drop_reason *drops__reason(enum cprof_drop d)
{
	return &reasons[d];
}

/* A BPF_DROP row is its slot of the stats array; a USER_DROP row is a field of collect_stats,
 * named here. No default: a new USER_DROP row does not build until it has its field. */
#define COUNT_BPF_DROP(id)                                                                         \
	case CPROF_DROP_##id:                                                                      \
		return st->bpf[CPROF_STAT_##id];
#define COUNT_BPF_COUNT(id)
#define COUNT_USER_DROP(id)
#define COUNT(id, kind, name, text) COUNT_##kind(id)
uint64_t drops__count(const struct collect_stats *st, enum cprof_drop d)
{
	switch (d) {
		CPROF_COUNTERS(COUNT)
	case CPROF_DROP_STACK_EVICTED:
		return st->lost_stack_reads;
	case CPROF_DROP_STACK_TRUNCATED:
		return st->truncated_stacks;
	case CPROF_DROP_PROCS_MISSED:
		return st->procs_missed;
	case CPROF_DROP_UNWIND_OVER_BUDGET:
		return st->unwind.over_budget;
	case CPROF_DROP_UNWIND_FAILED:
		return st->unwind.failed;
	case CPROF_DROP_UNWIND_EVICTIONS:
		return st->unwind.evicted;
	case CPROF_DROP_PROG_MISSES:
		return st->prog_misses;
	case CPROF_DROP_NR:
		break;
	}
	return 0;
}

void drops__add(uint64_t sum[CPROF_DROP_NR], const struct collect_stats *st)
{
	for (int d = 0; d < CPROF_DROP_NR; d++)
		sum[d] += drops__count(st, d);
}

void drops__report(struct pprof_builder *b, const struct collect_stats *st)
{
	uint64_t n, total = 0;

	for (int d = 0; d < CPROF_DROP_NR; d++) {
		n = drops__count(st, d);
		if (!n)
			continue;
		total += n;
		pprof_builder__add_comment(b, "dropped: %" PRIu64 " %s", n, reasons[d].text);
		pr_warn("%" PRIu64 " %s\n", n, reasons[d].text);
	}
	if (!total)
		pprof_builder__add_comment(b, "dropped: nothing");
}

void drops__prometheus(struct strbuf *b, const char *metric, const char *labels,
		       const uint64_t counts[CPROF_DROP_NR])
{
	for (int d = 0; d < CPROF_DROP_NR; d++)
		strbuf__printf(b, "%s{%s%sreason=\"%s\"} %" PRIu64 "\n", metric, labels,
			       *labels ? "," : "", reasons[d].name, counts[d]);
}
