/* Benchmark workload for tools/bench/bench_heap.py: THREADS threads of malloc/free pairs of
 * 16-256 bytes, running from the start. Measures SECONDS of it, from SIGUSR1 (sent once the
 * profiler under test is attached) or at once with "now", then prints "ops N" (pairs done by all
 * threads in the window) and "cpu_ns N" (CPU time all threads used in it: under a loaded machine
 * the cost per pair in CPU time stays meaningful when wall-clock throughput does not), then exits.
 *   mallocstorm SECONDS THREADS [now] */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64

static void *volatile sink;
static volatile sig_atomic_t go;
static volatile int stop;
static volatile unsigned long ops[MAX_THREADS * 8]; /* one cache line per thread */

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

static void *storm(void *arg)
{
	unsigned long i = (unsigned long)(uintptr_t)arg;
	unsigned int r = (unsigned int)i * 2654435761u | 1u;

	while (!stop) {
		for (int k = 0; k < 1000; k++) {
			char *p;

			r = r * 1103515245u + 12345u;
			p = malloc(16 + (r >> 16) % 241);
			p[0] = 1;
			sink = p;
			free(p);
		}
		ops[i * 8] += 1000;
	}
	return NULL;
}

static unsigned long total(int n)
{
	unsigned long s = 0;

	for (int i = 0; i < n; i++)
		s += ops[i * 8];
	return s;
}

static double cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	int n = argc > 2 ? atoi(argv[2]) : 2;
	pthread_t t[MAX_THREADS];
	unsigned long start;
	double cpu;

	if (n < 1 || n > MAX_THREADS || seconds <= 0)
		return 2;
	signal(SIGUSR1, on_usr1);
	go = argc > 3 && strcmp(argv[3], "now") == 0;
	for (int i = 0; i < n; i++)
		if (pthread_create(&t[i], NULL, storm, (void *)(uintptr_t)i))
			return 1;
	printf("ready\n");
	fflush(stdout);
	while (!go)
		usleep(1000);
	start = total(n);
	cpu = cpu_ns();
	usleep((useconds_t)(seconds * 1e6));
	printf("ops %lu\ncpu_ns %.0f\n", total(n) - start, cpu_ns() - cpu);
	fflush(stdout);
	stop = 1;
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	return 0;
}
