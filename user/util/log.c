#include <stdio.h>
#include <bpf/libbpf.h>

#include "util/log.h"

int log_verbosity = LOG_WARN;

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	if (level > log_verbosity)
		return;
	va_start(ap, fmt);
	fputs("cprof-bpf: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	/* libbpf's warnings are noise for users unless -v: most are probes of optional features. */
	int ours = level == LIBBPF_WARN ? LOG_INFO : LOG_DEBUG;

	if (ours > log_verbosity)
		return 0;
	fputs("libbpf: ", stderr);
	return vfprintf(stderr, fmt, args);
}

void log__route_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}
