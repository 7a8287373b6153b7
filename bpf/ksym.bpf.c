// SPDX-License-Identifier: GPL-2.0
/* Kernel addresses named by the kernel itself: a syscall program, run on demand
 * (BPF_PROG_TEST_RUN), formats each address user space put in ksym_addrs with "%pS", which the
 * kernel's own symbol lookup (kallsyms_lookup) answers: "function+0xoff/0xsize [module]", for
 * the core kernel, modules, BPF programs and trampolines alike. Resolving the few distinct
 * addresses of a profile this way costs microseconds, where reading /proc/kallsyms whole costs
 * tens of milliseconds of CPU (the kernel formats 100k+ lines). See user/sym/ksym_resolver.c. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "ksym.h"

__u64 ksym_addrs[CPROF_KSYM_BATCH];
char ksym_names[CPROF_KSYM_BATCH][CPROF_KSYM_NAME];
__u32 ksym_count;
/* The address of _text, the core kernel's first byte (0: not found). */
__u64 ksym_text;

SEC("syscall")
int ksym_resolve(void *ctx)
{
	__u64 arg;
	__u32 i;

	if (!ksym_text)
		bpf_kallsyms_lookup_name("_text", sizeof("_text"), 0, &ksym_text);
	for (i = 0; i < CPROF_KSYM_BATCH && i < ksym_count; i++) {
		arg = ksym_addrs[i];
		if (bpf_snprintf(ksym_names[i], CPROF_KSYM_NAME, "%pS", &arg, sizeof(arg)) < 0)
			ksym_names[i][0] = '\0';
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
