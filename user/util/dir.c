/* Directory listings of the agent's local store and its push queue: one file per profile, whose
 * names, sizes and times decide which to send, keep or delete. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "util/dir.h"

int dir_file__cmp_name(const void *x, const void *y)
{
	return strcmp(((const struct dir_file *)x)->name, ((const struct dir_file *)y)->name);
}

int dir_file__cmp_mtime(const void *x, const void *y)
{
	const struct dir_file *a = x, *b = y;

	if (a->mtime_ns != b->mtime_ns)
		return a->mtime_ns < b->mtime_ns ? -1 : 1;
	return strcmp(a->name, b->name);
}

static bool wanted(const char *name, const char *suffix)
{
	size_t n = strlen(name), k = strlen(suffix);

	return name[0] != '.' && n > k && n < sizeof(((struct dir_file *)0)->name) &&
	       strcmp(name + n - k, suffix) == 0;
}

int dir__list(int dirfd, const char *suffix, int (*cmp)(const void *, const void *),
	      struct dir_file **out, size_t *n)
{
	struct dir_file *v = NULL, *tmp;
	size_t cap = 0;
	struct dirent *de;
	struct stat st;
	/* A duplicate for the DIR, which closes it: dirfd stays the caller's. */
	int fd = dup(dirfd);
	DIR *d;

	*n = 0;
	*out = NULL;
	if (fd < 0 || !(d = fdopendir(fd))) {
		int err = -errno;

		if (fd >= 0)
			close(fd);
		return err;
	}
	rewinddir(d); /* the duplicate shares its offset with dirfd, maybe at the end */
	while ((de = readdir(d))) {
		if (!wanted(de->d_name, suffix) ||
		    fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			tmp = realloc(v, cap * sizeof(*v));
			if (!tmp) {
				closedir(d);
				free(v);
				*n = 0;
				return -ENOMEM;
			}
			v = tmp;
		}
		snprintf(v[*n].name, sizeof(v[*n].name), "%s", de->d_name);
		v[*n].size = (uint64_t)st.st_size;
		v[*n].mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
		(*n)++;
	}
	closedir(d);
	if (*n && cmp)
		qsort(v, *n, sizeof(*v), cmp);
	*out = v;
	return 0;
}

int dir__mkdirs(const char *path, mode_t mode)
{
	char buf[4096], *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

int fd__write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
