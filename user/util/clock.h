/* Clock readings, in the units the code compares them in. */
#ifndef CPROF_UTIL_CLOCK_H
#define CPROF_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* clk (CLOCK_MONOTONIC, CLOCK_REALTIME...) now, in ns. */
static inline int64_t clock__ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* The CLOCK_REALTIME instant in_ns from now, as pthread_cond_timedwait takes it. */
static inline struct timespec clock__realtime_in(int64_t in_ns)
{
	int64_t at = clock__ns(CLOCK_REALTIME) + in_ns;

	return (struct timespec){.tv_sec = at / 1000000000ll, .tv_nsec = at % 1000000000ll};
}

/* CLOCK_MONOTONIC now, in seconds. */
static inline double clock__mono_s(void)
{
	return (double)clock__ns(CLOCK_MONOTONIC) / 1e9;
}

#endif
