#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc/stat.h"

int proc_stat__parse(const char *text, struct proc_stat *st)
{
	unsigned long long utime, stime, start;
	unsigned long flags;
	long threads, rss;
	const char *p = strrchr(text, ')'); /* comm may hold spaces and parentheses */
	char state;

	/* Fields after comm: 3 state ... 9 flags ... 14 utime 15 stime ... 20 num_threads ... 22
	 * starttime 23 vsize 24 rss (pages). */
	if (!p || sscanf(p + 1,
			 " %c %*d %*d %*d %*d %*d %lu %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %ld"
			 " %*d %llu %*u %ld",
			 &state, &flags, &utime, &stime, &threads, &start, &rss) != 7)
		return -EINVAL;
	st->state = state;
	st->flags = flags;
	st->cpu_ticks = utime + stime;
	st->num_threads = threads > 0 ? (uint32_t)threads : 0;
	st->starttime = start;
	st->rss_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
	return 0;
}

static int read_small(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

int proc_stat__read(pid_t pid, struct proc_stat *st)
{
	char path[64], buf[1024];
	int err;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	err = read_small(path, buf, sizeof(buf));
	if (err)
		return err;
	return proc_stat__parse(buf, st);
}

int proc__cgroup(pid_t pid, char *buf, size_t len)
{
	char path[64], text[4096], *line, *save = NULL, *p, *first = NULL;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	err = read_small(path, text, sizeof(text));
	if (err)
		return err;
	/* Lines are "ID:CONTROLLERS:PATH"; cgroup v2 is "0::PATH". */
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		p = strchr(line, ':');
		p = p ? strchr(p + 1, ':') : NULL;
		if (!p)
			continue;
		if (strncmp(line, "0::", 3) == 0) {
			first = p + 1;
			break;
		}
		if (!first)
			first = p + 1;
	}
	if (!first)
		return -ENOENT;
	if ((size_t)snprintf(buf, len, "%s", first) >= len)
		return -ENAMETOOLONG;
	return 0;
}

int proc__container_id(const char *cgroup, char *buf, size_t len)
{
	const char *found = NULL;
	size_t run = 0;

	for (const char *p = cgroup; *p; p++) {
		run = isxdigit((unsigned char)*p) && !isupper((unsigned char)*p) ? run + 1 : 0;
		if (run == 64 && !isxdigit((unsigned char)p[1]))
			found = p - 63;
	}
	if (!found || len < 13)
		return -ENOENT;
	memcpy(buf, found, 12);
	buf[12] = 0;
	return 0;
}
