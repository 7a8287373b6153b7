/* Collectors: one per profile type. Each opens its BPF skeleton, configures and loads it,
 * attaches, and at the end drains its aggregation maps into a pprof builder. The generic part
 * here owns what every type shares: the target filter, the process notices and the counters of
 * what was lost. */
#ifndef CPROF_COLLECT_COLLECTOR_H
#define CPROF_COLLECT_COLLECTOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/types.h>

#include "cprof.h"
#include "unwind.h"
#include "pprof/builder.h"
#include "collect/reader.h"
#include "unwind/unwinder.h"

struct bpf_object;
struct bpf_map;
struct ring_buffer;
struct hashmap;
struct unwinder;
struct symbolizer;
struct threads_snapshot;
struct collect_stats;

/* A partial view of a collector's maps for a drain: set by whoever drains a collector on behalf
 * of one of several readers (collect/pool.c); drains honour it and know nothing else of the
 * reader. With a view, drains delete nothing. */
struct collector_view {
	/* Whether an entry of the aggregation map (key starts with struct cprof_key) is reported,
	 * and its value as reported (rewritten in place). */
	bool (*value)(void *ctx, const void *key, void *val);
	/* Whether pid's entries of other maps (waits under way) are reported. */
	bool (*wants)(void *ctx, uint32_t pid);
	/* Rewrites counters read by collector__stats to the view's part. */
	void (*stats)(void *ctx, struct collect_stats *st);
	/* CLOCK_MONOTONIC ns where the view begins: a wait under way counts from there. */
	int64_t from_ns;
	void *ctx;
};

struct collect_opts {
	bool all;	   /* whole system */
	const pid_t *pids; /* targets, when !all */
	size_t npids;
	bool follow_children; /* processes forked by targets become targets */
	bool no_kernel_stacks;
	int freq;	     /* cpu: samples per second per CPU */
	uint32_t max_keys;   /* aggregation map entries; 0 = default */
	uint32_t max_stacks; /* stack map entries; 0 = default */
	bool load_only;	     /* load (verify) the programs but attach nothing: `cprof-bpf check` */
	/* Drained repeatedly while attached (the agent): each drain also trims the stack map of
	 * stacks no key references any more, so long runs do not fill it. */
	bool live;
	bool lifecycle;	 /* notices on every exec, and CPROF_PROC_EXIT when a seen process exits */
	int unwind_mode; /* enum cprof_unwind_mode: how user stacks are walked */
	uint64_t heap_sample_bytes; /* heap: mean bytes between samples; 0 = default, 1 = all */
	uint32_t heap_max_live;	    /* heap: live-map entries; 0 = default */
	bool heap_alloc_only;	    /* heap: free family not probed, alloc_* only */
	/* heap, `-- CMD`: the command, whose gated child has not exec'd it yet. May be NULL. */
	const char *exe_hint;
	uint64_t unwind_mem; /* bytes of unwind tables at most; 0 = default */
	double unwind_cpu;   /* percent of a core for building tables; 0 = no limit */
	/* Tables kept on disk across runs (unwind/cache.h), or NULL; and its bound in bytes. */
	const char *unwind_cache;
	uint64_t unwind_cache_size;
	/* Tables only for processes that are sampled: an exec notice reads nothing for the
	 * unwinder, the first sample's notice (CPROF_PROC_NEW / _SAMPLED) does; and only for
	 * their files that a walk needs (unwinder_opts.on_demand). */
	bool unwind_lazy;
	/* Entries of the LRU of Python code objects announced (py_codes_seen); 0 = its default.
	 * An LRU map is preallocated whole at load: 65536 entries are 5.7 MB of kernel memory
	 * and 9 ms of CPU here. */
	uint32_t py_codes_max;

	/* mutex, offcpu: shorter waits are not counted */
	uint64_t min_wait_ns;
	/* mutex: about one lock wait in mutex_fraction is kept, scaled by it (0, 1: all) */
	uint32_t mutex_fraction;
	/* offcpu: an interval of d ns is kept with probability min(1, d / block_rate_ns), scaled
	 * by its inverse (0: all) */
	uint64_t block_rate_ns;
	/* Adds labels of a process (e.g. its executable) to each sample of it: fills at most max
	 * labels, returns how many. Strings must live until the drain ends. May be NULL. */
	int (*pid_labels)(void *ctx, pid_t pid, struct pprof_label *labels, int max);
	/* Called from collector__poll for each process notice (new process, exec). rd: what was
	 * read of the process for this notice (rd->pm: its mappings, read for the unwinder; all of
	 * it with notice_thread), valid during the call. */
	void (*on_proc)(void *ctx, const struct cprof_proc_event *e, const struct proc_read *rd);
	/* A thread of its own reads the notices, and what on_proc needs of each process, as they
	 * come (collect/reader.h): for a poller that may be busy for long (the agent). */
	bool notice_thread;
	void *ctx;
	/* threads: resolves the stacks of waiting threads while draining (which glibc function
	 * waits tells a mutex from a condition variable); its processes are announced through
	 * on_proc first. May be NULL: then futex waits are told apart by their arguments only. */
	struct symbolizer *sym;
	/* threads: where the drain leaves the snapshot itself (the caller frees it with
	 * threads_snapshot__free), for the text outputs. NULL: it is freed. */
	struct threads_snapshot **threads_out;
};

/* What was counted and lost, summed over CPUs (enum cprof_stat), plus what user space found. */
struct collect_stats {
	uint64_t bpf[CPROF_STAT_NR];
	uint64_t truncated_stacks; /* stacks that hit CPROF_MAX_STACK frames */
	uint64_t lost_stack_reads; /* stack ids whose stack was gone when drained */
	uint64_t trimmed_stacks;   /* stacks deleted by live drains (not a loss) */
	struct unwinder_stats unwind;
	uint64_t prog_misses;  /* runs of our programs the kernel skipped (recursion) */
	uint64_t procs_missed; /* processes gone before their mappings were read (the session's) */
	uint64_t execs;	       /* exec notices (notice_thread) */
	uint64_t execs_unread; /* of which forgotten unread: exited unsampled within 10 ms */
};

struct collector;

struct collector_ops {
	const char *name;
	/* Opens the skeleton, sets rodata and map sizes from c->opts, loads and attaches. Fills
	 * c->obj and the shared maps through collector__bind(). */
	int (*open)(struct collector *c);
	/* Stops the events (detach) but keeps the maps, so a drain sees a quiet map. Optional. */
	void (*stop)(struct collector *c);
	/* Drains aggregated samples into b (maps may be cleared). */
	int (*drain)(struct collector *c, struct pprof_builder *b);
	/* Detaches and frees the skeleton. Safe on a half-opened collector. */
	void (*close)(struct collector *c);
	/* Sample types and period of this profile type. */
	void (*pprof_config)(const struct collector *c, struct pprof_config *cfg);
	/* Sharing (collect/pool.h): the aggregation map's name, whose values are u64 fields; its
	 * drain passes each entry through c->view when it is set. NULL: never shared. */
	const char *agg_map;
	uint32_t agg_levels; /* bit i: the i-th u64 of a value is a level (in use), not a count */
	bool per_target_attach; /* attaches per target (uprobes): shared only for the same pids */
	/* A snapshot (threads): nothing is collected over time; the drain takes it. A capture
	 * neither waits for a duration nor shares the collector. */
	bool snapshot;
};

struct collector {
	const struct collector_ops *ops;
	struct collect_opts opts;
	struct bpf_object *obj;
	struct bpf_map *targets, *stacks, *stats, *proc_events, *mmap_pending;
	struct bpf_map *ustacks;  /* stacks walked by the table unwinder (ids with
				  * CPROF_USTACK_ID_TABLE); NULL in objects without it */
	struct unwinder *unw;	  /* feeds the unwinder's tables and mappings; NULL for fp */
	struct bpf_map *py_procs; /* CPython processes for the Python walker (bpf/python.bpf.h) */
	bool no_python;		  /* CPROF_BENCH_NO_PYTHON: py_procs left empty (benchmarks) */
	struct hashmap *py_pids;  /* the pids put in py_procs (NULL: none yet) */
	/* The targets' mappings (entry i: opts.pids[i]'s, NULL when not read) when the type's open
	 * read them before loading (threads); the unwinder's start takes them. May be NULL. */
	struct proc_maps **target_maps;
	bool py_pids_lost; /* one was put in py_procs but not in py_pids */
	struct ring_buffer *rb;
	struct notice_reader *reader; /* instead of rb (opts.notice_thread) */
	struct collect_stats ustats;  /* user-side counts (truncated, lost reads) */
	void *priv;
	/* Live drains: stack ids referenced by the keys drained since the last trim (a bitmap of
	 * the stack map's buckets), and the maps drained, rescanned before trimming. */
	uint64_t *stack_refs;
	uint32_t nstack_ids;
	struct hashmap *ustack_refs; /* likewise for `ustacks` ids (CPROF_USTACK_ID_TABLE) */
	struct bpf_map *drained[4];
	int ndrained;
	/* CLOCK_MONOTONIC and CLOCK_REALTIME ns when sampling began: the targets were added (or,
	 * for the whole system, the programs attached). */
	int64_t started_ns, started_real_ns;
	/* CLOCK_MONOTONIC ns after which notices no longer build unwind tables (their processes
	 * would not be sampled any more); 0 = no deadline. */
	int64_t deadline_ns;
	/* The part of the maps a drain reports (see struct collector_view); NULL: all of it. */
	const struct collector_view *view;
};

/* The profile types, by name ("cpu"; "block" is offcpu), NULL if unknown. */
const struct collector_ops *collector__find(const char *type);
/* The i-th known profile type (0-based), NULL past the last: for `check` and help texts. */
const struct collector_ops *collector__nth(size_t i);
/* Comma-separated list of the known type names, for messages. */
const char *collector__names(void);

/* Opens, loads and attaches the collector for ops. Returns 0 or -errno (reported with pr_err). */
int collector__open(const struct collector_ops *ops, const struct collect_opts *o,
		    struct collector **out);
void collector__free(struct collector *c);
/* Waits up to timeout_ms for process notices and handles them. Returns 0 or -errno. */
int collector__poll(struct collector *c, int timeout_ms);
/* Whether collector__poll has work of its own waiting (unwind tables queued for the CPU
 * budget): then its caller should not wait long between calls. */
bool collector__has_work(const struct collector *c);
/* An eventfd whose write ends a collector__poll wait (the notice reader's, opts.notice_thread:
 * written from a signal handler to stop a long wait); -1 without one. */
int collector__wake_fd(const struct collector *c);
/* Adds a target process at run time. */
int collector__add_target(struct collector *c, pid_t pid);
/* Removes a target process at run time (shared collectors: its last window ended). */
int collector__remove_target(struct collector *c, pid_t pid);
/* Sums the BPF counters into st (and copies the user-side ones). */
int collector__stats(struct collector *c, struct collect_stats *st);
/* What the counters that only grow (bpf[], truncated, lost and trimmed stacks, prog_misses,
 * unwind.over_budget and unwind.failed) grew by from base to now, into out (which may be now);
 * a counter below its base gives 0. The other fields of out are left as they are. */
void collect_stats__since(const struct collect_stats *now, const struct collect_stats *base,
			  struct collect_stats *out);
/* Stops collecting (detaches what produces samples); the maps stay readable. */
void collector__stop(struct collector *c);
/* Drains into b. */
int collector__drain(struct collector *c, struct pprof_builder *b);

/* For collectors: remembers the shared maps of a loaded object (by their common names). */
int collector__bind(struct collector *c, struct bpf_object *obj);

/* The steps every collector's open shares, between opening its skeleton and setting its rodata
 * (COLLECTOR_SET_COMMON_RODATA and its own) and attaching what needs a target:
 * - collector__size_maps: the aggregation map (ops->agg_map) to --max-stacks, the stack map to
 *   max_stacks, and the fork hook loaded only when children are followed;
 * - collector__attach: bind the shared maps, then (unless load_only) attach the programs that
 *   attach by themselves (tracepoints, fork and exec hooks);
 * - collector__load_attach: collector__size_maps, load (verify), then collector__attach.
 * Each returns 0 or -errno, reported as "cannot load/attach the TYPE BPF programs". s is the
 * skeleton's `skeleton` member. */
struct bpf_object_skeleton;
/* After a skeleton's X_bpf__open(): 0 when skel is there, else -errno, reported as "cannot open
 * the TYPE BPF object". */
int collector__opened(const struct collector *c, const void *skel);
void collector__size_maps(struct collector *c, struct bpf_object *obj);
int collector__attach(struct collector *c, struct bpf_object_skeleton *s);
int collector__load_attach(struct collector *c, struct bpf_object_skeleton *s);

/* For collectors: reads a stack from the stack map into ips (leaf first); returns the number
 * of frames (0 when id < 0 or the stack is gone, which is counted). */
uint32_t collector__read_stack(struct collector *c, __s32 id, uint64_t *ips);

/* For collectors: walks a HASH map of struct cprof_key -> value_size bytes, deleting what it
 * returns when del is set, and calls fn for each entry. Deleting uses
 * bpf_map_lookup_and_delete_batch, so a sample counted while the drain runs lands either in this
 * drain or in the next one, never in neither. Returns 0 or -errno. */
int collector__drain_map(struct collector *c, struct bpf_map *map, size_t value_size, bool del,
			 int (*fn)(struct collector *c, const struct cprof_key *k, const void *val,
				   void *ctx),
			 void *ctx);

/* For collectors: fills a raw sample's stacks and pid/comm labels from key. ubuf and kbuf must
 * hold CPROF_MAX_STACK entries. */
void collector__raw_sample(struct collector *c, const struct cprof_key *k, uint64_t *ubuf,
			   uint64_t *kbuf, struct pprof_raw_sample *s);

/* Sets the rodata fields every program shares (see bpf/common.bpf.h). */
#define COLLECTOR_SET_COMMON_RODATA(skel, o)                                                       \
	do {                                                                                       \
		(skel)->rodata->target_all = (o)->all;                                             \
		(skel)->rodata->follow_children = (o)->follow_children;                            \
		(skel)->rodata->want_kern_stack = !(o)->no_kernel_stacks;                          \
		(skel)->rodata->notify_lifecycle = (o)->lifecycle;                                 \
		(skel)->rodata->unwind_mode = (o)->unwind_mode;                                    \
		/* Unused under fp: keep it from taking memory. */                                 \
		if ((o)->unwind_mode == CPROF_UNWIND_FP)                                           \
			bpf_map__set_max_entries((skel)->maps.ustacks, 1);                         \
	} while (0)

#endif
