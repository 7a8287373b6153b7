/* BPF_LINK_CREATE of a uprobe_multi link or session, laid out as the kernel's union bpf_attr
 * (uapi, stable): Debian 12's headers and libbpf 1.1 predate both. Used by the heap collector
 * and by tools/bench/uprobe_cost.c. */
#ifndef CPROF_COLLECT_UPROBE_MULTI_H
#define CPROF_COLLECT_UPROBE_MULTI_H

#include <linux/types.h>

#define CPROF_BPF_TRACE_UPROBE_MULTI	48 /* kernel 6.6+ */
#define CPROF_BPF_TRACE_UPROBE_SESSION	57 /* kernel 6.11+ */
#define CPROF_BPF_F_UPROBE_MULTI_RETURN 1

struct uprobe_multi_attr {
	__u32 prog_fd, target_fd, attach_type, flags;
	__u64 path, offsets, ref_ctr_offsets, cookies;
	__u32 cnt, multi_flags, pid;
	__u32 pad;
};

#endif
