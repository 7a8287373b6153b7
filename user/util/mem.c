#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/mem.h"

static int mem__enabled(void)
{
	static int enabled = -1;

	if (enabled < 0)
		enabled = getenv("CPROF_DEBUG_MEM") != NULL;
	return enabled || log_verbosity >= LOG_DEBUG;
}

/* The value (kB) of one "Name:   123 kB" line of /proc/self/status, or -1. */
static long mem__field(const char *status, const char *name)
{
	const char *p = strstr(status, name);

	return p ? strtol(p + strlen(name), NULL, 10) : -1;
}

void mem__checkpoint(const char *where)
{
	static int64_t t0; /* the first checkpoint's CLOCK_MONOTONIC */
	double wall, cpu;
	char buf[4096];
	size_t n;
	FILE *f;

	if (!mem__enabled())
		return;
	if (!t0)
		t0 = clock__ns(CLOCK_MONOTONIC);
	wall = (double)(clock__ns(CLOCK_MONOTONIC) - t0) / 1e6;
	cpu = (double)clock__ns(CLOCK_PROCESS_CPUTIME_ID) / 1e6;
	f = fopen("/proc/self/status", "re");
	if (!f)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	log_msg(LOG_ERROR,
		"mem %-24s rss %6ld kB (anon %6ld, file %6ld)  peak %6ld kB  at %7.1f ms (cpu "
		"%7.1f)\n",
		where, mem__field(buf, "\nVmRSS:"), mem__field(buf, "\nRssAnon:"),
		mem__field(buf, "\nRssFile:"), mem__field(buf, "\nVmHWM:"), wall, cpu);
}
