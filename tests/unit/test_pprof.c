/* Unit tests of the pprof builder: interning, merging and encoding (checked by decoding with
 * protobuf-c), the folded and top text formats, and an end-to-end read by `go tool pprof`. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "profile.pb-c.h"
#include "pprof/builder.h"

#define KBASE 0xffffffff81000000ULL

static const struct sym_mapping app_map = {
	.start = 0x400000,
	.limit = 0x500000,
	.offset = 0x1000,
	.path = "/usr/bin/app",
	.build_id = "deadbeef",
	.has_functions = true,
	.has_filenames = true,
	.has_line_numbers = true,
	.has_inline_frames = true,
};

static const struct sym_mapping kernel_map = {
	.start = KBASE,
	.limit = KBASE + 0x1000000,
	.path = "[kernel.kallsyms]",
	.build_id = "",
	.has_functions = true,
};

/* Counts the resolver calls and remembers every key, to prove each is asked about once. */
struct fake {
	int user_calls, kernel_calls;
	int fail_errno; /* nonzero: every call fails with -fail_errno */
	struct {
		bool kernel, is_return;
		pid_t pid;
		uint64_t addr;
	} seen[64];
	int nseen;
};

static void fake__record(struct fake *fk, bool kernel, pid_t pid, uint64_t addr, bool ret)
{
	int i;

	for (i = 0; i < fk->nseen; i++) {
		assert_false(fk->seen[i].kernel == kernel && fk->seen[i].pid == pid &&
			     fk->seen[i].addr == addr && fk->seen[i].is_return == ret);
	}
	assert_true(fk->nseen < 64);
	fk->seen[fk->nseen].kernel = kernel;
	fk->seen[fk->nseen].pid = pid;
	fk->seen[fk->nseen].addr = addr;
	fk->seen[fk->nseen].is_return = ret;
	fk->nseen++;
}

static void frame(struct sym_result *res, const char *fn, int64_t line, int64_t start)
{
	struct sym_frame *f = &res->frames[res->nframes++];

	f->function = fn;
	f->system_name = fn;
	f->file = "app.c";
	f->line = line;
	f->start_line = start;
}

static int fake_user(void *ctx, pid_t pid, uint64_t addr, bool is_return, struct sym_result *res)
{
	struct fake *fk = ctx;

	fk->user_calls++;
	fake__record(fk, false, pid, addr, is_return);
	if (fk->fail_errno)
		return -fk->fail_errno;
	res->mapping = &app_map;
	res->nframes = 0;
	switch (addr) {
	case 0x401000:
		frame(res, "leaf", 10, 5);
		break;
	case 0x402000:
		/* innermost first: inlined_helper was inlined into caller */
		frame(res, "inlined_helper", 30, 28);
		frame(res, "caller", 42, 40);
		break;
	case 0x403000:
		frame(res, "main", 60, 55);
		break;
	case 0x405000:
	case 0x405100:
	case 0x405200:
		frame(res, "rec", 70 + (addr & 0xf00) / 0x100, 70);
		break;
	case 0x406000:
		frame(res, "odd;name\nwith breaks", 1, 1);
		break;
	default:
		frame(res, "unknown", 0, 0);
		break;
	}
	return 0;
}

static int fake_kernel(void *ctx, uint64_t addr, bool is_return, struct sym_result *res)
{
	struct fake *fk = ctx;

	fk->kernel_calls++;
	fake__record(fk, true, 0, addr, is_return);
	if (fk->fail_errno)
		return -fk->fail_errno;
	res->mapping = &kernel_map;
	res->nframes = 1;
	res->frames[0].function = addr == KBASE + 0x100 ? "do_syscall_64" : "entry_SYSCALL_64";
	res->frames[0].system_name = res->frames[0].function;
	return 0;
}

static const struct pprof_config cpu_cfg = {
	.nvalues = 2,
	.sample_types = {{"samples", "count"}, {"cpu", "nanoseconds"}},
	.period_type = {"cpu", "nanoseconds"},
	.period = 10000000,
	.time_nanos = 1700000000000000000LL,
	.duration_nanos = 1,
	.default_sample_type = "cpu",
};

static const uint64_t ustack3[] = {0x401000, 0x402000, 0x403000};
static const uint64_t ustack2[] = {0x402000, 0x403000};
static const uint64_t kstack2[] = {KBASE + 0x100, KBASE + 0x200};

static struct pprof_raw_sample user_sample(uint32_t pid, const char *thread)
{
	struct pprof_raw_sample s = {
		.pid = pid,
		.ustack = ustack3,
		.nustack = 3,
		.values = {1, 10000000},
	};

	if (thread) {
		s.labels[0] = (struct pprof_label){.key = "thread", .str = thread};
		s.labels[1] = (struct pprof_label){.key = "bytes", .num = 4096, .unit = "bytes"};
		s.nlabels = 2;
	}
	return s;
}

static struct pprof_raw_sample syscall_sample(void)
{
	struct pprof_raw_sample s = {
		.pid = 100,
		.kstack = kstack2,
		.nkstack = 2,
		.ustack = ustack2,
		.nustack = 2,
		.values = {1, 5000000},
	};

	return s;
}

/* The standard profile: one sample twice (merged), the same stack with another label, the same
 * stack in another process, and a syscall stack. */
static struct pprof_builder *build_std(struct fake *fk)
{
	struct pprof_resolver r = {.user = fake_user, .kernel = fake_kernel, .ctx = fk};
	struct pprof_builder *b = pprof_builder__new(&cpu_cfg, &r);
	struct pprof_raw_sample s;

	assert_non_null(b);
	s = user_sample(100, "worker");
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	/* Same labels in another order: still the same sample. */
	s.labels[0] = (struct pprof_label){.key = "bytes", .num = 4096, .unit = "bytes"};
	s.labels[1] = (struct pprof_label){.key = "thread", .str = "worker"};
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	s = user_sample(100, "other");
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	s = user_sample(200, NULL);
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	s = syscall_sample();
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	/* Nothing is resolved until every sample is in. */
	assert_int_equal(fk->user_calls + fk->kernel_calls, 0);
	assert_int_equal(pprof_builder__resolve(b), 0);
	return b;
}

static uint8_t *gunzip(const uint8_t *in, size_t len, size_t *out_len)
{
	z_stream zs = {};
	size_t cap = 4096;
	uint8_t *out = malloc(cap);
	int ret;

	assert_non_null(out);
	assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
	zs.next_in = (Bytef *)in;
	zs.avail_in = len;
	do {
		if (zs.total_out == cap) {
			cap *= 2;
			out = realloc(out, cap);
			assert_non_null(out);
		}
		zs.next_out = out + zs.total_out;
		zs.avail_out = cap - zs.total_out;
		ret = inflate(&zs, Z_NO_FLUSH);
		assert_true(ret == Z_OK || ret == Z_STREAM_END);
	} while (ret != Z_STREAM_END);
	*out_len = zs.total_out;
	inflateEnd(&zs);
	return out;
}

static Perftools__Profiles__Profile *decode(struct pprof_builder *b)
{
	Perftools__Profiles__Profile *p;
	uint8_t *gz, *raw;
	size_t gz_len, raw_len;

	assert_int_equal(pprof_builder__encode(b, true, &gz, &gz_len), 0);
	assert_true(gz_len > 18);
	/* A real gzip member: magic and deflate method. */
	assert_int_equal(gz[0], 0x1f);
	assert_int_equal(gz[1], 0x8b);
	assert_int_equal(gz[2], 8);
	raw = gunzip(gz, gz_len, &raw_len);
	p = perftools__profiles__profile__unpack(NULL, raw_len, raw);
	assert_non_null(p);
	free(gz);
	free(raw);
	return p;
}

static const char *S(const Perftools__Profiles__Profile *p, int64_t idx)
{
	assert_true(idx >= 0 && (size_t)idx < p->n_string_table);
	return p->string_table[idx];
}

static const Perftools__Profiles__Location *loc_by_id(const Perftools__Profiles__Profile *p,
						      uint64_t id)
{
	size_t i;

	for (i = 0; i < p->n_location; i++) {
		if (p->location[i]->id == id)
			return p->location[i];
	}
	fail_msg("no location %" PRIu64, id);
	return NULL;
}

static const char *fn_name(const Perftools__Profiles__Profile *p, uint64_t id)
{
	size_t i;

	for (i = 0; i < p->n_function; i++) {
		if (p->function[i]->id == id)
			return S(p, p->function[i]->name);
	}
	fail_msg("no function %" PRIu64, id);
	return NULL;
}

/* The location of the given sample-relative frame, checked against its address. */
static const Perftools__Profiles__Location *sample_loc(const Perftools__Profiles__Profile *p,
						       const Perftools__Profiles__Sample *s,
						       size_t i, uint64_t address)
{
	const Perftools__Profiles__Location *l;

	assert_true(i < s->n_location_id);
	l = loc_by_id(p, s->location_id[i]);
	assert_int_equal(l->address, address);
	return l;
}

static const char *label_str(const Perftools__Profiles__Profile *p,
			     const Perftools__Profiles__Sample *s, const char *key)
{
	size_t i;

	for (i = 0; i < s->n_label; i++) {
		if (strcmp(S(p, s->label[i]->key), key) == 0)
			return S(p, s->label[i]->str);
	}
	return NULL;
}

static void test_profile_fields(void **state)
{
	struct fake fk = {};
	struct pprof_builder *b = build_std(&fk);
	Perftools__Profiles__Profile *p;
	const Perftools__Profiles__Mapping *m;

	(void)state;
	pprof_builder__set_duration(b, 2000000000);
	assert_int_equal(pprof_builder__add_comment(b, "cprof-bpf %s", "test"), 0);
	assert_int_equal(pprof_builder__add_comment(b, "pids: %d", 2), 0);
	p = decode(b);

	assert_true(p->n_string_table > 0);
	assert_string_equal(p->string_table[0], "");
	assert_int_equal(p->n_sample_type, 2);
	assert_string_equal(S(p, p->sample_type[0]->type), "samples");
	assert_string_equal(S(p, p->sample_type[0]->unit), "count");
	assert_string_equal(S(p, p->sample_type[1]->type), "cpu");
	assert_string_equal(S(p, p->sample_type[1]->unit), "nanoseconds");
	assert_non_null(p->period_type);
	assert_string_equal(S(p, p->period_type->type), "cpu");
	assert_string_equal(S(p, p->period_type->unit), "nanoseconds");
	assert_int_equal(p->period, 10000000);
	assert_int_equal(p->time_nanos, 1700000000000000000LL);
	assert_int_equal(p->duration_nanos, 2000000000);
	assert_string_equal(S(p, p->default_sample_type), "cpu");
	assert_int_equal(p->n_comment, 2);
	assert_string_equal(S(p, p->comment[0]), "cprof-bpf test");
	assert_string_equal(S(p, p->comment[1]), "pids: 2");

	/* The user mapping is met first; ids start at 1. */
	assert_int_equal(p->n_mapping, 2);
	m = p->mapping[0];
	assert_int_equal(m->id, 1);
	assert_int_equal(m->memory_start, 0x400000);
	assert_int_equal(m->memory_limit, 0x500000);
	assert_int_equal(m->file_offset, 0x1000);
	assert_string_equal(S(p, m->filename), "/usr/bin/app");
	assert_string_equal(S(p, m->build_id), "deadbeef");
	assert_true(m->has_functions && m->has_filenames && m->has_line_numbers &&
		    m->has_inline_frames);
	m = p->mapping[1];
	assert_int_equal(m->id, 2);
	assert_string_equal(S(p, m->filename), "[kernel.kallsyms]");
	assert_true(m->has_functions);
	assert_false(m->has_filenames || m->has_line_numbers || m->has_inline_frames);

	perftools__profiles__profile__free_unpacked(p, NULL);
	pprof_builder__free(b);
}

static void test_locations_and_dedup(void **state)
{
	struct fake fk = {};
	struct pprof_builder *b = build_std(&fk);
	Perftools__Profiles__Profile *p;
	const Perftools__Profiles__Sample *s;
	const Perftools__Profiles__Location *l;
	size_t i;

	(void)state;
	/* 3 addresses in each of 2 pids; 2 kernel addresses. */
	assert_int_equal(fk.user_calls, 6);
	assert_int_equal(fk.kernel_calls, 2);
	p = decode(b);
	assert_int_equal(p->n_location, 8);
	/* leaf, inlined_helper, caller, main, do_syscall_64, entry_SYSCALL_64 */
	assert_int_equal(p->n_function, 6);
	for (i = 0; i < p->n_location; i++)
		assert_int_equal(p->location[i]->id, i + 1);

	s = p->sample[0];
	assert_int_equal(s->n_location_id, 3);
	/* The leaf is exact, return addresses point into the call. */
	l = sample_loc(p, s, 0, 0x401000);
	assert_int_equal(l->mapping_id, 1);
	assert_int_equal(l->n_line, 1);
	assert_string_equal(fn_name(p, l->line[0]->function_id), "leaf");
	assert_int_equal(l->line[0]->line, 10);
	l = sample_loc(p, s, 1, 0x401fff);
	assert_int_equal(l->n_line, 2);
	assert_string_equal(fn_name(p, l->line[0]->function_id), "inlined_helper");
	assert_int_equal(l->line[0]->line, 30);
	assert_string_equal(fn_name(p, l->line[1]->function_id), "caller");
	assert_int_equal(l->line[1]->line, 42);
	l = sample_loc(p, s, 2, 0x402fff);
	assert_string_equal(fn_name(p, l->line[0]->function_id), "main");

	/* Kernel frames first, the kernel leaf exact, then user frames all as return addresses. */
	s = p->sample[3];
	assert_int_equal(s->n_location_id, 4);
	l = sample_loc(p, s, 0, KBASE + 0x100);
	assert_int_equal(l->mapping_id, 2);
	assert_string_equal(fn_name(p, l->line[0]->function_id), "do_syscall_64");
	l = sample_loc(p, s, 1, KBASE + 0x1ff);
	assert_string_equal(fn_name(p, l->line[0]->function_id), "entry_SYSCALL_64");
	l = sample_loc(p, s, 2, 0x401fff);
	assert_int_equal(l->id, p->sample[0]->location_id[1]);
	sample_loc(p, s, 3, 0x402fff);

	/* Another pid: its own locations, the same functions. */
	s = p->sample[2];
	for (i = 0; i < 3; i++)
		assert_int_not_equal(s->location_id[i], p->sample[0]->location_id[i]);
	l = sample_loc(p, s, 1, 0x401fff);
	assert_int_equal(l->line[1]->function_id,
			 loc_by_id(p, p->sample[0]->location_id[1])->line[1]->function_id);

	perftools__profiles__profile__free_unpacked(p, NULL);
	pprof_builder__free(b);
}

static void test_merge_and_labels(void **state)
{
	struct fake fk = {};
	struct pprof_builder *b = build_std(&fk);
	Perftools__Profiles__Profile *p;
	const Perftools__Profiles__Sample *s;
	size_t i;

	(void)state;
	assert_int_equal(pprof_builder__nsamples(b), 4);
	p = decode(b);
	assert_int_equal(p->n_sample, 4);

	s = p->sample[0];
	assert_int_equal(s->n_value, 2);
	assert_int_equal(s->value[0], 2);
	assert_int_equal(s->value[1], 20000000);
	assert_int_equal(s->n_label, 2);
	assert_string_equal(label_str(p, s, "thread"), "worker");
	for (i = 0; i < s->n_label; i++) {
		if (strcmp(S(p, s->label[i]->key), "bytes") != 0)
			continue;
		assert_int_equal(s->label[i]->str, 0);
		assert_int_equal(s->label[i]->num, 4096);
		assert_string_equal(S(p, s->label[i]->num_unit), "bytes");
	}

	/* Same stack, other label: not merged. */
	s = p->sample[1];
	assert_string_equal(label_str(p, s, "thread"), "other");
	assert_int_equal(s->value[0], 1);
	assert_int_equal(s->value[1], 10000000);
	assert_memory_equal(s->location_id, p->sample[0]->location_id, 3 * sizeof(uint64_t));

	s = p->sample[2];
	assert_int_equal(s->n_label, 0);

	perftools__profiles__profile__free_unpacked(p, NULL);
	pprof_builder__free(b);
}

static void test_leaf_is_return(void **state)
{
	struct fake fk = {};
	struct pprof_resolver r = {.user = fake_user, .kernel = fake_kernel, .ctx = &fk};
	struct pprof_builder *b = pprof_builder__new(&cpu_cfg, &r);
	struct pprof_raw_sample s = user_sample(100, NULL);
	Perftools__Profiles__Profile *p;

	(void)state;
	assert_non_null(b);
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	s.user_leaf_is_return = true;
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	s = syscall_sample();
	s.kernel_leaf_is_return = true;
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	assert_int_equal(pprof_builder__resolve(b), 0);
	/* (0x401000, exact) and (0x401000, return) are different keys. */
	assert_int_equal(fk.user_calls, 4);
	assert_int_equal(fk.kernel_calls, 2);

	p = decode(b);
	assert_int_equal(p->n_sample, 3);
	sample_loc(p, p->sample[0], 0, 0x401000);
	sample_loc(p, p->sample[1], 0, 0x400fff);
	sample_loc(p, p->sample[1], 1, 0x401fff);
	sample_loc(p, p->sample[2], 0, KBASE + 0xff);
	sample_loc(p, p->sample[2], 1, KBASE + 0x1ff);
	perftools__profiles__profile__free_unpacked(p, NULL);
	pprof_builder__free(b);
}

/* The prepare hook gets every address once, before any of them is resolved. */
struct fake_batch {
	struct fake fk;
	int calls;
	size_t n;
	struct sym_request reqs[64];
};

static int fake_prepare(void *ctx, struct sym_request *reqs, size_t n)
{
	struct fake_batch *fb = ctx;

	assert_int_equal(fb->fk.user_calls + fb->fk.kernel_calls, 0);
	assert_true(n <= 64);
	fb->calls++;
	fb->n = n;
	memcpy(fb->reqs, reqs, n * sizeof(*reqs));
	return 0;
}

static void test_prepare_sees_every_address_first(void **state)
{
	struct fake_batch fb = {};
	struct pprof_resolver r = {
		.user = fake_user, .kernel = fake_kernel, .ctx = &fb.fk, .prepare = fake_prepare};
	struct pprof_builder *b;
	struct pprof_raw_sample s;
	size_t i;

	(void)state;
	/* fake_user and fake_kernel take ctx as a struct fake: it is fb's first member. */
	b = pprof_builder__new(&cpu_cfg, &r);
	assert_non_null(b);
	s = user_sample(200, NULL);
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	s = syscall_sample();
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	s = user_sample(100, NULL);
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	assert_int_equal(fb.calls, 0);
	assert_int_equal(pprof_builder__resolve(b), 0);
	assert_int_equal(fb.calls, 1);
	/* Every distinct location once: 3 user addresses in each of 2 pids, the syscall
	 * sample's 2 kernel and 2 user (return) addresses of pid 100. */
	assert_int_equal(fb.n, (size_t)(fb.fk.user_calls + fb.fk.kernel_calls));
	assert_int_equal(fb.fk.kernel_calls, 2);
	/* User addresses by pid and address, then kernel ones by address. */
	for (i = 1; i < fb.n; i++) {
		const struct sym_request *a = &fb.reqs[i - 1], *z = &fb.reqs[i];

		assert_true(a->kernel <= z->kernel);
		if (a->kernel == z->kernel && !a->kernel)
			assert_true(a->pid < z->pid || (a->pid == z->pid && a->addr <= z->addr));
		if (a->kernel && z->kernel)
			assert_true(a->addr <= z->addr);
	}
	/* Resolved once: a second call asks nothing. */
	assert_int_equal(pprof_builder__resolve(b), 0);
	assert_int_equal(fb.calls, 1);
	pprof_builder__free(b);
}

static void test_no_resolver(void **state)
{
	static const struct pprof_config cfg = {
		.nvalues = 1,
		.sample_types = {{"samples", "count"}},
		.period_type = {"cpu", "nanoseconds"},
		.period = 1,
	};
	struct pprof_builder *b = pprof_builder__new(&cfg, NULL);
	struct pprof_raw_sample s = user_sample(1, NULL);
	Perftools__Profiles__Profile *p;
	const Perftools__Profiles__Location *l;
	uint8_t *raw;
	size_t len;

	(void)state;
	assert_non_null(b);
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);

	/* Unzipped encoding decodes directly. */
	assert_int_equal(pprof_builder__encode(b, false, &raw, &len), 0);
	p = perftools__profiles__profile__unpack(NULL, len, raw);
	free(raw);
	assert_non_null(p);
	assert_int_equal(p->default_sample_type, 0);
	assert_int_equal(p->n_mapping, 0);
	assert_int_equal(p->n_sample, 1);
	assert_int_equal(p->sample[0]->value[0], 2);
	assert_int_equal(p->n_location, 3);
	l = sample_loc(p, p->sample[0], 0, 0x401000);
	assert_int_equal(l->mapping_id, 0);
	assert_int_equal(l->n_line, 1);
	assert_string_equal(fn_name(p, l->line[0]->function_id), "0x401000");
	l = sample_loc(p, p->sample[0], 1, 0x401fff);
	assert_string_equal(fn_name(p, l->line[0]->function_id), "0x402000");
	perftools__profiles__profile__free_unpacked(p, NULL);
	pprof_builder__free(b);
}

static void test_enomem_propagates(void **state)
{
	struct fake fk = {.fail_errno = ENOMEM};
	struct pprof_resolver r = {.user = fake_user, .kernel = fake_kernel, .ctx = &fk};
	struct pprof_builder *b = pprof_builder__new(&cpu_cfg, &r);
	struct pprof_raw_sample s = syscall_sample();
	Perftools__Profiles__Profile *p;
	uint8_t *buf = NULL;
	size_t len;

	(void)state;
	assert_non_null(b);
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	assert_int_equal(pprof_builder__resolve(b), -ENOMEM);
	fk.nseen = 0; /* encoding resolves what is left, and fails the same way */
	assert_int_equal(pprof_builder__encode(b, false, &buf, &len), -ENOMEM);
	/* Other failures fall back to a stub frame rather than losing the sample. */
	fk.fail_errno = ENOENT;
	fk.nseen = 0; /* a failed lookup is not cached: the keys are asked about again */
	assert_int_equal(pprof_builder__resolve(b), 0);
	assert_int_equal(pprof_builder__nsamples(b), 1);
	p = decode(b);
	assert_int_equal(p->n_location, s.nkstack + s.nustack);
	for (size_t i = 0; i < p->n_location; i++)
		assert_int_equal(p->location[i]->n_line, 1);
	perftools__profiles__profile__free_unpacked(p, NULL);
	pprof_builder__free(b);
}

static void test_bad_config(void **state)
{
	struct pprof_config cfg = cpu_cfg;

	(void)state;
	cfg.nvalues = 0;
	assert_null(pprof_builder__new(&cfg, NULL));
	assert_int_equal(errno, EINVAL);
	cfg.nvalues = PPROF_MAX_VALUES + 1;
	assert_null(pprof_builder__new(&cfg, NULL));
	assert_null(pprof_builder__new(NULL, NULL));
	pprof_builder__free(NULL);
}

/* Runs fn's output through a memory stream and compares it with want. */
static char *text_of(struct pprof_builder *b, int (*fn)(struct pprof_builder *, FILE *, int, int),
		     int a, int c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	assert_int_equal(fn(b, f, a, c), 0);
	fclose(f);
	return text;
}

static int folded(struct pprof_builder *b, FILE *f, int idx, int unused)
{
	(void)unused;
	return pprof_builder__write_folded(b, f, idx);
}

static void test_folded(void **state)
{
	struct fake fk = {};
	struct pprof_builder *b = build_std(&fk);
	char *text;

	(void)state;
	/* Root first, inlined frames expanded outer first, pids and labels merged, sorted. */
	text = text_of(b, folded, -1, 0);
	assert_string_equal(text, "main;caller;inlined_helper;entry_SYSCALL_64;do_syscall_64 "
				  "5000000\n"
				  "main;caller;inlined_helper;leaf 40000000\n");
	free(text);
	text = text_of(b, folded, 0, 0);
	assert_string_equal(text, "main;caller;inlined_helper;entry_SYSCALL_64;do_syscall_64 1\n"
				  "main;caller;inlined_helper;leaf 4\n");
	free(text);
	assert_int_equal(pprof_builder__write_folded(b, stdout, 2), -EINVAL);
	pprof_builder__free(b);
}

static void test_folded_escapes_names(void **state)
{
	static const uint64_t us[] = {0x406000, 0x403000};
	struct fake fk = {};
	struct pprof_resolver r = {.user = fake_user, .kernel = fake_kernel, .ctx = &fk};
	struct pprof_builder *b = pprof_builder__new(&cpu_cfg, &r);
	struct pprof_raw_sample s = {.pid = 1, .ustack = us, .nustack = 2, .values = {1, 7}};
	struct pprof_raw_sample empty = {.pid = 1, .values = {1, 3}};
	char *text;

	(void)state;
	assert_non_null(b);
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	assert_int_equal(pprof_builder__add_sample(b, &empty), 0);
	text = text_of(b, folded, 1, 0);
	assert_string_equal(text, "[unknown] 3\nmain;odd_name_with breaks 7\n");
	free(text);
	pprof_builder__free(b);
}

static void test_top(void **state)
{
	struct fake fk = {};
	struct pprof_builder *b = build_std(&fk);
	char *text;

	(void)state;
	text = text_of(b, pprof_builder__write_top, -1, 0);
	/* Byte for byte what `go tool pprof -top` prints for this profile, but for its preamble
	 * and the "(inline)" mark. */
	assert_string_equal(text, "Showing nodes accounting for 45ms, 100% of 45ms total\n"
				  "      flat  flat%   sum%        cum   cum%\n"
				  "      40ms 88.89% 88.89%       40ms 88.89%  leaf\n"
				  "       5ms 11.11%   100%        5ms 11.11%  do_syscall_64\n"
				  "         0     0%   100%       45ms   100%  caller\n"
				  "         0     0%   100%        5ms 11.11%  entry_SYSCALL_64\n"
				  "         0     0%   100%       45ms   100%  inlined_helper\n"
				  "         0     0%   100%       45ms   100%  main\n");
	free(text);
	text = text_of(b, pprof_builder__write_top, 0, 2);
	assert_string_equal(text, "Showing nodes accounting for 5, 100% of 5 total\n"
				  "Showing top 2 nodes out of 6\n"
				  "      flat  flat%   sum%        cum   cum%\n"
				  "         4 80.00% 80.00%          4 80.00%  leaf\n"
				  "         1 20.00%   100%          1 20.00%  do_syscall_64\n");
	free(text);
	pprof_builder__free(b);
}

static void test_top_recursion_and_units(void **state)
{
	static const struct pprof_config cfg = {
		.nvalues = 1,
		.sample_types = {{"alloc_space", "bytes"}},
		.period_type = {"space", "bytes"},
	};
	/* rec -> rec -> rec -> main: rec's cum counts each sample once. */
	static const uint64_t us[] = {0x405000, 0x405100, 0x405200, 0x403000};
	struct fake fk = {};
	struct pprof_resolver r = {.user = fake_user, .kernel = fake_kernel, .ctx = &fk};
	struct pprof_builder *b = pprof_builder__new(&cfg, &r);
	struct pprof_raw_sample s = {.pid = 1, .ustack = us, .nustack = 4, .values = {3 << 20}};
	char *text;

	(void)state;
	assert_non_null(b);
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	s.ustack = us + 1;
	s.nustack = 3;
	s.values[0] = 512 << 10;
	assert_int_equal(pprof_builder__add_sample(b, &s), 0);
	text = text_of(b, pprof_builder__write_top, -1, 0);
	assert_string_equal(text, "Showing nodes accounting for 3.50MB, 100% of 3.50MB total\n"
				  "      flat  flat%   sum%        cum   cum%\n"
				  "    3.50MB   100%   100%     3.50MB   100%  rec\n"
				  "         0     0%   100%     3.50MB   100%  main\n");
	free(text);
	pprof_builder__free(b);
}

/* Runs cmd with a private HOME and GOCACHE; returns its output and exit status. */
static char *run(const char *cmd, int *status)
{
	char *out = NULL;
	size_t len = 0;
	FILE *o = open_memstream(&out, &len);
	FILE *pipe;
	char buf[4096];
	size_t n;

	assert_non_null(o);
	pipe = popen(cmd, "r");
	assert_non_null(pipe);
	while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0)
		fwrite(buf, 1, n, o);
	*status = pclose(pipe);
	fclose(o);
	return out;
}

static void test_go_tool_pprof_reads_it(void **state)
{
	char dir[] = "/tmp/test_pprof.XXXXXX", path[256], cmd[1024], *out;
	struct fake fk = {};
	struct pprof_builder *b;
	int status;
	FILE *f;

	(void)state;
	if (system("command -v go >/dev/null 2>&1") != 0) {
		skip();
		return;
	}
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/cpu.pb.gz", dir);
	b = build_std(&fk);
	assert_int_equal(pprof_builder__add_comment(b, "made by test_pprof"), 0);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(pprof_builder__write_pprof(b, f), 0);
	assert_int_equal(fclose(f), 0);
	pprof_builder__free(b);

	snprintf(cmd, sizeof(cmd),
		 "HOME=%s GOCACHE=%s/cache PPROF_TMPDIR=%s go tool pprof -raw %s 2>&1", dir, dir,
		 dir, path);
	out = run(cmd, &status);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("go tool pprof -raw failed:\n%s", out);
	assert_non_null(strstr(out, "inlined_helper"));
	assert_non_null(strstr(out, "do_syscall_64"));
	assert_non_null(strstr(out, "made by test_pprof"));
	free(out);

	snprintf(cmd, sizeof(cmd),
		 "HOME=%s GOCACHE=%s/cache PPROF_TMPDIR=%s go tool pprof -top %s 2>&1", dir, dir,
		 dir, path);
	out = run(cmd, &status);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("go tool pprof -top failed:\n%s", out);
	assert_non_null(strstr(out, "of 45ms total"));
	assert_non_null(strstr(out, "  leaf"));
	free(out);

	if (getenv("TEST_PPROF_KEEP"))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_profile_fields),
		cmocka_unit_test(test_locations_and_dedup),
		cmocka_unit_test(test_merge_and_labels),
		cmocka_unit_test(test_leaf_is_return),
		cmocka_unit_test(test_no_resolver),
		cmocka_unit_test(test_prepare_sees_every_address_first),
		cmocka_unit_test(test_enomem_propagates),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_folded),
		cmocka_unit_test(test_folded_escapes_names),
		cmocka_unit_test(test_top),
		cmocka_unit_test(test_top_recursion_and_units),
		cmocka_unit_test(test_go_tool_pprof_reads_it),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
