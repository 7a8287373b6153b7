/* The symbolizer's life and its per-address front: symbolizer__user (a file mapping, JIT code,
 * a Python frame) and symbolizer__file. Its other parts are listed in sym/internal.h. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "python/cpython.h"
#include "sym/demangle.h"
#include "sym/internal.h"
#include "sym/kallsyms.h"
#include "sym/ksym_resolver.h"
#include "sym/module.h"
#include "sym/perfmap.h"
#include "sym/symbolizer.h"
#include "util/hashmap.h"

const char *symbolizer__display_name(struct symbolizer *s, const char *name)
{
	const char *shown;
	void *found;
	char *dm;

	if (!name || s->opts.demangle == SYM_DEMANGLE_NONE)
		return name;
	if (hashmap__find(s->demangled, name, &found))
		return found;
	dm = sym_demangle(name);
	shown = dm ? symbolizer__intern(s, dm) : name;
	free(dm);
	if (shown && hashmap__insert(s->demangled, name, (void *)shown))
		return NULL;
	return shown;
}

const char *symbolizer__intern(struct symbolizer *s, const char *str)
{
	void *found;
	char *copy;

	if (hashmap__find(s->strings, str, &found))
		return found;
	copy = strdup(str);
	if (!copy)
		return NULL;
	if (hashmap__insert(s->strings, copy, copy)) {
		free(copy);
		return NULL;
	}
	return copy;
}

int ptr_vec__push(struct ptr_vec *v, void *item)
{
	size_t cap = v->cap ? v->cap * 2 : 16;
	void **tmp;

	if (v->n == v->cap) {
		tmp = realloc(v->items, cap * sizeof(*tmp));
		if (!tmp)
			return -ENOMEM;
		v->items = tmp;
		v->cap = cap;
	}
	v->items[v->n++] = item;
	return 0;
}

struct symbolizer *symbolizer__new(const struct symbolizer_opts *opts)
{
	struct symbolizer *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if (opts)
		s->opts = *opts;
	if (!s->opts.max_cached_addrs)
		s->opts.max_cached_addrs = SYM_CACHE_MAX_ADDRS;
	if (s->opts.max_dwarf_open <= 0 || s->opts.max_dwarf_open > SYM_MAX_DWARF_OPEN)
		s->opts.max_dwarf_open = SYM_MAX_DWARF_OPEN;
	if (s->opts.debug_dir) {
		s->debug_dir = strdup(s->opts.debug_dir);
		s->opts.debug_dir = s->debug_dir;
	}
	s->procs = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	s->modules = hashmap__new(hashmap__str_hash, hashmap__str_equal, NULL);
	s->strings = hashmap__new(hashmap__str_hash, hashmap__str_equal, NULL);
	symbolizer__new_addrs(s); /* checked below, with the others */
	s->demangled = hashmap__new(hashmap__str_hash, hashmap__str_equal, NULL);
	s->kaddrs = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	if (!s->procs || !s->modules || !s->strings || !s->addrs || !s->demangled || !s->kaddrs ||
	    (s->opts.debug_dir && !s->debug_dir)) {
		symbolizer__free(s);
		return NULL;
	}
	s->py = python_syms__new();
	if (!s->py) {
		symbolizer__free(s);
		return NULL;
	}
	/* Python frames are no addresses: their mapping covers the tagged values alone. */
	s->py_mapping = (struct sym_mapping){.start = CPROF_PY_FRAME_TAG,
					     .limit = UINT64_MAX,
					     .path = "[python]",
					     .build_id = "",
					     .has_functions = true,
					     .has_filenames = true,
					     .has_line_numbers = true};
	s->kernel_mapping.path = KERNEL_MAPPING;
	s->kernel_mapping.build_id = "";
	s->kernel_mapping.limit = UINT64_MAX;
	return s;
}

static void symbolizer__free_proc(const void *key, void *value, void *ctx)
{
	(void)key;
	(void)ctx;
	sym_proc__free(value);
}

static void symbolizer__free_string(const void *key, void *value, void *ctx)
{
	(void)key;
	(void)ctx;
	free(value);
}

void symbolizer__free(struct symbolizer *s)
{
	size_t i;

	if (!s)
		return;
	symbolizer__kernel_join(s);
	if (s->procs)
		hashmap__for_each(s->procs, symbolizer__free_proc, NULL);
	hashmap__free(s->procs);
	symbolizer__free_addrs(s);
	hashmap__free(s->demangled);
	hashmap__free(s->kaddrs);
	free(s->debug_dir);
	hashmap__free(s->modules);
	for (i = 0; i < s->mods.n; i++)
		sym_module__free(s->mods.items[i]);
	free(s->mods.items);
	for (i = 0; i < s->mappings.n; i++)
		free(s->mappings.items[i]);
	free(s->mappings.items);
	if (s->strings)
		hashmap__for_each(s->strings, symbolizer__free_string, NULL);
	hashmap__free(s->strings);
	kallsyms__free(s->ksyms);
	ksym_resolver__free(s->kres);
	python_syms__free(s->py);
	free(s);
}

int symbolizer__set_frame(struct symbolizer *s, struct sym_result *res,
			  const struct sym_mapping *mapping, const char *name)
{
	if (!name)
		return -ENOMEM;
	res->mapping = mapping;
	res->nframes = 1;
	res->frames[0].system_name = name;
	res->frames[0].function = symbolizer__display_name(s, name);
	res->frames[0].file = NULL;
	res->frames[0].line = 0;
	res->frames[0].start_line = 0;
	return res->frames[0].function ? 0 : -ENOMEM;
}

/* A frame for an address nothing resolves: "lib.so+0x1234" (file offset), or "0x7f..". */
int symbolizer__stub(struct symbolizer *s, struct sym_result *res,
		     const struct sym_mapping *mapping, const char *base, uint64_t value)
{
	char buf[PATH_MAX + 32];

	if (base)
		snprintf(buf, sizeof(buf), "%s+0x%" PRIx64, base, value);
	else
		snprintf(buf, sizeof(buf), "0x%" PRIx64, value);
	return symbolizer__set_frame(s, res, mapping, symbolizer__intern(s, buf));
}

/* An address in anonymous code: the JIT's name for it from the perf map, else "0x..". */
static int symbolizer__jit(struct symbolizer *s, struct sym_proc *p, const struct sym_entry *e,
			   uint64_t look, uint64_t addr, struct sym_result *res)
{
	const char *name = p->jit ? perfmap__lookup(p->jit, look) : NULL;

	if (!name)
		return symbolizer__stub(s, res, e->mapping, NULL, addr);
	e->mapping->has_functions = true;
	return symbolizer__set_frame(s, res, e->mapping, symbolizer__intern(s, name));
}

/* A Python frame (bpf/python.h): its code object's name, file and line. */
static int symbolizer__python(struct symbolizer *s, pid_t pid, uint64_t addr,
			      struct sym_result *res)
{
	struct python_frame f;
	char buf[64];
	int err;

	err = python_syms__resolve(s->py, pid, addr, &f);
	if (err == -ENOMEM)
		return err;
	if (err) {
		/* Nothing invented: the frame says what it is and is counted. */
		s->py_unreadable++;
		snprintf(buf, sizeof(buf), "[python code 0x%llx unreadable]",
			 (unsigned long long)CPROF_PY_CODE(addr));
		return symbolizer__set_frame(s, res, &s->py_mapping, symbolizer__intern(s, buf));
	}
	err = symbolizer__set_frame(s, res, &s->py_mapping, symbolizer__intern(s, f.function));
	if (err)
		return err;
	res->frames[0].file = symbolizer__intern(s, f.file);
	res->frames[0].line = f.line;
	res->frames[0].start_line = f.start_line;
	return res->frames[0].file ? 0 : -ENOMEM;
}

void symbolizer__python_prefetch(struct symbolizer *s, pid_t pid, uint64_t code)
{
	struct python_frame f;

	python_syms__resolve(s->py, pid, CPROF_PY_FRAME(code, CPROF_PY_IDX_UNKNOWN), &f);
}

uint64_t symbolizer__python_unreadable(const struct symbolizer *s)
{
	return s->py_unreadable;
}

int symbolizer__user(struct symbolizer *s, pid_t pid, uint64_t addr, bool is_return,
		     struct sym_result *res)
{
	uint64_t look = sym_lookup_addr(addr, is_return), vaddr;
	const struct sym_entry *e;
	struct sym_proc *p;
	int err;

	if (CPROF_PY_IS_FRAME(addr))
		return symbolizer__python(s, pid, addr, res);
	err = symbolizer__proc(s, pid, &p);
	if (err)
		return err;
	e = sym_proc__find(p, look);
	if (!e)
		return symbolizer__stub(s, res, NULL, NULL, addr);
	if (e->anon)
		return symbolizer__jit(s, p, e, look, addr, res);
	if (!e->module ||
	    sym_module__offset_to_vaddr(e->module, look - e->start + e->offset, &vaddr))
		goto stub;
	res->mapping = e->mapping;
	err = symbolizer__frames(s, e->module, vaddr, res);
	if (err)
		return err;
	symbolizer__mapping_flags(e->mapping, e->module);
	if (res->nframes)
		return 0;
stub:
	return symbolizer__stub(s, res, e->mapping, e->base, addr - e->start + e->offset);
}

int symbolizer__file(struct symbolizer *s, const char *path, uint64_t vaddr, struct sym_result *res)
{
	struct sym_module *m;
	int err;

	err = symbolizer__path_module(s, path, &m);
	if (err)
		return err;
	if (!m)
		return -ENOEXEC;
	res->mapping = NULL;
	err = symbolizer__frames(s, m, vaddr, res);
	if (err)
		return err;
	if (res->nframes)
		return 0;
	return symbolizer__set_frame(s, res, NULL, symbolizer__intern(s, "??"));
}

void symbolizer__stats(const struct symbolizer *s, struct symbolizer_stats *st)
{
	*st = s->st;
	st->procs = hashmap__size(s->procs);
	st->files = s->mods.n;
	st->addrs = s->addrs ? hashmap__size(s->addrs) : 0;
	st->max_addrs = s->opts.max_cached_addrs;
	st->dwarf_open = (uint64_t)s->nopen_dwarf;
	st->max_dwarf_open = (uint64_t)s->opts.max_dwarf_open;
}
