/* Benchmark workload for tools/bench/bench_heap.py: THREADS threads of malloc/free pairs of
 * 16-256 bytes for SECONDS, then "ops N" (pairs done in all).
 *   mallocstorm SECONDS THREADS */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *volatile sink;

struct storm {
	double seconds;
	unsigned long ops;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static void *storm_main(void *arg)
{
	struct storm *s = arg;
	unsigned int r = (unsigned int)(uintptr_t)s | 1u;
	double end = now() + s->seconds;

	while (now() < end) {
		for (int i = 0; i < 1000; i++) {
			r = r * 1103515245u + 12345u;
			char *p = malloc(16 + (r >> 16) % 241);

			p[0] = 1;
			sink = p;
			free(p);
		}
		s->ops += 1000;
	}
	return NULL;
}

static void run_storm(double seconds, int nthreads)
{
	struct storm s[64] = {};
	pthread_t t[64];
	unsigned long ops = 0;

	if (nthreads < 1 || nthreads > 64)
		exit(2);
	for (int i = 0; i < nthreads; i++) {
		s[i].seconds = seconds;
		if (pthread_create(&t[i], NULL, storm_main, &s[i]))
			exit(1);
	}
	for (int i = 0; i < nthreads; i++) {
		pthread_join(t[i], NULL);
		ops += s[i].ops;
	}
	printf("ops %lu\n", ops);
}

int main(int argc, char **argv)
{
	run_storm(argc > 1 ? atof(argv[1]) : 5, argc > 2 ? atoi(argv[2]) : 2);
	return 0;
}
