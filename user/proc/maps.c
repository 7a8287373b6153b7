#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc/maps.h"

#define DELETED_SUFFIX " (deleted)"

static int proc__errno(int e)
{
	/* A missing /proc/PID means the process is gone, whatever the file. */
	return e == ENOENT ? -ESRCH : -e;
}

/* Reads the hex number at *p (at least one digit), moving *p past it. */
static bool parse_hex(char **p, uint64_t *v)
{
	uint64_t x = 0;
	char *s = *p;
	int d;

	for (;; s++) {
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			break;
		if (x >> 60)
			return false; /* more than 64 bits */
		x = x * 16 + (uint64_t)d;
	}
	if (s == *p)
		return false;
	*v = x;
	*p = s;
	return true;
}

/* Skips the character c at *p; false if it is not there. */
static bool parse_char(char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

/* Parses one maps line into m ("start-end perms offset major:minor inode   path"; by hand: this
 * runs for every line of every process the agent reads, and sscanf was most of the parse).
 * Returns 0, 1 for a line to skip (malformed), or -ENOMEM. */
static int proc_maps__parse_line(char *line, struct proc_map *m)
{
	uint64_t start, end, offset, major, minor, inode = 0;
	size_t len, slen = strlen(DELETED_SUFFIX);
	char *p = line, *path, *digits;

	if (!parse_hex(&p, &start) || !parse_char(&p, '-') || !parse_hex(&p, &end) ||
	    !parse_char(&p, ' ') || end < start)
		return 1;
	if (strnlen(p, 5) < 5 || p[4] != ' ')
		return 1;
	memset(m, 0, sizeof(*m));
	memcpy(m->perms, p, 4);
	p += 5;
	if (!parse_hex(&p, &offset) || !parse_char(&p, ' ') || !parse_hex(&p, &major) ||
	    !parse_char(&p, ':') || !parse_hex(&p, &minor) || !parse_char(&p, ' ') ||
	    major > UINT32_MAX || minor > UINT32_MAX)
		return 1;
	for (digits = p; *p >= '0' && *p <= '9'; p++)
		inode = inode * 10 + (uint64_t)(*p - '0');
	if (p == digits || (*p && *p != ' ' && *p != '\n'))
		return 1;
	m->start = start;
	m->end = end;
	m->offset = offset;
	m->inode = inode;
	m->dev_major = (uint32_t)major;
	m->dev_minor = (uint32_t)minor;

	/* The path is the rest of the line after the padding; it may contain spaces. */
	while (*p == ' ')
		p++;
	path = p;
	len = strlen(path);
	while (len && path[len - 1] == '\n')
		path[--len] = '\0';
	if (!len)
		return 0;
	if (len > slen && !strcmp(path + len - slen, DELETED_SUFFIX)) {
		path[len - slen] = '\0';
		m->deleted = true;
	}
	m->path = strdup(path);
	return m->path ? 0 : -ENOMEM;
}

/* Parses the lines of buf (len bytes, NUL-terminated; changed in place). */
static int proc_maps__parse_buf(char *buf, size_t len, pid_t pid, struct proc_maps **out)
{
	struct proc_maps *pm;
	struct proc_map *tmp;
	char *line, *nl, *end = buf + len;
	size_t cap = 0;
	int err = 0;

	*out = NULL;
	pm = calloc(1, sizeof(*pm));
	if (!pm)
		return -ENOMEM;
	pm->pid = pid;
	for (line = buf; line < end; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(end - line));
		if (!nl)
			nl = end;
		*nl = '\0';
		if (pm->n == cap) {
			cap = cap ? cap * 2 : 64;
			tmp = realloc(pm->maps, cap * sizeof(*tmp));
			if (!tmp) {
				err = -ENOMEM;
				goto cleanup;
			}
			pm->maps = tmp;
		}
		err = proc_maps__parse_line(line, &pm->maps[pm->n]);
		if (err < 0)
			goto cleanup;
		if (err == 0)
			pm->n++;
		err = 0;
	}
	*out = pm;
	pm = NULL;
cleanup:
	proc_maps__free(pm);
	return err;
}

/* Appends what read_some reads from src to *buf (grown as needed, NUL-terminated); *len is its
 * length. Returns 0 or -errno. */
static int read_all(void *src, ssize_t (*read_some)(void *src, char *to, size_t n), char **buf,
		    size_t *len)
{
	size_t cap = 16384;
	char *b = malloc(cap), *tmp;
	ssize_t n;

	*buf = NULL;
	*len = 0;
	if (!b)
		return -ENOMEM;
	for (;;) {
		if (cap - *len < 4096) {
			tmp = realloc(b, cap * 2);
			if (!tmp) {
				free(b);
				return -ENOMEM;
			}
			b = tmp;
			cap *= 2;
		}
		n = read_some(src, b + *len, cap - *len - 1);
		if (n < 0) {
			free(b);
			return proc__errno(errno ? errno : EIO);
		}
		if (n == 0)
			break;
		*len += (size_t)n;
	}
	b[*len] = '\0';
	*buf = b;
	return 0;
}

static ssize_t read_file(void *src, char *to, size_t n)
{
	FILE *f = src;
	size_t got = fread(to, 1, n, f);

	return got == 0 && ferror(f) ? -1 : (ssize_t)got;
}

static ssize_t read_fd(void *src, char *to, size_t n)
{
	ssize_t got;

	do
		got = read(*(int *)src, to, n);
	while (got < 0 && errno == EINTR);
	return got;
}

int proc_maps__parse(FILE *f, pid_t pid, struct proc_maps **out)
{
	size_t len;
	char *buf;
	int err;

	*out = NULL;
	errno = 0;
	err = read_all(f, read_file, &buf, &len);
	if (!err)
		err = proc_maps__parse_buf(buf, len, pid, out);
	free(buf);
	return err;
}

int proc_maps__read(pid_t pid, struct proc_maps **out)
{
	char path[64], *buf;
	size_t len;
	int fd, err;

	*out = NULL;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return proc__errno(errno);
	/* Read whole, in reads of at least 12 KiB: a process of many threads has thousands of
	 * mappings (a stack and its guard page each), and each read takes its mmap lock. */
	err = read_all(&fd, read_fd, &buf, &len);
	close(fd);
	if (!err)
		err = proc_maps__parse_buf(buf, len, pid, out);
	free(buf);
	return err;
}

const struct proc_map *proc_maps__find(const struct proc_maps *m, uint64_t addr)
{
	size_t lo = 0, hi, mid;

	if (!m || !m->n)
		return NULL;
	/* Find the last mapping with start <= addr. */
	hi = m->n;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (m->maps[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	return addr < m->maps[lo - 1].end ? &m->maps[lo - 1] : NULL;
}

void proc_maps__free(struct proc_maps *m)
{
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->n; i++)
		free(m->maps[i].path);
	free(m->maps);
	free(m);
}

struct proc_maps *proc_maps__copy_code(const struct proc_maps *m)
{
	struct proc_maps *c = calloc(1, sizeof(*c));
	size_t i, n = 0;

	if (!c)
		return NULL;
	c->pid = m->pid;
	for (i = 0; i < m->n; i++)
		n += m->maps[i].perms[2] == 'x';
	c->maps = calloc(n ? n : 1, sizeof(*c->maps));
	if (!c->maps) {
		free(c);
		return NULL;
	}
	for (i = 0; i < m->n; i++) {
		if (m->maps[i].perms[2] != 'x')
			continue;
		c->maps[c->n] = m->maps[i];
		c->maps[c->n].path = NULL;
		if (m->maps[i].path && !(c->maps[c->n].path = strdup(m->maps[i].path))) {
			proc_maps__free(c);
			return NULL;
		}
		c->n++;
	}
	return c;
}

int proc__comm(pid_t pid, char *buf, size_t len)
{
	char path[64];
	size_t n;
	FILE *f;
	int err = 0;

	if (!len)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return proc__errno(errno);
	if (!fgets(buf, len, f)) {
		err = ferror(f) ? -EIO : -ESRCH;
		buf[0] = '\0';
		goto cleanup;
	}
	n = strcspn(buf, "\n");
	buf[n] = '\0';
cleanup:
	fclose(f);
	return err;
}

int proc__exe(pid_t pid, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	if (!len)
		return -EINVAL;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, buf, len);
	if (n < 0) {
		buf[0] = '\0';
		return proc__errno(errno);
	}
	if ((size_t)n >= len) {
		buf[len - 1] = '\0';
		return -ENAMETOOLONG;
	}
	buf[n] = '\0';
	return 0;
}

/* The state letter of /proc/PID/stat ('R', 'S', 'Z' ...), or 0 when it cannot be read. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* "pid (comm) S ...": comm may hold spaces and parentheses, so look from the end. */
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

int proc__exists(pid_t pid)
{
	char state;

	if (pid <= 0)
		return -ESRCH;
	/* EPERM: the process exists but is not ours to signal. */
	if (kill(pid, 0) && errno != EPERM)
		return -ESRCH;
	/* A zombie has exited: nothing of it runs or can be read any more. */
	state = proc_state(pid);
	if (state == 'Z' || state == 'X')
		return -ESRCH;
	return 0;
}

int proc_map__open(pid_t pid, const struct proc_map *map)
{
	char path[PATH_MAX + 64];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid,
		 map->start, map->end);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 || map->deleted || !map->path)
		return fd >= 0 ? fd : -errno;
	if (snprintf(path, sizeof(path), "/proc/%d/root%s", (int)pid, map->path) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}
