/* Allocator discovery: the malloc family in a process's objects, in the dynamic linker's order
 * of preference, and cheap breakpoint offsets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include <sys/stat.h>

#include "collect/allocators.h"
#include "proc/maps.h"
#include "sym/funcs.h"
#include "util/array.h"
#include "util/log.h"

const struct alloc_func alloc_funcs[] = {
	{"malloc", ALLOC_MALLOC},
	{"calloc", ALLOC_CALLOC},
	{"realloc", ALLOC_REALLOC},
	{"reallocarray", ALLOC_REALLOCARRAY},
	{"posix_memalign", ALLOC_POSIX_MEMALIGN},
	{"aligned_alloc", ALLOC_ALIGNED},
	{"memalign", ALLOC_ALIGNED},
	{"valloc", ALLOC_MALLOC},
	{"pvalloc", ALLOC_MALLOC},
	{"free", ALLOC_FREE}, /* ALLOC_FUNC_FREE */
	/* C++ operator new: its size is the first argument in every variant. Probing it makes the
	 * malloc it calls a nested call, so the caller of new is what the stack blames. */
	{"_Znwm", ALLOC_MALLOC},
	{"_Znam", ALLOC_MALLOC},
	{"_ZnwmRKSt9nothrow_t", ALLOC_MALLOC},
	{"_ZnamRKSt9nothrow_t", ALLOC_MALLOC},
	{"_ZnwmSt11align_val_t", ALLOC_MALLOC},
	{"_ZnamSt11align_val_t", ALLOC_MALLOC},
	{"_ZnwmSt11align_val_tRKSt9nothrow_t", ALLOC_MALLOC},
	{"_ZnamSt11align_val_tRKSt9nothrow_t", ALLOC_MALLOC},
	{"_ZdlPv", ALLOC_OWN_FREE, true},
	{"_ZdaPv", ALLOC_OWN_FREE, true},
	{"_ZdlPvm", ALLOC_OWN_FREE, true},
	{"_ZdaPvm", ALLOC_OWN_FREE, true},
	{"_ZdlPvRKSt9nothrow_t", ALLOC_OWN_FREE, true},
	{"_ZdaPvRKSt9nothrow_t", ALLOC_OWN_FREE, true},
	{"_ZdlPvSt11align_val_t", ALLOC_OWN_FREE, true},
	{"_ZdaPvSt11align_val_t", ALLOC_OWN_FREE, true},
	{"_ZdlPvmSt11align_val_t", ALLOC_OWN_FREE, true},
	{"_ZdaPvmSt11align_val_t", ALLOC_OWN_FREE, true},
	{"_ZdlPvSt11align_val_tRKSt9nothrow_t", ALLOC_OWN_FREE, true},
	{"_ZdaPvSt11align_val_tRKSt9nothrow_t", ALLOC_OWN_FREE, true},
	{"dallocx", ALLOC_OWN_FREE, true},
	{"sdallocx", ALLOC_OWN_FREE, true},
};

_Static_assert(sizeof(alloc_funcs) / sizeof(alloc_funcs[0]) == ALLOC_NFUNCS, "alloc_funcs");

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* The dynamic linker looks a symbol up in the executable first, then in preloaded and needed
 * libraries in load order, with libc (needed last) at the end. We cannot see load order in the
 * mappings, so: the executable, then any other library (an allocator such as jemalloc, tcmalloc,
 * mimalloc, or a sanitizer runtime), then libstdc++, then libc. */
static int obj_rank(const char *path, const char *exe)
{
	const char *b = base_name(path);

	if (exe && strcmp(path, exe) == 0)
		return 0;
	if (strncmp(b, "libc.so", 7) == 0 || strncmp(b, "libc-", 5) == 0)
		return 3;
	if (strncmp(b, "libstdc++", 9) == 0)
		return 2;
	return 1;
}

static bool is_push(const unsigned char *b)
{
	return (b[0] >= 0x50 && b[0] <= 0x57) || (b[0] == 0x41 && b[1] >= 0x50 && b[1] <= 0x57);
}

/* Where to put the breakpoint of a function at file offset off. The kernel emulates a few
 * instructions at a breakpoint (push, jumps, calls) and single-steps every other one out of line,
 * which costs a second trap: measured here, 15 us per call on free's `test %rdi,%rdi` against
 * 1 us on malloc's `push`. So skip what cannot matter to the probe: an endbr64, and in a
 * function whose first argument is a pointer, glibc free's `if (!p) return` test, when a push
 * follows. Neither changes sp or the argument registers; the skipped path (free(NULL)) is not
 * one we count. Anything else keeps the function's first instruction. */
uint64_t allocators__probe_offset(const char *path, uint64_t off, bool ptr_arg)
{
	unsigned char b[16] = {0};
	size_t i = 0, j;
	FILE *f = fopen(path, "re");

	if (!f)
		return off;
	if (fseek(f, (long)off, SEEK_SET) || fread(b, 1, sizeof(b), f) != sizeof(b)) {
		fclose(f);
		return off;
	}
	fclose(f);
	if (b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa)
		i = 4;
	if (ptr_arg && b[i] == 0x48 && b[i + 1] == 0x85 && b[i + 2] == 0xff) {
		j = i + 3;
		if (b[j] == 0x74)
			j += 2;
		else if (b[j] == 0x0f && b[j + 1] == 0x84)
			j += 6;
		else
			j = 0;
		if (j && is_push(&b[j]))
			i = j;
	}
	return off + i;
}

/* For each function, the first object in lookup order that defines it. */
void allocators__choose(const struct alloc_obj *objs, int n, int prov[ALLOC_NFUNCS],
			enum alloc_role roles[ALLOC_NFUNCS])
{
	bool own_free = false;

	for (size_t f = 0; f < ALLOC_NFUNCS; f++) {
		prov[f] = -1;
		for (int i = 0; i < n; i++)
			if (objs[i].offsets[f] &&
			    (prov[f] < 0 || objs[i].rank < objs[prov[f]].rank))
				prov[f] = i;
	}
	for (size_t f = 0; f < ALLOC_NFUNCS; f++) {
		if (alloc_funcs[f].own_free && prov[f] != prov[ALLOC_FUNC_MALLOC])
			prov[f] = -1;
		own_free |= alloc_funcs[f].own_free && prov[f] >= 0;
	}
	for (size_t f = 0; f < ALLOC_NFUNCS; f++)
		roles[f] = own_free && alloc_funcs[f].role == ALLOC_FREE ? ALLOC_FREE_DEDUP
									 : alloc_funcs[f].role;
}

bool allocators__is_release(enum alloc_role role)
{
	return role == ALLOC_FREE || role == ALLOC_OWN_FREE || role == ALLOC_FREE_DEDUP;
}

static int add_obj(struct alloc_obj *objs, int *n, pid_t pid, const char *path, const char *exe)
{
	const char *names[ALLOC_NFUNCS];
	struct alloc_obj *o;
	int found;

	for (int i = 0; i < *n; i++)
		if (strcmp(objs[i].path, path) == 0)
			return 0;
	if (*n >= ALLOC_MAX_OBJS)
		return 0;
	o = &objs[*n];
	snprintf(o->path, sizeof(o->path), "%s", path);
	if (pid > 0)
		snprintf(o->open_path, sizeof(o->open_path), "/proc/%d/root%s", pid, path);
	else
		snprintf(o->open_path, sizeof(o->open_path), "%s", path);
	o->rank = obj_rank(path, exe);
	for (size_t f = 0; f < ALLOC_NFUNCS; f++)
		names[f] = alloc_funcs[f].name;
	found = elf_funcs__find(o->open_path, names, ALLOC_NFUNCS, o->offsets);
	if (found < 0) {
		pr_debug("heap: cannot read %s: %s\n", path, strerror(-found));
		return 0;
	}
	(*n)++;
	return 0;
}

/* Objects a running process has mapped executable. */
int allocators__of_pid(pid_t pid, struct alloc_obj *objs, int *n)
{
	char exe[PATH_MAX];
	struct proc_maps *m;
	int err;

	err = proc_maps__read(pid, &m);
	if (err)
		return err;
	if (proc__exe(pid, exe, sizeof(exe)))
		exe[0] = '\0';
	for (size_t i = 0; i < m->n; i++) {
		const struct proc_map *pm = &m->maps[i];

		if (!pm->path || pm->path[0] != '/' || pm->perms[2] != 'x')
			continue;
		add_obj(objs, n, pid, pm->path, exe[0] ? exe : NULL);
	}
	proc_maps__free(m);
	return 0;
}

/* The libraries exe needs directly, where this system keeps libc (the usual place of a linked
 * allocator such as libjemalloc.so.2); an RPATH or LD_LIBRARY_PATH is not followed. */
static void add_needed(struct alloc_obj *objs, int *n, const char *exe, const char *dir)
{
	char needed[32][256], path[PATH_MAX + 256];
	int k = elf_funcs__needed(exe, &needed[0][0], sizeof(needed[0]), 32);

	for (int i = 0; i < k; i++) {
		if (snprintf(path, sizeof(path), "%s%s", dir, needed[i]) >= (int)sizeof(path))
			continue;
		if (access(path, R_OK) == 0)
			add_obj(objs, n, 0, path, exe);
	}
}

/* A command not started yet, or the whole system: the command's executable (when known) and the
 * libraries it needs, and the C and C++ runtimes of this system, found beside the libc this
 * program runs on. */
int allocators__of_system(const char *exe_hint, struct alloc_obj *objs, int *n)
{
	char exe[PATH_MAX], dir[PATH_MAX], path[PATH_MAX + 32];
	struct proc_maps *m;
	const char *libc = NULL;
	int err;

	exe[0] = '\0';
	if (exe_hint && strchr(exe_hint, '/')) {
		if (!realpath(exe_hint, exe))
			exe[0] = '\0';
	}
	if (exe[0])
		add_obj(objs, n, 0, exe, exe);
	err = proc_maps__read(getpid(), &m);
	if (err)
		return err;
	for (size_t i = 0; i < m->n && !libc; i++)
		if (m->maps[i].path && strncmp(base_name(m->maps[i].path), "libc.so", 7) == 0)
			libc = m->maps[i].path;
	if (libc) {
		add_obj(objs, n, 0, libc, NULL);
		snprintf(dir, sizeof(dir), "%.*s", (int)(base_name(libc) - libc), libc);
		snprintf(path, sizeof(path), "%slibstdc++.so.6", dir);
		if (access(path, R_OK) == 0)
			add_obj(objs, n, 0, path, NULL);
		if (exe[0])
			add_needed(objs, n, exe, dir);
	}
	proc_maps__free(m);
	return 0;
}

static bool seen_has(const dev_t *dev, const ino_t *ino, size_t n, const struct stat *st)
{
	for (size_t i = 0; i < n; i++)
		if (dev[i] == st->st_dev && ino[i] == st->st_ino)
			return true;
	return false;
}

static int seen_add(dev_t **dev, ino_t **ino, size_t *n, size_t *cap, const struct stat *st)
{
	/* One capacity for both: each grows from the same *cap to the same size. */
	size_t dcap = *cap;

	if (array__reserve((void **)dev, &dcap, *n + 1, sizeof(**dev)) ||
	    array__reserve((void **)ino, cap, *n + 1, sizeof(**ino)))
		return -ENOMEM;
	(*dev)[*n] = st->st_dev;
	(*ino)[(*n)++] = st->st_ino;
	return 0;
}

static bool is_system_runtime(const char *path)
{
	const char *b = base_name(path);

	return strncmp(b, "libc.so", 7) == 0 || strncmp(b, "libc-", 5) == 0 ||
	       strncmp(b, "libstdc++", 9) == 0 || strncmp(b, "ld-linux", 8) == 0;
}

/* Every file of a running process's mappings that defines malloc and free, other than the
 * system's runtimes: an allocator linked in or preloaded (jemalloc, tcmalloc, mimalloc, a static
 * allocator). Each file is read once (about 75 distinct files on a desktop machine); processes
 * started later with another allocator are not seen. An allocator that wraps libc's own malloc
 * would be counted at both levels unless it goes through operator new; the common ones do not. */
int allocators__running(const struct alloc_obj *sys, int nsys, alloc_found_fn fn, void *ctx)
{
	struct alloc_obj *o = calloc(1, sizeof(*o));
	struct stat st;
	dev_t *dev = NULL;
	ino_t *ino = NULL;
	size_t nseen = 0, cap = 0;
	struct dirent *de;
	DIR *d = NULL;
	int err = 0;

	if (!o)
		return -ENOMEM;
	d = opendir("/proc");
	if (!d)
		goto out;
	/* Files are told apart by device and inode: the same path in another mount namespace
	 * may be another file. */
	for (int k = 0; k < nsys && !err; k++)
		if (stat(sys[k].open_path, &st) == 0)
			err = seen_add(&dev, &ino, &nseen, &cap, &st);
	while (!err && (de = readdir(d))) {
		pid_t pid = (pid_t)atoi(de->d_name);
		struct proc_maps *m;

		if (pid <= 0 || pid == getpid() || proc_maps__read(pid, &m))
			continue;
		for (size_t i = 0; !err && i < m->n; i++) {
			const char *path = m->maps[i].path;
			int n = 0;

			if (!path || path[0] != '/' || m->maps[i].perms[2] != 'x' ||
			    is_system_runtime(path))
				continue;
			snprintf(o->open_path, sizeof(o->open_path), "/proc/%d/root%s", pid, path);
			if (stat(o->open_path, &st) || seen_has(dev, ino, nseen, &st))
				continue;
			err = seen_add(&dev, &ino, &nseen, &cap, &st);
			add_obj(o, &n, pid, path, NULL);
			if (err || !n || !o->offsets[ALLOC_FUNC_MALLOC] ||
			    !o->offsets[ALLOC_FUNC_FREE])
				continue;
			pr_debug("heap: -a: %s (pid %d) provides malloc\n", path, pid);
			fn(ctx, o, pid);
		}
		proc_maps__free(m);
	}
out:
	if (d)
		closedir(d);
	free(dev);
	free(ino);
	free(o);
	return err;
}

bool allocators__have_malloc(const struct alloc_obj *objs, int n)
{
	for (int i = 0; i < n; i++)
		if (objs[i].offsets[ALLOC_FUNC_MALLOC])
			return true;
	return false;
}

void allocators__no_malloc_error(pid_t pid, const struct alloc_obj *objs, int n)
{
	char list[2048] = "";
	size_t len = 0;

	for (int i = 0; i < n && len < sizeof(list) - 1; i++)
		len += snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
				objs[i].path);
	if (pid > 0)
		pr_err("pid %d: no malloc found to probe; searched %s\n", pid,
		       n ? list : "nothing (no executable mappings)");
	else
		pr_err("no malloc found to probe; searched %s\n", n ? list : "nothing");
}
