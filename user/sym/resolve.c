/* The symbolizer's resolution of one file's addresses: DWARF (function, file:line, inlined
 * callees) and the symbol table, the address cache that keeps what was resolved, the bound on
 * open DWARF readers, and the batch step (symbolizer__prepare) that resolves user addresses file
 * by file. See sym/internal.h. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sym/internal.h"
#include "sym/module.h"
#include "util/hashmap.h"

static uint64_t sym_addr_key__hash(const void *key, void *ctx)
{
	const struct sym_addr_key *k = key;

	(void)ctx;
	return hashmap__hash_u64(hashmap__hash_u64(HASHMAP_HASH_INIT, (uintptr_t)k->module),
				 k->vaddr);
}

static bool sym_addr_key__equal(const void *a, const void *b, void *ctx)
{
	const struct sym_addr_key *x = a, *y = b;

	(void)ctx;
	return x->module == y->module && x->vaddr == y->vaddr;
}

/* Frees the cached frames of the address cache. */
static void sym_cached__free(const void *key, void *value, void *ctx)
{
	(void)key;
	(void)ctx;
	free(value);
}

int symbolizer__new_addrs(struct symbolizer *s)
{
	s->addrs = hashmap__new(sym_addr_key__hash, sym_addr_key__equal, NULL);
	return s->addrs ? 0 : -ENOMEM;
}

void symbolizer__free_addrs(struct symbolizer *s)
{
	if (s->addrs)
		hashmap__for_each(s->addrs, sym_cached__free, NULL);
	hashmap__free(s->addrs);
	s->addrs = NULL;
}

/* Empties the address cache (when it is full: that bounds its memory). */
static void symbolizer__clear_addrs(struct symbolizer *s)
{
	symbolizer__free_addrs(s);
	symbolizer__new_addrs(s);
}

/* Interns dir/file (file alone when dir is NULL), as debuggers show a relative source path. */
static const char *symbolizer__intern_path(struct symbolizer *s, const char *dir, const char *file)
{
	char buf[PATH_MAX];

	if (!dir || !dir[0] ||
	    (size_t)snprintf(buf, sizeof(buf), "%s/%s", dir, file) >= sizeof(buf))
		return symbolizer__intern(s, file);
	return symbolizer__intern(s, buf);
}

/* Marks m's DWARF reader as used now; when a new one is about to be opened and SYM_MAX_DWARF_OPEN
 * are open, closes the least recently used (what it resolved stays in the address cache). */
static void symbolizer__touch_dwarf(struct symbolizer *s, struct sym_module *m)
{
	int i, lru = 0;

	if (sym_module__dwarf_absent(m))
		return;
	s->tick++;
	for (i = 0; i < s->nopen_dwarf; i++) {
		if (s->open_dwarf[i].module == m) {
			s->open_dwarf[i].tick = s->tick;
			return;
		}
		if (s->open_dwarf[i].tick < s->open_dwarf[lru].tick)
			lru = i;
	}
	if (s->nopen_dwarf == s->opts.max_dwarf_open) {
		sym_module__drop_dwarf(s->open_dwarf[lru].module);
		i = lru;
	} else {
		i = s->nopen_dwarf++;
	}
	s->open_dwarf[i].module = m;
	s->open_dwarf[i].tick = s->tick;
}

/* Takes m out of the open readers once it is known to have no DWARF (its reader is closed). */
static void symbolizer__untouch_dwarf(struct symbolizer *s, struct sym_module *m)
{
	int i;

	if (!sym_module__dwarf_absent(m))
		return;
	for (i = 0; i < s->nopen_dwarf; i++) {
		if (s->open_dwarf[i].module == m) {
			s->open_dwarf[i] = s->open_dwarf[--s->nopen_dwarf];
			return;
		}
	}
}

/* Closes m's DWARF reader now (release_dwarf): what it resolved is in the address cache. */
static void symbolizer__close_dwarf(struct symbolizer *s, struct sym_module *m)
{
	for (int i = 0; i < s->nopen_dwarf; i++) {
		if (s->open_dwarf[i].module == m) {
			s->open_dwarf[i] = s->open_dwarf[--s->nopen_dwarf];
			break;
		}
	}
	if (!sym_module__dwarf_absent(m))
		sym_module__drop_dwarf(m);
}

/* Fills res->frames from DWARF (function, file:line and inlined callees) and the symbol table.
 * Returns 0 (res->nframes 0: nothing known) or -ENOMEM. */
static int symbolizer__resolve(struct symbolizer *s, struct sym_module *m, uint64_t vaddr,
			       struct sym_result *res)
{
	struct sym_dwarf_frame df[SYM_MAX_INLINE];
	const char *name = NULL, *raw;
	struct sym_frame *f;
	int i, n, err;

	symbolizer__touch_dwarf(s, m);
	n = sym_module__frames(m, vaddr, df, SYM_MAX_INLINE);
	symbolizer__untouch_dwarf(s, m);
	if (n && df[n - 1].name)
		err = sym_module__lookup_own(m, vaddr, &name);
	else
		err = sym_module__lookup(m, vaddr, &name);
	if (err == -ENOMEM)
		return err;
	/* The function itself (not inlined) is named as its symbol is, where there is one: the
	 * exported alias users call ("write", not DWARF's "__GI___libc_write"), except for gcc's
	 * clones ("foo.constprop.0"), whose DWARF name is the source's. */
	if (n && name && !strchr(name, '.'))
		df[n - 1].name = name;
	res->nframes = 0;
	if (!n && name) {
		df[0] = (struct sym_dwarf_frame){.name = name};
		n = 1;
	}
	for (i = 0; i < n; i++) {
		raw = df[i].name ? df[i].name : name;
		if (!raw)
			return 0; /* line info but no function: leave it to the stub */
		f = &res->frames[i];
		f->system_name = symbolizer__intern(s, raw);
		f->function = symbolizer__display_name(s, f->system_name);
		f->file = df[i].file ? symbolizer__intern_path(s, df[i].dir, df[i].file) : NULL;
		if (!f->system_name || !f->function || (df[i].file && !f->file))
			return -ENOMEM;
		f->line = df[i].line;
		f->start_line = df[i].start_line;
	}
	res->nframes = n;
	return 0;
}

/* Remembers res for (m, vaddr), also when it found nothing (nframes 0: the caller's stub), so
 * that a prepared address never reopens a file's DWARF. A full cache is emptied first, which
 * bounds its memory. */
static void symbolizer__cache(struct symbolizer *s, const struct sym_module *m, uint64_t vaddr,
			      const struct sym_result *res)
{
	struct sym_cached *c;

	if (s->addrs && hashmap__size(s->addrs) >= s->opts.max_cached_addrs)
		symbolizer__clear_addrs(s);
	if (!s->addrs)
		return;
	c = malloc(sizeof(*c) + res->nframes * sizeof(c->frames[0]));
	if (!c)
		return;
	c->key.module = m;
	c->key.vaddr = vaddr;
	c->nframes = res->nframes;
	memcpy(c->frames, res->frames, res->nframes * sizeof(c->frames[0]));
	if (hashmap__insert(s->addrs, &c->key, c))
		free(c);
}

/* The frames at (m, vaddr) from the address cache, else resolved now and cached. */
int symbolizer__frames(struct symbolizer *s, struct sym_module *m, uint64_t vaddr,
		       struct sym_result *res)
{
	struct sym_addr_key key = {.module = m, .vaddr = vaddr};
	struct sym_cached *c;
	void *found;
	int err;

	if (s->addrs && hashmap__find(s->addrs, &key, &found)) {
		c = found;
		res->nframes = c->nframes;
		memcpy(res->frames, c->frames, c->nframes * sizeof(c->frames[0]));
		s->st.addr_hits++;
		return 0;
	}
	s->st.addr_misses++;
	err = symbolizer__resolve(s, m, vaddr, res);
	if (err)
		return err;
	symbolizer__cache(s, m, vaddr, res);
	return 0;
}

/* What m offers, now that it was read: the mapping's has_* flags become true where true. */
void symbolizer__mapping_flags(struct sym_mapping *mp, struct sym_module *m)
{
	bool dwarf = sym_module__has_dwarf(m);

	mp->has_functions = sym_module__nsyms(m) > 0 || dwarf;
	mp->has_filenames = dwarf;
	mp->has_line_numbers = dwarf;
	mp->has_inline_frames = dwarf;
}

/* A user address to resolve: the file and its link-time address. */
struct sym_pending {
	struct sym_module *module;
	uint64_t vaddr;
};

static int sym_pending__cmp(const void *pa, const void *pb)
{
	const struct sym_pending *a = pa, *b = pb;

	if (a->module != b->module)
		return (uintptr_t)a->module < (uintptr_t)b->module ? -1 : 1;
	return a->vaddr < b->vaddr ? -1 : a->vaddr > b->vaddr;
}

/* Whether (m, vaddr) is resolved already. */
static bool symbolizer__cached(struct symbolizer *s, const struct sym_module *m, uint64_t vaddr)
{
	struct sym_addr_key key = {.module = m, .vaddr = vaddr};

	return s->addrs && hashmap__find(s->addrs, &key, NULL);
}

/* The user addresses of reqs that are in a file and not resolved yet. */
static int symbolizer__user_misses(struct symbolizer *s, const struct sym_request *reqs, size_t n,
				   struct sym_pending **out, size_t *nout)
{
	const struct sym_entry *e;
	struct sym_pending *p;
	struct sym_proc *proc;
	uint64_t look, vaddr;
	size_t i, k = 0;
	int err;

	*out = NULL;
	*nout = 0;
	p = malloc((n ? n : 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (reqs[i].kernel)
			continue;
		err = symbolizer__proc(s, reqs[i].pid, &proc);
		if (err) {
			free(p);
			return err;
		}
		look = sym_lookup_addr(reqs[i].addr, reqs[i].is_return);
		e = sym_proc__find(proc, look);
		if (!e || e->anon || !e->module ||
		    sym_module__offset_to_vaddr(e->module, look - e->start + e->offset, &vaddr) ||
		    symbolizer__cached(s, e->module, vaddr))
			continue;
		p[k++] = (struct sym_pending){e->module, vaddr};
	}
	qsort(p, k, sizeof(*p), sym_pending__cmp);
	for (i = 0; i < k; i++)
		if (!*nout || sym_pending__cmp(&p[*nout - 1], &p[i]))
			p[(*nout)++] = p[i];
	*out = p;
	return 0;
}

static int symbolizer__prepare_user(struct symbolizer *s, const struct sym_request *reqs, size_t n)
{
	struct sym_pending *p;
	struct sym_result res;
	size_t np, i;
	int err;

	err = symbolizer__user_misses(s, reqs, n, &p, &np);
	if (err)
		return err;
	s->st.addr_misses += np;
	for (i = 0; i < np && !err; i++) {
		err = symbolizer__resolve(s, p[i].module, p[i].vaddr, &res);
		if (!err)
			symbolizer__cache(s, p[i].module, p[i].vaddr, &res);
		if (s->opts.release_dwarf && (i + 1 == np || p[i + 1].module != p[i].module))
			symbolizer__close_dwarf(s, p[i].module);
	}
	free(p);
	return err;
}

int symbolizer__prepare(struct symbolizer *s, struct sym_request *reqs, size_t n)
{
	int err = symbolizer__prepare_kernel(s, reqs, n);

	return err ? err : symbolizer__prepare_user(s, reqs, n);
}
