#include <errno.h>
#include <fcntl.h>
#include <elfutils/libdwelf.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <zlib.h>

#include "sym/debug_cache.h"
#include "util/dir.h"
#include "util/log.h"

/* Read and write in pieces of this size: the memory a copy costs. */
#define CHUNK (64 * 1024)
/* A section claiming more than this uncompressed is not copied (libdw gets the file as it is):
 * a corrupt or hostile header should not fill the disk. */
#define MAX_SECTION (4ull << 30)

/* The copies kept, in all: beyond it the least recently used go (CPROF_CACHE_MAX_MB overrides). */
#define CACHE_MAX_MB 512

/* The cache directory, or NULL when off. Returns a static buffer. */
static const char *debug_cache__dir(char *buf, size_t len)
{
	const char *env = getenv("CPROF_CACHE_DIR");
	struct stat st;

	if (env)
		return env[0] && (size_t)snprintf(buf, len, "%s", env) < len ? buf : NULL;
	if ((env = getenv("XDG_CACHE_HOME")) && env[0])
		return (size_t)snprintf(buf, len, "%s/cprof-bpf", env) < len ? buf : NULL;
	/* A home that does not exist (nobody's /nonexistent, a service's) is not made: no cache. */
	if ((env = getenv("HOME")) && env[0] && stat(env, &st) == 0 && S_ISDIR(st.st_mode))
		return (size_t)snprintf(buf, len, "%s/.cache/cprof-bpf", env) < len ? buf : NULL;
	return NULL;
}

/* mkdir -p of dir/debug. */
static int debug_cache__mkdirs(const char *dir, char *out, size_t len)
{
	if ((size_t)snprintf(out, len, "%s/debug", dir) >= len)
		return -ENAMETOOLONG;
	return dir__mkdirs(out, 0755);
}

static int write_zeros(int fd, uint64_t n)
{
	static const char zeros[4096];
	int err = 0;

	while (n && !err) {
		size_t k = n < sizeof(zeros) ? n : sizeof(zeros);

		err = fd__write_all(fd, zeros, k);
		n -= k;
	}
	return err;
}

/* Copies len bytes at off of in to out's current position. */
static int copy_range(int in, uint64_t off, uint64_t len, int out, unsigned char *buf)
{
	ssize_t n;
	int err;

	while (len) {
		n = pread(in, buf, len < CHUNK ? len : CHUNK, off);
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		err = fd__write_all(out, buf, n);
		if (err)
			return err;
		off += n;
		len -= n;
	}
	return 0;
}

/* Inflates the zlib stream of len bytes at off of in, which must give exactly size bytes. */
static int inflate_range(int in, uint64_t off, uint64_t len, uint64_t size, int out,
			 unsigned char *buf)
{
	unsigned char *obuf = buf + CHUNK;
	uint64_t produced = 0;
	z_stream zs = {};
	size_t got;
	int zerr, err = 0;
	ssize_t n;

	if (inflateInit(&zs) != Z_OK)
		return -ENOMEM;
	for (;;) {
		if (!zs.avail_in && len) {
			n = pread(in, buf, len < CHUNK ? len : CHUNK, off);
			if (n <= 0) {
				err = n < 0 ? -errno : -EIO;
				break;
			}
			off += n;
			len -= n;
			zs.next_in = buf;
			zs.avail_in = n;
		}
		zs.next_out = obuf;
		zs.avail_out = CHUNK;
		zerr = inflate(&zs, Z_NO_FLUSH);
		got = CHUNK - zs.avail_out;
		if ((zerr != Z_OK && zerr != Z_STREAM_END && zerr != Z_BUF_ERROR) ||
		    (zerr == Z_BUF_ERROR && !got) || produced + got > size) {
			err = -EINVAL; /* corrupt, cut short, or larger than its header says */
			break;
		}
		produced += got;
		err = fd__write_all(out, obuf, got);
		if (err || zerr == Z_STREAM_END)
			break;
	}
	inflateEnd(&zs);
	return err ? err : produced == size ? 0 : -EINVAL;
}

/* Whether elf's GNU build-id note is build_id (hex): the file is the one its name says. */
static bool debug_cache__same_id(Elf *elf, const char *build_id)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *bits;
	const void *p;
	size_t len = strlen(build_id);
	ssize_t n = dwelf_elf_gnu_build_id(elf, &p);

	if (n <= 0 || (size_t)n * 2 != len)
		return false;
	bits = p;
	for (ssize_t i = 0; i < n; i++)
		if (build_id[2 * i] != hex[bits[i] >> 4] ||
		    build_id[2 * i + 1] != hex[bits[i] & 0xf])
			return false;
	return true;
}

/* The sections as they are in the copy: offsets laid out anew, compressed ones inflated. */
struct dc_layout {
	Elf64_Ehdr eh;
	Elf64_Shdr *sh;	  /* the copy's headers */
	Elf64_Shdr *orig; /* the file's */
	size_t n;
	bool any; /* some section is compressed */
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return a > 1 ? (v + a - 1) / a * a : v;
}

/* Reads the headers (the only part of the file mapped) and lays the copy out. Only native
 * 64-bit little-endian files with zlib sections are copied: anything else is used as it is. */
static int dc_layout__read(int fd, const char *build_id, struct dc_layout *l)
{
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	uint64_t off;
	Elf64_Chdr ch;
	Elf_Scn *scn;
	size_t i;
	int err = -ENOENT;

	if (!elf || elf_kind(elf) != ELF_K_ELF || gelf_getclass(elf) != ELFCLASS64 ||
	    !elf64_getehdr(elf) || elf64_getehdr(elf)->e_ident[EI_DATA] != ELFDATA2LSB ||
	    elf_getshdrnum(elf, &l->n) || l->n < 2)
		goto cleanup;
	if (!debug_cache__same_id(elf, build_id))
		goto cleanup;
	l->eh = *elf64_getehdr(elf);
	l->sh = calloc(l->n, sizeof(*l->sh));
	l->orig = calloc(l->n, sizeof(*l->orig));
	if (!l->sh || !l->orig) {
		err = -ENOMEM;
		goto cleanup;
	}
	off = l->eh.e_phoff ? l->eh.e_phoff + (uint64_t)l->eh.e_phnum * l->eh.e_phentsize
			    : sizeof(Elf64_Ehdr);
	if (off < sizeof(Elf64_Ehdr))
		off = sizeof(Elf64_Ehdr);
	for (i = 0; i < l->n; i++) {
		scn = elf_getscn(elf, i);
		if (!scn || !elf64_getshdr(scn))
			goto cleanup;
		l->orig[i] = l->sh[i] = *elf64_getshdr(scn);
		if (i == 0 || l->sh[i].sh_type == SHT_NOBITS) {
			l->sh[i].sh_offset = i ? off : 0;
			continue;
		}
		if (l->sh[i].sh_flags & SHF_COMPRESSED) {
			if (l->sh[i].sh_size < sizeof(ch) ||
			    pread(fd, &ch, sizeof(ch), l->sh[i].sh_offset) != sizeof(ch) ||
			    ch.ch_type != ELFCOMPRESS_ZLIB || ch.ch_size > MAX_SECTION)
				goto cleanup;
			l->sh[i].sh_flags &= ~(uint64_t)SHF_COMPRESSED;
			l->sh[i].sh_size = ch.ch_size;
			l->sh[i].sh_addralign = ch.ch_addralign;
			l->any = true;
		}
		off = align_up(off, l->sh[i].sh_addralign);
		l->sh[i].sh_offset = off;
		off += l->sh[i].sh_size;
	}
	l->eh.e_shoff = align_up(off, 8);
	l->eh.e_shnum = l->n < SHN_LORESERVE ? l->n : 0;
	err = l->any ? 0 : -ENOENT;
cleanup:
	if (elf)
		elf_end(elf);
	return err;
}

/* Writes the copy of in described by l to out. */
static int dc_layout__write(const struct dc_layout *l, int in, int out)
{
	unsigned char *buf = malloc(2 * CHUNK);
	uint64_t pos;
	size_t i;
	int err;

	if (!buf)
		return -ENOMEM;
	err = fd__write_all(out, &l->eh, sizeof(l->eh));
	pos = sizeof(l->eh);
	if (!err && l->eh.e_phoff && l->eh.e_phnum) {
		err = write_zeros(out, l->eh.e_phoff - pos);
		if (!err)
			err = copy_range(in, l->eh.e_phoff,
					 (uint64_t)l->eh.e_phnum * l->eh.e_phentsize, out, buf);
		pos = l->eh.e_phoff + (uint64_t)l->eh.e_phnum * l->eh.e_phentsize;
	}
	for (i = 1; i < l->n && !err; i++) {
		if (l->sh[i].sh_type == SHT_NOBITS)
			continue;
		err = write_zeros(out, l->sh[i].sh_offset - pos);
		if (err)
			break;
		if (l->orig[i].sh_flags & SHF_COMPRESSED)
			err = inflate_range(in, l->orig[i].sh_offset + sizeof(Elf64_Chdr),
					    l->orig[i].sh_size - sizeof(Elf64_Chdr),
					    l->sh[i].sh_size, out, buf);
		else
			err = copy_range(in, l->orig[i].sh_offset, l->sh[i].sh_size, out, buf);
		pos = l->sh[i].sh_offset + l->sh[i].sh_size;
	}
	if (!err)
		err = write_zeros(out, l->eh.e_shoff - pos);
	if (!err)
		err = fd__write_all(out, l->sh, l->n * sizeof(*l->sh));
	free(buf);
	return err;
}

static int debug_cache__make(int fd, const char *build_id, const char *dir, const char *final)
{
	struct dc_layout l = {};
	char tmp[PATH_MAX];
	int out, err;

	err = dc_layout__read(fd, build_id, &l);
	if (err)
		goto cleanup;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.tmp.%d.%ld", dir, (int)getpid(),
			     (long)syscall(SYS_gettid)) >= sizeof(tmp)) {
		err = -ENAMETOOLONG;
		goto cleanup;
	}
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		err = -errno;
		goto cleanup;
	}
	err = dc_layout__write(&l, fd, out);
	if (close(out) && !err)
		err = -errno;
	/* Renamed only once complete: a copy under its final name is always whole. */
	if (!err && rename(tmp, final))
		err = -errno;
	if (err)
		unlink(tmp);
cleanup:
	free(l.sh);
	free(l.orig);
	return err;
}

/* Keeps the copies in dir within the budget: the least recently used (mtime, which a hit
 * renews) are removed first, never keep (the copy just made). Best effort: a copy another
 * process still has open stays readable to it after the unlink. */
static void debug_cache__trim(const char *dir, const char *keep)
{
	const char *env = getenv("CPROF_CACHE_MAX_MB");
	uint64_t max = CACHE_MAX_MB, total = 0;
	struct dir_file *files = NULL;
	size_t n = 0, i;
	int dfd;

	if (env && env[0]) {
		char *end;
		unsigned long long v = strtoull(env, &end, 10);

		if (*end == '\0' && env[0] != '-')
			max = v;
	}
	max <<= 20;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	if (dir__list(dfd, ".debug", dir_file__cmp_mtime, &files, &n) == 0) {
		for (i = 0; i < n; i++)
			total += files[i].size;
		for (i = 0; i < n && total > max; i++) {
			if (strcmp(files[i].name, keep) == 0)
				continue;
			if (unlinkat(dfd, files[i].name, 0) == 0) {
				pr_debug("debug cache: removed %s (over %llu MiB)\n", files[i].name,
					 (unsigned long long)(max >> 20));
				total -= files[i].size;
			}
		}
	}
	free(files);
	close(dfd);
}

int debug_cache__open(int fd, const char *build_id, char **path)
{
	char root[PATH_MAX], dir[PATH_MAX], file[PATH_MAX + 128];
	int cfd, err;

	*path = NULL;
	if (!build_id || strlen(build_id) < 8 ||
	    strspn(build_id, "0123456789abcdef") != strlen(build_id))
		return -ENOENT;
	if (!debug_cache__dir(root, sizeof(root)))
		return -ENOENT;
	err = debug_cache__mkdirs(root, dir, sizeof(dir));
	if (err)
		return err;
	snprintf(file, sizeof(file), "%s/%s.debug", dir, build_id);
	cfd = open(file, O_RDONLY | O_CLOEXEC);
	if (cfd < 0) {
		err = debug_cache__make(fd, build_id, dir, file);
		if (err) {
			if (err != -ENOENT)
				pr_debug("cannot cache an uncompressed copy of %s's debug file in "
					 "%s: %s\n",
					 build_id, dir, strerror(-err));
			return err;
		}
		cfd = open(file, O_RDONLY | O_CLOEXEC);
		if (cfd < 0)
			return -errno;
		snprintf(root, sizeof(root), "%s.debug", build_id);
		debug_cache__trim(dir, root);
	} else {
		futimens(cfd, NULL); /* used: the newest for debug_cache__trim */
	}
	*path = strdup(file);
	if (!*path) {
		close(cfd);
		return -ENOMEM;
	}
	return cfd;
}
