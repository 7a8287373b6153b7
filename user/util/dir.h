#ifndef CPROF_UTIL_DIR_H
#define CPROF_UTIL_DIR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One regular file of a directory, as dir__list() finds it. */
struct dir_file {
	char name[256]; /* NAME_MAX + 1 */
	uint64_t size;
	int64_t mtime_ns; /* wall clock */
};

/* The regular files of dirfd whose names end in suffix (and are longer than it; hidden files left
 * out), sorted by cmp, which gets two struct dir_file (NULL: unsorted). *out is malloc'ed (the
 * caller frees it, also when *n is 0). dirfd stays open and unmoved. Returns 0 or -errno. */
int dir__list(int dirfd, const char *suffix, int (*cmp)(const void *, const void *),
	      struct dir_file **out, size_t *n);
/* qsort() comparators for dir__list(): by name; by mtime, then name (oldest first). */
int dir_file__cmp_name(const void *x, const void *y);
int dir_file__cmp_mtime(const void *x, const void *y);

/* write(2) of all len bytes (short writes continued, EINTR retried). Returns 0 or -errno. */
int fd__write_all(int fd, const void *buf, size_t len);
/* mkdir -p: path and its missing parents, with mode. Returns 0 or -errno. */
int dir__mkdirs(const char *path, mode_t mode);

#endif
