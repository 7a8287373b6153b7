/* Unwind tables kept on disk across runs: see cache.h. Every file operation goes through the
 * directory's descriptor (openat, no symlink followed), so a path swapped after the checks at
 * open cannot redirect a read or a write. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "unwind/cache.h"
#include "util/clock.h"
#include "util/dir.h"
#include "util/log.h"

#define CACHE_MAGIC   "CPROFUNW"
#define CACHE_VERSION 1
#define CACHE_KEY_MAX 255
#define NAME_LEN      (16 + 4) /* 16 hex digits, ".unw" */

/* The file: this header, the key (key_len bytes), then nrows rows. */
struct cache_header {
	char magic[8];
	uint32_t version;
	uint32_t row_size;
	uint64_t nrows;
	uint64_t text_bytes;
	uint32_t nloads;
	uint32_t key_len;
	struct {
		uint64_t offset, vaddr, filesz;
	} loads[UNWIND_TABLE_MAX_LOADS];
	char build_id[48];
	uint64_t checksum; /* FNV-1a of the key, the fields above it and the rows */
};

struct unwind_cache {
	int dirfd;
	uint64_t max_bytes;
	struct unwind_cache_stats st;
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t checksum(const struct cache_header *h, const char *key, const void *rows)
{
	struct cache_header c = *h;
	uint64_t sum = 0xcbf29ce484222325ull;

	c.checksum = 0;
	sum = fnv(sum, &c, sizeof(c));
	sum = fnv(sum, key, h->key_len);
	return fnv(sum, rows, h->nrows * h->row_size);
}

static void file_name(const char *key, char name[NAME_LEN + 1])
{
	snprintf(name, NAME_LEN + 1, "%016" PRIx64 ".unw",
		 fnv(0xcbf29ce484222325ull, key, strlen(key)));
}

/* Whether name is one of the cache's own table files (the only files it ever removes but
 * its own temporary ones). */
static bool is_table_name(const char *name)
{
	size_t i;

	for (i = 0; i < 16; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return strcmp(name + 16, ".unw") == 0;
}

/* ".tmp-PID-NAME": a file being written (by this agent or another sharing the cache). */
static bool is_tmp_name(const char *name)
{
	size_t n = strlen(name);

	return strncmp(name, ".tmp-", 5) == 0 && n > 5 + NAME_LEN &&
	       is_table_name(name + n - NAME_LEN);
}

bool unwind_cache__key_ok(const char *key)
{
	int colons = 0;

	if (strlen(key) > CACHE_KEY_MAX)
		return false;
	if (strncmp(key, "b:", 2) == 0)
		return key[2] != '\0';
	if (strncmp(key, "f:", 2) != 0)
		return false;
	for (const char *p = key; *p; p++)
		colons += *p == ':';
	return colons == 5; /* f:MAJ:MIN:INODE:MTIME:SIZE, not the fallback without mtime */
}

/* Removes temporary files a crash left (hidden: dir__list leaves them out). */
static void remove_tmp(struct unwind_cache *c)
{
	struct dirent *de;
	int fd = dup(c->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d)))
		if (is_tmp_name(de->d_name))
			unlinkat(c->dirfd, de->d_name, 0);
	closedir(d);
}

/* Removes the files used longest ago (a load touches its file) while the cache is over its
 * bound; never keep (the file just written). Only the cache's own table files count. */
static void trim(struct unwind_cache *c, const char *keep)
{
	struct dir_file *files;
	uint64_t total = 0;
	size_t n;

	if (dir__list(c->dirfd, ".unw", dir_file__cmp_mtime, &files, &n))
		return;
	for (size_t i = 0; i < n; i++)
		if (is_table_name(files[i].name))
			total += files[i].size;
	for (size_t i = 0; i < n && total > c->max_bytes; i++) {
		if (!is_table_name(files[i].name) || strcmp(files[i].name, keep) == 0 ||
		    unlinkat(c->dirfd, files[i].name, 0))
			continue;
		total -= files[i].size;
		c->st.removed++;
	}
	c->st.bytes = total;
	free(files);
}

struct unwind_cache *unwind_cache__open(const char *dir, uint64_t max_bytes)
{
	struct unwind_cache *c;
	struct stat st;
	int fd;

	int err = dir__mkdirs(dir, 0700);

	if (err) {
		pr_warn("unwind cache %s: %s: tables are not kept across restarts\n", dir,
			strerror(-err));
		return NULL;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		pr_warn("unwind cache %s: %s: tables are not kept across restarts\n", dir,
			strerror(errno == ELOOP ? ENOTDIR : errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	/* Its files become BPF maps the walks trust: only this user may write there. */
	if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		pr_warn("unwind cache %s: not owned by this user or writable by others: tables "
			"are not kept across restarts\n",
			dir);
		close(fd);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return NULL;
	}
	c->dirfd = fd;
	c->max_bytes = max_bytes;
	remove_tmp(c);
	trim(c, "");
	return c;
}

void unwind_cache__free(struct unwind_cache *c)
{
	if (!c)
		return;
	close(c->dirfd);
	free(c);
}

bool unwind_cache__has(const struct unwind_cache *c, const char *key)
{
	char name[NAME_LEN + 1];
	struct stat st;

	file_name(key, name);
	return fstatat(c->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

static int read_all(int fd, void *buf, size_t n)
{
	char *p = buf;

	while (n) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EBADMSG;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Reads and checks the file behind fd (st its stat) into t. 0 or -EBADMSG / -ENOMEM. */
static int read_table(int fd, const struct stat *st, const char *key, struct unwind_table *t)
{
	struct cache_header h;
	char fkey[CACHE_KEY_MAX + 1];
	void *rows;

	if (!S_ISREG(st->st_mode) || st->st_uid != geteuid() || (uint64_t)st->st_size < sizeof(h) ||
	    read_all(fd, &h, sizeof(h)))
		return -EBADMSG;
	if (memcmp(h.magic, CACHE_MAGIC, 8) || h.version != CACHE_VERSION ||
	    h.row_size != sizeof(struct cprof_unwind_row) || h.key_len != strlen(key) ||
	    h.nrows == 0 || h.nrows > CPROF_UNWIND_MAX_ROWS || h.nloads > UNWIND_TABLE_MAX_LOADS ||
	    (uint64_t)st->st_size != sizeof(h) + h.key_len + h.nrows * h.row_size ||
	    memchr(h.build_id, '\0', sizeof(t->build_id)) == NULL || read_all(fd, fkey, h.key_len))
		return -EBADMSG;
	fkey[h.key_len] = '\0';
	if (strcmp(fkey, key)) /* another key with the same hash */
		return -EBADMSG;
	rows = malloc(h.nrows * h.row_size);
	if (!rows)
		return -ENOMEM;
	if (read_all(fd, rows, h.nrows * h.row_size) || checksum(&h, fkey, rows) != h.checksum) {
		free(rows);
		return -EBADMSG;
	}
	memset(t, 0, sizeof(*t));
	t->rows = rows;
	t->n = h.nrows;
	t->text_bytes = h.text_bytes;
	t->nloads = (int)h.nloads;
	memcpy(t->loads, h.loads, sizeof(t->loads));
	memcpy(t->build_id, h.build_id, sizeof(t->build_id)); /* its NUL within: checked */
	return 0;
}

int unwind_cache__load(struct unwind_cache *c, const char *key, struct unwind_table *t)
{
	int64_t t0 = clock__ns(CLOCK_THREAD_CPUTIME_ID);
	char name[NAME_LEN + 1];
	struct stat st;
	int fd, err;

	file_name(key, name);
	fd = openat(c->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -EBADMSG;
	err = fstat(fd, &st) ? -EBADMSG : read_table(fd, &st, key, t);
	if (!err)
		futimens(fd, NULL); /* used now: the last to go when the cache is trimmed */
	close(fd);
	if (err == -EBADMSG) {
		/* Truncated, corrupt, of another version or another file: never loaded. */
		if (unlinkat(c->dirfd, name, 0) == 0 && c->st.bytes >= (uint64_t)st.st_size)
			c->st.bytes -= (uint64_t)st.st_size;
		c->st.rejected++;
		pr_debug("unwind cache: %s (%s) failed its checks: removed\n", name, key);
	} else if (!err) {
		c->st.loads++;
	}
	c->st.load_ns += (uint64_t)(clock__ns(CLOCK_THREAD_CPUTIME_ID) - t0);
	return err;
}

int unwind_cache__store(struct unwind_cache *c, const char *key, const struct unwind_table *t)
{
	struct cache_header h = {.version = CACHE_VERSION,
				 .row_size = sizeof(struct cprof_unwind_row),
				 .nrows = t->n,
				 .text_bytes = t->text_bytes,
				 .nloads = (uint32_t)t->nloads,
				 .key_len = (uint32_t)strlen(key)};
	char name[NAME_LEN + 1], tmp[NAME_LEN + 32];
	struct stat old;
	int fd, err;

	if (!unwind_cache__key_ok(key) || !t->n || t->nloads < 0 ||
	    t->nloads > UNWIND_TABLE_MAX_LOADS)
		return -EINVAL;
	memcpy(h.magic, CACHE_MAGIC, 8);
	memcpy(h.loads, t->loads, sizeof(h.loads));
	memcpy(h.build_id, t->build_id, sizeof(t->build_id));
	h.checksum = checksum(&h, key, t->rows);
	file_name(key, name);
	snprintf(tmp, sizeof(tmp), ".tmp-%d-%s", (int)getpid(), name);
	fd = openat(c->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	err = fd__write_all(fd, &h, sizeof(h));
	if (!err)
		err = fd__write_all(fd, key, h.key_len);
	if (!err)
		err = fd__write_all(fd, t->rows, t->n * sizeof(struct cprof_unwind_row));
	if (close(fd) && !err)
		err = -errno;
	if (!err && fstatat(c->dirfd, name, &old, AT_SYMLINK_NOFOLLOW) == 0 &&
	    c->st.bytes >= (uint64_t)old.st_size)
		c->st.bytes -= (uint64_t)old.st_size;
	if (!err && renameat(c->dirfd, tmp, c->dirfd, name))
		err = -errno;
	if (err) {
		unlinkat(c->dirfd, tmp, 0);
		return err;
	}
	c->st.stores++;
	c->st.bytes += sizeof(h) + h.key_len + t->n * sizeof(struct cprof_unwind_row);
	if (c->st.bytes > c->max_bytes)
		trim(c, name);
	return 0;
}

const struct unwind_cache_stats *unwind_cache__stats(const struct unwind_cache *c)
{
	return &c->st;
}
