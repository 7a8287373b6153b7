/* cpu: what other collectors reuse of the CPU sampler. */
#ifndef CPROF_COLLECT_CPU_H
#define CPROF_COLLECT_CPU_H

#include <linux/types.h>

struct bpf_program;
struct bpf_link;

/* Opens a cpu-clock perf event of a fixed period_ns on every online CPU and attaches prog to
 * each. *links (calloc'd; the caller frees it and destroys the links) gets *nlinks links, each
 * owning its event fd. Returns 0 or -errno (reported). */
int cpu__attach_clock(struct bpf_program *prog, __u64 period_ns, struct bpf_link ***links,
		      int *nlinks);

#endif
