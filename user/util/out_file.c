/* The output file of a session: see out_file.h for what is written where and why. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "util/log.h"
#include "util/out_file.h"

#define MAX_SYMLINKS 40 /* as the kernel's path walk */

enum out_kind {
	OUT_STDOUT,  /* "-" */
	OUT_DEVICE,  /* opened before sampling, written in place */
	OUT_FIFO,    /* opened at the end */
	OUT_TMPFILE, /* an unnamed file in the target's directory, linked and renamed at the end */
	OUT_NAMED_TMP, /* no O_TMPFILE there: a named file created at the end, then renamed */
};

struct out_file {
	enum out_kind kind;
	char *path;   /* as given */
	char *target; /* symlinks followed: the name written or replaced */
	char *dir;    /* target's directory */
	char *tmp;    /* the temporary name while it exists */
	mode_t mode;  /* of the file that is replaced (0644 for a new one) */
	uid_t uid;    /* owner of the file that is replaced, (uid_t)-1 for a new one */
	gid_t gid;
	int fd;
	FILE *f;
	bool committed;
};

/* File systems of the kernel's own objects: a path there is never a place for a profile. */
static const char *kernel_fs_name(long type)
{
	switch (type) {
	case PROC_SUPER_MAGIC:
		return "proc";
	case SYSFS_MAGIC:
		return "sysfs";
	case DEBUGFS_MAGIC:
		return "debugfs";
	case TRACEFS_MAGIC:
		return "tracefs";
	case CGROUP_SUPER_MAGIC:
	case CGROUP2_SUPER_MAGIC:
		return "cgroup";
	case BPF_FS_MAGIC:
		return "bpf";
	case SECURITYFS_MAGIC:
		return "securityfs";
	case DEVPTS_SUPER_MAGIC:
		return "devpts";
	default:
		return NULL;
	}
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, slash - path);
}

/* Follows symlinks in the last component of path, as open() would, to the name that is
 * written: the final file, or the name a dangling symlink points at. */
static int resolve_target(const char *path, char **out)
{
	char *cur = strdup(path), *next, *dir, link[PATH_MAX];
	struct stat st;
	ssize_t n;
	int err;

	if (!cur)
		return -ENOMEM;
	for (int i = 0; i < MAX_SYMLINKS; i++) {
		if (lstat(cur, &st)) {
			err = errno == ENOENT ? 0 : -errno;
			goto done;
		}
		if (!S_ISLNK(st.st_mode)) {
			err = 0;
			goto done;
		}
		n = readlink(cur, link, sizeof(link) - 1);
		if (n < 0) {
			err = -errno;
			goto done;
		}
		link[n] = '\0';
		if (link[0] == '/') {
			next = strdup(link);
		} else {
			dir = dir_of(cur);
			next = NULL;
			if (dir && asprintf(&next, "%s/%s", dir, link) < 0)
				next = NULL;
			free(dir);
		}
		free(cur);
		cur = next;
		if (!cur)
			return -ENOMEM;
	}
	err = -ELOOP;
done:
	if (err) {
		free(cur);
		return err;
	}
	*out = cur;
	return 0;
}

/* "cannot write PATH: [CONTEXT: ]REASON" on one line; returns err. */
static int fail(const struct out_file *of, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(const struct out_file *of, int err, const char *fmt, ...)
{
	char ctx[PATH_MAX + 128] = "";
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(ctx, sizeof(ctx), fmt, ap);
		va_end(ap);
	}
	pr_err("cannot write %s: %s%s%s\n", of->path, ctx, *ctx ? ": " : "", strerror(-err));
	return err;
}

/* A file that exists and is not replaced: a device is opened now, a FIFO at the end. */
static int open_special(struct out_file *of, const struct stat *st)
{
	if (S_ISDIR(st->st_mode))
		return fail(of, -EISDIR, NULL);
	if (S_ISSOCK(st->st_mode)) {
		pr_err("cannot write %s: it is a socket\n", of->path);
		return -ENXIO;
	}
	if (S_ISFIFO(st->st_mode)) {
		of->kind = OUT_FIFO;
		if (faccessat(AT_FDCWD, of->path, W_OK, AT_EACCESS))
			return fail(of, -errno, NULL);
		return 0;
	}
	of->kind = OUT_DEVICE;
	of->fd = open(of->path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
	if (of->fd < 0)
		return fail(of, -errno, NULL);
	return 0;
}

/* A regular file, or none: prepared in the directory it will be renamed into. */
static int open_replace(struct out_file *of)
{
	struct statfs sfs;
	struct stat st;
	const char *fs;
	int err;

	err = resolve_target(of->path, &of->target);
	if (err)
		return fail(of, err, NULL);
	if (of->target[strlen(of->target) - 1] == '/')
		return fail(of, -EISDIR, NULL);
	of->dir = dir_of(of->target);
	if (!of->dir)
		return -ENOMEM;
	if (stat(of->dir, &st)) {
		err = -errno;
		if (err == -ENOENT) {
			pr_err("cannot write %s: directory %s does not exist\n", of->path, of->dir);
			return err;
		}
		return fail(of, err, "%s", of->dir);
	}
	if (!S_ISDIR(st.st_mode))
		return fail(of, -ENOTDIR, "%s", of->dir);
	if (statfs(of->dir, &sfs) == 0 && (fs = kernel_fs_name((long)sfs.f_type))) {
		pr_err("cannot write %s: %s is on %s, a kernel file system that holds no files\n",
		       of->path, of->dir, fs);
		return -EPERM;
	}
	of->kind = OUT_TMPFILE;
	of->fd = open(of->dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, of->mode);
	if (of->fd >= 0) {
		/* The file replaced keeps its owner and mode (a new one gets 0644 less umask). */
		if (of->uid != (uid_t)-1 &&
		    (fchown(of->fd, of->uid, of->gid) || fchmod(of->fd, of->mode)))
			pr_debug("cannot keep the owner or mode of %s: %s\n", of->target,
				 strerror(errno));
		return 0;
	}
	err = -errno;
	if (err != -EOPNOTSUPP && err != -EISDIR && err != -EINVAL)
		return fail(of, err, "cannot create a file in %s", of->dir);
	/* No O_TMPFILE on this file system: the file is created at the end under a temporary
	 * name. Whether it can be is checked now. */
	of->kind = OUT_NAMED_TMP;
	if (faccessat(AT_FDCWD, of->dir, W_OK | X_OK, AT_EACCESS))
		return fail(of, -errno, "cannot create a file in %s", of->dir);
	return 0;
}

int out_file__open(const char *path, struct out_file **out)
{
	struct out_file *of;
	struct stat st;
	int err;

	*out = NULL;
	of = calloc(1, sizeof(*of));
	if (!of)
		return -ENOMEM;
	of->fd = -1;
	of->mode = 0644;
	of->uid = (uid_t)-1;
	of->gid = (gid_t)-1;
	if (!path || strcmp(path, "-") == 0 || strcmp(path, "/dev/stdout") == 0) {
		of->kind = OUT_STDOUT;
		of->path = strdup("-");
		of->f = stdout;
		err = of->path ? 0 : -ENOMEM;
		goto out;
	}
	of->path = strdup(path);
	if (!of->path) {
		err = -ENOMEM;
		goto out;
	}
	if (!*path) {
		err = -ENOENT;
		pr_err("cannot write an empty path\n");
		goto out;
	}
	if (stat(path, &st) == 0) {
		if (!S_ISREG(st.st_mode)) {
			err = open_special(of, &st);
			goto out;
		}
		of->mode = st.st_mode & 0777; /* never setuid, setgid or sticky */
		of->uid = st.st_uid;
		of->gid = st.st_gid;
	} else if (errno != ENOENT) {
		err = fail(of, -errno, NULL);
		goto out;
	}
	err = open_replace(of);
out:
	if (err) {
		out_file__free(of);
		return err;
	}
	*out = of;
	return 0;
}

/* Creates a file named after the target that no one else uses (O_EXCL). */
static int create_named(struct out_file *of, int flags)
{
	int fd;

	for (int i = 0; i < 100; i++) {
		free(of->tmp);
		of->tmp = NULL;
		if (asprintf(&of->tmp, "%s.tmp.%d.%d", of->target, (int)getpid(), i) < 0) {
			of->tmp = NULL;
			return -ENOMEM;
		}
		if (flags < 0) {
			/* Gives the unnamed file its temporary name. */
			if (linkat(of->fd, "", AT_FDCWD, of->tmp, AT_EMPTY_PATH) == 0)
				return 0;
			if (errno == ENOENT || errno == EPERM) {
				char proc[64];

				snprintf(proc, sizeof(proc), "/proc/self/fd/%d", of->fd);
				if (linkat(AT_FDCWD, proc, AT_FDCWD, of->tmp, AT_SYMLINK_FOLLOW) ==
				    0)
					return 0;
			}
		} else {
			fd = open(of->tmp, flags, of->mode);
			if (fd >= 0)
				return fd;
		}
		if (errno != EEXIST)
			break;
	}
	free(of->tmp);
	of->tmp = NULL;
	return -errno;
}

FILE *out_file__stream(struct out_file *of)
{
	int fd, err;

	if (of->f)
		return of->f;
	switch (of->kind) {
	case OUT_FIFO:
		/* Blocks until a reader opens it; Ctrl-C (no SA_RESTART) ends the wait. */
		of->fd = open(of->path, O_WRONLY | O_CLOEXEC);
		if (of->fd < 0) {
			if (errno == EINTR)
				pr_err("cannot write %s: stopped before a reader opened the FIFO\n",
				       of->path);
			else
				fail(of, -errno, NULL);
			return NULL;
		}
		break;
	case OUT_NAMED_TMP:
		fd = create_named(of, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC);
		if (fd < 0) {
			fail(of, fd, "cannot create a file in %s", of->dir);
			return NULL;
		}
		of->fd = fd;
		if (of->uid != (uid_t)-1 && fchown(fd, of->uid, of->gid))
			pr_debug("cannot keep the owner of %s: %s\n", of->target, strerror(errno));
		break;
	default:
		break;
	}
	of->f = fdopen(of->fd, "w");
	if (!of->f) {
		err = -errno;
		fail(of, err, NULL);
		return NULL;
	}
	of->fd = -1; /* the stream owns it */
	return of->f;
}

static int flush(struct out_file *of)
{
	if (fflush(of->f) || ferror(of->f))
		return errno ? -errno : -EIO;
	/* A regular file reaches the disk before it takes the old one's name. */
	if ((of->kind == OUT_TMPFILE || of->kind == OUT_NAMED_TMP) && fsync(fileno(of->f)) &&
	    errno != EINVAL)
		return -errno;
	return 0;
}

int out_file__commit(struct out_file *of)
{
	int err;

	if (!out_file__stream(of))
		return -EIO;
	errno = 0;
	err = flush(of);
	if (err)
		return fail(of, err, NULL);
	if (of->kind == OUT_STDOUT || of->kind == OUT_DEVICE || of->kind == OUT_FIFO) {
		of->committed = true;
		return 0;
	}
	if (of->kind == OUT_TMPFILE) {
		/* The name exists only between this link and the rename below. */
		of->fd = fileno(of->f);
		err = create_named(of, -1);
		of->fd = -1;
		if (err)
			return fail(of, err, "cannot name the file in %s", of->dir);
	}
	if (rename(of->tmp, of->target)) {
		err = -errno;
		return fail(of, err, "cannot rename the new file to %s", of->target);
	}
	free(of->tmp);
	of->tmp = NULL;
	of->committed = true;
	return 0;
}

void out_file__free(struct out_file *of)
{
	if (!of)
		return;
	if (of->tmp)
		unlink(of->tmp);
	if (of->f && of->f != stdout)
		fclose(of->f);
	if (of->fd >= 0)
		close(of->fd);
	free(of->tmp);
	free(of->path);
	free(of->target);
	free(of->dir);
	free(of);
}

const char *out_file__path(const struct out_file *of)
{
	return of->path;
}
