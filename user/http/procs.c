#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http/procs.h"
#include "util/clock.h"

#define PF_KTHREAD 0x00200000 /* include/linux/sched.h */
#define REFRESH_S  1.0	      /* a table younger than this is reused */
#define FIRST_S	   0.1	      /* the first window, when there is no earlier reading */

struct reading {
	struct proc_row row;
	uint64_t ticks; /* utime + stime */
};

struct procs_table {
	pthread_mutex_t lock;
	struct reading *prev; /* sorted by pid */
	size_t nprev;
	double prev_t;
	struct proc_row *rows; /* the last table */
	size_t nrows;
	double rows_t, interval;
};

static ssize_t read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

/* Fills r from /proc/PID/stat and cmdline; false for kernel threads and vanished processes. */
static bool read_one(pid_t pid, long page, struct reading *r)
{
	char path[64], buf[1024], *open_p, *close_p;
	unsigned long flags, utime, stime;
	long rss;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_small(path, buf, sizeof(buf)) <= 0)
		return false;
	/* comm may hold spaces and parentheses: it ends at the last ')'. */
	open_p = strchr(buf, '(');
	close_p = strrchr(buf, ')');
	if (!open_p || !close_p || close_p < open_p)
		return false;
	/* After ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
	 * stime cutime cstime priority nice threads itrealvalue starttime vsize rss */
	if (sscanf(close_p + 2,
		   "%*c %*d %*d %*d %*d %*d %lu %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
		   "%*u %*u %ld",
		   &flags, &utime, &stime, &rss) != 4)
		return false;
	if (flags & PF_KTHREAD)
		return false;
	memset(r, 0, sizeof(*r));
	r->row.pid = pid;
	n = close_p - open_p - 1;
	if (n >= (ssize_t)sizeof(r->row.comm))
		n = sizeof(r->row.comm) - 1;
	memcpy(r->row.comm, open_p + 1, n);
	r->row.rss = (uint64_t)(rss > 0 ? rss : 0) * page;
	r->ticks = utime + stime;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	n = read_small(path, r->row.cmdline, sizeof(r->row.cmdline));
	while (n > 0 && r->row.cmdline[n - 1] == '\0')
		n--;
	for (ssize_t i = 0; i < n; i++)
		if (r->row.cmdline[i] == '\0' || !isprint((unsigned char)r->row.cmdline[i]))
			r->row.cmdline[i] = ' ';
	if (n <= 0)
		snprintf(r->row.cmdline, sizeof(r->row.cmdline), "[%s]", r->row.comm);
	return true;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = ((const struct reading *)a)->row.pid, y = ((const struct reading *)b)->row.pid;

	return (x > y) - (x < y);
}

static int scan(struct reading **out, size_t *nout)
{
	DIR *d = opendir("/proc");
	long page = sysconf(_SC_PAGESIZE);
	struct reading *v = NULL, *nv;
	size_t n = 0, cap = 0;
	struct dirent *e;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);

		if (*end || pid <= 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		if (read_one((pid_t)pid, page, &v[n]))
			n++;
	}
	closedir(d);
	qsort(v, n, sizeof(*v), cmp_pid);
	*out = v;
	*nout = n;
	return 0;
}

static int cmp_cpu(const void *a, const void *b)
{
	const struct proc_row *x = a, *y = b;

	if (x->cpu != y->cpu)
		return x->cpu < y->cpu ? 1 : -1;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

static int refresh(struct procs_table *t)
{
	struct reading *cur, *old;
	struct proc_row *rows;
	double now, hz = sysconf(_SC_CLK_TCK);
	size_t n;
	int err;

	if (!t->prev || clock__mono_s() - t->prev_t > 60) {
		free(t->prev);
		t->prev = NULL;
		err = scan(&t->prev, &t->nprev);
		if (err)
			return err;
		t->prev_t = clock__mono_s();
		usleep(FIRST_S * 1e6);
	}
	err = scan(&cur, &n);
	if (err)
		return err;
	now = clock__mono_s();
	rows = malloc((n ? n : 1) * sizeof(*rows));
	if (!rows) {
		free(cur);
		return -ENOMEM;
	}
	t->interval = now - t->prev_t;
	for (size_t i = 0; i < n; i++) {
		old = bsearch(&cur[i], t->prev, t->nprev, sizeof(*cur), cmp_pid);
		rows[i] = cur[i].row;
		rows[i].cpu = old && cur[i].ticks >= old->ticks && t->interval > 0
				      ? 100.0 * (cur[i].ticks - old->ticks) / hz / t->interval
				      : 0;
	}
	qsort(rows, n, sizeof(*rows), cmp_cpu);
	free(t->prev);
	t->prev = cur;
	t->nprev = n;
	t->prev_t = now;
	free(t->rows);
	t->rows = rows;
	t->nrows = n;
	t->rows_t = now;
	return 0;
}

struct procs_table *procs_table__new(void)
{
	struct procs_table *t = calloc(1, sizeof(*t));

	if (t)
		pthread_mutex_init(&t->lock, NULL);
	return t;
}

void procs_table__free(struct procs_table *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t->prev);
	free(t->rows);
	free(t);
}

int procs_table__get(struct procs_table *t, struct proc_row **rows, size_t *n, double *interval)
{
	int err = 0;

	pthread_mutex_lock(&t->lock);
	if (!t->rows || clock__mono_s() - t->rows_t >= REFRESH_S)
		err = refresh(t);
	if (!err) {
		*rows = malloc((t->nrows ? t->nrows : 1) * sizeof(**rows));
		if (*rows) {
			memcpy(*rows, t->rows, t->nrows * sizeof(**rows));
			*n = t->nrows;
			*interval = t->interval;
		} else {
			err = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return err;
}
