#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "proc/mem.h"
#include "proc/maps.h"
#include "sym/demangle.h"
#include "sym/kallsyms.h"
#include "sym/module.h"
#include "sym/perfmap.h"
#include "python/cpython.h"
#include "sym/symbolizer.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/mem.h"

#define KALLSYMS_PATH  "/proc/kallsyms"
#define KERNEL_MAPPING "[kernel.kallsyms]"
/* Anonymous executable memory: JIT code, named through the process's perf map. */
#define ANON_MAPPING "[anon]"
/* A vDSO is two or three pages; anything much larger is not one. */
#define VDSO_MAX_SIZE (1 << 20)

/* One executable file mapping of a process, as snapshotted by add_pid. */
struct sym_entry {
	uint64_t start, end, offset;
	struct sym_mapping *mapping;
	struct sym_module *module; /* NULL: the file could not be opened or is not ELF */
	const char *base;	   /* the file's basename, for stubs */
	bool anon;		   /* anonymous memory (JIT code): no file behind it */
};

struct sym_proc {
	pid_t pid;
	struct sym_entry *entries; /* sorted by start */
	size_t n;
	struct perfmap *jit; /* its perf map, when it has anonymous code */
};

/* A growable array of owned pointers. */
struct ptr_vec {
	void **items;
	size_t n, cap;
};

/* A resolved (module, link-time address): the frames, innermost first, strings interned. */
struct sym_addr_key {
	const struct sym_module *module;
	uint64_t vaddr;
};

struct sym_cached {
	struct sym_addr_key key;
	int nframes;
	struct sym_frame frames[];
};

/* A module whose DWARF reader is open, and when it was last used. */
struct sym_open_dwarf {
	struct sym_module *module;
	uint64_t tick;
};

struct symbolizer {
	struct symbolizer_opts opts;
	char *debug_dir;
	struct hashmap *addrs;	   /* struct sym_addr_key * -> struct sym_cached * */
	struct hashmap *demangled; /* interned raw name -> interned display name */
	struct sym_open_dwarf open_dwarf[SYM_MAX_DWARF_OPEN];
	int nopen_dwarf;
	uint64_t tick;
	struct hashmap *procs;	 /* pid -> struct sym_proc * */
	struct hashmap *modules; /* interned key -> struct sym_module * (NULL: unreadable) */
	struct hashmap *strings; /* interned strings, key == value */
	struct ptr_vec mods;	 /* every struct sym_module; they live until symbolizer__free */
	struct ptr_vec mappings; /* every struct sym_mapping handed out */
	struct kallsyms *ksyms;	 /* the whole table, read when an address was not prepared */
	bool ksyms_tried;
	struct hashmap *kaddrs; /* prepared kernel lookup address -> interned name, or NULL */
	bool kernel_streamed;	/* kernel_mapping was set from a streamed pass */
	struct sym_mapping kernel_mapping;
	struct python_syms *py;	       /* code objects of CPython processes (bpf/python.h) */
	struct sym_mapping py_mapping; /* every Python frame's */
	uint64_t py_unreadable;	       /* Python frames whose code object could not be read */
	struct symbolizer_stats st;    /* the counters of symbolizer__stats */
};

static const char *symbolizer__intern(struct symbolizer *s, const char *str);

/* Interned raw symbol name -> interned display name: demangled C++/Rust unless --demangle=none.
 * NULL only when out of memory. */
static const char *symbolizer__display_name(struct symbolizer *s, const char *name)
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

static const char *symbolizer__intern(struct symbolizer *s, const char *str)
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

static int ptr_vec__push(struct ptr_vec *v, void *item)
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
	s->addrs = hashmap__new(sym_addr_key__hash, sym_addr_key__equal, NULL);
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

static void sym_proc__free(struct sym_proc *p)
{
	if (!p)
		return;
	perfmap__free(p->jit);
	free(p->entries);
	free(p);
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

static void symbolizer__clear_addrs(struct symbolizer *s)
{
	hashmap__for_each(s->addrs, symbolizer__free_string, NULL);
	hashmap__free(s->addrs);
	s->addrs = hashmap__new(sym_addr_key__hash, sym_addr_key__equal, NULL);
}

void symbolizer__free(struct symbolizer *s)
{
	size_t i;

	if (!s)
		return;
	if (s->procs)
		hashmap__for_each(s->procs, symbolizer__free_proc, NULL);
	hashmap__free(s->procs);
	if (s->addrs)
		hashmap__for_each(s->addrs, symbolizer__free_string, NULL);
	hashmap__free(s->addrs);
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
	python_syms__free(s->py);
	free(s);
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

/* Opens path and checks that it is the very file mapped (same device and inode). */
static int symbolizer__open_checked(const char *path, const struct proc_map *map, bool check,
				    struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, st) || !S_ISREG(st->st_mode) ||
	    (check && (st->st_ino != map->inode || major(st->st_dev) != map->dev_major ||
		       minor(st->st_dev) != map->dev_minor))) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

/* Opens the file behind map: by its path when it is still there (through /proc/PID/root when
 * pid lives in another mount namespace), else through /proc/PID/map_files, which reaches
 * deleted and replaced files. Returns an fd or -errno; seen (PATH_MAX + 64 bytes) gets the
 * path where the file's neighbours (its .gnu_debuglink target) are to be found. */
static int symbolizer__open_mapped(pid_t pid, const struct proc_map *map, bool same_root,
				   struct stat *st, char *seen)
{
	char path[PATH_MAX + 64];
	int fd = -ENOENT;

	if (same_root ||
	    snprintf(seen, PATH_MAX + 64, "/proc/%d/root%s", (int)pid, map->path) >= PATH_MAX + 64)
		snprintf(seen, PATH_MAX + 64, "%s", map->path);
	if (!map->deleted) {
		fd = symbolizer__open_checked(seen, map, true, st);
		if (fd >= 0)
			return fd;
	}
	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid,
		 map->start, map->end);
	return symbolizer__open_checked(path, map, false, st);
}

/* Registers a new module under key (and its build-id), or returns the one already known by
 * build-id, freeing m. */
static int symbolizer__adopt(struct symbolizer *s, const char *key, struct sym_module *m,
			     struct sym_module **out)
{
	char idkey[160];
	const char *ikey;
	void *found;
	int err;

	*out = NULL;
	if (m && sym_module__build_id(m)[0]) {
		snprintf(idkey, sizeof(idkey), "b:%s", sym_module__build_id(m));
		ikey = symbolizer__intern(s, idkey);
		if (!ikey) {
			err = -ENOMEM;
			goto cleanup;
		}
		if (hashmap__find(s->modules, ikey, &found)) {
			sym_module__free(m);
			m = found;
		} else {
			err = ptr_vec__push(&s->mods, m);
			if (err)
				goto cleanup;
			err = hashmap__insert(s->modules, ikey, m);
			if (err) {
				/* s->mods owns it now. */
				m = NULL;
				goto cleanup;
			}
		}
	} else if (m) {
		err = ptr_vec__push(&s->mods, m);
		if (err)
			goto cleanup;
	}
	/* A failure here only costs opening the file again for the next process. */
	if (key && !hashmap__find(s->modules, key, NULL))
		hashmap__insert(s->modules, key, m);
	*out = m;
	return 0;
cleanup:
	sym_module__free(m);
	return err;
}

static int symbolizer__file_module(struct symbolizer *s, pid_t pid, const struct proc_map *map,
				   bool same_root, struct sym_module **out)
{
	char key[PATH_MAX + 128], seen[PATH_MAX + 64];
	struct sym_module *m = NULL;
	const char *ikey;
	struct stat st;
	void *found;
	int fd, err;

	*out = NULL;
	fd = symbolizer__open_mapped(pid, map, same_root, &st, seen);
	if (fd < 0) {
		pr_debug("pid %d: cannot open %s: %s\n", (int)pid, map->path, strerror(-fd));
		return 0;
	}
	/* The file's identity; build-ids (when the file has one) merge copies of one file. */
	snprintf(key, sizeof(key), "f:%u:%u:%llu:%lld.%09ld:%lld:%s", major(st.st_dev),
		 minor(st.st_dev), (unsigned long long)st.st_ino, (long long)st.st_mtim.tv_sec,
		 (long)st.st_mtim.tv_nsec, (long long)st.st_size, map->path);
	ikey = symbolizer__intern(s, key);
	if (!ikey) {
		close(fd);
		return -ENOMEM;
	}
	if (hashmap__find(s->modules, ikey, &found)) {
		close(fd);
		*out = found;
		s->st.file_hits++;
		return 0;
	}
	s->st.file_misses++;
	err = sym_module__open_fd(fd, seen, s->opts.debug_dir, &m);
	if (err == -ENOMEM)
		return err;
	/* Once per file (the module table remembers it): its frames will be stubs. */
	if (err)
		pr_warn("warning: %s (mapped by pid %d) is not a readable ELF file: its frames "
			"stay "
			"unsymbolized\n",
			map->path, (int)pid);
	return symbolizer__adopt(s, ikey, m, out);
}

/* Our own vDSO, when it has the same size: the same kernel maps the same image. */
static int symbolizer__own_vdso(void *buf, size_t size)
{
	const struct proc_map *map = NULL;
	struct proc_maps *pm;
	uint64_t base = getauxval(AT_SYSINFO_EHDR);
	size_t i;
	int err;

	if (!base)
		return -ENOENT;
	err = proc_maps__read(getpid(), &pm);
	if (err)
		return err;
	for (i = 0; i < pm->n; i++) {
		if (pm->maps[i].start == base)
			map = &pm->maps[i];
	}
	err = map && map->end - map->start == size ? 0 : -ENOENT;
	if (!err)
		memcpy(buf, (const void *)(uintptr_t)base, size);
	proc_maps__free(pm);
	return err;
}

static int symbolizer__vdso_module(struct symbolizer *s, pid_t pid, const struct proc_map *map,
				   struct sym_module **out)
{
	size_t size = map->end - map->start;
	struct sym_module *m;
	const char *ikey;
	char key[64];
	void *found;
	void *img;
	int err;

	*out = NULL;
	if (!size || size > VDSO_MAX_SIZE)
		return 0;
	img = malloc(size);
	if (!img)
		return -ENOMEM;
	if (proc_mem__read(pid, map->start, img, size) && symbolizer__own_vdso(img, size)) {
		pr_debug("pid %d: cannot read its [vdso]\n", (int)pid);
		free(img);
		return 0;
	}
	/* Every process of this kernel maps the same vDSO image: parse it once, keyed by its
	 * contents, instead of once per process (the agent sees hundreds of processes a minute). */
	snprintf(key, sizeof(key), "v:%zu:%016llx", size,
		 (unsigned long long)hashmap__hash_bytes(HASHMAP_HASH_INIT, img, size));
	ikey = symbolizer__intern(s, key);
	if (!ikey) {
		free(img);
		return -ENOMEM;
	}
	if (hashmap__find(s->modules, ikey, &found)) {
		free(img);
		*out = found;
		return 0;
	}
	err = sym_module__open_mem(img, size, &m);
	if (err == -ENOMEM)
		return err;
	if (err)
		return 0;
	return symbolizer__adopt(s, ikey, m, out);
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

int symbolizer__add_pid(struct symbolizer *s, pid_t pid)
{
	struct sym_proc *p = NULL, *old = NULL;
	struct proc_maps *pm = NULL;
	bool same_root;
	void *found;
	size_t i;
	int err;

	if (hashmap__find(s->procs, (void *)(uintptr_t)pid, &found))
		old = found;
	err = proc_maps__read(pid, &pm);
	if (!err && pm->n == 0)
		err = -ESRCH; /* an exiting process has released its memory */
	if (err) {
		/* Gone: what an earlier snapshot saw (at its exec, say) still stands. */
		proc_maps__free(pm);
		return err;
	}
	p = sym_proc__new(pid, pm->n);
	if (!p) {
		err = -ENOMEM;
		goto cleanup;
	}
	same_root = symbolizer__same_root(pid);
	for (i = 0; i < pm->n; i++) {
		err = symbolizer__add_entry(s, p, old, &pm->maps[i], same_root);
		if (err)
			goto cleanup;
	}
	err = symbolizer__set_proc(s, p);
	p = NULL;
cleanup:
	sym_proc__free(p);
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

static const struct sym_entry *sym_proc__find(const struct sym_proc *p, uint64_t addr)
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

static int symbolizer__set_frame(struct symbolizer *s, struct sym_result *res,
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
static int symbolizer__stub(struct symbolizer *s, struct sym_result *res,
			    const struct sym_mapping *mapping, const char *base, uint64_t value)
{
	char buf[PATH_MAX + 32];

	if (base)
		snprintf(buf, sizeof(buf), "%s+0x%" PRIx64, base, value);
	else
		snprintf(buf, sizeof(buf), "0x%" PRIx64, value);
	return symbolizer__set_frame(s, res, mapping, symbolizer__intern(s, buf));
}

static int symbolizer__proc(struct symbolizer *s, pid_t pid, struct sym_proc **out)
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

/* What m offers, now that it was read: the mapping's has_* flags become true where true. */
static void symbolizer__mapping_flags(struct sym_mapping *mp, struct sym_module *m)
{
	bool dwarf = sym_module__has_dwarf(m);

	mp->has_functions = sym_module__nsyms(m) > 0 || dwarf;
	mp->has_filenames = dwarf;
	mp->has_line_numbers = dwarf;
	mp->has_inline_frames = dwarf;
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
	uint64_t look = is_return && addr ? addr - 1 : addr, vaddr;
	struct sym_addr_key key;
	const struct sym_entry *e;
	struct sym_cached *c;
	struct sym_proc *p;
	void *found;
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
	key.module = e->module;
	key.vaddr = vaddr;
	if (s->addrs && hashmap__find(s->addrs, &key, &found)) {
		c = found;
		res->nframes = c->nframes;
		memcpy(res->frames, c->frames, c->nframes * sizeof(c->frames[0]));
		s->st.addr_hits++;
	} else {
		s->st.addr_misses++;
		err = symbolizer__resolve(s, e->module, vaddr, res);
		if (err)
			return err;
		symbolizer__cache(s, e->module, vaddr, res);
	}
	symbolizer__mapping_flags(e->mapping, e->module);
	if (res->nframes)
		return 0;
stub:
	return symbolizer__stub(s, res, e->mapping, e->base, addr - e->start + e->offset);
}

int symbolizer__file(struct symbolizer *s, const char *path, uint64_t vaddr, struct sym_result *res)
{
	char key[PATH_MAX + 8];
	struct sym_module *m = NULL;
	struct sym_addr_key ak;
	const char *ikey;
	void *found;
	int fd, err;

	snprintf(key, sizeof(key), "p:%s", path);
	ikey = symbolizer__intern(s, key);
	if (!ikey)
		return -ENOMEM;
	if (hashmap__find(s->modules, ikey, &found)) {
		m = found;
	} else {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		err = sym_module__open_fd(fd, path, s->opts.debug_dir, &m);
		if (err)
			return err;
		err = symbolizer__adopt(s, ikey, m, &m);
		if (err)
			return err;
	}
	if (!m)
		return -ENOEXEC;
	ak.module = m;
	ak.vaddr = vaddr;
	res->mapping = NULL;
	if (s->addrs && hashmap__find(s->addrs, &ak, &found)) {
		res->nframes = ((struct sym_cached *)found)->nframes;
		memcpy(res->frames, ((struct sym_cached *)found)->frames,
		       res->nframes * sizeof(res->frames[0]));
	} else {
		err = symbolizer__resolve(s, m, vaddr, res);
		if (err)
			return err;
		symbolizer__cache(s, m, vaddr, res);
	}
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

static void symbolizer__load_kallsyms(struct symbolizer *s)
{
	int err;

	s->ksyms_tried = true;
	mem__checkpoint("kallsyms start");
	err = kallsyms__load(KALLSYMS_PATH, &s->ksyms);
	mem__checkpoint("kallsyms loaded");
	if (err) {
		pr_warn("cannot read %s: %s; kernel frames stay unsymbolized\n", KALLSYMS_PATH,
			strerror(-err));
		return;
	}
	if (kallsyms__restricted(s->ksyms))
		pr_warn("%s shows no addresses (kernel.kptr_restrict); kernel frames stay "
			"unsymbolized\n",
			KALLSYMS_PATH);
	s->kernel_mapping.start = kallsyms__min_addr(s->ksyms);
	s->kernel_mapping.has_functions = kallsyms__count(s->ksyms) > 0;
}

int symbolizer__kernel(struct symbolizer *s, uint64_t addr, bool is_return, struct sym_result *res)
{
	uint64_t look = is_return && addr ? addr - 1 : addr;
	const char *name = NULL;
	void *found;

	if (s->kaddrs && hashmap__find(s->kaddrs, (void *)(uintptr_t)look, &found)) {
		name = found;
	} else {
		if (!s->opts.no_kernel && !s->ksyms_tried)
			symbolizer__load_kallsyms(s);
		if (s->ksyms)
			name = kallsyms__lookup(s->ksyms, look);
	}
	if (name)
		return symbolizer__set_frame(s, res, &s->kernel_mapping, name);
	return symbolizer__stub(s, res, &s->kernel_mapping, NULL, addr);
}

static int u64_cmp(const void *pa, const void *pb)
{
	uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;

	return a < b ? -1 : a > b;
}

static void symbolizer__kernel_info(struct symbolizer *s, const struct kallsyms_info *info)
{
	if (s->kernel_streamed)
		return;
	s->kernel_streamed = true;
	if (info->restricted)
		pr_warn("%s shows no addresses (kernel.kptr_restrict); kernel frames stay "
			"unsymbolized\n",
			KALLSYMS_PATH);
	s->kernel_mapping.start = info->restricted ? 0 : info->min_addr;
	s->kernel_mapping.has_functions = !info->restricted && info->count > 0;
}

/* The kernel addresses of reqs that are not known yet, as lookup addresses, sorted, distinct. */
static uint64_t *symbolizer__kernel_misses(struct symbolizer *s, const struct sym_request *reqs,
					   size_t n, size_t *nout)
{
	uint64_t *looks, look;
	size_t i, k = 0;

	*nout = 0;
	looks = malloc((n ? n : 1) * sizeof(*looks));
	if (!looks)
		return NULL;
	for (i = 0; i < n; i++) {
		if (!reqs[i].kernel)
			continue;
		look = reqs[i].is_return && reqs[i].addr ? reqs[i].addr - 1 : reqs[i].addr;
		/* (0 is no hashmap key: such a frame takes the unprepared path.) */
		if (look && !hashmap__find(s->kaddrs, (void *)(uintptr_t)look, NULL))
			looks[k++] = look;
	}
	qsort(looks, k, sizeof(*looks), u64_cmp);
	for (i = 0; i < k; i++)
		if (!*nout || looks[*nout - 1] != looks[i])
			looks[(*nout)++] = looks[i];
	return looks;
}

static int symbolizer__prepare_kernel(struct symbolizer *s, const struct sym_request *reqs,
				      size_t n)
{
	struct kallsyms_info info;
	const char *name;
	uint64_t *looks;
	char **names = NULL;
	size_t nl, i;
	int err = 0;

	/* Not read (--no-kernel), or found unreadable: kernel frames are stubs anyway. */
	if (s->opts.no_kernel || (s->ksyms_tried && !s->ksyms) || !s->kaddrs)
		return 0;
	looks = symbolizer__kernel_misses(s, reqs, n, &nl);
	if (!looks)
		return -ENOMEM;
	if (!nl || s->ksyms) /* nothing new, or the whole table is already read */
		goto cleanup;
	if (hashmap__size(s->kaddrs) + nl > s->opts.max_cached_addrs) {
		/* Emptied when full, as the address cache is: that bounds its memory. */
		hashmap__free(s->kaddrs);
		s->kaddrs = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
		if (!s->kaddrs) {
			err = -ENOMEM;
			goto cleanup;
		}
	}
	names = calloc(nl, sizeof(*names));
	if (!names) {
		err = -ENOMEM;
		goto cleanup;
	}
	err = kallsyms__resolve(KALLSYMS_PATH, looks, nl, names, &info);
	if (err == -ENOMEM)
		goto cleanup;
	if (err) {
		pr_warn("cannot read %s: %s; kernel frames stay unsymbolized\n", KALLSYMS_PATH,
			strerror(-err));
		s->ksyms_tried = true;
		err = 0;
		goto cleanup;
	}
	symbolizer__kernel_info(s, &info);
	for (i = 0; i < nl && !err; i++) {
		name = names[i] ? symbolizer__intern(s, names[i]) : NULL;
		if (names[i] && !name)
			err = -ENOMEM;
		else
			err = hashmap__insert(s->kaddrs, (void *)(uintptr_t)looks[i], (void *)name);
	}
cleanup:
	for (i = 0; names && i < nl; i++)
		free(names[i]);
	free(names);
	free(looks);
	return err;
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
		look = reqs[i].is_return && reqs[i].addr ? reqs[i].addr - 1 : reqs[i].addr;
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
