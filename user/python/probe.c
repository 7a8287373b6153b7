/* Finding the CPython interpreter of a process and its layout. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc/mem.h"
#include "proc/maps.h"
#include "python/cpython.h"

#define N CPROF_PY_NONE_OFF

/* Offsets per minor version, from CPython's Include/cpython/pystate.h, Include/internal/
 * pycore_frame.h, pycore_interp.h, pycore_runtime.h, Include/cpython/code.h, unicodeobject.h
 * and bytesobject.h of each version (x86-64); tests/test_python.py checks every entry against
 * the interpreters on the machine. 3.13 publishes its own (_Py_DebugOffsets). */
static const struct cprof_py_layout layouts[] = {
	[0] = /* 3.10 */
	{
		.runtime_interp_head = 32,
		.interp_threads_head = 8,
		.tstate_next = 8,
		.tstate_thread_id = 176,
		.tstate_frame = 24,
		.cframe_current = N,
		.frame_previous = 24,
		.frame_code = 32,
		.frame_instr = 96,
		.frame_owner = N,
		.frame_is_entry = N,
		.code_adaptive = N,
		.code_filename = 104,
		.code_name = 112,
		.code_qualname = N,
		.code_linetable = 120,
		.code_firstlineno = 40,
		.unicode_state = 32,
		.unicode_length = 16,
		.ascii_size = 48,
		.compact_size = 72,
		.bytes_size = 16,
		.bytes_sval = 32,
	},
	[1] = /* 3.11 */
	{
		.runtime_interp_head = 40,
		.interp_threads_head = 16,
		.tstate_next = 8,
		.tstate_thread_id = 152,
		.tstate_frame = 56,
		.cframe_current = 8,
		.frame_previous = 48,
		.frame_code = 32,
		.frame_instr = 56,
		.frame_owner = N,
		.frame_is_entry = 68,
		.code_adaptive = 184,
		.code_filename = 112,
		.code_name = 120,
		.code_qualname = 128,
		.code_linetable = 136,
		.code_firstlineno = 72,
		.unicode_state = 32,
		.unicode_length = 16,
		.ascii_size = 48,
		.compact_size = 72,
		.bytes_size = 16,
		.bytes_sval = 32,
	},
	[2] = /* 3.12 */
	{
		.runtime_interp_head = 40,
		.interp_threads_head = 72,
		.tstate_next = 8,
		.tstate_thread_id = 136,
		.tstate_frame = 56,
		.cframe_current = 0,
		.frame_previous = 8,
		.frame_code = 0,
		.frame_instr = 56,
		.frame_owner = 70,
		.frame_is_entry = N,
		.code_adaptive = 192,
		.code_filename = 112,
		.code_name = 120,
		.code_qualname = 128,
		.code_linetable = 136,
		.code_firstlineno = 68,
		.unicode_state = 32,
		.unicode_length = 16,
		.ascii_size = 40,
		.compact_size = 56,
		.bytes_size = 16,
		.bytes_sval = 32,
	},
};

const struct cprof_py_layout *python__layout(int minor)
{
	if (minor < 10 || minor > 12)
		return NULL;
	return &layouts[minor - 10];
}

/* _Py_DebugOffsets of 3.13 (Include/internal/pycore_runtime.h): where each offset we use is
 * kept in it. The struct starts with the cookie "xdebugpy", the version (PY_VERSION_HEX) and
 * whether the build is free-threaded. */
#define DBG_SIZE	   584
#define DBG_VERSION	   8
#define DBG_FREE_THREADED  16
#define DBG_INTERP_HEAD	   40
#define DBG_THREADS_HEAD   72
#define DBG_TS_NEXT	   168
#define DBG_TS_FRAME	   184
#define DBG_TS_THREAD_ID   192
#define DBG_FR_PREVIOUS	   232
#define DBG_FR_EXECUTABLE  240
#define DBG_FR_INSTR	   248
#define DBG_FR_OWNER	   264
#define DBG_CO_FILENAME	   280
#define DBG_CO_NAME	   288
#define DBG_CO_QUALNAME	   296
#define DBG_CO_LINETABLE   304
#define DBG_CO_FIRSTLINENO 312
#define DBG_CO_ADAPTIVE	   344
#define DBG_BYTES_SIZE	   520
#define DBG_BYTES_SVAL	   528
#define DBG_UNICODE_STATE  544
#define DBG_UNICODE_LENGTH 552
#define DBG_UNICODE_ASCII  560

/* Fills the layout from the process's _Py_DebugOffsets (3.13). */
static int probe_debug_offsets(pid_t pid, struct cprof_py_proc *p, char *why, size_t why_len)
{
	static const struct {
		size_t dbg;
		size_t field;
	} fields[] = {
		{DBG_INTERP_HEAD, offsetof(struct cprof_py_layout, runtime_interp_head)},
		{DBG_THREADS_HEAD, offsetof(struct cprof_py_layout, interp_threads_head)},
		{DBG_TS_NEXT, offsetof(struct cprof_py_layout, tstate_next)},
		{DBG_TS_FRAME, offsetof(struct cprof_py_layout, tstate_frame)},
		{DBG_TS_THREAD_ID, offsetof(struct cprof_py_layout, tstate_thread_id)},
		{DBG_FR_PREVIOUS, offsetof(struct cprof_py_layout, frame_previous)},
		{DBG_FR_EXECUTABLE, offsetof(struct cprof_py_layout, frame_code)},
		{DBG_FR_INSTR, offsetof(struct cprof_py_layout, frame_instr)},
		{DBG_FR_OWNER, offsetof(struct cprof_py_layout, frame_owner)},
		{DBG_CO_FILENAME, offsetof(struct cprof_py_layout, code_filename)},
		{DBG_CO_NAME, offsetof(struct cprof_py_layout, code_name)},
		{DBG_CO_QUALNAME, offsetof(struct cprof_py_layout, code_qualname)},
		{DBG_CO_LINETABLE, offsetof(struct cprof_py_layout, code_linetable)},
		{DBG_CO_FIRSTLINENO, offsetof(struct cprof_py_layout, code_firstlineno)},
		{DBG_CO_ADAPTIVE, offsetof(struct cprof_py_layout, code_adaptive)},
		{DBG_BYTES_SIZE, offsetof(struct cprof_py_layout, bytes_size)},
		{DBG_BYTES_SVAL, offsetof(struct cprof_py_layout, bytes_sval)},
		{DBG_UNICODE_STATE, offsetof(struct cprof_py_layout, unicode_state)},
		{DBG_UNICODE_LENGTH, offsetof(struct cprof_py_layout, unicode_length)},
		{DBG_UNICODE_ASCII, offsetof(struct cprof_py_layout, ascii_size)},
	};
	uint8_t d[DBG_SIZE];
	uint64_t version, v;
	uint16_t off;
	int err;

	err = proc_mem__read(pid, p->runtime, d, sizeof(d));
	if (err)
		return err;
	version = python__u64(d, DBG_VERSION);
	if (memcmp(d, "xdebugpy", 8) || (version >> 16) != 0x030d) {
		snprintf(why, why_len, "no 3.13 _Py_DebugOffsets (version 0x%" PRIx64 ")", version);
		return -ENOENT;
	}
	if (python__u64(d, DBG_FREE_THREADED)) {
		snprintf(why, why_len, "free-threaded CPython 3.13 is not supported");
		return -ENOENT;
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		v = python__u64(d, fields[i].dbg);
		if (v >= CPROF_PY_NONE_OFF) {
			snprintf(why, why_len, "implausible _Py_DebugOffsets");
			return -ENOENT;
		}
		off = (uint16_t)v;
		memcpy((uint8_t *)&p->l + fields[i].field, &off, sizeof(off));
	}
	p->l.cframe_current = N;
	p->l.frame_is_entry = N;
	/* PyCompactUnicodeObject adds utf8_length and utf8 to PyASCIIObject. */
	p->l.compact_size = p->l.ascii_size + 16;
	return 0;
}

/* The minor version in a file name python3.X or libpython3.X.so..., or -1. A "t" after X is a
 * free-threaded build: *threaded is set. */
static int name_minor(const char *path, bool *threaded)
{
	const char *base = strrchr(path, '/'), *v;
	char *end;
	long minor;

	base = base ? base + 1 : path;
	if (!strncmp(base, "libpython3.", 11))
		v = base + 11;
	else if (!strncmp(base, "python3.", 8))
		v = base + 8;
	else
		return -1;
	minor = strtol(v, &end, 10);
	if (end == v || minor < 0 || minor > 99)
		return -1;
	*threaded = *end == 't';
	if (*end && *end != '.' && *end != 't')
		return -1;
	return (int)minor;
}

struct py_syms {
	uint64_t runtime, eval, eval_size, cold, cold_size, none, base_vaddr;
};

static void scan_symtab(Elf *elf, Elf_Scn *scn, GElf_Shdr *sh, struct py_syms *ps)
{
	Elf_Data *data = elf_getdata(scn, NULL);
	size_t n = sh->sh_entsize ? sh->sh_size / sh->sh_entsize : 0;
	const char *name;
	GElf_Sym sym;

	for (size_t i = 0; data && i < n; i++) {
		if (!gelf_getsym(data, (int)i, &sym) || !sym.st_value)
			continue;
		name = elf_strptr(elf, sh->sh_link, sym.st_name);
		if (!name || name[0] != '_')
			continue;
		if (!strcmp(name, "_PyRuntime"))
			ps->runtime = sym.st_value;
		else if (!strcmp(name, "_PyEval_EvalFrameDefault")) {
			ps->eval = sym.st_value;
			ps->eval_size = sym.st_size;
		} else if (!strcmp(name, "_PyEval_EvalFrameDefault.cold")) {
			ps->cold = sym.st_value;
			ps->cold_size = sym.st_size;
		} else if (!strcmp(name, "_Py_NoneStruct"))
			ps->none = sym.st_value;
	}
}

/* Reads the symbols we need from the ELF file at fd. */
static int read_syms(int fd, struct py_syms *ps)
{
	Elf *elf;
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	GElf_Phdr ph;
	size_t nph;
	int err = -ENOENT;

	memset(ps, 0, sizeof(*ps));
	elf_version(EV_CURRENT);
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf)
		return -ENOEXEC;
	while ((scn = elf_nextscn(elf, scn))) {
		if (gelf_getshdr(scn, &sh) &&
		    (sh.sh_type == SHT_SYMTAB || sh.sh_type == SHT_DYNSYM))
			scan_symtab(elf, scn, &sh, ps);
	}
	ps->base_vaddr = UINT64_MAX;
	if (!elf_getphdrnum(elf, &nph)) {
		for (size_t i = 0; i < nph; i++)
			if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD &&
			    ph.p_offset == 0 && ph.p_vaddr < ps->base_vaddr)
				ps->base_vaddr = ph.p_vaddr & ~0xfffull;
	}
	if (ps->runtime && ps->eval && ps->base_vaddr != UINT64_MAX)
		err = 0;
	elf_end(elf);
	return err;
}

/* What read_syms found in a file depends only on the file: a probe (several per process, and
 * again after each symbolizer reset) takes it from this table instead of rescanning the ELF. An
 * entry is the file's identity (device, inode, and its size and mtime so that a reused inode is
 * not mistaken for the old file) with read_syms's result; deleted files are not kept. Probes run
 * on the main thread and on trigger captures: the table takes a lock. Bounded, oldest replaced. */
#define SYMS_CACHE_N 16

static struct syms_cache_entry {
	bool used;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	int err;
	struct py_syms ps;
} syms_cache[SYMS_CACHE_N];
static size_t syms_cache_next;
static pthread_mutex_t syms_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static bool syms_cache_match(const struct syms_cache_entry *e, const struct stat *st)
{
	return e->used && e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
	       e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* read_syms through the cache; deleted files (map->deleted) are always read. */
static int read_syms_cached(int fd, const struct proc_map *map, struct py_syms *ps)
{
	struct syms_cache_entry *e;
	struct stat st;
	int err;

	if (map->deleted || fstat(fd, &st))
		return read_syms(fd, ps);
	pthread_mutex_lock(&syms_cache_lock);
	for (size_t i = 0; i < SYMS_CACHE_N; i++) {
		if (syms_cache_match(&syms_cache[i], &st)) {
			*ps = syms_cache[i].ps;
			err = syms_cache[i].err;
			pthread_mutex_unlock(&syms_cache_lock);
			return err;
		}
	}
	pthread_mutex_unlock(&syms_cache_lock);
	err = read_syms(fd, ps);
	/* Only what the file says is kept: found, or no such symbols; not a failure to read it. */
	if (err && err != -ENOENT)
		return err;
	pthread_mutex_lock(&syms_cache_lock);
	e = &syms_cache[syms_cache_next];
	syms_cache_next = (syms_cache_next + 1) % SYMS_CACHE_N;
	*e = (struct syms_cache_entry){
		.used = true,
		.dev = st.st_dev,
		.ino = st.st_ino,
		.size = st.st_size,
		.mtime = st.st_mtim,
		.err = err,
		.ps = *ps,
	};
	pthread_mutex_unlock(&syms_cache_lock);
	return err;
}

/* Tries the file of maps->maps[i]: fills p when it is the interpreter. */
static int probe_file(pid_t pid, const struct proc_maps *pm, size_t i, int minor,
		      struct cprof_py_proc *p, char *why, size_t why_len)
{
	const struct proc_map *map = &pm->maps[i];
	struct py_syms ps;
	uint64_t bias;
	int fd, err;

	if (map->offset != 0)
		return -ENOENT;
	fd = proc_map__open(pid, map);
	if (fd < 0)
		return fd;
	err = read_syms_cached(fd, map, &ps);
	close(fd);
	if (err)
		return err;
	bias = map->start - ps.base_vaddr;
	memset(p, 0, sizeof(*p));
	p->minor = minor;
	p->runtime = ps.runtime + bias;
	p->eval_start = ps.eval + bias;
	p->eval_end = p->eval_start + (ps.eval_size ? ps.eval_size : 1);
	if (ps.cold) {
		p->cold_start = ps.cold + bias;
		p->cold_end = p->cold_start + (ps.cold_size ? ps.cold_size : 1);
	}
	if (minor == 13) {
		p->entry_code = ps.none ? ps.none + bias : 0;
		return probe_debug_offsets(pid, p, why, why_len);
	}
	p->l = *python__layout(minor);
	return 0;
}

int python__probe_maps(const struct proc_maps *pm, struct cprof_py_proc *out, char *why,
		       size_t why_len)
{
	bool threaded = false;
	int err, minor, found = -ENOENT;
	char dummy[8];

	if (!why) {
		why = dummy;
		why_len = sizeof(dummy);
	}
	why[0] = 0;
	for (size_t i = 0; i < pm->n && found; i++) {
		if (!pm->maps[i].path)
			continue;
		minor = name_minor(pm->maps[i].path, &threaded);
		if (minor < 0)
			continue;
		if (threaded) {
			snprintf(why, why_len, "free-threaded CPython 3.%d is not supported",
				 minor);
			continue;
		}
		if (minor < 10 || minor > 13) {
			snprintf(why, why_len, "CPython 3.%d is not supported (3.10-3.13 are)",
				 minor);
			continue;
		}
		err = probe_file(pm->pid, pm, i, minor, out, why, why_len);
		if (!err)
			found = 0;
	}
	return found;
}

int python__probe(pid_t pid, struct cprof_py_proc *out, char *why, size_t why_len)
{
	struct proc_maps *pm = NULL;
	int err;

	if (why && why_len)
		why[0] = 0;
	err = proc_maps__read(pid, &pm);
	if (err)
		return err;
	err = python__probe_maps(pm, out, why, why_len);
	proc_maps__free(pm);
	return err;
}
