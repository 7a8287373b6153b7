/* The symbolizer's module cache: the file behind a mapping, opened once (by its identity: device,
 * inode, mtime, size and path) and shared by every process and every copy with its build-id;
 * vDSO images, parsed once per kernel. See sym/internal.h. */
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

#include "proc/maps.h"
#include "proc/mem.h"
#include "sym/internal.h"
#include "sym/module.h"
#include "util/hashmap.h"
#include "util/log.h"

/* A vDSO is two or three pages; anything much larger is not one. */
#define VDSO_MAX_SIZE (1 << 20)

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

/* The module already known under key, if any. Returns 1 with *out set (NULL: the file was found
 * unreadable), 0 with *ikey the interned key to register a new module under, or -ENOMEM. */
static int symbolizer__known_module(struct symbolizer *s, const char *key, const char **ikey,
				    struct sym_module **out)
{
	void *found;

	*ikey = symbolizer__intern(s, key);
	if (!*ikey)
		return -ENOMEM;
	if (!hashmap__find(s->modules, *ikey, &found))
		return 0;
	*out = found;
	return 1;
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

int symbolizer__file_module(struct symbolizer *s, pid_t pid, const struct proc_map *map,
			    bool same_root, struct sym_module **out)
{
	char key[PATH_MAX + 128], seen[PATH_MAX + 64];
	struct sym_module *m = NULL;
	const char *ikey;
	struct stat st;
	int fd, err, known;

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
	known = symbolizer__known_module(s, key, &ikey, out);
	if (known) {
		close(fd);
		if (known > 0)
			s->st.file_hits++;
		return known < 0 ? known : 0;
	}
	s->st.file_misses++;
	err = sym_module__open_fd(fd, seen, s->opts.debug_dir, &m);
	if (err == -ENOMEM)
		return err;
	/* Once per file (the module table remembers it): its frames will be stubs. */
	if (err)
		pr_warn("warning: %s (mapped by pid %d) is not a readable ELF file: its frames "
			"stay unsymbolized\n",
			map->path, (int)pid);
	return symbolizer__adopt(s, ikey, m, out);
}

int symbolizer__path_module(struct symbolizer *s, const char *path, struct sym_module **out)
{
	char key[PATH_MAX + 8];
	struct sym_module *m = NULL;
	const char *ikey;
	int fd, err, known;

	*out = NULL;
	snprintf(key, sizeof(key), "p:%s", path);
	known = symbolizer__known_module(s, key, &ikey, out);
	if (known)
		return known < 0 ? known : 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	err = sym_module__open_fd(fd, path, s->opts.debug_dir, &m);
	if (err)
		return err;
	return symbolizer__adopt(s, ikey, m, out);
}

/* Our own vDSO's address and size, read once (size 0: none): every 64-bit process of this
 * kernel maps the same image, so one of the same size is taken from our memory instead of
 * being read through each process's /proc/PID/mem. */
static size_t symbolizer__own_vdso(struct symbolizer *s, uint64_t *base)
{
	struct proc_maps *pm;

	*base = getauxval(AT_SYSINFO_EHDR);
	if (s->own_vdso_tried)
		return s->own_vdso_size;
	s->own_vdso_tried = true;
	if (!*base || proc_maps__read(getpid(), &pm))
		return 0;
	for (size_t i = 0; i < pm->n; i++)
		if (pm->maps[i].start == *base)
			s->own_vdso_size = pm->maps[i].end - pm->maps[i].start;
	proc_maps__free(pm);
	return s->own_vdso_size;
}

int symbolizer__vdso_module(struct symbolizer *s, pid_t pid, const struct proc_map *map,
			    struct sym_module **out)
{
	size_t size = map->end - map->start;
	struct sym_module *m;
	const char *ikey;
	uint64_t base;
	char key[64];
	void *img;
	int err, known;

	*out = NULL;
	if (!size || size > VDSO_MAX_SIZE)
		return 0;
	img = malloc(size);
	if (!img)
		return -ENOMEM;
	if (size == symbolizer__own_vdso(s, &base)) {
		memcpy(img, (const void *)(uintptr_t)base, size);
	} else if (proc_mem__read(pid, map->start, img, size)) {
		pr_debug("pid %d: cannot read its [vdso]\n", (int)pid);
		free(img);
		return 0;
	}
	/* Every process of this kernel maps the same vDSO image: parse it once, keyed by its
	 * contents, instead of once per process (the agent sees hundreds of processes a minute). */
	snprintf(key, sizeof(key), "v:%zu:%016llx", size,
		 (unsigned long long)hashmap__hash_bytes(HASHMAP_HASH_INIT, img, size));
	known = symbolizer__known_module(s, key, &ikey, out);
	if (known) {
		free(img);
		return known < 0 ? known : 0;
	}
	err = sym_module__open_mem(img, size, &m);
	if (err == -ENOMEM)
		return err;
	if (err)
		return 0;
	return symbolizer__adopt(s, ikey, m, out);
}
