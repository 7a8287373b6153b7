/* Local store of the agent: one file per window, written atomically, bounded by age, total size
 * and the free space of the file system. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <zlib.h>

#include "agent/internal.h"
#include "util/clock.h"
#include "util/dir.h"
#include "util/log.h"
#include "profile.pb-c.h"

#define STORE_SUFFIX ".pb.gz"

struct store {
	struct agent *a;
	int dirfd;
	uint64_t min_free; /* bytes (--min-free resolved against the file system) */
	pthread_mutex_t lock;
};

/* The profiles in the store, oldest first. */
static int store__list(struct store *s, struct dir_file **out, size_t *n)
{
	return dir__list(s->dirfd, STORE_SUFFIX, dir_file__cmp_mtime, out, n);
}

static uint64_t free_bytes(struct store *s)
{
	struct statvfs vfs;

	if (fstatvfs(s->dirfd, &vfs))
		return UINT64_MAX; /* unknown: do not block writing on it */
	return (uint64_t)vfs.f_bavail * vfs.f_frsize;
}

/* Deletes the oldest profiles while they are older than max_age, their total exceeds max_size
 * less reserve, or the file system has less than min_free + reserve bytes free. Returns the
 * number of files left. Called with s->lock held. */
static size_t store__retain_locked(struct store *s, uint64_t reserve)
{
	const struct cli_opts *o = s->a->o;
	int64_t now = clock__ns(CLOCK_REALTIME);
	uint64_t total = 0, deleted = 0;
	struct dir_file *v = NULL;
	size_t n = 0, i;

	if (store__list(s, &v, &n))
		return 0;
	for (i = 0; i < n; i++)
		total += v[i].size;
	for (i = 0; i < n; i++) {
		bool old = o->max_age > 0 && now - v[i].mtime_ns > (int64_t)(o->max_age * 1e9);
		bool big = o->max_size && total + reserve > o->max_size;
		uint64_t avail = free_bytes(s), floor = s->min_free + reserve;
		/* Deleting for space only when what is left to delete can bring the file system
		 * back above its floor: otherwise the history is kept and storing stops. */
		bool full = avail < floor && total >= floor - avail;

		if (!old && !big && !full)
			break;
		if (unlinkat(s->dirfd, v[i].name, 0) == 0) {
			total -= v[i].size;
			deleted++;
			pr_debug("store: deleted %s (%s)\n", v[i].name,
				 old   ? "age"
				 : big ? "total size"
				       : "disk space");
		}
	}
	pthread_mutex_lock(&s->a->lock);
	s->a->m.store_full = free_bytes(s) < s->min_free + reserve;
	s->a->m.store_deleted += deleted;
	s->a->m.store_bytes = total;
	s->a->m.store_files = n - deleted;
	pthread_mutex_unlock(&s->a->lock);
	free(v);
	return n - deleted;
}

void store__retain(struct store *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	store__retain_locked(s, 0);
	pthread_mutex_unlock(&s->lock);
}

int store__write(struct store *s, const char *name, const void *buf, size_t len)
{
	char tmp[300];
	int fd, err;

	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	pthread_mutex_lock(&s->lock);
	if (s->a->o->max_size && len > s->a->o->max_size) {
		err = -EFBIG; /* it alone would break --max-size */
		goto out;
	}
	store__retain_locked(s, len);
	if (free_bytes(s) < s->min_free + len) {
		err = -ENOSPC;
		goto out;
	}
	fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	err = fd__write_all(fd, buf, len);
	/* The data reaches the disk before the name does: a crash leaves the old state or the
	 * whole new file, never a torn one under the final name. */
	if (!err && fdatasync(fd))
		err = -errno;
	if (close(fd) && !err)
		err = -errno;
	if (!err && renameat(s->dirfd, tmp, s->dirfd, name))
		err = -errno;
	if (err)
		unlinkat(s->dirfd, tmp, 0);
out:
	pthread_mutex_lock(&s->a->lock);
	if (err) {
		s->a->m.store_dropped++;
	} else {
		s->a->m.store_written++;
		s->a->m.store_bytes += len;
		s->a->m.store_files++;
	}
	pthread_mutex_unlock(&s->a->lock);
	pthread_mutex_unlock(&s->lock);
	if (err)
		pr_warn("store: %s not written (%s%s)\n", name, strerror(-err),
			err == -ENOSPC	? ": the file system keeps --min-free free"
			: err == -EFBIG ? ": larger than --max-size"
					: "");
	return err;
}

/* Whether buf (len bytes) is one complete gzip stream (its CRC and length checked by zlib, nothing
 * after it) whose content decodes as a pprof Profile. */
static bool complete_profile(const unsigned char *buf, size_t len)
{
	size_t cap = len * 4 + 4096, used = 0;
	unsigned char *raw = malloc(cap), *grown;
	z_stream z = {0};
	Perftools__Profiles__Profile *p = NULL;
	int zr = Z_OK;

	if (!raw || len > UINT32_MAX || inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
		free(raw);
		return false;
	}
	z.next_in = (unsigned char *)buf;
	z.avail_in = (unsigned)len;
	while (zr == Z_OK) {
		if (used == cap) {
			if (cap > ((size_t)1 << 32) || !(grown = realloc(raw, cap * 2)))
				break;
			raw = grown;
			cap *= 2;
		}
		z.next_out = raw + used;
		z.avail_out = (unsigned)(cap - used > UINT32_MAX ? UINT32_MAX : cap - used);
		zr = inflate(&z, Z_NO_FLUSH);
		used = (size_t)(z.next_out - raw);
	}
	if (zr == Z_STREAM_END && z.avail_in == 0)
		p = perftools__profiles__profile__unpack(NULL, used, raw);
	inflateEnd(&z);
	free(raw);
	if (!p)
		return false;
	perftools__profiles__profile__free_unpacked(p, NULL);
	return true;
}

static bool read_all(int fd, unsigned char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = pread(fd, buf + got, len - got, (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

/* A temp file left by a crash (.NAME.tmp): renamed to NAME when it holds a complete profile,
 * removed otherwise. */
static void store__recover_one(struct store *s, const char *tmp)
{
	char name[300];
	size_t nlen = strlen(tmp);
	unsigned char *buf = NULL;
	struct stat st;
	bool ok = false;
	int fd;

	if (nlen < 1 + strlen(STORE_SUFFIX) + 4 || nlen - 5 >= sizeof(name))
		return;
	memcpy(name, tmp + 1, nlen - 5);
	name[nlen - 5] = '\0';
	fd = openat(s->dirfd, tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
	    (buf = malloc((size_t)st.st_size)) && read_all(fd, buf, (size_t)st.st_size))
		ok = complete_profile(buf, (size_t)st.st_size);
	free(buf);
	if (fd >= 0)
		close(fd);
	if (ok && renameat(s->dirfd, tmp, s->dirfd, name) == 0) {
		pr_warn("store: recovered %s from an interrupted write\n", name);
		return;
	}
	if (unlinkat(s->dirfd, tmp, 0) == 0)
		pr_warn("store: removed %s, an incomplete interrupted write\n", tmp);
}

static void store__recover(struct store *s)
{
	int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	const char *tail = STORE_SUFFIX ".tmp";
	struct dirent *e;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);

		if (e->d_name[0] == '.' && n > strlen(tail) + 1 &&
		    strcmp(e->d_name + n - strlen(tail), tail) == 0)
			store__recover_one(s, e->d_name);
	}
	closedir(d);
}

int store__open(struct agent *a, struct store **out)
{
	struct store *s;
	int err;

	err = dir__mkdirs(a->o->out_dir, AGENT_DIR_MODE);
	if (err) {
		pr_err("cannot create %s: %s\n", a->o->out_dir, strerror(-err));
		return err;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->a = a;
	pthread_mutex_init(&s->lock, NULL);
	s->dirfd = open(a->o->out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0 || faccessat(s->dirfd, ".", W_OK, AT_EACCESS)) {
		err = -errno;
		pr_err("cannot write in %s: %s\n", a->o->out_dir, strerror(-err));
		store__close(s);
		return err;
	}
	s->min_free = a->o->min_free;
	if (s->min_free >> 63) { /* a percentage of the file system */
		struct statvfs vfs;

		s->min_free = fstatvfs(s->dirfd, &vfs) ? 0
						       : (uint64_t)vfs.f_blocks * vfs.f_frsize /
								 100 * (a->o->min_free & 0xff);
	}
	store__recover(s);
	store__retain(s);
	*out = s;
	return 0;
}

void store__close(struct store *s)
{
	if (!s)
		return;
	if (s->dirfd >= 0)
		close(s->dirfd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
