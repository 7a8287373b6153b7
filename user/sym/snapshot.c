/* The symbolizer's process snapshots: a process's executable mappings, each with its module
 * (module_cache.c) and its sym_mapping, read when symbolizer__add_pid is called so that a process
 * that exits later can still be symbolized. See sym/internal.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proc/maps.h"
#include "python/cpython.h"
#include "sym/internal.h"
#include "sym/module.h"
#include "sym/perfmap.h"
#include "util/hashmap.h"

void sym_proc__free(struct sym_proc *p)
{
	if (!p)
		return;
	perfmap__free(p->jit);
	free(p->entries);
	free(p);
}

/* Whether pid sees the same root directory as we do, so its paths are ours. */
static bool symbolizer__same_root(pid_t pid)
{
	struct stat ours, theirs;
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	if (stat("/", &ours) || stat(path, &theirs))
		return true;
	return ours.st_dev == theirs.st_dev && ours.st_ino == theirs.st_ino;
}

/* The sym_mapping for e: the previous snapshot's when nothing changed, so that callers keying
 * on mapping pointers see one mapping per file range across refreshes. */
static struct sym_mapping *symbolizer__mapping(struct symbolizer *s, const struct sym_proc *old,
					       const struct sym_entry *e, const char *path)
{
	struct sym_mapping *m;
	size_t i;

	for (i = 0; old && i < old->n; i++) {
		if (old->entries[i].start == e->start && old->entries[i].end == e->end &&
		    old->entries[i].offset == e->offset && old->entries[i].module == e->module &&
		    old->entries[i].mapping->path == path)
			return old->entries[i].mapping;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->start = e->start;
	m->limit = e->end;
	m->offset = e->offset;
	m->path = path;
	m->build_id = e->module ? sym_module__build_id(e->module) : "";
	m->has_functions = e->module && sym_module__has_symtab(e->module);
	if (ptr_vec__push(&s->mappings, m)) {
		free(m);
		return NULL;
	}
	return m;
}

static int symbolizer__add_entry(struct symbolizer *s, struct sym_proc *p,
				 const struct sym_proc *old, const struct proc_map *map,
				 bool same_root)
{
	struct sym_module *mod = NULL;
	struct sym_entry *e;
	const char *slash, *path;
	int err = 0;

	/* Only code is symbolized. Anonymous code is a JIT's, named by its perf map. */
	if (map->perms[2] != 'x')
		return 0;
	if (!map->path) {
		if (!p->jit)
			p->jit = perfmap__new(p->pid, same_root);
		if (!p->jit)
			return -ENOMEM;
	} else if (!strcmp(map->path, "[vdso]"))
		err = symbolizer__vdso_module(s, p->pid, map, &mod);
	else if (map->path[0] != '[')
		err = symbolizer__file_module(s, p->pid, map, same_root, &mod);
	if (err)
		return err;
	e = &p->entries[p->n];
	e->start = map->start;
	e->end = map->end;
	e->offset = map->offset;
	e->module = mod;
	e->anon = !map->path;
	path = symbolizer__intern(s, map->path ? map->path : ANON_MAPPING);
	slash = path ? strrchr(path, '/') : NULL;
	e->base = path ? symbolizer__intern(s, slash ? slash + 1 : path) : NULL;
	if (!e->base || !path)
		return -ENOMEM;
	e->mapping = symbolizer__mapping(s, old, e, path);
	if (!e->mapping)
		return -ENOMEM;
	p->n++;
	return 0;
}

/* Replaces pid's snapshot with p (which the table owns from then on, also on failure). */
static int symbolizer__set_proc(struct symbolizer *s, struct sym_proc *p)
{
	void *old;
	int err;

	if (hashmap__delete(s->procs, (void *)(uintptr_t)p->pid, NULL, &old))
		sym_proc__free(old);
	err = hashmap__insert(s->procs, (void *)(uintptr_t)p->pid, p);
	if (err)
		sym_proc__free(p);
	return err;
}

static struct sym_proc *sym_proc__new(pid_t pid, size_t cap)
{
	struct sym_proc *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->pid = pid;
	p->entries = calloc(cap ? cap : 1, sizeof(*p->entries));
	if (!p->entries) {
		free(p);
		return NULL;
	}
	return p;
}

int symbolizer__add_pid_maps(struct symbolizer *s, pid_t pid, const struct proc_maps *pm)
{
	struct sym_proc *p, *old = NULL;
	bool same_root;
	void *found;
	size_t i;
	int err;

	if (!pm->n)
		return -ESRCH; /* an exiting process has released its memory */
	if (hashmap__find(s->procs, (void *)(uintptr_t)pid, &found))
		old = found;
	p = sym_proc__new(pid, pm->n);
	if (!p)
		return -ENOMEM;
	same_root = symbolizer__same_root(pid);
	for (i = 0; i < pm->n; i++) {
		err = symbolizer__add_entry(s, p, old, &pm->maps[i], same_root);
		if (err) {
			sym_proc__free(p);
			return err;
		}
	}
	return symbolizer__set_proc(s, p);
}

int symbolizer__add_pid(struct symbolizer *s, pid_t pid)
{
	struct proc_maps *pm = NULL;
	int err;

	/* Gone: what an earlier snapshot saw (at its exec, say) still stands. */
	err = proc_maps__read(pid, &pm);
	if (!err)
		err = symbolizer__add_pid_maps(s, pid, pm);
	proc_maps__free(pm);
	return err;
}

bool symbolizer__has_pid(struct symbolizer *s, pid_t pid)
{
	void *found;

	return hashmap__find(s->procs, (void *)(uintptr_t)pid, &found);
}

void symbolizer__remove_pid(struct symbolizer *s, pid_t pid)
{
	void *old;

	python_syms__forget(s->py, pid);
	if (hashmap__delete(s->procs, (void *)(uintptr_t)pid, NULL, &old))
		sym_proc__free(old);
}

const struct sym_entry *sym_proc__find(const struct sym_proc *p, uint64_t addr)
{
	size_t lo = 0, hi = p->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (p->entries[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo || addr >= p->entries[lo - 1].end)
		return NULL;
	return &p->entries[lo - 1];
}

int symbolizer__proc(struct symbolizer *s, pid_t pid, struct sym_proc **out)
{
	struct sym_proc *p;
	void *found;
	int err;

	if (hashmap__find(s->procs, (void *)(uintptr_t)pid, &found)) {
		*out = found;
		return 0;
	}
	err = symbolizer__add_pid(s, pid);
	if (err == -ENOMEM)
		return err;
	if (err) {
		/* Gone or unreadable: remember that, so its other frames do not retry. */
		p = sym_proc__new(pid, 0);
		if (!p)
			return -ENOMEM;
		err = symbolizer__set_proc(s, p);
		if (err)
			return err;
	}
	if (!hashmap__find(s->procs, (void *)(uintptr_t)pid, &found))
		return -ENOMEM;
	*out = found;
	return 0;
}
