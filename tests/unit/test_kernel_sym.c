/* Unit tests for the symbolizer's kernel addresses (sym/kernel.c): the kernel's own lookup
 * through BPF (sym/ksym_resolver.h), /proc/kallsyms whole and in one streamed pass, each held
 * against the machine's /proc/kallsyms as the tests read it. Needs root (BPF). */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sym/kallsyms.h"
#include "sym/ksym_resolver.h"
#include "sym/symbolizer.h"

struct test_ksym {
	uint64_t addr;
	char name[128];
	char mod[64];
	char type;
};

static int test_ksym__cmp(const void *pa, const void *pb)
{
	const struct test_ksym *a = pa, *b = pb;

	return a->addr < b->addr ? -1 : a->addr > b->addr;
}

/* The text symbols of /proc/kallsyms, sorted by address. */
static struct test_ksym *read_kallsyms(size_t *n)
{
	struct test_ksym *syms = NULL, *tmp;
	size_t cap = 0;
	char line[512];
	FILE *f = fopen("/proc/kallsyms", "r");

	*n = 0;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 4096;
			tmp = realloc(syms, cap * sizeof(*syms));
			assert_non_null(tmp);
			syms = tmp;
		}
		tmp = &syms[*n];
		tmp->mod[0] = '\0';
		if (sscanf(line, "%" SCNx64 " %c %127s [%63[^]]]", &tmp->addr, &tmp->type,
			   tmp->name, tmp->mod) < 3 ||
		    !strchr("tTwW", tmp->type))
			continue;
		(*n)++;
	}
	fclose(f);
	qsort(syms, *n, sizeof(*syms), test_ksym__cmp);
	return syms;
}

/* A symbol no other text symbol shares an address with, preferring want, else the first one
 * in (want_module ? a module : the kernel image) with type T. */
static const struct test_ksym *pick_ksym(const struct test_ksym *syms, size_t n, const char *want,
					 bool want_module)
{
	const struct test_ksym *fallback = NULL;
	size_t i;
	bool unique;

	for (i = 0; i < n; i++) {
		unique = (!i || syms[i - 1].addr != syms[i].addr) &&
			 (i + 1 == n || syms[i + 1].addr > syms[i].addr + 1);
		/* BPF programs ("[bpf]") come and go as other tools load them. */
		if (!unique || syms[i].addr == 0 || !strcmp(syms[i].mod, "bpf"))
			continue;
		if (want && !strcmp(syms[i].name, want))
			return &syms[i];
		if (!fallback && (syms[i].type == 'T' || want_module) &&
		    !!syms[i].mod[0] == want_module)
			fallback = &syms[i];
	}
	return fallback;
}

/* symbolizer__kernel, one address at a time: through the kernel's lookup, or (kallsyms_only)
 * from the whole table. */
static void check_kernel(bool kallsyms_only)
{
	struct symbolizer_opts opts = {.kallsyms_only = kallsyms_only};
	struct symbolizer *s = symbolizer__new(&opts);
	const struct test_ksym *k;
	struct test_ksym *syms;
	struct sym_result r;
	char want[256];
	size_t n;

	assert_non_null(s);
	syms = read_kallsyms(&n);
	k = pick_ksym(syms, n, "do_sys_openat2", false);
	if (!k) {
		free(syms);
		symbolizer__free(s);
		skip(); /* kptr_restrict: nothing to compare with */
	}
	assert_int_equal(symbolizer__kernel(s, k->addr, false, &r), 0);
	assert_int_equal(r.nframes, 1);
	assert_string_equal(r.frames[0].function, k->name);
	assert_string_equal(r.mapping->path, "[kernel.kallsyms]");
	assert_string_equal(r.mapping->build_id, "");
	assert_true(r.mapping->has_functions);
	assert_int_equal(symbolizer__kernel(s, k->addr + 1, false, &r), 0);
	assert_string_equal(r.frames[0].function, k->name);
	assert_int_equal(symbolizer__kernel(s, k->addr + 1, true, &r), 0);
	assert_string_equal(r.frames[0].function, k->name);
	assert_int_equal(symbolizer__kernel(s, k->addr, true, &r), 0);
	assert_string_not_equal(r.frames[0].function, k->name);

	/* Module functions read "fn [module]". */
	k = pick_ksym(syms, n, NULL, true);
	if (k) {
		snprintf(want, sizeof(want), "%s [%s]", k->name, k->mod);
		assert_int_equal(symbolizer__kernel(s, k->addr, false, &r), 0);
		assert_string_equal(r.frames[0].function, want);
	}
	free(syms);
	symbolizer__free(s);
}

static void test_kernel(void **state)
{
	(void)state;
	check_kernel(false);
}

static void test_kernel_kallsyms(void **state)
{
	(void)state;
	check_kernel(true);
}

/* Whether names a and b are one symbol: equal, or two names of one address in syms (aliases:
 * which of them a lookup gives is its own choice). */
static bool same_symbol(const struct test_ksym *syms, size_t n, const char *a, const char *b)
{
	uint64_t aa = 0, ab = 0;
	size_t i;

	if (!strcmp(a, b))
		return true;
	for (i = 0; i < n; i++) {
		if (!syms[i].mod[0] && !strcmp(syms[i].name, a))
			aa = syms[i].addr;
		if (!syms[i].mod[0] && !strcmp(syms[i].name, b))
			ab = syms[i].addr;
	}
	if (!aa || aa != ab)
		fprintf(stderr, "kernel lookup %s, /proc/kallsyms %s\n", a, b);
	return aa && aa == ab;
}

/* symbolizer__prepare names every address as the whole table does, through the kernel's
 * lookup and (kallsyms_only) in a streamed pass over /proc/kallsyms: spread over the kernel
 * image and its modules, exact, inside a function, and at return addresses (looked up at
 * addr - 1). */
static void test_kernel_prepared(void **state)
{
	struct symbolizer_opts opts = {.kallsyms_only = true};
	struct symbolizer *whole = symbolizer__new(&opts), *streamed = symbolizer__new(&opts);
	struct symbolizer *bpf = symbolizer__new(NULL);
	struct sym_request reqs[3 * 400];
	struct sym_result a, b, c;
	struct test_ksym *syms;
	size_t n, i, k = 0, named = 0, step;

	(void)state;
	assert_non_null(whole);
	assert_non_null(streamed);
	assert_non_null(bpf);
	syms = read_kallsyms(&n);
	if (!pick_ksym(syms, n, "do_sys_openat2", false)) {
		free(syms);
		symbolizer__free(whole);
		symbolizer__free(streamed);
		symbolizer__free(bpf);
		skip(); /* kptr_restrict */
	}
	step = n / 400 + 1;
	for (i = 0; i < n && k + 3 <= sizeof(reqs) / sizeof(reqs[0]); i += step) {
		if (!syms[i].addr || !strcmp(syms[i].mod, "bpf"))
			continue;
		reqs[k++] = (struct sym_request){.addr = syms[i].addr, .kernel = true};
		reqs[k++] = (struct sym_request){.addr = syms[i].addr + 3, .kernel = true};
		reqs[k++] = (struct sym_request){
			.addr = syms[i].addr, .kernel = true, .is_return = true};
	}
	assert_true(k > 300);
	assert_int_equal(symbolizer__prepare(streamed, reqs, k), 0);
	assert_int_equal(symbolizer__prepare(bpf, reqs, k), 0);
	for (i = 0; i < k; i++) {
		assert_int_equal(symbolizer__kernel(streamed, reqs[i].addr, reqs[i].is_return, &a),
				 0);
		assert_int_equal(symbolizer__kernel(whole, reqs[i].addr, reqs[i].is_return, &b), 0);
		assert_int_equal(symbolizer__kernel(bpf, reqs[i].addr, reqs[i].is_return, &c), 0);
		assert_string_equal(a.frames[0].function, b.frames[0].function);
		assert_true(same_symbol(syms, n, c.frames[0].function, b.frames[0].function));
		named += strncmp(a.frames[0].function, "0x", 2) != 0;
	}
	free(syms);
	assert_true(named > k * 9 / 10);
	assert_int_equal(a.mapping->start, b.mapping->start);
	assert_int_equal(c.mapping->start, b.mapping->start);
	assert_true(a.mapping->has_functions);
	assert_true(c.mapping->has_functions);
	symbolizer__free(whole);
	symbolizer__free(streamed);
	symbolizer__free(bpf);
}

/* The kernel's lookup through BPF, by itself: the names /proc/kallsyms gives, batches longer
 * than one run of the program, and no name where no symbol is. */
static void test_resolver(void **state)
{
	uint64_t addrs[300], none[2] = {1, 0x1000};
	size_t n, i, k = 0, step, at[300];
	struct ksym_resolver *kr;
	struct test_ksym *syms;
	char *names[300];

	(void)state;
	syms = read_kallsyms(&n);
	if (!pick_ksym(syms, n, "do_sys_openat2", false)) {
		free(syms);
		skip(); /* kptr_restrict */
	}
	assert_int_equal(ksym_resolver__open(&kr), 0);
	step = n / 300 + 1;
	for (i = 0; i < n && k < 300; i += step) {
		if (syms[i].mod[0]) /* modules: test_kernel, through the fallback */
			continue;
		at[k] = i;
		addrs[k++] = syms[i].addr + 1;
	}
	assert_true(k > 200);
	assert_int_equal(ksym_resolver__resolve(kr, addrs, k, names), 0);
	for (i = 0; i < k; i++) {
		assert_non_null(names[i]);
		assert_true(same_symbol(syms, n, names[i], syms[at[i]].name));
		free(names[i]);
	}
	/* One at a time too, as symbolizer__kernel asks. */
	assert_int_equal(ksym_resolver__resolve(kr, &addrs[k / 2], 1, names), 0);
	assert_true(same_symbol(syms, n, names[0], syms[at[k / 2]].name));
	free(names[0]);
	assert_true(ksym_resolver__text(kr) > 0);
	assert_true(ksym_resolver__text(kr) <= syms[0].addr);
	assert_int_equal(ksym_resolver__resolve(kr, none, 2, names), 0);
	assert_null(names[0]);
	assert_null(names[1]);
	ksym_resolver__free(kr);
	free(syms);
}

/* The program's "%pS" lines to names as /proc/kallsyms writes them. */
static void test_resolver_parse(void **state)
{
	char *s;

	(void)state;
	s = ksym_resolver__parse("schedule+0x5/0xa0", 256);
	assert_string_equal(s, "schedule");
	free(s);
	s = ksym_resolver__parse("foo.cold+0x0/0x1c [mod_a]", 256);
	assert_string_equal(s, "foo.cold [mod_a]");
	free(s);
	s = ksym_resolver__parse("bar+0x10/0x20 [mod_b 0123456789abcdef]", 256);
	assert_string_equal(s, "bar [mod_b]");
	free(s);
	assert_null(ksym_resolver__parse("0xffffffffc0201000", 256));
	assert_null(ksym_resolver__parse("", 256));
	assert_null(ksym_resolver__parse("+0x0/0x10", 256));
	assert_null(ksym_resolver__parse("no_offset", 256));
	/* Filling the buffer: cut short, so not trusted. */
	assert_null(ksym_resolver__parse("abcdefgh+0x0/0x1", 17));
	s = ksym_resolver__parse("abcdefg+0x0/0x1", 17);
	assert_string_equal(s, "abcdefg");
	free(s);
}

static void test_no_kernel(void **state)
{
	struct symbolizer_opts opts = {.no_kernel = true};
	struct symbolizer *s = symbolizer__new(&opts);
	struct sym_result r;

	(void)state;
	assert_non_null(s);
	assert_int_equal(symbolizer__kernel(s, 0xffffffff81234567ULL, false, &r), 0);
	assert_int_equal(r.nframes, 1);
	assert_string_equal(r.frames[0].function, "0xffffffff81234567");
	assert_non_null(r.mapping);
	assert_string_equal(r.mapping->path, "[kernel.kallsyms]");
	assert_false(r.mapping->has_functions);
	symbolizer__free(s);
}

/* kallsyms__load: the core kernel in order, then modules and a core symbol out of order; ties
 * at one address keep the most global type. */
static void test_kallsyms_load_unsorted_tail(void **state)
{
	char path[] = "/tmp/cprof-test-kallsyms-XXXXXX";
	const char text[] = "ffffffff81000000 T _stext\n"
			    "ffffffff81000000 t alias_local\n"
			    "ffffffff81000080 d some_data\n"
			    "ffffffff81000100 T fn_a\n"
			    "ffffffff81000200 W fn_w\n"
			    "ffffffff81000200 T fn_t\n"
			    "ffffffffc0001000 t mod_b\t[modx]\n"
			    "ffffffffc0000000 t mod_a\t[modx]\n"
			    "ffffffff81000150 t late_core\n"
			    "ffffffff81000300 T fn_last\n";
	struct kallsyms *k = NULL;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	assert_int_equal(kallsyms__load(path, &k), 0);
	unlink(path);
	assert_int_equal(kallsyms__count(k), 7); /* text symbols, one per address */
	assert_string_equal(kallsyms__lookup(k, 0xffffffff81000000ull), "_stext");
	assert_string_equal(kallsyms__lookup(k, 0xffffffff81000120ull), "fn_a");
	assert_string_equal(kallsyms__lookup(k, 0xffffffff81000150ull), "late_core");
	assert_string_equal(kallsyms__lookup(k, 0xffffffff810001ffull), "late_core");
	assert_string_equal(kallsyms__lookup(k, 0xffffffff81000210ull), "fn_t");
	assert_string_equal(kallsyms__lookup(k, 0xffffffff81000310ull), "fn_last");
	assert_string_equal(kallsyms__lookup(k, 0xffffffffc0000010ull), "mod_a [modx]");
	assert_string_equal(kallsyms__lookup(k, 0xffffffffc0001010ull), "mod_b [modx]");
	assert_null(kallsyms__lookup(k, 0xffffffff80000000ull));
	assert_int_equal(kallsyms__min_addr(k), 0xffffffff81000000ull);
	kallsyms__free(k);
}

/* kallsyms__range: a core kernel text symbol up to the next one; data symbols, modules and
 * hidden addresses do not count. */
static void test_kallsyms_range(void **state)
{
	static const char text[] = "ffffffff81000000 T _stext\n"
				   "ffffffff81001000 T __traceiter_sched_switch\n"
				   "ffffffff81001040 d some_data\n"
				   "ffffffff81001080 t next_fn\n"
				   "ffffffffc0001000 t __traceiter_sched_switch\t[mod]\n";
	char path[] = "/tmp/cprof-ksym-XXXXXX";
	uint64_t lo = 0, hi = 0;
	int fd = mkstemp(path);
	FILE *f;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(kallsyms__range(path, "__traceiter_sched_switch", &lo, &hi), 0);
	assert_int_equal(lo, 0xffffffff81001000ull);
	assert_int_equal(hi, 0xffffffff81001080ull);
	assert_int_equal(kallsyms__range(path, "no_such_fn", &lo, &hi), -ENOENT);
	assert_int_equal(kallsyms__range(path, "next_fn", &lo, &hi), -ENOENT); /* the last one */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("0000000000000000 T _stext\n0000000000000000 T __traceiter_sched_switch\n", f);
	fclose(f);
	assert_int_equal(kallsyms__range(path, "__traceiter_sched_switch", &lo, &hi), -ENOENT);
	unlink(path);
	assert_int_equal(kallsyms__range(path, "_stext", &lo, &hi), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernel),
		cmocka_unit_test(test_kernel_kallsyms),
		cmocka_unit_test(test_kernel_prepared),
		cmocka_unit_test(test_resolver),
		cmocka_unit_test(test_resolver_parse),
		cmocka_unit_test(test_no_kernel),
		cmocka_unit_test(test_kallsyms_load_unsorted_tail),
		cmocka_unit_test(test_kallsyms_range),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
