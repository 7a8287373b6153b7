#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sym/perfmap.h"
#include "util/log.h"

struct perfmap_sym {
	uint64_t start, end;
	size_t seq; /* line number: code reusing an address was written later and wins */
	char *name;
};

struct perfmap {
	char path[96];
	char fallback[64];	  /* used when path cannot be read; "" for none */
	struct perfmap_sym *syms; /* sorted by start */
	size_t n, cap;
	off_t read_size; /* bytes of whole lines read so far; -1 before the first read */
	size_t seq;
};

/* How many entries before the nearest start a lookup checks for one that covers the address
 * (JIT maps may list a stub inside a larger region). */
#define PERFMAP_BACKSCAN 8

/* pid as its innermost pid namespace numbers it: the last field of NSpid in /proc/PID/status. */
static pid_t perfmap__nspid(pid_t pid)
{
	char path[64], line[256], *tok, *save;
	pid_t ns = pid;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return pid;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "NSpid:", 6))
			continue;
		for (tok = strtok_r(line + 6, " \t\n", &save); tok;
		     tok = strtok_r(NULL, " \t\n", &save))
			ns = (pid_t)atoi(tok);
		break;
	}
	fclose(f);
	return ns > 0 ? ns : pid;
}

struct perfmap *perfmap__new(pid_t pid, bool same_root)
{
	struct perfmap *pm = calloc(1, sizeof(*pm));
	pid_t nspid = perfmap__nspid(pid);

	if (!pm)
		return NULL;
	snprintf(pm->path, sizeof(pm->path), "/proc/%d/root/tmp/perf-%d.map", (int)pid, (int)nspid);
	/* After pid exits its root is gone; in our own pid namespace and root its map is ours. */
	if (same_root && nspid == pid)
		snprintf(pm->fallback, sizeof(pm->fallback), "/tmp/perf-%d.map", (int)pid);
	pm->read_size = -1;
	return pm;
}

static void perfmap__free_syms(struct perfmap *pm)
{
	size_t i;

	for (i = 0; i < pm->n; i++)
		free(pm->syms[i].name);
	free(pm->syms);
	pm->syms = NULL;
	pm->n = pm->cap = 0;
	pm->read_size = 0;
}

void perfmap__free(struct perfmap *pm)
{
	if (!pm)
		return;
	perfmap__free_syms(pm);
	free(pm);
}

static int perfmap_sym__cmp(const void *pa, const void *pb)
{
	const struct perfmap_sym *a = pa, *b = pb;

	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* "START SIZE name": hex numbers (an optional 0x prefix), a name to the end of the line. */
static int perfmap__add_line(struct perfmap *pm, char *line)
{
	struct perfmap_sym *tmp;
	uint64_t start, size;
	char *p = line, *end;

	start = strtoull(p, &end, 16);
	if (end == p || *end != ' ')
		return 0;
	p = end + 1;
	size = strtoull(p, &end, 16);
	if (end == p || *end != ' ' || !size || start + size < start)
		return 0;
	p = end + 1;
	p[strcspn(p, "\n")] = '\0';
	if (!*p)
		return 0;
	if (pm->n == pm->cap) {
		size_t cap = pm->cap ? pm->cap * 2 : 256;

		tmp = realloc(pm->syms, cap * sizeof(*tmp));
		if (!tmp)
			return -ENOMEM;
		pm->syms = tmp;
		pm->cap = cap;
	}
	pm->syms[pm->n].name = strdup(p);
	if (!pm->syms[pm->n].name)
		return -ENOMEM;
	pm->syms[pm->n].start = start;
	pm->syms[pm->n].end = start + size;
	pm->syms[pm->n].seq = pm->seq++;
	pm->n++;
	return 0;
}

/* Reads the whole lines appended since the last read (a JIT only appends; a file that shrank
 * was rewritten and is read again from the start). */
static void perfmap__refresh(struct perfmap *pm)
{
	const char *path = pm->path;
	char *line = NULL;
	size_t len = 0;
	struct stat st;
	ssize_t got;
	FILE *f;

	if (stat(path, &st)) {
		path = pm->fallback;
		if (!path[0] || stat(path, &st))
			return;
	}
	if (st.st_size == pm->read_size)
		return;
	f = fopen(path, "re");
	if (!f)
		return;
	if (st.st_size < pm->read_size || pm->read_size < 0)
		perfmap__free_syms(pm);
	if (fseeko(f, pm->read_size, SEEK_SET)) {
		fclose(f);
		return;
	}
	while (pm->read_size < (off_t)PERFMAP_MAX_BYTES && (got = getline(&line, &len, f)) > 0) {
		if (line[got - 1] != '\n')
			break; /* being written: read it next time */
		if (perfmap__add_line(pm, line)) {
			pr_warn("%s: out of memory reading it\n", path);
			break;
		}
		pm->read_size += got;
	}
	free(line);
	fclose(f);
	qsort(pm->syms, pm->n, sizeof(*pm->syms), perfmap_sym__cmp);
}

static const char *perfmap__find(const struct perfmap *pm, uint64_t addr)
{
	size_t lo = 0, hi = pm->n, mid, i;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (pm->syms[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (i = lo; i > 0 && lo - i < PERFMAP_BACKSCAN; i--) {
		if (addr < pm->syms[i - 1].end)
			return pm->syms[i - 1].name;
	}
	return NULL;
}

const char *perfmap__lookup(struct perfmap *pm, uint64_t addr)
{
	const char *name = perfmap__find(pm, addr);

	if (name)
		return name;
	perfmap__refresh(pm);
	return perfmap__find(pm, addr);
}
