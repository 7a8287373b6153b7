#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/flamegraph.h"
#include "profile.pb-c.h"
#include "util/hashmap.h"
#include "util/strbuf.h"

/* The page (user/http/flamegraph.html) is linked in as it is, NUL-terminated; the profile's data
 * goes where the page says DATA_MARK. */
__asm__(".pushsection .rodata\n"
	".global cprof_flamegraph_html\n"
	".hidden cprof_flamegraph_html\n"
	"cprof_flamegraph_html:\n"
	".incbin \"user/http/flamegraph.html\"\n"
	".byte 0\n"
	".popsection\n");
extern const char cprof_flamegraph_html[];

#define DATA_MARK "__CPROF_DATA__"

typedef Perftools__Profiles__Profile Profile;
typedef Perftools__Profiles__Location Location;

struct fg {
	const Profile *p;
	struct strbuf *out;
	struct hashmap *locs, *funcs, *maps; /* id -> message */
	struct hashmap *frames;		     /* (function id, mapping id) -> frame index + 1 */
	struct hashmap *procs;		     /* "comm (pid)" -> index + 1 */
	char **proc_names;
	size_t nframes, nprocs;
	struct strbuf names; /* the frames table, as JSON */
};

static const char *str(const Profile *p, int64_t i)
{
	return i >= 0 && (size_t)i < p->n_string_table ? p->string_table[i] : "";
}

static void *key(uint64_t id)
{
	return (void *)(uintptr_t)id;
}

static int index_ids(struct fg *g)
{
	const Profile *p = g->p;

	g->locs = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	g->funcs = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	g->maps = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	g->frames = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	g->procs = hashmap__new(hashmap__str_hash, hashmap__str_equal, NULL);
	if (!g->locs || !g->funcs || !g->maps || !g->frames || !g->procs)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_location; i++)
		if (hashmap__insert(g->locs, key(p->location[i]->id), p->location[i]))
			return -ENOMEM;
	for (size_t i = 0; i < p->n_function; i++)
		if (hashmap__insert(g->funcs, key(p->function[i]->id), p->function[i]))
			return -ENOMEM;
	for (size_t i = 0; i < p->n_mapping; i++)
		if (hashmap__insert(g->maps, key(p->mapping[i]->id), p->mapping[i]))
			return -ENOMEM;
	return 0;
}

/* The index of the frame (function, mapping) in the names table, adding it if new. */
static long frame_index(struct fg *g, uint64_t function_id, uint64_t mapping_id, uint64_t addr)
{
	Perftools__Profiles__Function *f = NULL;
	Perftools__Profiles__Mapping *m = NULL;
	const char *name, *file, *base;
	char stub[32];
	uint64_t k = (function_id << 20) ^ mapping_id ^ (function_id ? 0 : addr << 1) ^ 1;
	void *v;

	if (hashmap__find(g->frames, key(k), &v))
		return (long)(uintptr_t)v - 1;
	hashmap__find(g->funcs, key(function_id), (void **)&f);
	hashmap__find(g->maps, key(mapping_id), (void **)&m);
	name = f ? str(g->p, f->name) : "";
	if (!*name) {
		snprintf(stub, sizeof(stub), "0x%llx", (unsigned long long)addr);
		name = stub;
	}
	file = m ? str(g->p, m->filename) : "";
	base = strrchr(file, '/');
	base = base ? base + 1 : file;
	strbuf__puts(&g->names, g->nframes ? ",[" : "[");
	strbuf__json(&g->names, name);
	strbuf__puts(&g->names, ",");
	strbuf__json(&g->names, base);
	strbuf__printf(&g->names, ",%d]", strcmp(file, "[kernel.kallsyms]") == 0);
	if (hashmap__insert(g->frames, key(k), (void *)(uintptr_t)(g->nframes + 1)))
		return -1;
	return (long)g->nframes++;
}

/* The process a sample belongs to, from its pid and comm labels; -1 when it has none. */
static long proc_index(struct fg *g, const Perftools__Profiles__Sample *s)
{
	const char *comm = NULL;
	int64_t pid = -1;
	char *name, **names;
	void *v;

	for (size_t i = 0; i < s->n_label; i++) {
		const char *k = str(g->p, s->label[i]->key);

		if (strcmp(k, "pid") == 0)
			pid = s->label[i]->num;
		else if (strcmp(k, "comm") == 0)
			comm = str(g->p, s->label[i]->str);
	}
	if (pid < 0)
		return -1;
	if (asprintf(&name, "%s (%lld)", comm ? comm : "?", (long long)pid) < 0)
		return -1;
	if (hashmap__find(g->procs, name, &v)) {
		free(name);
		return (long)(uintptr_t)v - 1;
	}
	names = realloc(g->proc_names, (g->nprocs + 1) * sizeof(*names));
	if (!names || hashmap__insert(g->procs, name, (void *)(uintptr_t)(g->nprocs + 1))) {
		if (names)
			g->proc_names = names;
		free(name);
		return -1;
	}
	g->proc_names = names;
	g->proc_names[g->nprocs] = name;
	return (long)g->nprocs++;
}

/* One sample: [process, [values], [frames root first]]. */
static void add_sample(struct fg *g, const Perftools__Profiles__Sample *s, bool first)
{
	struct strbuf *o = g->out;
	bool any = false;

	strbuf__printf(o, "%s[%ld,[", first ? "" : ",\n", proc_index(g, s));
	for (size_t i = 0; i < s->n_value; i++)
		strbuf__printf(o, "%s%lld", i ? "," : "", (long long)s->value[i]);
	strbuf__puts(o, "],[");
	/* location_id is leaf first, and a location's lines are innermost first: walk both
	 * backwards for root first. */
	for (size_t i = s->n_location_id; i-- > 0;) {
		Location *l = NULL;

		if (!hashmap__find(g->locs, key(s->location_id[i]), (void **)&l))
			continue;
		if (!l->n_line) {
			strbuf__printf(o, "%s%ld", any ? "," : "",
				       frame_index(g, 0, l->mapping_id, l->address));
			any = true;
		}
		for (size_t j = l->n_line; j-- > 0;) {
			strbuf__printf(
				o, "%s%ld", any ? "," : "",
				frame_index(g, l->line[j]->function_id, l->mapping_id, l->address));
			any = true;
		}
	}
	strbuf__puts(o, "]]");
}

static void add_data(struct fg *g, const struct flamegraph_info *info)
{
	const Profile *p = g->p;
	struct strbuf *o = g->out;
	const char *def = str(p, p->default_sample_type);
	size_t def_idx = p->n_sample_type ? p->n_sample_type - 1 : 0;

	strbuf__puts(o, "{\"title\":");
	strbuf__json(o, info->title ? info->title : "profile");
	strbuf__puts(o, ",\"profile\":");
	strbuf__json(o, info->profile_url ? info->profile_url : "");
	strbuf__printf(o, ",\"duration\":%lld,\"time\":%lld,\"comments\":[",
		       (long long)p->duration_nanos, (long long)p->time_nanos);
	for (size_t i = 0; i < p->n_comment; i++) {
		if (i)
			strbuf__puts(o, ",");
		strbuf__json(o, str(p, p->comment[i]));
	}
	strbuf__puts(o, "],\"types\":[");
	for (size_t i = 0; i < p->n_sample_type; i++) {
		strbuf__puts(o, i ? ",[" : "[");
		strbuf__json(o, str(p, p->sample_type[i]->type));
		strbuf__puts(o, ",");
		strbuf__json(o, str(p, p->sample_type[i]->unit));
		strbuf__puts(o, "]");
		if (*def && strcmp(def, str(p, p->sample_type[i]->type)) == 0)
			def_idx = i;
	}
	strbuf__printf(o, "],\"default\":%zu,\"samples\":[\n", def_idx);
	for (size_t i = 0; i < p->n_sample; i++)
		add_sample(g, p->sample[i], i == 0);
	strbuf__puts(o, "],\n\"names\":[");
	strbuf__add(o, g->names.s ? g->names.s : "", g->names.len);
	strbuf__puts(o, "],\n\"procs\":[");
	for (size_t i = 0; i < g->nprocs; i++) {
		if (i)
			strbuf__puts(o, ",");
		strbuf__json(o, g->proc_names[i]);
	}
	strbuf__puts(o, "]}");
	if (strbuf__err(&g->names))
		o->oom = true;
}

static void fg_free(struct fg *g)
{
	hashmap__free(g->locs);
	hashmap__free(g->funcs);
	hashmap__free(g->maps);
	hashmap__free(g->frames);
	hashmap__free(g->procs);
	for (size_t i = 0; i < g->nprocs; i++)
		free(g->proc_names[i]);
	free(g->proc_names);
	strbuf__free(&g->names);
}

int flamegraph__render(const uint8_t *pb, size_t len, const struct flamegraph_info *info,
		       char **html, size_t *html_len)
{
	const char *page = cprof_flamegraph_html, *mark = strstr(page, DATA_MARK);
	struct strbuf out = {};
	struct fg g = {.out = &out};
	Profile *p;
	int err;

	if (!mark)
		return -EINVAL;
	p = perftools__profiles__profile__unpack(NULL, len, pb);
	if (!p)
		return -EINVAL;
	g.p = p;
	err = index_ids(&g);
	if (!err) {
		strbuf__add(&out, page, mark - page);
		add_data(&g, info);
		strbuf__puts(&out, mark + strlen(DATA_MARK));
		err = strbuf__err(&out);
	}
	fg_free(&g);
	perftools__profiles__profile__free_unpacked(p, NULL);
	if (err) {
		strbuf__free(&out);
		return err;
	}
	*html = strbuf__take(&out, html_len);
	return 0;
}
