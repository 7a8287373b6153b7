/* Benchmark workload: N threads burn CPU for SECONDS through a small call chain and print the
 * work done ("ops N"), so a profiler's overhead shows as lost ops.
 *   cpuburn SECONDS [THREADS] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double secs;
static volatile unsigned long sink;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static unsigned long leaf(unsigned long x)
{
	volatile unsigned long acc = x;

	for (int i = 0; i < 1000; i++)
		acc = acc * 6364136223846793005ul + 1442695040888963407ul;
	return acc;
}

__attribute__((noinline)) static unsigned long middle(unsigned long x)
{
	return leaf(x) ^ leaf(x + 1);
}

static void *worker(void *arg)
{
	unsigned long ops = 0, x = 0;
	double end = now() + secs;

	while (now() < end) {
		for (int i = 0; i < 100; i++)
			x += middle(x);
		ops += 100;
	}
	sink += x;
	*(unsigned long *)arg = ops;
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[2]) : 2;
	pthread_t th[64];
	unsigned long ops[64] = {0}, total = 0;

	secs = argc > 1 ? atof(argv[1]) : 5;
	if (n < 1 || n > 64)
		return 2;
	for (int i = 0; i < n; i++)
		pthread_create(&th[i], NULL, worker, &ops[i]);
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		total += ops[i];
	}
	printf("ops %lu\n", total);
	return 0;
}
