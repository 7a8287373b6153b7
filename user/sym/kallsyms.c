#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "sym/kallsyms.h"
#include "sym/names.h"

/* /proc/kallsyms says its block size is 1 KiB, so stdio reads it 1 KiB at a time: 5,000 reads
 * for the whole file. In pieces of this size the kernel's part costs a quarter less. */
#define KALLSYMS_READ_BUF (64 * 1024)

struct ksym {
	uint64_t addr;
	size_t off;	  /* offset of the name in names while loading */
	const char *name; /* set once names stops moving */
	int rank;	  /* T before W before t before w when addresses tie */
};

struct kallsyms {
	struct ksym *syms;
	size_t n;
	char *names; /* every name, NUL-separated */
	bool restricted;
};

struct kallsyms_loader {
	struct kallsyms *k;
	size_t cap, names_len, names_cap;
};

static int ksym__rank(char type)
{
	switch (type) {
	case 'T':
		return 0;
	case 'W':
		return 1;
	case 't':
		return 2;
	default:
		return 3;
	}
}

static int kallsyms__push_name(struct kallsyms_loader *l, const char *name, const char *mod,
			       size_t *off)
{
	size_t need = strlen(name) + (mod ? strlen(mod) + 3 : 0) + 1;
	char *tmp;

	if (l->names_len + need > l->names_cap) {
		l->names_cap = l->names_cap ? l->names_cap * 2 : 1 << 20;
		if (l->names_cap < l->names_len + need)
			l->names_cap = l->names_len + need;
		tmp = realloc(l->k->names, l->names_cap);
		if (!tmp)
			return -ENOMEM;
		l->k->names = tmp;
	}
	*off = l->names_len;
	if (mod)
		snprintf(l->k->names + l->names_len, need, "%s [%s]", name, mod);
	else
		memcpy(l->k->names + l->names_len, name, need);
	l->names_len += need;
	return 0;
}

/* One text symbol of a line. */
struct ksym_line {
	uint64_t addr;
	const char *name, *mod; /* point into the line */
	int rank;
};

/* One line: "ffffffff81000000 T _stext" or "ffffffffc0201000 t fn\t[mod]". Returns whether it
 * is a text symbol (t, T, w, W) with a name. */
static bool kallsyms__parse_line(char *line, struct ksym_line *out)
{
	char *p, *name, *end, *mod = NULL, type;
	bool more;

	out->addr = strtoull(line, &p, 16);
	if (p == line || *p != ' ' || !p[1] || p[2] != ' ')
		return false;
	type = p[1];
	if (type != 't' && type != 'T' && type != 'w' && type != 'W')
		return false;
	name = p + 3;
	end = name + strcspn(name, "\t\n ");
	more = *end && *end != '\n';
	*end = '\0';
	if (more && (p = strchr(end + 1, '['))) {
		mod = p + 1;
		mod[strcspn(mod, "]\n")] = '\0';
	}
	if (!*name)
		return false;
	out->name = name;
	out->mod = mod;
	out->rank = ksym__rank(type);
	return true;
}

static int kallsyms__add_line(struct kallsyms_loader *l, char *line, bool *nonzero)
{
	struct ksym *tmp, *s;
	struct ksym_line kl;
	int err;

	if (!kallsyms__parse_line(line, &kl))
		return 0;
	if (l->k->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1 << 16;
		tmp = realloc(l->k->syms, l->cap * sizeof(*tmp));
		if (!tmp)
			return -ENOMEM;
		l->k->syms = tmp;
	}
	s = &l->k->syms[l->k->n];
	err = kallsyms__push_name(l, kl.name, kl.mod, &s->off);
	if (err)
		return err;
	s->addr = kl.addr;
	s->rank = kl.rank;
	*nonzero |= kl.addr != 0;
	l->k->n++;
	return 0;
}

static int ksym__cmp(const void *pa, const void *pb)
{
	const struct ksym *a = pa, *b = pb;

	if (a->addr != b->addr)
		return a->addr < b->addr ? -1 : 1;
	if (a->rank != b->rank)
		return a->rank < b->rank ? -1 : 1;
	return sym_name__cmp(a->name, b->name);
}

static int ksym__addr_cmp(const void *pa, const void *pb)
{
	const struct ksym *a = pa, *b = pb;

	return a->addr < b->addr ? -1 : a->addr > b->addr;
}

/* Sorts k->syms by address. /proc/kallsyms lists the core kernel in address order and modules
 * and BPF programs after it: the run in order is kept, what follows sorted and merged into it
 * (sorting the whole was a tenth of a thread snapshot's CPU). */
static void kallsyms__sort(struct kallsyms *k)
{
	size_t run = k->n ? 1 : 0, m;
	struct ksym *tail;
	ssize_t i, j, w;

	while (run < k->n && k->syms[run - 1].addr <= k->syms[run].addr)
		run++;
	if (run == k->n)
		return;
	m = k->n - run;
	tail = malloc(m * sizeof(*tail));
	if (!tail) {
		qsort(k->syms, k->n, sizeof(*k->syms), ksym__addr_cmp);
		return;
	}
	memcpy(tail, k->syms + run, m * sizeof(*tail));
	qsort(tail, m, sizeof(*tail), ksym__addr_cmp);
	/* From the end: the run's last ones move up into the tail's room. */
	for (i = (ssize_t)run - 1, j = (ssize_t)m - 1, w = (ssize_t)k->n - 1; j >= 0; w--) {
		if (i >= 0 && k->syms[i].addr > tail[j].addr)
			k->syms[w] = k->syms[i--];
		else
			k->syms[w] = tail[j--];
	}
	free(tail);
}

/* Sorts and keeps one symbol per address: the most global type, then sym_name__cmp. */
static void kallsyms__finish(struct kallsyms *k)
{
	size_t i, n = 0;

	for (i = 0; i < k->n; i++)
		k->syms[i].name = k->names + k->syms[i].off;
	kallsyms__sort(k);
	for (i = 0; i < k->n; i++) {
		if (n && k->syms[n - 1].addr == k->syms[i].addr) {
			if (ksym__cmp(&k->syms[i], &k->syms[n - 1]) < 0)
				k->syms[n - 1] = k->syms[i];
			continue;
		}
		k->syms[n++] = k->syms[i];
	}
	k->n = n;
}

/* Opens path (/proc/kallsyms or a copy) for reading in large pieces: the file announces 1 KiB
 * blocks, and it is tens of thousands of lines. Returns 0 or -errno. */
static int open_kallsyms(const char *path, FILE **f)
{
	*f = fopen(path, "re");
	if (!*f)
		return -errno;
	setvbuf(*f, NULL, _IOFBF, KALLSYMS_READ_BUF);
	return 0;
}

int kallsyms__load(const char *path, struct kallsyms **out)
{
	struct kallsyms_loader l = {};
	size_t linecap = 0;
	char *line = NULL;
	bool nonzero = false;
	FILE *f = NULL;
	int err = 0;

	*out = NULL;
	l.k = calloc(1, sizeof(*l.k));
	if (!l.k)
		return -ENOMEM;
	err = open_kallsyms(path, &f);
	if (err)
		goto cleanup;
	while (getline(&line, &linecap, f) >= 0) {
		err = kallsyms__add_line(&l, line, &nonzero);
		if (err)
			goto cleanup;
	}
	if (ferror(f)) {
		err = -EIO;
		goto cleanup;
	}
	l.k->restricted = l.k->n && !nonzero;
	if (l.k->restricted)
		l.k->n = 0;
	kallsyms__finish(l.k);
	*out = l.k;
	l.k = NULL;
cleanup:
	free(line);
	if (f)
		fclose(f);
	kallsyms__free(l.k);
	return err;
}

void kallsyms__free(struct kallsyms *k)
{
	if (!k)
		return;
	free(k->syms);
	free(k->names);
	free(k);
}

const char *kallsyms__lookup(const struct kallsyms *k, uint64_t addr)
{
	size_t lo = 0, hi = k->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (k->syms[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? k->syms[lo - 1].name : NULL;
}

bool kallsyms__restricted(const struct kallsyms *k)
{
	return k->restricted;
}

size_t kallsyms__count(const struct kallsyms *k)
{
	return k->n;
}

uint64_t kallsyms__min_addr(const struct kallsyms *k)
{
	return k->n ? k->syms[0].addr : 0;
}

/* The best symbol seen so far for one slot of kallsyms__resolve. */
struct ksym_best {
	uint64_t addr;
	int rank;
	char *name; /* NULL: none yet */
	size_t cap;
};

/* Whether kl (named full) beats b: a higher address, then the rule of kallsyms__finish. */
static bool ksym_best__worse(const struct ksym_best *b, const struct ksym_line *kl,
			     const char *full)
{
	if (!b->name || kl->addr != b->addr)
		return !b->name || kl->addr > b->addr;
	if (kl->rank != b->rank)
		return kl->rank < b->rank;
	return sym_name__cmp(full, b->name) < 0;
}

static int ksym_best__set(struct ksym_best *b, const struct ksym_line *kl, const char *full)
{
	size_t need = strlen(full) + 1;
	char *tmp;

	if (need > b->cap) {
		tmp = realloc(b->name, need);
		if (!tmp)
			return -ENOMEM;
		b->name = tmp;
		b->cap = need;
	}
	memcpy(b->name, full, need);
	b->addr = kl->addr;
	b->rank = kl->rank;
	return 0;
}

/* The first of the n sorted addrs that is >= addr. */
static size_t kallsyms__lower_bound(const uint64_t *addrs, size_t n, uint64_t addr)
{
	size_t lo = 0, hi = n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (addrs[mid] < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A symbol at address A is the answer for the first sampled address >= A unless a better one
 * lies between them; for later addresses only if no symbol lies between those and it. So each
 * slot i keeps the best symbol in (addrs[i-1], addrs[i]], and an address's answer is the
 * nearest non-empty slot at or before it. */
static int kallsyms__stream(FILE *f, const uint64_t *addrs, size_t n, struct ksym_best *best,
			    struct kallsyms_info *info)
{
	char *line = NULL, full[1024];
	struct ksym_line kl;
	size_t linecap = 0, i;
	bool nonzero = false;
	int err = 0;

	while (getline(&line, &linecap, f) >= 0) {
		if (!kallsyms__parse_line(line, &kl))
			continue;
		info->count++;
		nonzero |= kl.addr != 0;
		if (!info->min_addr || kl.addr < info->min_addr)
			info->min_addr = kl.addr;
		i = kallsyms__lower_bound(addrs, n, kl.addr);
		if (i == n)
			continue;
		if (kl.mod)
			snprintf(full, sizeof(full), "%s [%s]", kl.name, kl.mod);
		else
			snprintf(full, sizeof(full), "%s", kl.name);
		if (ksym_best__worse(&best[i], &kl, full)) {
			err = ksym_best__set(&best[i], &kl, full);
			if (err)
				break;
		}
	}
	free(line);
	if (!err && ferror(f))
		err = -EIO;
	info->restricted = info->count && !nonzero;
	return err;
}

int kallsyms__resolve(const char *path, const uint64_t *addrs, size_t n, char **names,
		      struct kallsyms_info *info)
{
	struct ksym_best *best;
	const char *last = NULL;
	FILE *f;
	size_t i;
	int err;

	memset(info, 0, sizeof(*info));
	for (i = 0; i < n; i++)
		names[i] = NULL;
	best = calloc(n ? n : 1, sizeof(*best));
	if (!best)
		return -ENOMEM;
	err = open_kallsyms(path, &f);
	if (err)
		goto cleanup;
	err = kallsyms__stream(f, addrs, n, best, info);
	fclose(f);
	if (err || info->restricted)
		goto cleanup;
	for (i = 0; i < n; i++) {
		if (best[i].name)
			last = best[i].name;
		if (last && !(names[i] = strdup(last))) {
			err = -ENOMEM;
			goto cleanup;
		}
	}
cleanup:
	for (i = 0; err && i < n; i++) {
		free(names[i]);
		names[i] = NULL;
	}
	for (i = 0; i < n; i++)
		free(best[i].name);
	free(best);
	return err;
}

int kallsyms__range(const char *path, const char *name, uint64_t *lo, uint64_t *hi)
{
	char *line = NULL;
	size_t linecap = 0;
	struct ksym_line kl;
	bool found = false;
	FILE *f = fopen(path, "re");
	int err = -ENOENT;

	if (!f)
		return -errno;
	while (getline(&line, &linecap, f) >= 0) {
		if (!kallsyms__parse_line(line, &kl) || kl.mod)
			continue;
		if (found) { /* the core kernel's symbols are listed in address order */
			if (kl.addr > *lo) {
				*hi = kl.addr;
				err = 0;
			}
			break;
		}
		if (kl.addr && strcmp(kl.name, name) == 0) {
			*lo = kl.addr;
			found = true;
		}
	}
	free(line);
	fclose(f);
	return err;
}
