#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "check.h"
#include "collect/collector.h"
#include "sym/ksym_resolver.h"
#include "util/log.h"
#include "util/preflight.h"

/* Prints one line per program: type, configuration, program name, verified instructions. */
static int check_one(const char *type, bool all)
{
	const struct collector_ops *ops = collector__find(type);
	struct collect_opts o = {.all = all, .freq = 99, .load_only = true};
	struct collector *c = NULL;
	struct bpf_program *prog;
	int err;

	if (!ops)
		return -ENOENT;
	err = collector__open(ops, &o, &c);
	if (err) {
		printf("%-8s %-8s %-24s FAIL %s\n", type, all ? "system" : "targets", "-",
		       strerror(-err));
		return err;
	}
	bpf_object__for_each_program(prog, c->obj)
	{
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (!bpf_program__autoload(prog))
			continue;
		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len)) {
			printf("%-8s %-8s %-24s FAIL %s\n", type, all ? "system" : "targets",
			       bpf_program__name(prog), strerror(errno));
			err = -errno;
			continue;
		}
		printf("%-8s %-8s %-24s ok   %u verified insns\n", type, all ? "system" : "targets",
		       bpf_program__name(prog), info.verified_insns);
	}
	collector__free(c);
	return err;
}

/* The symbolizer's program that names kernel addresses (sym/ksym_resolver.h). */
static int check_ksym(void)
{
	struct bpf_prog_info info = {};
	struct ksym_resolver *k;
	__u32 len = sizeof(info);
	int err = ksym_resolver__open(&k);

	if (!err && bpf_obj_get_info_by_fd(ksym_resolver__prog_fd(k), &info, &len))
		err = -errno;
	if (err)
		printf("%-8s %-8s %-24s FAIL %s\n", "symbols", "-", "ksym_resolve", strerror(-err));
	else
		printf("%-8s %-8s %-24s ok   %u verified insns\n", "symbols", "-", "ksym_resolve",
		       info.verified_insns);
	ksym_resolver__free(k);
	return err;
}

int check__run(int argc, char **argv)
{
	int failed = 0;

	(void)argc;
	(void)argv;
	if (preflight__check())
		return 1;
	log__route_libbpf();
	for (size_t i = 0; collector__nth(i); i++) {
		failed |= check_one(collector__nth(i)->name, false) != 0;
		failed |= check_one(collector__nth(i)->name, true) != 0;
	}
	failed |= check_ksym() != 0;
	return failed ? 1 : 0;
}
