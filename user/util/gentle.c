/* See gentle.h. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/gentle.h"
#include "util/log.h"

struct gentle {
	pthread_t watchdog;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done; /* under lock */
	int deadline_ms;
	int policy; /* the caller's, restored */
	struct sched_param param;
};

/* Every thread of this process back to the caller's class of before. */
static void all_restore(const struct gentle *g)
{
	struct dirent *d;
	DIR *dir = opendir("/proc/self/task");

	if (!dir)
		return;
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.')
			sched_setscheduler(atoi(d->d_name), g->policy, &g->param);
	closedir(dir);
}

static void *watchdog(void *arg)
{
	struct gentle *g = arg;
	struct timespec until = clock__realtime_in((int64_t)g->deadline_ms * 1000000);
	int err = 0;

	pthread_mutex_lock(&g->lock);
	while (!g->done && err != ETIMEDOUT)
		err = pthread_cond_timedwait(&g->cond, &g->lock, &until);
	pthread_mutex_unlock(&g->lock);
	if (err == ETIMEDOUT) {
		pr_debug("no idle CPU for %d ms: back to the usual scheduling class\n",
			 g->deadline_ms);
		all_restore(g);
	}
	return NULL;
}

struct gentle *gentle__start(int deadline_ms)
{
	struct sched_param none = {.sched_priority = 0};
	struct gentle *g = calloc(1, sizeof(*g));
	pthread_attr_t attr;
	int err;

	if (!g)
		return NULL;
	g->deadline_ms = deadline_ms;
	g->policy = sched_getscheduler(0);
	if (g->policy < 0 || sched_getparam(0, &g->param) || g->policy == SCHED_IDLE) {
		free(g); /* unknown, or idle already: nothing to do */
		return NULL;
	}
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	/* The watchdog at the caller's class, whatever ours is about to be: it must wake on time. */
	if (pthread_attr_init(&attr)) {
		free(g);
		return NULL;
	}
	pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
	pthread_attr_setschedpolicy(&attr, g->policy);
	pthread_attr_setschedparam(&attr, &g->param);
	err = pthread_create(&g->watchdog, &attr, watchdog, g);
	pthread_attr_destroy(&attr);
	if (err) {
		pthread_cond_destroy(&g->cond);
		pthread_mutex_destroy(&g->lock);
		free(g);
		return NULL;
	}
	if (sched_setscheduler(0, SCHED_IDLE, &none))
		pr_debug("cannot run at the idle scheduling class: %s\n", strerror(errno));
	return g;
}

void gentle__stop(struct gentle *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->done = true;
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->watchdog, NULL);
	all_restore(g);
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
	free(g);
}
