#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ms since the first checkpoint (CLOCK_MONOTONIC, clk 0) or since the process started
 * (CLOCK_PROCESS_CPUTIME_ID: the CPU time it used). */
static double mem__ms(clockid_t clk)
{
	static struct timespec t0;
	struct timespec ts;

	clock_gettime(clk, &ts);
	if (clk == CLOCK_MONOTONIC && !t0.tv_sec)
		t0 = ts;
	if (clk != CLOCK_MONOTONIC)
		return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
	return (ts.tv_sec - t0.tv_sec) * 1e3 + (ts.tv_nsec - t0.tv_nsec) / 1e6;
}

void mem__checkpoint(const char *where)
{
	double wall, cpu;
	char buf[4096];
	size_t n;
	FILE *f;

	if (!mem__enabled())
		return;
	wall = mem__ms(CLOCK_MONOTONIC);
	cpu = mem__ms(CLOCK_PROCESS_CPUTIME_ID);
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
