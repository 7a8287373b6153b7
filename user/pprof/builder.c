/* Sample collection and interning: strings, mappings, functions and locations each get a table
 * with an id per distinct key, so that the resolver runs once per unique address and the
 * encoders only walk arrays. Encoding lives in encode.c, the text formats in text.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "pprof/internal.h"

/* Hash and equality callbacks. Each table is keyed by its own record type: a lookup fills a
 * record on the stack with the key fields only. */

static uint64_t ptr_hash(const void *key, void *ctx)
{
	(void)ctx;
	return hashmap__hash_u64(HASHMAP_HASH_INIT, (uintptr_t)key);
}

static bool ptr_equal(const void *a, const void *b, void *ctx)
{
	(void)ctx;
	return a == b;
}

static uint64_t function_hash(const void *key, void *ctx)
{
	const struct pp_function *f = key;
	uint64_t h = HASHMAP_HASH_INIT;

	(void)ctx;
	h = hashmap__hash_u64(h, f->name);
	h = hashmap__hash_u64(h, f->system_name);
	h = hashmap__hash_u64(h, f->filename);
	return hashmap__hash_u64(h, f->start_line);
}

static bool function_equal(const void *a, const void *b, void *ctx)
{
	const struct pp_function *x = a, *y = b;

	(void)ctx;
	return x->name == y->name && x->system_name == y->system_name &&
	       x->filename == y->filename && x->start_line == y->start_line;
}

static uint64_t location_hash(const void *key, void *ctx)
{
	const struct pp_location *l = key;
	uint64_t h = HASHMAP_HASH_INIT;

	(void)ctx;
	h = hashmap__hash_u64(h, l->raw_addr);
	h = hashmap__hash_u64(h, l->pid);
	return hashmap__hash_u64(h, (uint64_t)l->kernel << 1 | l->is_return);
}

static bool location_equal(const void *a, const void *b, void *ctx)
{
	const struct pp_location *x = a, *y = b;

	(void)ctx;
	return x->raw_addr == y->raw_addr && x->pid == y->pid && x->kernel == y->kernel &&
	       x->is_return == y->is_return;
}

static uint64_t sample_hash(const void *key, void *ctx)
{
	const struct pp_sample *s = key;
	uint64_t h = HASHMAP_HASH_INIT;

	(void)ctx;
	h = hashmap__hash_bytes(h, s->location_ids, s->nlocs * sizeof(s->location_ids[0]));
	h = hashmap__hash_u64(h, s->nlocs);
	return hashmap__hash_bytes(h, s->labels, s->nlabels * sizeof(s->labels[0]));
}

static bool sample_equal(const void *a, const void *b, void *ctx)
{
	const struct pp_sample *x = a, *y = b;

	(void)ctx;
	if (x->nlocs != y->nlocs || x->nlabels != y->nlabels)
		return false;
	if (x->nlocs &&
	    memcmp(x->location_ids, y->location_ids, x->nlocs * sizeof(x->location_ids[0])))
		return false;
	return memcmp(x->labels, y->labels, x->nlabels * sizeof(x->labels[0])) == 0;
}

/* Interns s (NULL reads as "") and stores its string table index in *idx. */
static int builder__intern(struct pprof_builder *b, const char *s, int64_t *idx)
{
	void *val;
	char *copy;
	int err;

	if (!s)
		s = "";
	if (hashmap__find(b->string_idx, s, &val)) {
		*idx = (int64_t)(uintptr_t)val;
		return 0;
	}
	err = array__reserve((void **)&b->strings, &b->strings_cap, b->nstrings + 1,
			     sizeof(*b->strings));
	if (err)
		return err;
	copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	err = hashmap__insert(b->string_idx, copy, (void *)(uintptr_t)b->nstrings);
	if (err) {
		free(copy);
		return err;
	}
	b->strings[b->nstrings] = copy;
	*idx = (int64_t)b->nstrings++;
	return 0;
}

static int builder__mapping(struct pprof_builder *b, const struct sym_mapping *sm, uint64_t *id)
{
	struct pp_mapping *m = NULL;
	void *val;
	int err;

	*id = 0;
	if (!sm)
		return 0;
	if (hashmap__find(b->mapping_idx, sm, &val)) {
		*id = ((struct pp_mapping *)val)->id;
		return 0;
	}
	err = array__reserve((void **)&b->mappings, &b->mappings_cap, b->nmappings + 1,
			     sizeof(*b->mappings));
	if (err)
		return err;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->m = sm;
	m->id = b->nmappings + 1;
	err = builder__intern(b, sm->path, &m->filename);
	if (err)
		goto cleanup;
	err = builder__intern(b, sm->build_id, &m->build_id);
	if (err)
		goto cleanup;
	err = hashmap__insert(b->mapping_idx, sm, m);
	if (err)
		goto cleanup;
	b->mappings[b->nmappings++] = m;
	*id = m->id;
	return 0;
cleanup:
	free(m);
	return err;
}

static int builder__function(struct pprof_builder *b, const struct sym_frame *fr, uint64_t *id)
{
	struct pp_function key = {}, *f;
	void *val;
	int err;

	err = builder__intern(b, fr->function, &key.name);
	if (err)
		return err;
	err = builder__intern(b, fr->system_name ? fr->system_name : fr->function,
			      &key.system_name);
	if (err)
		return err;
	err = builder__intern(b, fr->file, &key.filename);
	if (err)
		return err;
	key.start_line = fr->start_line;
	if (hashmap__find(b->function_idx, &key, &val)) {
		*id = ((struct pp_function *)val)->id;
		return 0;
	}
	err = array__reserve((void **)&b->functions, &b->functions_cap, b->nfunctions + 1,
			     sizeof(*b->functions));
	if (err)
		return err;
	f = malloc(sizeof(*f));
	if (!f)
		return -ENOMEM;
	*f = key;
	f->id = b->nfunctions + 1;
	err = hashmap__insert(b->function_idx, f, f);
	if (err) {
		free(f);
		return err;
	}
	b->functions[b->nfunctions++] = f;
	*id = f->id;
	return 0;
}

/* Asks the resolver about key's address. Falls back to one stub frame named by the address
 * (in stub, which must outlive res) when there is no resolver or it failed for any reason but
 * memory. */
static int builder__resolve(struct pprof_builder *b, const struct pp_location *key,
			    struct sym_result *res, char *stub, size_t stub_len)
{
	const struct pprof_resolver *r = &b->resolver;
	int err = -ENOENT;

	memset(res, 0, sizeof(*res));
	if (key->kernel && r->kernel)
		err = r->kernel(r->ctx, key->raw_addr, key->is_return, res);
	else if (!key->kernel && r->user)
		err = r->user(r->ctx, (pid_t)key->pid, key->raw_addr, key->is_return, res);
	if (err == -ENOMEM)
		return err;
	if (!err && res->nframes >= 1) {
		if (res->nframes > SYM_MAX_INLINE)
			res->nframes = SYM_MAX_INLINE;
		return 0;
	}
	memset(res, 0, sizeof(*res));
	snprintf(stub, stub_len, "0x%" PRIx64, key->raw_addr);
	res->nframes = 1;
	res->frames[0].function = stub;
	return 0;
}

/* Fills loc's lines and mapping from the resolver. */
static int builder__fill_location(struct pprof_builder *b, struct pp_location *loc)
{
	struct sym_result res;
	char stub[2 + 16 + 1];
	int err, i;

	err = builder__resolve(b, loc, &res, stub, sizeof(stub));
	if (err)
		return err;
	loc->lines = calloc(res.nframes, sizeof(*loc->lines));
	if (!loc->lines)
		return -ENOMEM;
	err = builder__mapping(b, res.mapping, &loc->mapping_id);
	for (i = 0; i < res.nframes && !err; i++) {
		err = builder__function(b, &res.frames[i], &loc->lines[i].function_id);
		loc->lines[i].line = res.frames[i].line;
	}
	if (err) {
		free(loc->lines);
		loc->lines = NULL;
		return err;
	}
	loc->nlines = res.nframes;
	loc->resolved = true;
	return 0;
}

/* A new location, resolved later (pprof_builder__resolve). */
static int builder__new_location(struct pprof_builder *b, const struct pp_location *key,
				 uint64_t *id)
{
	struct pp_location *loc;
	int err;

	err = array__reserve((void **)&b->locations, &b->locations_cap, b->nlocations + 1,
			     sizeof(*b->locations));
	if (err)
		return err;
	loc = calloc(1, sizeof(*loc));
	if (!loc)
		return -ENOMEM;
	*loc = *key;
	/* pprof symbolizes call sites at the address it is given: step back into the call. */
	loc->address = key->is_return && key->raw_addr ? key->raw_addr - 1 : key->raw_addr;
	loc->id = b->nlocations + 1;
	err = hashmap__insert(b->location_idx, loc, loc);
	if (err) {
		free(loc);
		return err;
	}
	b->locations[b->nlocations++] = loc;
	*id = loc->id;
	return 0;
}

/* User addresses by pid and address (so a process's files come one after another), then
 * kernel addresses by address. */
static int location_order(const void *pa, const void *pb)
{
	const struct pp_location *a = *(const struct pp_location *const *)pa;
	const struct pp_location *b = *(const struct pp_location *const *)pb;

	if (a->kernel != b->kernel)
		return a->kernel ? 1 : -1;
	if (a->pid != b->pid)
		return a->pid < b->pid ? -1 : 1;
	if (a->raw_addr != b->raw_addr)
		return a->raw_addr < b->raw_addr ? -1 : 1;
	return (int)a->is_return - (int)b->is_return;
}

/* Hands every pending address to the resolver's prepare hook at once. */
static int builder__prepare(struct pprof_builder *b, struct pp_location **pending, size_t n)
{
	const struct pprof_resolver *r = &b->resolver;
	struct sym_request *reqs;
	size_t i;
	int err;

	if (!r->prepare || !n)
		return 0;
	reqs = calloc(n, sizeof(*reqs));
	if (!reqs)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		reqs[i] = (struct sym_request){.addr = pending[i]->raw_addr,
					       .pid = (pid_t)pending[i]->pid,
					       .kernel = pending[i]->kernel,
					       .is_return = pending[i]->is_return};
	err = r->prepare(r->ctx, reqs, n);
	free(reqs);
	/* Anything but memory only means the calls below resolve on their own. */
	return err == -ENOMEM ? err : 0;
}

int pprof_builder__resolve(struct pprof_builder *b)
{
	struct pp_location **pending;
	size_t n = 0, i;
	int err = 0;

	if (b->nresolved == b->nlocations)
		return 0;
	pending = malloc((b->nlocations - b->nresolved) * sizeof(*pending));
	if (!pending)
		return -ENOMEM;
	for (i = b->nresolved; i < b->nlocations; i++)
		if (!b->locations[i]->resolved)
			pending[n++] = b->locations[i];
	qsort(pending, n, sizeof(*pending), location_order);
	err = builder__prepare(b, pending, n);
	for (i = 0; i < n && !err; i++)
		err = builder__fill_location(b, pending[i]);
	free(pending);
	if (!err)
		b->nresolved = b->nlocations;
	return err;
}

static int builder__location(struct pprof_builder *b, bool kernel, uint32_t pid, uint64_t addr,
			     bool is_return, uint64_t *id)
{
	struct pp_location key = {
		.kernel = kernel,
		.is_return = is_return,
		.pid = kernel ? 0 : pid,
		.raw_addr = addr,
	};
	void *val;

	if (hashmap__find(b->location_idx, &key, &val)) {
		*id = ((struct pp_location *)val)->id;
		return 0;
	}
	return builder__new_location(b, &key, id);
}

static int label_cmp(const void *a, const void *b)
{
	const struct pp_label *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	if (x->str != y->str)
		return x->str < y->str ? -1 : 1;
	if (x->num != y->num)
		return x->num < y->num ? -1 : 1;
	if (x->num_unit != y->num_unit)
		return x->num_unit < y->num_unit ? -1 : 1;
	return 0;
}

static int builder__labels(struct pprof_builder *b, const struct pprof_raw_sample *s,
			   struct pp_sample *key)
{
	int err, i;

	if (s->nlabels < 0 || s->nlabels > PPROF_MAX_LABELS)
		return -EINVAL;
	for (i = 0; i < s->nlabels; i++) {
		const struct pprof_label *l = &s->labels[i];
		struct pp_label *out = &key->labels[i];

		if (!l->key)
			return -EINVAL;
		err = builder__intern(b, l->key, &out->key);
		if (err)
			return err;
		if (l->str) {
			err = builder__intern(b, l->str, &out->str);
		} else {
			out->num = l->num;
			err = builder__intern(b, l->unit, &out->num_unit);
		}
		if (err)
			return err;
	}
	key->nlabels = s->nlabels;
	qsort(key->labels, key->nlabels, sizeof(key->labels[0]), label_cmp);
	return 0;
}

/* Interns every frame of s into b->scratch, leaf first: kernel frames, then user frames. */
static int builder__stack(struct pprof_builder *b, const struct pprof_raw_sample *s)
{
	uint32_t i, n = 0;
	int err;

	err = array__reserve((void **)&b->scratch, &b->scratch_cap, (size_t)s->nkstack + s->nustack,
			     sizeof(*b->scratch));
	if (err)
		return err;
	for (i = 0; s->kstack && i < s->nkstack; i++) {
		bool ret = i > 0 || s->kernel_leaf_is_return;

		err = builder__location(b, true, 0, s->kstack[i], ret, &b->scratch[n++]);
		if (err)
			return err;
	}
	for (i = 0; s->ustack && i < s->nustack; i++) {
		/* Below kernel frames the user leaf is where the syscall or fault returns to. */
		bool ret = i > 0 || n > 0 || s->user_leaf_is_return;

		err = builder__location(b, false, s->pid, s->ustack[i], ret, &b->scratch[n++]);
		if (err)
			return err;
	}
	return (int)n;
}

int pprof_builder__add_sample(struct pprof_builder *b, const struct pprof_raw_sample *s)
{
	struct pp_sample key = {}, *smp = NULL;
	void *val;
	int err, i;

	err = builder__stack(b, s);
	if (err < 0)
		return err;
	key.nlocs = (uint32_t)err;
	key.location_ids = b->scratch;
	err = builder__labels(b, s, &key);
	if (err)
		return err;
	if (hashmap__find(b->sample_idx, &key, &val)) {
		smp = val;
		for (i = 0; i < b->cfg.nvalues; i++)
			smp->values[i] += s->values[i];
		return 0;
	}
	err = array__reserve((void **)&b->samples, &b->samples_cap, b->nsamples + 1,
			     sizeof(*b->samples));
	if (err)
		return err;
	smp = malloc(sizeof(*smp));
	if (!smp)
		return -ENOMEM;
	*smp = key;
	for (i = 0; i < b->cfg.nvalues; i++)
		smp->values[i] = s->values[i];
	smp->location_ids = malloc((key.nlocs ? key.nlocs : 1) * sizeof(*smp->location_ids));
	if (!smp->location_ids) {
		err = -ENOMEM;
		goto cleanup;
	}
	if (key.nlocs) /* a sample whose stacks were all lost has none (and no scratch yet) */
		memcpy(smp->location_ids, key.location_ids, key.nlocs * sizeof(*smp->location_ids));
	err = hashmap__insert(b->sample_idx, smp, smp);
	if (err)
		goto cleanup;
	b->samples[b->nsamples++] = smp;
	return 0;
cleanup:
	free(smp->location_ids);
	free(smp);
	return err;
}

size_t pprof_builder__nsamples(const struct pprof_builder *b)
{
	return b->nsamples;
}

void pprof_builder__set_duration(struct pprof_builder *b, int64_t duration_nanos)
{
	b->cfg.duration_nanos = duration_nanos;
}

int pprof_builder__add_comment(struct pprof_builder *b, const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;
	int64_t idx;
	int err;

	va_start(ap, fmt);
	err = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (err < 0)
		return -ENOMEM;
	err = array__reserve((void **)&b->comments, &b->comments_cap, b->ncomments + 1,
			     sizeof(*b->comments));
	if (err)
		goto cleanup;
	err = builder__intern(b, text, &idx);
	if (err)
		goto cleanup;
	b->comments[b->ncomments++] = idx;
cleanup:
	free(text);
	return err;
}

static int builder__init_types(struct pprof_builder *b, const struct pprof_config *cfg)
{
	int err, i;

	for (i = 0; i < cfg->nvalues; i++) {
		err = builder__intern(b, cfg->sample_types[i].type, &b->sample_type[i]);
		if (err)
			return err;
		err = builder__intern(b, cfg->sample_types[i].unit, &b->sample_unit[i]);
		if (err)
			return err;
	}
	err = builder__intern(b, cfg->period_type.type, &b->period_type);
	if (err)
		return err;
	err = builder__intern(b, cfg->period_type.unit, &b->period_unit);
	if (err)
		return err;
	/* Like pprof, show the last sample type unless told otherwise. */
	b->default_index = cfg->nvalues - 1;
	for (i = 0; cfg->default_sample_type && i < cfg->nvalues; i++) {
		if (cfg->sample_types[i].type &&
		    strcmp(cfg->sample_types[i].type, cfg->default_sample_type) == 0) {
			b->default_index = i;
			break;
		}
	}
	return 0;
}

struct pprof_builder *pprof_builder__new(const struct pprof_config *cfg,
					 const struct pprof_resolver *resolver)
{
	struct pprof_builder *b;
	int64_t empty;
	int err;

	if (!cfg || cfg->nvalues < 1 || cfg->nvalues > PPROF_MAX_VALUES) {
		errno = EINVAL;
		return NULL;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		errno = ENOMEM;
		return NULL;
	}
	b->cfg.nvalues = cfg->nvalues;
	b->cfg.period = cfg->period;
	b->cfg.time_nanos = cfg->time_nanos;
	b->cfg.duration_nanos = cfg->duration_nanos;
	b->has_default_type = cfg->default_sample_type != NULL;
	if (resolver)
		b->resolver = *resolver;
	b->string_idx = hashmap__new(hashmap__str_hash, hashmap__str_equal, NULL);
	b->mapping_idx = hashmap__new(ptr_hash, ptr_equal, NULL);
	b->function_idx = hashmap__new(function_hash, function_equal, NULL);
	b->location_idx = hashmap__new(location_hash, location_equal, NULL);
	b->sample_idx = hashmap__new(sample_hash, sample_equal, NULL);
	if (!b->string_idx || !b->mapping_idx || !b->function_idx || !b->location_idx ||
	    !b->sample_idx) {
		err = -ENOMEM;
		goto cleanup;
	}
	/* The string table starts with "": index 0 is what an unset field reads as. */
	err = builder__intern(b, "", &empty);
	if (err)
		goto cleanup;
	err = builder__init_types(b, cfg);
	if (err)
		goto cleanup;
	return b;
cleanup:
	pprof_builder__free(b);
	errno = -err;
	return NULL;
}

void pprof_builder__free(struct pprof_builder *b)
{
	size_t i;

	if (!b)
		return;
	for (i = 0; i < b->nsamples; i++) {
		free(b->samples[i]->location_ids);
		free(b->samples[i]);
	}
	for (i = 0; i < b->nlocations; i++) {
		free(b->locations[i]->lines);
		free(b->locations[i]);
	}
	for (i = 0; i < b->nfunctions; i++)
		free(b->functions[i]);
	for (i = 0; i < b->nmappings; i++)
		free(b->mappings[i]);
	for (i = 0; i < b->nstrings; i++)
		free(b->strings[i]);
	free(b->samples);
	free(b->locations);
	free(b->functions);
	free(b->mappings);
	free(b->strings);
	free(b->comments);
	free(b->scratch);
	hashmap__free(b->sample_idx);
	hashmap__free(b->location_idx);
	hashmap__free(b->function_idx);
	hashmap__free(b->mapping_idx);
	hashmap__free(b->string_idx);
	free(b);
}
