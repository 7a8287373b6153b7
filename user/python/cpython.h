/* CPython processes: finding the interpreter a process runs (3.10-3.13), its struct layout, and
 * turning the Python frames the BPF walker records (bpf/python.h) into functions, files and
 * lines read from the process's code objects. */
#ifndef CPROF_PYTHON_CPYTHON_H
#define CPROF_PYTHON_CPYTHON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <linux/types.h>

#include "python.h"

/* The unaligned 64-bit value at b + off (of memory read from a process). */
static inline uint64_t python__u64(const uint8_t *b, size_t off)
{
	uint64_t v;

	memcpy(&v, b + off, sizeof(v));
	return v;
}

/* The layout table of a minor version 10..12 (3.13 publishes its own), NULL for others. */
const struct cprof_py_layout *python__layout(int minor);

/* Finds the CPython interpreter pid runs (an executable or library named python3.X /
 * libpython3.X.so with _PyRuntime and _PyEval_EvalFrameDefault) and fills out with its
 * addresses and layout. Returns 0, -ENOENT when pid runs no supported CPython (unsupported
 * versions, free-threaded builds: why says which), or -errno. */
int python__probe(pid_t pid, struct cprof_py_proc *out, char *why, size_t why_len);
/* python__probe on mappings the caller read (proc_maps__read of pm->pid). */
struct proc_maps;
int python__probe_maps(const struct proc_maps *pm, struct cprof_py_proc *out, char *why,
		       size_t why_len);

/* One Python frame resolved. Strings are owned by the python_syms that returned them. */
struct python_frame {
	const char *function; /* co_qualname (3.11+), co_name (3.10) */
	const char *file;     /* co_filename */
	int64_t line;	      /* 0 when unknown */
	int64_t start_line;   /* co_firstlineno */
};

struct python_syms;

struct python_syms *python_syms__new(void);
void python_syms__free(struct python_syms *ps);
/* Resolves the tagged frame ip (CPROF_PY_IS_FRAME) of pid. Returns 0, or -errno when the code
 * object cannot be read (the process is gone, the address is no code object). Code objects are
 * cached by (pid, address), checked against the object's first line and name on every use, so a
 * reused address is read again; python_syms__forget drops a process. */
int python_syms__resolve(struct python_syms *ps, pid_t pid, uint64_t ip, struct python_frame *f);
void python_syms__forget(struct python_syms *ps, pid_t pid);

/* Line tables, for tests: the line of instruction index idx (code units) in a 3.11+ location
 * table, or in a 3.10 line table; 0 when none. */
int64_t python__line_311(const uint8_t *tab, size_t len, int64_t first, uint64_t idx);
int64_t python__line_310(const uint8_t *tab, size_t len, int64_t first, uint64_t idx);

#endif
