/* Types and limits of the .eh_frame unwinder shared by BPF and user space (user/unwind/).
 * Include nothing here (see cprof.h); include cprof.h first. */
#ifndef CPROF_UNWIND_H
#define CPROF_UNWIND_H

#ifndef CPROF_MAX_STACK
#error "include cprof.h before unwind.h"
#endif

/* Rows of one executable's table at most: the binary search in BPF takes
 * CPROF_UNWIND_SEARCH_STEPS steps, enough for this many rows (asserted in unwind.bpf.h). */
#define CPROF_UNWIND_MAX_ROWS	  (1u << 23)
#define CPROF_UNWIND_SEARCH_STEPS 23
/* Executables with a table at once (entries of the HASH_OF_MAPS). */
#ifndef CPROF_UNWIND_MAX_EXES
#define CPROF_UNWIND_MAX_EXES 4096
#endif
/* unwind_used (unwind.bpf.h): a walk writes the time it used a table at most this often, and
 * asks for an evicted table to be rebuilt at most this often. */
#define CPROF_UNWIND_TOUCH_NS (10ull * 1000 * 1000)
#define CPROF_UNWIND_MISS_NS  (1000ull * 1000 * 1000)
/* (pid, address prefix) entries of the mapping trie; a mapping takes about 2 * log2(size). */
#ifndef CPROF_UNWIND_LPM_ENTRIES
#define CPROF_UNWIND_LPM_ENTRIES (1u << 18)
#endif
/* Processes whose mappings the per-process arrays describe (sleepable walks, below). */
#ifndef CPROF_UNWIND_MAX_PIDS
#define CPROF_UNWIND_MAX_PIDS 16384
#endif
/* Mappings of one process in its array at most: a binary search of this many steps. */
#define CPROF_UNWIND_MAX_PID_MAPS   (1u << 16)
#define CPROF_UNWIND_PID_MAPS_STEPS 16
/* Default entries of the map of unwound user stacks (one per distinct stack). */
#ifndef CPROF_DEFAULT_MAX_USTACKS
#define CPROF_DEFAULT_MAX_USTACKS 16384
#endif

/* How user stacks are walked (rodata unwind_mode, --unwind). 0 is the default, so that a
 * zeroed options struct means auto. */
enum cprof_unwind_mode {
	CPROF_UNWIND_AUTO = 0,	/* tables where a pc has one, frame pointers elsewhere (default) */
	CPROF_UNWIND_FP = 1,	/* frame pointers only: bpf_get_stackid(BPF_F_USER_STACK) */
	CPROF_UNWIND_DWARF = 2, /* tables only: a pc without one ends the stack */
};

/* What a row says about the frame of the pcs from its pc up to the next row's. */
enum cprof_unwind_kind {
	CPROF_UNW_INVALID = 0, /* no rule we can follow: the stack ends here (counted) */
	CPROF_UNW_CFA_RSP = 1, /* CFA = rsp + cfa_off */
	CPROF_UNW_CFA_RBP = 2, /* CFA = rbp + cfa_off */
	CPROF_UNW_PLT = 3,     /* CFA = rsp + cfa_off + ((rip & 15) >= arg ? 8 : 0): the PLT rule */
	CPROF_UNW_SIGNAL = 4,  /* a signal trampoline: registers come from the ucontext at rsp */
	CPROF_UNW_STOP = 5, /* the outermost frame (return address undefined): a complete stack */
};

/* One row: 12 bytes. The return address is always at CFA - 8 (rows where it is not are
 * INVALID); rbp is saved at CFA + rbp_off, or unchanged when rbp_off is 0. pc is the ELF
 * virtual address (link-time), so one table serves every process mapping the file. */
struct cprof_unwind_row {
	__u32 pc;
	__s32 cfa_off;
	__s16 rbp_off;
	__u8 kind;
	__u8 arg;
};

/* Key of the mapping trie: pid and address, big-endian, so that a prefix of the key is a
 * prefix of (pid, address). prefixlen counts bits after the prefixlen field (32 + 64 max). */
struct cprof_unwind_lpm_key {
	__u32 prefixlen;
	__u32 pid_be;
	__u64 addr_be;
};

/* What the trie gives for an address: which table, and how to get from a runtime address to the
 * table's link-time pcs (pc - bias). exe_id 0: no table for this mapping (frame pointers). A
 * table (an ARRAY of struct cprof_unwind_row) says its own size: its entry 0 is a header whose
 * pc is how many rows follow, so a mapping can name a table before it is built. */
struct cprof_unwind_mapping {
	__u32 exe_id;
	/* In the header of a pid's mapping array (below): how many follow. Else 0 as user space
	 * writes it; the walk's copy holds its table's rows once read (unwind.bpf.h, table_rows). */
	__u32 nrows;
	__u64 bias;
	__u64 start, end; /* the whole mapping: the walk reuses the entry while pcs stay inside */
};

/* The same mappings for sleepable programs, which may not use an LPM trie: per process, an
 * ARRAY of struct cprof_unwind_mapping whose entry 0 is a header (nrows = how many follow) and
 * entries 1..n the mappings with a table, sorted by start (`unwind_pid_maps`, pid -> ARRAY). */

/* A user stack unwound in BPF, leaf first, n frames. Stored in the `ustacks` HASH map under a
 * hash of the frames; the key's user_stack_id is that hash with CPROF_USTACK_ID_TABLE set, so
 * whoever reads a stack id can tell which map holds it (STACK_TRACE ids are far smaller). */
struct cprof_ustack {
	__u32 n;
	__u32 truncated;
	__u64 ips[CPROF_MAX_STACK];
};

#define CPROF_USTACK_ID_TABLE (1 << 30)
#define CPROF_USTACK_ID_MASK  (CPROF_USTACK_ID_TABLE - 1)
/* cprof_key.flags bit: the user stack was walked by the table unwinder (ids as above). */
#define CPROF_KEY_USTACK_TABLE 1u

#ifndef __bpf__
_Static_assert(sizeof(struct cprof_unwind_row) == 12, "row layout is shared with BPF");
_Static_assert(sizeof(struct cprof_unwind_lpm_key) == 16, "trie key layout is shared with BPF");
_Static_assert(sizeof(struct cprof_unwind_mapping) == 32, "mapping layout is shared with BPF");
#endif

#endif /* CPROF_UNWIND_H */
