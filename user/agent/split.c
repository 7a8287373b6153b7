/* Splits one window's profile into a profile per service for Pyroscope, whose series are per
 * application: samples are grouped by a label's value; each part keeps only the locations,
 * functions and mappings its samples reference (ids are explicit in profile.proto, so nothing
 * is renumbered); the string table is shared as is. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/internal.h"
#include "pprof/builder.h"
#include "profile.pb-c.h"
#include "util/hashmap.h"

typedef Perftools__Profiles__Profile Profile;

static const char *sample_service(const Profile *p, const Perftools__Profiles__Sample *s,
				  int64_t key, bool basename, const char *fallback)
{
	const char *v, *slash;

	for (size_t i = 0; i < s->n_label; i++) {
		if (s->label[i]->key != key || s->label[i]->str <= 0 ||
		    (size_t)s->label[i]->str >= p->n_string_table)
			continue;
		v = p->string_table[s->label[i]->str];
		slash = basename ? strrchr(v, '/') : NULL;
		v = slash ? slash + 1 : v;
		return *v ? v : fallback;
	}
	return fallback;
}

/* Keeps the elements of arr (n of them) whose id is in keep; returns the new count. */
#define FILTER_BY_ID(arr, n, keep)                                                                 \
	({                                                                                         \
		size_t _k = 0;                                                                     \
		for (size_t _i = 0; _i < (n); _i++)                                                \
			if (hashmap__find((keep), (void *)(uintptr_t)(arr)[_i]->id, NULL))         \
				(arr)[_k++] = (arr)[_i];                                           \
		_k;                                                                                \
	})

static int emit_part(Profile *p, Perftools__Profiles__Sample **all, size_t nall, const char *svc,
		     int64_t key, bool basename, const char *fallback,
		     int (*fn)(void *, const char *, const uint8_t *, size_t), void *ctx)
{
	Perftools__Profiles__Sample **samples = NULL;
	Perftools__Profiles__Location **locs = NULL;
	Perftools__Profiles__Function **funcs = NULL;
	Perftools__Profiles__Mapping **maps = NULL;
	struct hashmap *lk = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	struct hashmap *fk = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	struct hashmap *mk = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	Profile part = *p;
	uint8_t *raw = NULL, *gz = NULL;
	size_t ns = 0, len, gzlen;
	int err = -ENOMEM;

	samples = malloc((nall ? nall : 1) * sizeof(*samples));
	locs = malloc((p->n_location ? p->n_location : 1) * sizeof(*locs));
	funcs = malloc((p->n_function ? p->n_function : 1) * sizeof(*funcs));
	maps = malloc((p->n_mapping ? p->n_mapping : 1) * sizeof(*maps));
	if (!samples || !locs || !funcs || !maps || !lk || !fk || !mk)
		goto cleanup;
	for (size_t i = 0; i < nall; i++) {
		if (strcmp(sample_service(p, all[i], key, basename, fallback), svc))
			continue;
		samples[ns++] = all[i];
		for (size_t j = 0; j < all[i]->n_location_id; j++) {
			/* 0 is no id in pprof; hashmap's int keys must be non-zero too. */
			if (all[i]->location_id[j] &&
			    !hashmap__find(lk, (void *)(uintptr_t)all[i]->location_id[j], NULL) &&
			    hashmap__insert(lk, (void *)(uintptr_t)all[i]->location_id[j], NULL))
				goto cleanup;
		}
	}
	if (p->n_location)
		memcpy(locs, p->location, p->n_location * sizeof(*locs));
	part.n_location = FILTER_BY_ID(locs, p->n_location, lk);
	part.location = locs;
	for (size_t i = 0; i < part.n_location; i++) {
		if (locs[i]->mapping_id &&
		    !hashmap__find(mk, (void *)(uintptr_t)locs[i]->mapping_id, NULL) &&
		    hashmap__insert(mk, (void *)(uintptr_t)locs[i]->mapping_id, NULL))
			goto cleanup;
		for (size_t j = 0; j < locs[i]->n_line; j++) {
			uint64_t f = locs[i]->line[j]->function_id;

			if (f && !hashmap__find(fk, (void *)(uintptr_t)f, NULL) &&
			    hashmap__insert(fk, (void *)(uintptr_t)f, NULL))
				goto cleanup;
		}
	}
	if (p->n_function)
		memcpy(funcs, p->function, p->n_function * sizeof(*funcs));
	part.n_function = FILTER_BY_ID(funcs, p->n_function, fk);
	part.function = funcs;
	if (p->n_mapping)
		memcpy(maps, p->mapping, p->n_mapping * sizeof(*maps));
	part.n_mapping = FILTER_BY_ID(maps, p->n_mapping, mk);
	part.mapping = maps;
	part.n_sample = ns;
	part.sample = samples;
	len = perftools__profiles__profile__get_packed_size(&part);
	raw = malloc(len ? len : 1);
	if (!raw)
		goto cleanup;
	perftools__profiles__profile__pack(&part, raw);
	err = pprof__gzip(raw, len, &gz, &gzlen);
	if (!err)
		err = fn(ctx, svc, gz, gzlen);
cleanup:
	free(raw);
	free(gz);
	free(samples);
	free(locs);
	free(funcs);
	free(maps);
	hashmap__free(lk);
	hashmap__free(fk);
	hashmap__free(mk);
	return err;
}

int split__by_label(const uint8_t *raw, size_t len, const char *key, bool basename,
		    const char *fallback,
		    int (*fn)(void *ctx, const char *service, const uint8_t *gz, size_t gzlen),
		    void *ctx)
{
	Profile *p = perftools__profiles__profile__unpack(NULL, len, raw);
	struct hashmap *done = NULL;
	int64_t keyidx = -1;
	const char *svc;
	int err = 0;

	if (!p)
		return -EINVAL;
	for (size_t i = 1; i < p->n_string_table; i++)
		if (strcmp(p->string_table[i], key) == 0)
			keyidx = (int64_t)i;
	done = hashmap__new(hashmap__str_hash, hashmap__str_equal, NULL);
	if (!done) {
		err = -ENOMEM;
		goto cleanup;
	}
	/* One part per distinct service, in the order samples first name them. */
	for (size_t i = 0; i < p->n_sample && !err; i++) {
		svc = sample_service(p, p->sample[i], keyidx, basename, fallback);
		if (hashmap__find(done, svc, NULL))
			continue;
		err = hashmap__insert(done, svc, NULL);
		if (!err)
			err = emit_part(p, p->sample, p->n_sample, svc, keyidx, basename, fallback,
					fn, ctx);
	}
cleanup:
	hashmap__free(done);
	perftools__profiles__profile__free_unpacked(p, NULL);
	return err;
}
