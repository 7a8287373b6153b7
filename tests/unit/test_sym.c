/* Unit tests for sym/: real processes built from tests/fixtures/unit at run time (PIE, non-PIE,
 * a shared library, stripped copies, a deleted binary) and the vDSO; kernel addresses are
 * tests/unit/test_kernel_sym.c's. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "proc/maps.h"
#include "sym/demangle.h"
#include "sym/perfmap.h"
#include "sym/symbolizer.h"
#include "run_cmd.h"

#define MAX_REPORTED 8

struct fixture_proc {
	pid_t pid;
	int n;
	char names[MAX_REPORTED][64];
	uint64_t addrs[MAX_REPORTED];
};

static char tmpdir[64];
static char srcdir[PATH_MAX];

/* The fixtures' sources: $CPROF_SRCDIR/tests/fixtures/unit, else next to this file. */
static int find_srcdir(void)
{
	const char *root = getenv("CPROF_SRCDIR");
	char here[1024], *slash;

	if (root) {
		snprintf(srcdir, sizeof(srcdir), "%s/tests/fixtures/unit", root);
	} else {
		snprintf(here, sizeof(here), "%s", __FILE__);
		slash = strrchr(here, '/');
		if (slash)
			*slash = '\0';
		else
			snprintf(here, sizeof(here), ".");
		snprintf(srcdir, sizeof(srcdir), "%s/../fixtures/unit", here);
	}
	if (access(srcdir, R_OK)) {
		fprintf(stderr,
			"fixtures not found at %s (run from the repo root or set "
			"CPROF_SRCDIR)\n",
			srcdir);
		return -1;
	}
	return 0;
}

static int build_fixtures(void **state)
{
	const char *cc = "cc -O1 -g -Wall -Werror";

	(void)state;
	if (find_srcdir())
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/cprof-test-sym-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	if (run("%s -fPIE -pie %s/sym_fixture.c -o %s/fix_pie", cc, srcdir, tmpdir) ||
	    run("%s -fno-pie -no-pie %s/sym_fixture.c -o %s/fix_nopie", cc, srcdir, tmpdir) ||
	    run("%s -fPIE -pie -rdynamic %s/sym_fixture.c -o %s/fix_rdyn", cc, srcdir, tmpdir) ||
	    run("%s -fPIC -shared %s/sym_fixlib.c -o %s/libfix.so", cc, srcdir, tmpdir) ||
	    run("%s -fPIE -pie -DWITH_LIB %s/sym_fixture.c -L%s -lfix -Wl,-rpath,%s -o %s/fix_lib",
		cc, srcdir, tmpdir, tmpdir, tmpdir) ||
	    run("mkdir %s/s && cp %s/libfix.so %s/s/ && strip --strip-all %s/s/libfix.so", tmpdir,
		tmpdir, tmpdir, tmpdir) ||
	    run("%s -fPIE -pie -DWITH_LIB %s/sym_fixture.c -L%s -lfix -Wl,-rpath,%s/s -o "
		"%s/fix_lib_s",
		cc, srcdir, tmpdir, tmpdir, tmpdir) ||
	    run("strip --strip-all -o %s/fix_pie_s %s/fix_pie", tmpdir, tmpdir) ||
	    run("strip --strip-all -o %s/fix_rdyn_s %s/fix_rdyn", tmpdir, tmpdir))
		return -1;
	return 0;
}

static int remove_fixtures(void **state)
{
	(void)state;
	if (tmpdir[0])
		run("rm -rf %s", tmpdir);
	return 0;
}

/* Starts a fixture and reads what it reports; it then sleeps until killed. */
static void spawn(const char *name, struct fixture_proc *fp)
{
	char path[PATH_MAX], line[256];
	int pipefd[2];
	FILE *f;

	memset(fp, 0, sizeof(*fp));
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	assert_int_equal(pipe(pipefd), 0);
	fp->pid = fork();
	assert_true(fp->pid >= 0);
	if (!fp->pid) {
		dup2(pipefd[1], STDOUT_FILENO);
		close(pipefd[0]);
		close(pipefd[1]);
		execl(path, path, (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	f = fdopen(pipefd[0], "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (!strcmp(line, "ready\n"))
			break;
		assert_true(fp->n < MAX_REPORTED);
		assert_int_equal(sscanf(line, "%63s %" SCNx64, fp->names[fp->n], &fp->addrs[fp->n]),
				 2);
		fp->n++;
	}
	fclose(f);
	assert_true(fp->n >= 3);
}

static void reap(struct fixture_proc *fp)
{
	int status;

	kill(fp->pid, SIGKILL);
	assert_int_equal(waitpid(fp->pid, &status, 0), fp->pid);
}

static uint64_t addr_of(const struct fixture_proc *fp, const char *name)
{
	int i;

	for (i = 0; i < fp->n; i++) {
		if (!strcmp(fp->names[i], name))
			return fp->addrs[i];
	}
	fail_msg("fixture did not report %s", name);
	return 0;
}

/* st_size of a function in an (unstripped) fixture file, through nm. */
static uint64_t size_of(const char *file, const char *name)
{
	char cmd[2 * PATH_MAX], line[512], sym[256], type;
	unsigned long long addr, size = 0, sz;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "nm -S --defined-only %s/%s", tmpdir, file);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p)) {
		if (sscanf(line, "%llx %llx %c %255s", &addr, &sz, &type, sym) == 4 &&
		    !strcmp(sym, name))
			size = sz;
	}
	pclose(p);
	assert_true(size > 2);
	return size;
}

static const struct sym_result *resolve(struct symbolizer *s, pid_t pid, uint64_t addr,
					bool is_return)
{
	static struct sym_result r;

	memset(&r, 0xa5, sizeof(r));
	assert_int_equal(symbolizer__user(s, pid, addr, is_return, &r), 0);
	assert_int_equal(r.nframes, 1);
	assert_non_null(r.frames[0].function);
	assert_ptr_equal(r.frames[0].function, r.frames[0].system_name);
	return &r;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/* name resolves at its first byte, inside, at its last byte, and as a return address just past
 * its end; the first byte past its end, as a leaf, is not name. */
static void check_symbol(struct symbolizer *s, const struct fixture_proc *fp, const char *file,
			 const char *name, bool dwarf)
{
	uint64_t addr = addr_of(fp, name), size = size_of(file, name);
	const struct sym_result *r;

	r = resolve(s, fp->pid, addr, false);
	assert_string_equal(r->frames[0].function, name);
	assert_non_null(r->mapping);
	assert_true(r->mapping->start <= addr && addr < r->mapping->limit);
	assert_true(r->mapping->has_functions);
	if (!dwarf) {
		assert_null(r->frames[0].file);
		assert_int_equal(r->frames[0].line, 0);
		assert_false(r->mapping->has_filenames || r->mapping->has_line_numbers ||
			     r->mapping->has_inline_frames);
		goto bounds;
	}
	/* The fixtures are built with -g: DWARF gives the source file and a line. */
	assert_non_null(r->frames[0].file);
	assert_true(ends_with(r->frames[0].file,
			      strstr(file, "libfix") ? "/sym_fixlib.c" : "/sym_fixture.c"));
	assert_true(r->frames[0].line > 0);
	assert_true(r->frames[0].start_line > 0 && r->frames[0].start_line <= r->frames[0].line);
	assert_true(r->mapping->has_filenames && r->mapping->has_line_numbers &&
		    r->mapping->has_inline_frames);
bounds:
	assert_string_equal(resolve(s, fp->pid, addr + 2, false)->frames[0].function, name);
	assert_string_equal(resolve(s, fp->pid, addr + size - 1, false)->frames[0].function, name);
	assert_string_equal(resolve(s, fp->pid, addr + size, true)->frames[0].function, name);
	assert_string_not_equal(resolve(s, fp->pid, addr + size, false)->frames[0].function, name);
	/* A return address at a function's first byte belongs to what precedes it. */
	assert_string_not_equal(resolve(s, fp->pid, addr, true)->frames[0].function, name);
}

static void check_function(struct symbolizer *s, const struct fixture_proc *fp, const char *file,
			   const char *name)
{
	check_symbol(s, fp, file, name, true);
}

/* The build-id readelf sees in a fixture file. */
static void check_build_id(const struct sym_mapping *m, const char *file)
{
	char cmd[2 * PATH_MAX], line[512], *p;
	bool found = false;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "readelf -n %s/%s", tmpdir, file);
	f = popen(cmd, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		p = strstr(line, "Build ID: ");
		if (!p)
			continue;
		p += strlen("Build ID: ");
		p[strcspn(p, "\n")] = '\0';
		assert_string_equal(m->build_id, p);
		found = true;
	}
	pclose(f);
	assert_true(found);
}

static void check_executable(const char *file)
{
	struct symbolizer *s = symbolizer__new(NULL);
	const struct sym_result *r;
	struct fixture_proc fp;

	assert_non_null(s);
	spawn(file, &fp);
	assert_int_equal(symbolizer__add_pid(s, fp.pid), 0);
	check_function(s, &fp, file, "fixture_alpha");
	check_function(s, &fp, file, "fixture_beta");
	check_function(s, &fp, file, "fixture_local");
	r = resolve(s, fp.pid, addr_of(&fp, "fixture_alpha"), false);
	assert_true(ends_with(r->mapping->path, file));
	check_build_id(r->mapping, file);
	/* One mapping object per file range. */
	assert_ptr_equal(resolve(s, fp.pid, addr_of(&fp, "fixture_beta"), false)->mapping,
			 r->mapping);
	reap(&fp);
	symbolizer__free(s);
}

static void test_pie(void **state)
{
	(void)state;
	check_executable("fix_pie");
}

static void test_nopie(void **state)
{
	(void)state;
	check_executable("fix_nopie");
}

static void test_shared_library(void **state)
{
	struct symbolizer *s = symbolizer__new(NULL);
	const struct sym_result *r;
	struct fixture_proc fp;

	(void)state;
	assert_non_null(s);
	spawn("fix_lib", &fp);
	assert_int_equal(symbolizer__add_pid(s, fp.pid), 0);
	check_function(s, &fp, "libfix.so", "fixlib_add");
	check_function(s, &fp, "libfix.so", "fixlib_mul");
	check_function(s, &fp, "fix_lib", "fixture_alpha");
	r = resolve(s, fp.pid, addr_of(&fp, "fixlib_add"), false);
	assert_true(ends_with(r->mapping->path, "/libfix.so"));
	check_build_id(r->mapping, "libfix.so");
	reap(&fp);
	symbolizer__free(s);
}

/* The file offset of addr in pid, as a stub names it. */
static uint64_t file_offset(pid_t pid, uint64_t addr)
{
	struct proc_maps *pm = NULL;
	const struct proc_map *m;
	uint64_t off;

	assert_int_equal(proc_maps__read(pid, &pm), 0);
	m = proc_maps__find(pm, addr);
	assert_non_null(m);
	off = addr - m->start + m->offset;
	proc_maps__free(pm);
	return off;
}

static void test_stripped(void **state)
{
	struct symbolizer *s = symbolizer__new(NULL);
	const struct sym_result *r;
	struct fixture_proc fp;
	char want[128];
	uint64_t addr;

	(void)state;
	assert_non_null(s);

	/* A stripped library keeps its exported functions in .dynsym. */
	spawn("fix_lib_s", &fp);
	assert_int_equal(symbolizer__add_pid(s, fp.pid), 0);
	check_symbol(s, &fp, "libfix.so", "fixlib_add", false);
	check_symbol(s, &fp, "libfix.so", "fixlib_mul", false);
	reap(&fp);

	/* A stripped executable has no names for its functions: stubs with the file offset. */
	spawn("fix_pie_s", &fp);
	assert_int_equal(symbolizer__add_pid(s, fp.pid), 0);
	addr = addr_of(&fp, "fixture_alpha") + 1;
	snprintf(want, sizeof(want), "fix_pie_s+0x%" PRIx64, file_offset(fp.pid, addr));
	r = resolve(s, fp.pid, addr, false);
	assert_string_equal(r->frames[0].function, want);
	assert_non_null(r->mapping);
	assert_true(ends_with(r->mapping->path, "/fix_pie_s"));
	assert_false(r->mapping->has_functions);
	check_build_id(r->mapping, "fix_pie_s");
	reap(&fp);

	/* -rdynamic exports the global functions, but not the static one. */
	spawn("fix_rdyn_s", &fp);
	assert_int_equal(symbolizer__add_pid(s, fp.pid), 0);
	check_symbol(s, &fp, "fix_rdyn", "fixture_alpha", false);
	check_symbol(s, &fp, "fix_rdyn", "fixture_beta", false);
	r = resolve(s, fp.pid, addr_of(&fp, "fixture_local"), false);
	assert_string_not_equal(r->frames[0].function, "fixture_local");
	reap(&fp);
	symbolizer__free(s);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* The snapshot outlives the process; the files it holds open are closed by free. */
static void test_exited(void **state)
{
	int fds = count_fds();
	struct symbolizer *s = symbolizer__new(NULL);
	struct fixture_proc fp;

	(void)state;
	assert_non_null(s);
	spawn("fix_pie", &fp);
	assert_int_equal(symbolizer__add_pid(s, fp.pid), 0);
	reap(&fp);
	assert_int_equal(proc__exists(fp.pid), -ESRCH);
	check_function(s, &fp, "fix_pie", "fixture_alpha");
	check_function(s, &fp, "fix_pie", "fixture_local");
	/* Re-adding a gone process fails and keeps the snapshot. */
	assert_int_equal(symbolizer__add_pid(s, fp.pid), -ESRCH);
	check_function(s, &fp, "fix_pie", "fixture_beta");
	assert_true(count_fds() > fds);
	symbolizer__free(s);
	assert_int_equal(count_fds(), fds);
}

/* A binary deleted after it started is read through /proc/PID/map_files, even after exit. */
static void test_deleted(void **state)
{
	struct symbolizer *s = symbolizer__new(NULL);
	const struct sym_result *r;
	struct fixture_proc fp;
	char path[PATH_MAX];

	(void)state;
	assert_non_null(s);
	assert_int_equal(run("cp %s/fix_pie %s/fix_del", tmpdir, tmpdir), 0);
	spawn("fix_del", &fp);
	snprintf(path, sizeof(path), "%s/fix_del", tmpdir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(symbolizer__add_pid(s, fp.pid), 0);
	r = resolve(s, fp.pid, addr_of(&fp, "fixture_alpha"), false);
	assert_string_equal(r->frames[0].function, "fixture_alpha");
	assert_string_equal(r->mapping->path, path);
	reap(&fp);
	check_function(s, &fp, "fix_pie", "fixture_beta");
	check_function(s, &fp, "fix_pie", "fixture_local");
	symbolizer__free(s);
}

/* Unknown pids are added on first use; a file mapped by two processes is read once; refreshes
 * keep mapping pointers; addresses outside any mapping get "0x..." stubs. */
static void test_pids(void **state)
{
	struct symbolizer *s = symbolizer__new(NULL);
	const struct sym_mapping *m1, *m2;
	const struct sym_result *r;
	struct fixture_proc a, b;

	(void)state;
	assert_non_null(s);
	spawn("fix_pie", &a);
	spawn("fix_pie", &b);
	r = resolve(s, a.pid, addr_of(&a, "fixture_alpha"), false);
	assert_string_equal(r->frames[0].function, "fixture_alpha");
	m1 = r->mapping;
	r = resolve(s, b.pid, addr_of(&b, "fixture_beta"), false);
	assert_string_equal(r->frames[0].function, "fixture_beta");
	m2 = r->mapping;
	assert_ptr_not_equal(m1, m2);
	/* Same file, same cached object: the build-id string is shared. */
	assert_ptr_equal(m1->build_id, m2->build_id);

	assert_int_equal(symbolizer__add_pid(s, a.pid), 0);
	assert_ptr_equal(resolve(s, a.pid, addr_of(&a, "fixture_alpha"), false)->mapping, m1);

	r = resolve(s, a.pid, 0x10, false);
	assert_string_equal(r->frames[0].function, "0x10");
	assert_null(r->mapping);

	symbolizer__remove_pid(s, b.pid);
	symbolizer__remove_pid(s, 12345678); /* unknown: no-op */
	/* m2 stays valid after remove_pid. */
	assert_int_equal(m2->start <= addr_of(&b, "fixture_beta"), true);
	reap(&a);
	reap(&b);
	/* b is gone and forgotten: stubs, no error. */
	r = resolve(s, b.pid, addr_of(&b, "fixture_beta"), false);
	assert_null(r->mapping);
	symbolizer__free(s);
}

static void check_demangled(const char *mangled, const char *want)
{
	char *got = sym_demangle(mangled);

	if (!want) {
		assert_null(got);
		return;
	}
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_demangle(void **state)
{
	(void)state;
	check_demangled("_ZNK5cprof5MixerIiE5churnEv", "cprof::Mixer<int>::churn");
	check_demangled("_ZNSt6vectorIiSaIiEE9push_backERKi",
			"std::vector<int, std::allocator<int> >::push_back");
	/* Rust legacy (the hash is dropped) and v0. */
	check_demangled("_ZN6sym_rs3run17h0d2fa95c198e0494E", "sym_rs::run");
	check_demangled("_RNvCslqMvDhstvl0_6sym_rs3run", "sym_rs::run");
	check_demangled("_RINvNtCsjrHSEGnQ3l9_3std2rt10lang_startuECslqMvDhstvl0_6sym_rs",
			"std::rt::lang_start::<()>");
	/* C names, and things that only look mangled, stay as they are. */
	check_demangled("main", NULL);
	check_demangled("_start", NULL);
	check_demangled("_Zgarbage", NULL);
	check_demangled("_R", NULL);
	check_demangled("", NULL);
}

static void write_file(const char *path, const char *mode, const char *text)
{
	FILE *f = fopen(path, mode);

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* perf maps: hex with or without 0x, bad lines skipped, a line still being written is read
 * once complete, later entries for a reused address win, appended lines are found. */
static void test_perfmap(void **state)
{
	struct perfmap *pm;
	char path[64];

	(void)state;
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
	write_file(path, "w",
		   "1000 10 first\n0x2000 0x20 LazyCompile:*second app.js:3\nnot a line\n"
		   "4000 0 empty\n5000 10\n3000 10 partial");
	pm = perfmap__new(getpid(), true);
	assert_non_null(pm);
	assert_string_equal(perfmap__lookup(pm, 0x1000), "first");
	assert_string_equal(perfmap__lookup(pm, 0x100f), "first");
	assert_null(perfmap__lookup(pm, 0x1010));
	assert_string_equal(perfmap__lookup(pm, 0x201f), "LazyCompile:*second app.js:3");
	assert_null(perfmap__lookup(pm, 0x4000));
	assert_null(perfmap__lookup(pm, 0x5000));
	assert_null(perfmap__lookup(pm, 0x3005));
	write_file(path, "a", "\n1000 8 reused\n6000 4 late\n");
	assert_string_equal(perfmap__lookup(pm, 0x3005), "partial");
	assert_string_equal(perfmap__lookup(pm, 0x1004), "reused");
	assert_string_equal(perfmap__lookup(pm, 0x100c), "first");
	assert_string_equal(perfmap__lookup(pm, 0x6003), "late");
	perfmap__free(pm);
	unlink(path);
	/* No map at all. */
	pm = perfmap__new(getpid(), true);
	assert_non_null(pm);
	assert_null(perfmap__lookup(pm, 0x1000));
	perfmap__free(pm);
}

/* Tiny cache bounds: the address cache is emptied when full and one DWARF reader is open at a
 * time; every answer stays the same. */
static void test_cache_bounds(void **state)
{
	struct symbolizer_opts opts = {.max_cached_addrs = 3, .max_dwarf_open = 1};
	static const char *const names[] = {"fixture_alpha", "fixlib_add", "fixture_beta",
					    "fixlib_mul", "fixture_local"};
	struct symbolizer *s = symbolizer__new(&opts);
	const struct sym_result *r;
	struct fixture_proc fp;
	int round, i;

	(void)state;
	assert_non_null(s);
	spawn("fix_lib", &fp);
	for (round = 0; round < 3; round++) {
		for (i = 0; i < 5; i++) {
			r = resolve(s, fp.pid, addr_of(&fp, names[i]) + round, false);
			assert_string_equal(r->frames[0].function, names[i]);
			assert_non_null(r->frames[0].file);
			assert_true(r->frames[0].line > 0);
		}
	}
	reap(&fp);
	symbolizer__free(s);
}

static void test_vdso(void **state)
{
	struct symbolizer *s = symbolizer__new(NULL);
	const struct sym_result *r;
	struct fixture_proc fp;
	uint64_t addr;

	(void)state;
	assert_non_null(s);
	spawn("fix_pie", &fp);
	assert_int_equal(symbolizer__add_pid(s, fp.pid), 0);
	addr = addr_of(&fp, "__vdso_clock_gettime");
	r = resolve(s, fp.pid, addr + 1, false);
	/* clock_gettime is a weak alias at the same address: the global name wins. */
	assert_string_equal(r->frames[0].function, "__vdso_clock_gettime");
	assert_non_null(r->mapping);
	assert_string_equal(r->mapping->path, "[vdso]");
	assert_true(r->mapping->has_functions);
	reap(&fp);
	/* Kept after exit too. */
	r = resolve(s, fp.pid, addr, false);
	assert_string_equal(r->frames[0].function, "__vdso_clock_gettime");
	symbolizer__free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pie),
		cmocka_unit_test(test_nopie),
		cmocka_unit_test(test_shared_library),
		cmocka_unit_test(test_stripped),
		cmocka_unit_test(test_exited),
		cmocka_unit_test(test_deleted),
		cmocka_unit_test(test_pids),
		cmocka_unit_test(test_vdso),
		cmocka_unit_test(test_demangle),
		cmocka_unit_test(test_perfmap),
		cmocka_unit_test(test_cache_bounds),
	};

	return cmocka_run_group_tests(tests, build_fixtures, remove_fixtures);
}
