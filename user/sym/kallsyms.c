#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sym/kallsyms.h"
#include "sym/names.h"

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

/* One line: "ffffffff81000000 T _stext" or "ffffffffc0201000 t fn\t[mod]". */
static int kallsyms__parse_line(struct kallsyms_loader *l, char *line, bool *nonzero)
{
	char *p, *name, *end, *mod = NULL, type;
	struct ksym *tmp, *s;
	bool more;
	uint64_t addr;
	int err;

	addr = strtoull(line, &p, 16);
	if (p == line || *p != ' ' || !p[1] || p[2] != ' ')
		return 0;
	type = p[1];
	if (type != 't' && type != 'T' && type != 'w' && type != 'W')
		return 0;
	name = p + 3;
	end = name + strcspn(name, "\t\n ");
	more = *end && *end != '\n';
	*end = '\0';
	if (more && (p = strchr(end + 1, '['))) {
		mod = p + 1;
		mod[strcspn(mod, "]\n")] = '\0';
	}
	if (!*name)
		return 0;
	if (l->k->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1 << 16;
		tmp = realloc(l->k->syms, l->cap * sizeof(*tmp));
		if (!tmp)
			return -ENOMEM;
		l->k->syms = tmp;
	}
	s = &l->k->syms[l->k->n];
	err = kallsyms__push_name(l, name, mod, &s->off);
	if (err)
		return err;
	s->addr = addr;
	s->rank = ksym__rank(type);
	*nonzero |= addr != 0;
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

/* Sorts and keeps one symbol per address: the most global type, then sym_name__cmp. */
static void kallsyms__finish(struct kallsyms *k)
{
	size_t i, n = 0;

	for (i = 0; i < k->n; i++)
		k->syms[i].name = k->names + k->syms[i].off;
	qsort(k->syms, k->n, sizeof(*k->syms), ksym__cmp);
	for (i = 0; i < k->n; i++) {
		if (n && k->syms[n - 1].addr == k->syms[i].addr)
			continue;
		k->syms[n++] = k->syms[i];
	}
	k->n = n;
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
	f = fopen(path, "re");
	if (!f) {
		err = -errno;
		goto cleanup;
	}
	while (getline(&line, &linecap, f) >= 0) {
		err = kallsyms__parse_line(&l, line, &nonzero);
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
