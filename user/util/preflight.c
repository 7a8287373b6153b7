#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#include "util/log.h"
#include "util/preflight.h"

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

static int has_cap(int cap)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};

	if (syscall(SYS_capget, &hdr, data))
		return 0;
	return !!(data[cap / 32].effective & (1u << (cap % 32)));
}

int preflight__check(void)
{
	const char *btf =
		getenv("CPROF_BTF_PATH") ? getenv("CPROF_BTF_PATH") : "/sys/kernel/btf/vmlinux";

	if (!(has_cap(CAP_SYS_ADMIN) || (has_cap(CAP_BPF) && has_cap(CAP_PERFMON)))) {
		pr_err("not permitted: run as root, or with CAP_BPF and CAP_PERFMON\n");
		return -EPERM;
	}
	if (access(btf, R_OK)) {
		pr_err("this kernel has no BTF (%s): cprof-bpf needs CONFIG_DEBUG_INFO_BTF=y\n",
		       btf);
		return -ENOTSUP;
	}
	return 0;
}
