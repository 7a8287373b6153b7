/* profile.proto serialization. The interned tables map one to one onto the messages: the
 * message structs are filled in arrays allocated for the call and point into the builder's own
 * arrays (strings, location ids, values), so nothing is copied twice. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "profile.pb-c.h"
#include "pprof/internal.h"

/* Every message array of one encode call, freed together. */
struct pp_msgs {
	Perftools__Profiles__ValueType types[PPROF_MAX_VALUES], period_type;
	Perftools__Profiles__ValueType *type_ptrs[PPROF_MAX_VALUES];
	Perftools__Profiles__Sample *samples, **sample_ptrs;
	Perftools__Profiles__Label *labels, **label_ptrs;
	Perftools__Profiles__Mapping *mappings, **mapping_ptrs;
	Perftools__Profiles__Location *locations, **location_ptrs;
	Perftools__Profiles__Line *lines, **line_ptrs;
	Perftools__Profiles__Function *functions, **function_ptrs;
};

static void pp_msgs__free(struct pp_msgs *m)
{
	free(m->samples);
	free(m->sample_ptrs);
	free(m->labels);
	free(m->label_ptrs);
	free(m->mappings);
	free(m->mapping_ptrs);
	free(m->locations);
	free(m->location_ptrs);
	free(m->lines);
	free(m->line_ptrs);
	free(m->functions);
	free(m->function_ptrs);
}

/* calloc of n (at least one, so an empty table is not mistaken for a failure) elements. */
static int pp_msgs__alloc(void **msgs, void **ptrs, size_t n, size_t elem)
{
	*msgs = calloc(n ? n : 1, elem);
	*ptrs = calloc(n ? n : 1, sizeof(void *));
	return *msgs && *ptrs ? 0 : -ENOMEM;
}

static void encode__samples(const struct pprof_builder *b, struct pp_msgs *m,
			    Perftools__Profiles__Profile *p)
{
	size_t i, nl = 0;
	int j;

	for (i = 0; i < b->nsamples; i++) {
		const struct pp_sample *s = b->samples[i];
		Perftools__Profiles__Sample *out = &m->samples[i];

		perftools__profiles__sample__init(out);
		out->n_location_id = s->nlocs;
		out->location_id = s->location_ids;
		out->n_value = b->cfg.nvalues;
		out->value = (int64_t *)s->values;
		out->n_label = s->nlabels;
		out->label = &m->label_ptrs[nl];
		for (j = 0; j < s->nlabels; j++, nl++) {
			Perftools__Profiles__Label *l = &m->labels[nl];

			perftools__profiles__label__init(l);
			l->key = s->labels[j].key;
			l->str = s->labels[j].str;
			l->num = s->labels[j].num;
			l->num_unit = s->labels[j].num_unit;
			m->label_ptrs[nl] = l;
		}
		m->sample_ptrs[i] = out;
	}
	p->n_sample = b->nsamples;
	p->sample = m->sample_ptrs;
}

static void encode__mappings(const struct pprof_builder *b, struct pp_msgs *m,
			     Perftools__Profiles__Profile *p)
{
	size_t i;

	for (i = 0; i < b->nmappings; i++) {
		const struct pp_mapping *pm = b->mappings[i];
		Perftools__Profiles__Mapping *out = &m->mappings[i];

		perftools__profiles__mapping__init(out);
		out->id = pm->id;
		out->memory_start = pm->m->start;
		out->memory_limit = pm->m->limit;
		out->file_offset = pm->m->offset;
		out->filename = pm->filename;
		out->build_id = pm->build_id;
		out->has_functions = pm->m->has_functions;
		out->has_filenames = pm->m->has_filenames;
		out->has_line_numbers = pm->m->has_line_numbers;
		out->has_inline_frames = pm->m->has_inline_frames;
		m->mapping_ptrs[i] = out;
	}
	p->n_mapping = b->nmappings;
	p->mapping = m->mapping_ptrs;
}

static void encode__locations(const struct pprof_builder *b, struct pp_msgs *m,
			      Perftools__Profiles__Profile *p)
{
	size_t i, nl = 0;
	int j;

	for (i = 0; i < b->nlocations; i++) {
		const struct pp_location *loc = b->locations[i];
		Perftools__Profiles__Location *out = &m->locations[i];

		perftools__profiles__location__init(out);
		out->id = loc->id;
		out->mapping_id = loc->mapping_id;
		out->address = loc->address;
		out->n_line = loc->nlines;
		out->line = &m->line_ptrs[nl];
		for (j = 0; j < loc->nlines; j++, nl++) {
			Perftools__Profiles__Line *l = &m->lines[nl];

			perftools__profiles__line__init(l);
			l->function_id = loc->lines[j].function_id;
			l->line = loc->lines[j].line;
			m->line_ptrs[nl] = l;
		}
		m->location_ptrs[i] = out;
	}
	p->n_location = b->nlocations;
	p->location = m->location_ptrs;
}

static void encode__functions(const struct pprof_builder *b, struct pp_msgs *m,
			      Perftools__Profiles__Profile *p)
{
	size_t i;

	for (i = 0; i < b->nfunctions; i++) {
		const struct pp_function *f = b->functions[i];
		Perftools__Profiles__Function *out = &m->functions[i];

		perftools__profiles__function__init(out);
		out->id = f->id;
		out->name = f->name;
		out->system_name = f->system_name;
		out->filename = f->filename;
		out->start_line = f->start_line;
		m->function_ptrs[i] = out;
	}
	p->n_function = b->nfunctions;
	p->function = m->function_ptrs;
}

static int encode__alloc(const struct pprof_builder *b, struct pp_msgs *m)
{
	size_t i, nlabels = 0, nlines = 0;
	int err = 0;

	for (i = 0; i < b->nsamples; i++)
		nlabels += b->samples[i]->nlabels;
	for (i = 0; i < b->nlocations; i++)
		nlines += b->locations[i]->nlines;
	err |= pp_msgs__alloc((void **)&m->samples, (void **)&m->sample_ptrs, b->nsamples,
			      sizeof(*m->samples));
	err |= pp_msgs__alloc((void **)&m->labels, (void **)&m->label_ptrs, nlabels,
			      sizeof(*m->labels));
	err |= pp_msgs__alloc((void **)&m->mappings, (void **)&m->mapping_ptrs, b->nmappings,
			      sizeof(*m->mappings));
	err |= pp_msgs__alloc((void **)&m->locations, (void **)&m->location_ptrs, b->nlocations,
			      sizeof(*m->locations));
	err |= pp_msgs__alloc((void **)&m->lines, (void **)&m->line_ptrs, nlines,
			      sizeof(*m->lines));
	err |= pp_msgs__alloc((void **)&m->functions, (void **)&m->function_ptrs, b->nfunctions,
			      sizeof(*m->functions));
	return err ? -ENOMEM : 0;
}

/* Fills p from b. The messages live in m until pp_msgs__free(). */
static int encode__profile(const struct pprof_builder *b, struct pp_msgs *m,
			   Perftools__Profiles__Profile *p)
{
	int err, i;

	err = encode__alloc(b, m);
	if (err)
		return err;
	for (i = 0; i < b->cfg.nvalues; i++) {
		perftools__profiles__value_type__init(&m->types[i]);
		m->types[i].type = b->sample_type[i];
		m->types[i].unit = b->sample_unit[i];
		m->type_ptrs[i] = &m->types[i];
	}
	perftools__profiles__value_type__init(&m->period_type);
	m->period_type.type = b->period_type;
	m->period_type.unit = b->period_unit;

	p->n_sample_type = b->cfg.nvalues;
	p->sample_type = m->type_ptrs;
	encode__samples(b, m, p);
	encode__mappings(b, m, p);
	encode__locations(b, m, p);
	encode__functions(b, m, p);
	p->n_string_table = b->nstrings;
	p->string_table = b->strings;
	p->time_nanos = b->cfg.time_nanos;
	p->duration_nanos = b->cfg.duration_nanos;
	p->period_type = &m->period_type;
	p->period = b->cfg.period;
	p->n_comment = b->ncomments;
	p->comment = b->comments;
	if (b->has_default_type)
		p->default_sample_type = b->sample_type[b->default_index];
	return 0;
}

/* gzip (not raw deflate or zlib framing): windowBits 15 + 16 makes zlib write the gzip header
 * and trailer, which is what pprof looks for. */
int pprof__gzip(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len)
{
	z_stream zs = {};
	uint8_t *buf = NULL;
	size_t cap;
	int err;

	if (len > UINT_MAX)
		return -EFBIG;
	if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		return -ENOMEM;
	cap = deflateBound(&zs, len);
	buf = malloc(cap);
	if (!buf) {
		err = -ENOMEM;
		goto cleanup;
	}
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)len;
	zs.next_out = buf;
	zs.avail_out = (uInt)cap;
	if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
		err = -EIO;
		goto cleanup;
	}
	*out = buf;
	*out_len = zs.total_out;
	buf = NULL;
	err = 0;
cleanup:
	deflateEnd(&zs);
	free(buf);
	return err;
}

int pprof_builder__encode(struct pprof_builder *b, bool gzip, uint8_t **buf, size_t *len)
{
	Perftools__Profiles__Profile p = PERFTOOLS__PROFILES__PROFILE__INIT;
	struct pp_msgs m = {};
	uint8_t *raw = NULL;
	size_t raw_len;
	int err;

	err = pprof_builder__resolve(b);
	if (!err)
		err = encode__profile(b, &m, &p);
	if (err)
		goto cleanup;
	raw_len = perftools__profiles__profile__get_packed_size(&p);
	raw = malloc(raw_len ? raw_len : 1);
	if (!raw) {
		err = -ENOMEM;
		goto cleanup;
	}
	if (perftools__profiles__profile__pack(&p, raw) != raw_len) {
		err = -EIO;
		goto cleanup;
	}
	if (gzip) {
		err = pprof__gzip(raw, raw_len, buf, len);
		goto cleanup;
	}
	*buf = raw;
	*len = raw_len;
	raw = NULL;
cleanup:
	free(raw);
	pp_msgs__free(&m);
	return err;
}

int pprof_builder__write_pprof(struct pprof_builder *b, FILE *f)
{
	uint8_t *buf = NULL;
	size_t len;
	int err;

	err = pprof_builder__encode(b, true, &buf, &len);
	if (err)
		return err;
	errno = 0;
	if (fwrite(buf, 1, len, f) != len || fflush(f))
		err = errno ? -errno : -EIO;
	free(buf);
	return err;
}
