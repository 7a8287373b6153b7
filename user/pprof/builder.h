/* pprof builder: collects raw samples (addresses per pid), symbolizes each unique address once
 * through a symbolizer, interns strings, mappings, functions and locations, and writes the
 * result as gzipped profile.proto, as Brendan Gregg's folded stacks, or as a `pprof -top`
 * table. One builder makes one profile. */
#ifndef CPROF_PPROF_BUILDER_H
#define CPROF_PPROF_BUILDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "sym/symbolizer.h"

#define PPROF_MAX_VALUES 4
#define PPROF_MAX_LABELS 12

struct pprof_value_type {
	const char *type; /* "samples", "cpu", "alloc_space" ... */
	const char *unit; /* "count", "nanoseconds", "bytes" */
};

struct pprof_config {
	int nvalues;
	struct pprof_value_type sample_types[PPROF_MAX_VALUES];
	struct pprof_value_type period_type;
	int64_t period;
	int64_t time_nanos;	/* start of collection, wall clock */
	int64_t duration_nanos; /* may also be set later with pprof_builder__set_duration */
	const char *default_sample_type; /* NULL: the last one, as pprof does */
};

struct pprof_label {
	const char *key;
	const char *str; /* string label when non-NULL, else numeric */
	int64_t num;
	const char *unit; /* for numeric labels, e.g. "bytes"; may be NULL */
};

/* A stack as the collectors hand it over. Frames are leaf first. */
struct pprof_raw_sample {
	uint32_t pid;
	const uint64_t *kstack; /* kernel frames, leaf first; may be NULL */
	uint32_t nkstack;
	const uint64_t *ustack; /* user frames, leaf first; may be NULL */
	uint32_t nustack;
	/* The user leaf is a return address too (a stack taken at a uretprobe or off-CPU at a
	 * syscall): look it up at addr - 1 like every other non-leaf frame. */
	bool user_leaf_is_return;
	/* The kernel leaf is a return address (stacks taken in the scheduler). */
	bool kernel_leaf_is_return;
	int64_t values[PPROF_MAX_VALUES];
	int nlabels;
	struct pprof_label labels[PPROF_MAX_LABELS];
};

/* How the builder resolves addresses; called once per unique (pid, address, is_return) for
 * user frames and once per unique (address, is_return) for kernel frames. Both return 0 or
 * -errno and fill res (see sym/symbolizer.h). The record path wraps symbolizer__user and
 * symbolizer__kernel in these; tests pass fakes. Resolution is deferred until every sample is
 * in (pprof_builder__resolve): then prepare, when set, is handed every address at once
 * (symbolizer__prepare: one pass over kallsyms, one file at a time), before user and kernel
 * are called for each, user addresses by pid and address, then kernel ones. */
struct pprof_resolver {
	int (*user)(void *ctx, pid_t pid, uint64_t addr, bool is_return, struct sym_result *res);
	int (*kernel)(void *ctx, uint64_t addr, bool is_return, struct sym_result *res);
	void *ctx;
	int (*prepare)(void *ctx, struct sym_request *reqs, size_t n); /* may be NULL */
};

struct pprof_builder;

/* resolver may be NULL: then every frame is a stub named by its address (for tests). The
 * resolver's ctx must outlive the builder: strings and mappings it returns are not copied. */
struct pprof_builder *pprof_builder__new(const struct pprof_config *cfg,
					 const struct pprof_resolver *resolver);
void pprof_builder__free(struct pprof_builder *b);

void pprof_builder__set_duration(struct pprof_builder *b, int64_t duration_nanos);
/* Adds a comment line (pprof shows them with -comments). */
int pprof_builder__add_comment(struct pprof_builder *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Adds one sample. Samples with identical locations and labels are merged (values summed).
 * Returns 0 or -ENOMEM. */
int pprof_builder__add_sample(struct pprof_builder *b, const struct pprof_raw_sample *s);
/* Resolves the addresses of the samples added since the last call (see pprof_resolver). The
 * encoders and writers call it; callers that free the resolver's state (a process's snapshot)
 * before encoding call it first. Returns 0 or -ENOMEM. */
int pprof_builder__resolve(struct pprof_builder *b);
/* Samples added so far (after merging). */
size_t pprof_builder__nsamples(const struct pprof_builder *b);

/* Serialized profile.proto, gzip-compressed when gzip is true. *buf is malloc'd: free() it.
 * Returns 0 or -errno. */
int pprof_builder__encode(struct pprof_builder *b, bool gzip, uint8_t **buf, size_t *len);
/* gzip-compresses len bytes of in into *out (malloc'd). Returns 0 or -errno. */
int pprof__gzip(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len);
/* Writes the gzipped profile to f. Returns 0 or -errno. */
int pprof_builder__write_pprof(struct pprof_builder *b, FILE *f);
/* Brendan Gregg's folded format: "root;caller;leaf value" per line, root first, of the value at
 * sample_index (-1: the default sample type). Inlined frames expand to their own entries. */
int pprof_builder__write_folded(struct pprof_builder *b, FILE *f, int sample_index);
/* A table like `pprof -top`: flat, flat%, sum%, cum, cum% and the function name, sorted by
 * flat, at most max_rows rows (0: all). */
int pprof_builder__write_top(struct pprof_builder *b, FILE *f, int sample_index, int max_rows);

#endif
