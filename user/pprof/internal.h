/* The pprof builder's interned tables, shared by builder.c (interning), encode.c (profile.proto
 * and gzip) and text.c (folded stacks and the top table). Not part of the module's interface. */
#ifndef CPROF_PPROF_INTERNAL_H
#define CPROF_PPROF_INTERNAL_H

#include "pprof/builder.h"
#include "util/array.h"
#include "util/hashmap.h"

/* Ids are 1-based positions in the builder's arrays; 0 means none. */
struct pp_mapping {
	uint64_t id;
	const struct sym_mapping *m;
	int64_t filename, build_id; /* string indices */
};

struct pp_function {
	uint64_t id;
	int64_t name, system_name, filename; /* string indices */
	int64_t start_line;
};

struct pp_line {
	uint64_t function_id;
	int64_t line;
};

struct pp_location {
	uint64_t id;
	/* The dedup key: the raw address as collected, and for user frames the pid. */
	bool kernel;
	bool is_return;
	uint32_t pid; /* 0 for kernel frames */
	uint64_t raw_addr;

	bool resolved;	  /* lines and mapping_id are set (pprof_builder__resolve) */
	uint64_t address; /* raw_addr - 1 for return addresses */
	uint64_t mapping_id;
	int nlines;
	struct pp_line *lines; /* innermost first */
};

struct pp_label {
	int64_t key, str, num, num_unit; /* string indices but num */
};

struct pp_sample {
	uint64_t *location_ids; /* leaf first */
	uint32_t nlocs;
	int nlabels;
	struct pp_label labels[PPROF_MAX_LABELS]; /* sorted, so that label order does not matter */
	int64_t values[PPROF_MAX_VALUES];
};

struct pprof_builder {
	struct pprof_config cfg; /* its strings are not kept: they are interned below */
	struct pprof_resolver resolver;

	char **strings; /* strings[0] == "" */
	size_t nstrings, strings_cap;
	struct hashmap *string_idx; /* char * -> index */

	struct pp_mapping **mappings;
	size_t nmappings, mappings_cap;
	struct hashmap *mapping_idx; /* const struct sym_mapping * -> struct pp_mapping */

	struct pp_function **functions;
	size_t nfunctions, functions_cap;
	struct hashmap *function_idx;

	struct pp_location **locations;
	size_t nlocations, locations_cap;
	size_t nresolved; /* locations[0..nresolved) are all resolved */
	struct hashmap *location_idx;

	struct pp_sample **samples;
	size_t nsamples, samples_cap;
	struct hashmap *sample_idx;

	/* Interned indices of the config's strings. */
	int64_t sample_type[PPROF_MAX_VALUES], sample_unit[PPROF_MAX_VALUES];
	int64_t period_type, period_unit;
	int default_index;     /* index into sample_type that viewers show first */
	bool has_default_type; /* cfg asked for one: write Profile.default_sample_type */
	int64_t *comments;
	size_t ncomments, comments_cap;

	/* Scratch for the location ids of the sample being added. */
	uint64_t *scratch;
	size_t scratch_cap;
};

static inline const char *pp__str(const struct pprof_builder *b, int64_t idx)
{
	return idx >= 0 && (size_t)idx < b->nstrings ? b->strings[idx] : "";
}

static inline const struct pp_location *pp__location(const struct pprof_builder *b, uint64_t id)
{
	return b->locations[id - 1];
}

static inline const struct pp_function *pp__function(const struct pprof_builder *b, uint64_t id)
{
	return b->functions[id - 1];
}

#endif
