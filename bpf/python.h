/* Types shared by the BPF Python walker (bpf/python.bpf.h) and user space (user/python/).
 * Include nothing here (see cprof.h). */
#ifndef CPROF_PYTHON_H
#define CPROF_PYTHON_H

/* Processes with a CPython interpreter walked at once (entries of `py_procs`). */
#ifndef CPROF_PY_MAX_PROCS
#define CPROF_PY_MAX_PROCS 4096
#endif
/* Threads of one interpreter searched for the current one; more are not found (counted). */
#define CPROF_PY_MAX_THREADS 64

/* Where the fields the walker reads sit, in bytes, for one CPython version. From the table of
 * user/python/layout.c (3.10-3.12) or the process's own _Py_DebugOffsets (3.13). An offset of
 * 0xffff: the field does not exist in that version. */
struct cprof_py_layout {
	__u16 runtime_interp_head; /* _PyRuntimeState.interpreters.head */
	__u16 interp_threads_head; /* PyInterpreterState: first thread state */
	__u16 tstate_next;	   /* PyThreadState.next */
	__u16 tstate_thread_id;	   /* PyThreadState.thread_id (pthread_self(): the fs base) */
	__u16 tstate_frame;	   /* 3.10 frame, 3.11/3.12 cframe, 3.13 current_frame */
	__u16 cframe_current;	   /* 3.11/3.12: _PyCFrame.current_frame */
	__u16 frame_previous;	   /* f_back (3.10) or _PyInterpreterFrame.previous */
	__u16 frame_code;	   /* f_code, or f_executable (3.13) */
	__u16 frame_instr;	   /* f_lasti (3.10, an int), prev_instr, or instr_ptr (3.13) */
	__u16 frame_owner;    /* 3.12+: char owner (FRAME_OWNED_BY_CSTACK marks entry frames) */
	__u16 frame_is_entry; /* 3.11: bool is_entry */
	__u16 code_adaptive;  /* 3.11+: PyCodeObject.co_code_adaptive (the bytecode) */
	__u16 code_filename, code_name, code_qualname, code_linetable, code_firstlineno;
	__u16 unicode_state, unicode_length, ascii_size, compact_size; /* str objects */
	__u16 bytes_size, bytes_sval;				       /* bytes objects */
	__u16 pad;
};

/* What the walker needs about one process: where its interpreter is and how it is laid out. */
struct cprof_py_proc {
	__u64 runtime;		    /* address of _PyRuntime */
	__u64 eval_start, eval_end; /* _PyEval_EvalFrameDefault in this process */
	__u64 cold_start, cold_end; /* its .cold part, when the compiler split one (else 0) */
	__u64 entry_code;	    /* 3.13: f_executable of an entry frame (Py_None); else 0 */
	__u32 minor;		    /* 10..13 */
	__u32 pad;
	struct cprof_py_layout l;
};

#define CPROF_PY_NONE_OFF	    0xffff
#define CPROF_PY_FRAME_OWNED_CSTACK 3

/* A Python frame in a user stack: bit 63 set (user addresses never have it), the code object's
 * address / 8 in bits 0-44, its instruction index (code units) in bits 45-62. */
#define CPROF_PY_FRAME_TAG    (1ull << 63)
#define CPROF_PY_ADDR_BITS    45
#define CPROF_PY_IDX_MASK     0x3ffffull
#define CPROF_PY_IDX_UNKNOWN  CPROF_PY_IDX_MASK
#define CPROF_PY_IS_FRAME(ip) (((ip)&CPROF_PY_FRAME_TAG) != 0)
#define CPROF_PY_CODE(ip)     (((ip) & ((1ull << CPROF_PY_ADDR_BITS) - 1)) << 3)
#define CPROF_PY_IDX(ip)      (((ip) >> CPROF_PY_ADDR_BITS) & CPROF_PY_IDX_MASK)
#define CPROF_PY_FRAME(code, idx)                                                                  \
	(CPROF_PY_FRAME_TAG | ((__u64)(idx) << CPROF_PY_ADDR_BITS) |                               \
	 (((__u64)(code) >> 3) & ((1ull << CPROF_PY_ADDR_BITS) - 1)))

#ifndef __bpf__
_Static_assert(sizeof(struct cprof_py_layout) == 48, "py layout is shared with BPF");
_Static_assert(sizeof(struct cprof_py_proc) == 104, "py proc is shared with BPF");
#endif

#endif /* CPROF_PYTHON_H */
