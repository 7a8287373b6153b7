/* Python frames -> function, file, line: code objects read from the process's memory. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc/mem.h"
#include "python/cpython.h"
#include "util/hashmap.h"

/* Longest name or file name read, in characters; longer ones are cut. */
#define PY_MAX_STR 1024
/* Longest line table read, in bytes. */
#define PY_MAX_LINETABLE (256 * 1024)
/* The first bytes of a code object: read for its fields, and again at each use to tell it is
 * still the object cached. Within every version's fixed fields (3.10's PyCodeObject is 176 bytes
 * long, later ones' bytecode starts at 184 or beyond), so the read never runs past the object. */
#define PY_CODE_HEAD 168

struct py_code {
	uint64_t addr;
	uint8_t head[PY_CODE_HEAD]; /* the object's first bytes when it was read */
	char *name, *file;
	int64_t first;
	bool lnotab; /* the line table is 3.10's (co_lnotab), else 3.11+'s location table */
	uint8_t *linetable;
	size_t linetable_len;
};

struct py_pid {
	pid_t pid;
	int err; /* 0: p is valid; else why the process could not be probed */
	/* /proc/PID/mem, opened once when the process is first seen: it stays the memory of that
	 * process even if the pid is reused. -1 when it could not be opened or the process is gone
	 * (closed on the first read that finds so). */
	int fd;
	struct cprof_py_proc p;
	struct hashmap *codes; /* code object address -> struct py_code * */
};

struct python_syms {
	struct hashmap *pids; /* pid -> struct py_pid * */
};

struct python_syms *python_syms__new(void)
{
	struct python_syms *ps = calloc(1, sizeof(*ps));

	if (!ps)
		return NULL;
	ps->pids = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	if (!ps->pids) {
		python_syms__free(ps);
		return NULL;
	}
	return ps;
}

static void py_code__free(struct py_code *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->file);
	free(c->linetable);
	free(c);
}

static void free_code(const void *key, void *value, void *ctx)
{
	(void)key;
	(void)ctx;
	py_code__free(value);
}

static void py_pid__close(struct py_pid *pp)
{
	if (pp->fd >= 0)
		close(pp->fd);
	pp->fd = -1;
}

static void py_pid__free(struct py_pid *pp)
{
	if (!pp)
		return;
	py_pid__close(pp);
	if (pp->codes) {
		hashmap__for_each(pp->codes, free_code, NULL);
		hashmap__free(pp->codes);
	}
	free(pp);
}

static void free_pid(const void *key, void *value, void *ctx)
{
	(void)key;
	(void)ctx;
	py_pid__free(value);
}

void python_syms__free(struct python_syms *ps)
{
	if (!ps)
		return;
	if (ps->pids)
		hashmap__for_each(ps->pids, free_pid, NULL);
	hashmap__free(ps->pids);
	free(ps);
}

void python_syms__forget(struct python_syms *ps, pid_t pid)
{
	void *old;

	if (ps && hashmap__delete(ps->pids, (void *)(uintptr_t)pid, NULL, &old))
		py_pid__free(old);
}

/* Appends code point c as UTF-8. */
static size_t put_utf8(char *out, uint32_t c)
{
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (char)(0xc0 | (c >> 6));
		out[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (char)(0xe0 | (c >> 12));
		out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		out[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | ((c >> 18) & 0x07));
	out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
	out[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

/* A str object (compact: every name and file name of a code object) as a malloc'd UTF-8
 * string. */
static int read_str(int fd, const struct cprof_py_layout *l, uint64_t obj, char **out)
{
	uint8_t head[128], *data = NULL;
	uint32_t state, kind, c;
	uint64_t len;
	size_t at = 0, width;
	char *s;
	int err;

	*out = NULL;
	if (!obj || l->compact_size > sizeof(head))
		return -EINVAL;
	err = proc_mem__pread(fd, obj, head, l->compact_size);
	if (err)
		return err;
	memcpy(&state, head + l->unicode_state, sizeof(state));
	len = python__u64(head, l->unicode_length);
	kind = (state >> 2) & 7;
	if (!((state >> 5) & 1) || (kind != 1 && kind != 2 && kind != 4))
		return -EINVAL; /* not compact: no code object's strings are */
	if (len > PY_MAX_STR)
		len = PY_MAX_STR;
	width = kind;
	data = malloc(len * width + 1);
	s = malloc(len * 4 + 1);
	if (!data || !s) {
		err = -ENOMEM;
		goto fail;
	}
	err = proc_mem__pread(fd, obj + (((state >> 6) & 1) ? l->ascii_size : l->compact_size),
			      data, len * width);
	if (err)
		goto fail;
	for (uint64_t i = 0; i < len; i++) {
		if (kind == 1)
			c = data[i];
		else if (kind == 2)
			c = data[2 * i] | (uint32_t)data[2 * i + 1] << 8;
		else
			memcpy(&c, data + 4 * i, 4);
		if (c == 0 || c > 0x10ffff)
			c = '?';
		at += put_utf8(s + at, c);
	}
	s[at] = 0;
	free(data);
	*out = s;
	return 0;
fail:
	free(data);
	free(s);
	return err;
}

static int read_bytes(int fd, const struct cprof_py_layout *l, uint64_t obj, uint8_t **out,
		      size_t *len)
{
	uint64_t n;
	uint8_t *b;
	int err;

	*out = NULL;
	*len = 0;
	if (!obj)
		return -EINVAL;
	err = proc_mem__pread(fd, obj + l->bytes_size, &n, sizeof(n));
	if (err)
		return err;
	if (n > PY_MAX_LINETABLE)
		return -E2BIG;
	b = malloc(n ? n : 1);
	if (!b)
		return -ENOMEM;
	err = proc_mem__pread(fd, obj + l->bytes_sval, b, n);
	if (err) {
		free(b);
		return err;
	}
	*out = b;
	*len = n;
	return 0;
}

static int read_code(int fd, const struct cprof_py_proc *p, uint64_t addr, struct py_code *c)
{
	const struct cprof_py_layout *l = &p->l;
	uint16_t name_off = l->code_qualname != CPROF_PY_NONE_OFF ? l->code_qualname : l->code_name;
	int32_t first;
	int err;

	err = proc_mem__pread(fd, addr, c->head, sizeof(c->head));
	if (err)
		return err;
	if (name_off + 8u > sizeof(c->head) || l->code_filename + 8u > sizeof(c->head) ||
	    l->code_linetable + 8u > sizeof(c->head) || l->code_firstlineno + 4u > sizeof(c->head))
		return -EINVAL;
	memcpy(&first, c->head + l->code_firstlineno, sizeof(first));
	c->first = first;
	err = read_str(fd, l, python__u64(c->head, name_off), &c->name);
	if (!err)
		err = read_str(fd, l, python__u64(c->head, l->code_filename), &c->file);
	if (!err)
		err = read_bytes(fd, l, python__u64(c->head, l->code_linetable), &c->linetable,
				 &c->linetable_len);
	return err;
}

/* The process pid, probed and its memory opened when first seen. NULL when out of memory. */
static struct py_pid *get_pid(struct python_syms *ps, pid_t pid)
{
	struct py_pid *pp;
	char path[64];
	void *found;

	if (hashmap__find(ps->pids, (void *)(uintptr_t)pid, &found))
		return found;
	pp = calloc(1, sizeof(*pp));
	if (!pp)
		return NULL;
	pp->pid = pid;
	pp->codes = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	if (!pp->codes) {
		free(pp);
		return NULL;
	}
	/* Opened before the probe, so that the memory read is that of the process probed. */
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	pp->fd = open(path, O_RDONLY | O_CLOEXEC);
	pp->err = python__probe(pid, &pp->p, NULL, 0);
	if (pp->err)
		py_pid__close(pp); /* nothing will be read */
	if (hashmap__insert(ps->pids, (void *)(uintptr_t)pid, pp)) {
		py_pid__free(pp);
		return NULL;
	}
	return pp;
}

/* After a failed read: closes the process's memory when the process is gone (its _PyRuntime,
 * mapped for as long as the interpreter lives, cannot be read), so that a dead process holds
 * no descriptor; a read of a bad address in a live process keeps it. */
static void py_pid__check(struct py_pid *pp)
{
	uint8_t b;

	if (pp->fd >= 0 && proc_mem__pread(pp->fd, pp->p.runtime, &b, sizeof(b)))
		py_pid__close(pp);
}

/* Whether the cached object at addr is still the one read: same first bytes (its type, its
 * names, its line table, its first line), when the process can still be read. */
static bool still_valid(int fd, const struct py_code *c)
{
	uint8_t head[PY_CODE_HEAD];

	if (fd < 0 || proc_mem__pread(fd, c->addr, head, sizeof(head)))
		return true; /* gone: what was read stands */
	/* From the type to the line table and names, before the bytecode (which the interpreter
	 * rewrites as it specializes): not the reference count, which changes all the time. */
	return !memcmp(head + 8, c->head + 8, sizeof(head) - 8);
}

int python_syms__resolve(struct python_syms *ps, pid_t pid, uint64_t ip, struct python_frame *f)
{
	uint64_t addr = CPROF_PY_CODE(ip), idx = CPROF_PY_IDX(ip);
	struct py_code *c = NULL;
	struct py_pid *pp;
	void *found;
	int err;

	memset(f, 0, sizeof(*f));
	pp = get_pid(ps, pid);
	if (!pp)
		return -ENOMEM;
	if (pp->err)
		return pp->err;
	if (hashmap__find(pp->codes, (void *)(uintptr_t)addr, &found)) {
		c = found;
		if (!still_valid(pp->fd, c)) {
			hashmap__delete(pp->codes, (void *)(uintptr_t)addr, NULL, NULL);
			py_code__free(c);
			c = NULL;
		}
	}
	if (!c) {
		if (pp->fd < 0)
			return -ESRCH;
		c = calloc(1, sizeof(*c));
		if (!c)
			return -ENOMEM;
		c->addr = addr;
		err = read_code(pp->fd, &pp->p, addr, c);
		if (err)
			py_pid__check(pp);
		else
			err = hashmap__insert(pp->codes, (void *)(uintptr_t)c->addr, c);
		if (err) {
			py_code__free(c);
			return err;
		}
		c->lnotab = pp->p.minor == 10;
	}
	f->function = c->name;
	f->file = c->file;
	f->start_line = c->first;
	if (idx != CPROF_PY_IDX_UNKNOWN)
		f->line = c->lnotab
				  ? python__line_310(c->linetable, c->linetable_len, c->first, idx)
				  : python__line_311(c->linetable, c->linetable_len, c->first, idx);
	return 0;
}

/* 3.10 (Objects/lnotab_notes.txt): pairs of (bytecode bytes, signed line delta); a delta of
 * -128 means no line for those bytes. idx counts 2-byte code units. */
int64_t python__line_310(const uint8_t *tab, size_t len, int64_t first, uint64_t idx)
{
	uint64_t start = 0, addr = idx * 2;
	int64_t line = first;

	for (size_t i = 0; i + 1 < len; i += 2) {
		uint64_t end = start + tab[i];
		int8_t d = (int8_t)tab[i + 1];

		if (d != -128)
			line += d;
		if (addr >= start && addr < end)
			return d == -128 ? 0 : line;
		start = end;
	}
	return 0;
}

static uint64_t varint(const uint8_t *tab, size_t len, size_t *i)
{
	uint64_t v = 0;
	unsigned shift = 0;
	uint8_t b;

	do {
		if (*i >= len || shift > 60)
			return v;
		b = tab[(*i)++];
		v |= (uint64_t)(b & 63) << shift;
		shift += 6;
	} while (b & 64);
	return v;
}

static int64_t svarint(const uint8_t *tab, size_t len, size_t *i)
{
	uint64_t v = varint(tab, len, i);

	return v & 1 ? -(int64_t)(v >> 1) : (int64_t)(v >> 1);
}

/* 3.11+ (Objects/locations.md): entries of a first byte 1CCCCLLL (code C, L + 1 code units)
 * and operands; the line moves by a delta in codes 10-14, code 15 has no location. */
int64_t python__line_311(const uint8_t *tab, size_t len, int64_t first, uint64_t idx)
{
	uint64_t addr = 0;
	int64_t line = first, here;
	size_t i = 0;

	while (i < len) {
		uint8_t b = tab[i++];
		unsigned code = (b >> 3) & 15, n = (b & 7) + 1;

		if (!(b & 128))
			return 0; /* out of step: not a location table */
		switch (code) {
		case 15:
			here = 0;
			break;
		case 14:
			line += svarint(tab, len, &i);
			here = line;
			varint(tab, len, &i);
			varint(tab, len, &i);
			varint(tab, len, &i);
			break;
		case 13:
			line += svarint(tab, len, &i);
			here = line;
			break;
		case 10:
		case 11:
		case 12:
			line += code - 10;
			here = line;
			i += 2;
			break;
		default:
			here = line;
			i += 1;
			break;
		}
		if (idx < addr + n)
			return here;
		addr += n;
	}
	return 0;
}
