/* The table unwinder from every program type the profile types use: a uprobe, a tp_btf
 * (sched_switch), a raw syscall tp_btf (sys_enter) and a syscall tracepoint program call the
 * shared key_stacks() path (bpf/unwind_probe.bpf.c) on a target built without frame pointers;
 * each must see main -> level1 -> level2 (-> probe_me for the uprobe). The tracepoint program
 * needs tracefs to attach (its id is read there): without tracefs it is loaded (the verifier
 * still checks it) but not attached, and says so. Also the table compiler on its own, the
 * per-file table cache and tables built on demand. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cmocka.h>

#include "collect/collector.h"
#include "sym/symbolizer.h"
#include "unwind/table.h"
#include "unwind/unwinder.h"
#include "unwind_probe.skel.h"
#include "run_cmd.h"

static char tmpdir[64];
static char target[PATH_MAX];

static int build_fixture(void **state)
{
	const char *root = getenv("CPROF_SRCDIR");
	char src[2 * PATH_MAX], here[PATH_MAX], *slash;

	(void)state;
	snprintf(here, sizeof(here), "%s", root ? root : __FILE__);
	if (root) {
		snprintf(src, sizeof(src), "%s/tests/fixtures/unit/unwind_probe_target.c", root);
	} else {
		slash = strrchr(here, '/');
		if (slash)
			*slash = '\0';
		else
			snprintf(here, sizeof(here), ".");
		snprintf(src, sizeof(src), "%s/../fixtures/unit/unwind_probe_target.c", here);
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/cprof-test-unw-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(target, sizeof(target), "%s/target", tmpdir);
	return run("cc -O2 -g -fomit-frame-pointer -Wall -Werror %s -o %s", src, target);
}

static int remove_fixture(void **state)
{
	(void)state;
	if (tmpdir[0])
		run("rm -rf %s", tmpdir);
	return 0;
}

/* Whether a tracepoint can be attached: libbpf reads its id from tracefs. */
static bool have_tracefs_event(const char *event)
{
	static const char *const roots[] = {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"};
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		snprintf(path, sizeof(path), "%s/events/%s/id", roots[i], event);
		if (access(path, R_OK) == 0)
			return true;
	}
	return false;
}

static pid_t spawn_target(void)
{
	char line[64];
	int pipefd[2];
	pid_t pid;
	FILE *f;

	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		dup2(pipefd[1], STDOUT_FILENO);
		close(pipefd[0]);
		close(pipefd[1]);
		execl(target, target, "20", (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	f = fdopen(pipefd[0], "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	assert_string_equal(line, "ready\n");
	fclose(f);
	return pid;
}

/* Whether the stack, symbolized, holds want[0..n) as consecutive frames (leaf first). */
static bool has_chain(struct symbolizer *sym, pid_t pid, const uint64_t *ips, uint32_t nips,
		      const char *const *want, int n)
{
	struct sym_result r;

	for (uint32_t i = 0; i + n <= nips; i++) {
		int k = 0;

		for (; k < n; k++) {
			if (symbolizer__user(sym, pid, ips[i + k], i + k > 0, &r) ||
			    strcmp(r.frames[r.nframes - 1].function, want[k]))
				break;
		}
		if (k == n)
			return true;
	}
	return false;
}

/* Share (in 0..1) of the samples in counts whose stack holds the chain. */
static double chain_share(struct collector *c, struct symbolizer *sym, struct bpf_map *counts,
			  pid_t pid, const char *const *want, int n, uint64_t *total)
{
	struct cprof_key key, next, *prev = NULL;
	uint64_t ips[CPROF_MAX_STACK], val, ok = 0;
	int fd = bpf_map__fd(counts);

	*total = 0;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		uint32_t nips;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &val))
			continue;
		assert_true(key.flags & CPROF_KEY_USTACK_TABLE);
		nips = collector__read_stack(c, key.user_stack_id, ips);
		*total += val;
		if (has_chain(sym, pid, ips, nips, want, n))
			ok += val;
	}
	return *total ? (double)ok / *total : 0;
}

/* A target, the probe's programs loaded (the verifier checks them even where one cannot be
 * attached) and an unwinder on their maps; the symbolizer and collector that read the stacks
 * are set up on the first check. */
struct probe {
	pid_t pid;
	struct unwind_probe_bpf *skel;
	struct unwinder *u;
	struct collector c;
	struct symbolizer *sym;
};

static void probe_start(struct probe *p, struct unwinder_opts *wo)
{
	__u8 one = 1;
	__u32 key;

	*p = (struct probe){.pid = spawn_target()};
	p->skel = unwind_probe_bpf__open_and_load();
	assert_non_null(p->skel);
	key = (__u32)p->pid;
	assert_int_equal(bpf_map__update_elem(p->skel->maps.targets, &key, 4, &one, 1, 0), 0);
	wo->tables_fd = bpf_map__fd(p->skel->maps.unwind_tables);
	wo->mappings_fd = bpf_map__fd(p->skel->maps.unwind_mappings);
	wo->pid_maps_fd = -1;
	wo->used_fd = bpf_map__fd(p->skel->maps.unwind_used);
	p->u = unwinder__new(wo);
	assert_non_null(p->u);
}

/* At least 95% of the (more than 50) samples in counts hold the chain want[0..4). */
static void probe_expect(struct probe *p, struct bpf_map *counts, const char *const *want,
			 const char *what)
{
	struct symbolizer_opts so = {.no_kernel = true};
	uint64_t total;
	double s;

	if (!p->sym) {
		assert_int_equal(collector__bind(&p->c, p->skel->obj), 0);
		p->sym = symbolizer__new(&so);
		assert_non_null(p->sym);
		assert_int_equal(symbolizer__add_pid(p->sym, p->pid), 0);
	}
	s = chain_share(&p->c, p->sym, counts, p->pid, want, 4, &total);
	fprintf(stderr, "%s: %.3f of %llu\n", what, s, (unsigned long long)total);
	assert_true(total > 50 && s >= 0.95);
}

static void probe_stop(struct probe *p)
{
	symbolizer__free(p->sym);
	unwinder__free(p->u);
	unwind_probe_bpf__destroy(p->skel);
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
}

static const char *const UPROBE_CHAIN[] = {"probe_me", "level2", "level1", "main"};
/* In the kernel, the user stack starts in libc's clock_nanosleep, called by nap. */
static const char *const NAP_CHAIN[] = {"nap", "level2", "level1", "main"};

static void test_program_types(void **state)
{
	LIBBPF_OPTS(bpf_uprobe_opts, uo, .func_name = "probe_me");
	struct unwinder_opts wo = {};
	struct bpf_link *links[4] = {};
	bool tp = have_tracefs_event("syscalls/sys_enter_clock_nanosleep");
	int nlinks = tp ? 4 : 3;
	struct probe p;

	(void)state;
	probe_start(&p, &wo);
	assert_int_equal(unwinder__add_pid(p.u, p.pid, false), 0);
	links[0] =
		bpf_program__attach_uprobe_opts(p.skel->progs.probe_uprobe, p.pid, target, 0, &uo);
	links[1] = bpf_program__attach(p.skel->progs.probe_switch);
	links[2] = bpf_program__attach(p.skel->progs.probe_sys_enter);
	if (tp)
		links[3] = bpf_program__attach(p.skel->progs.probe_tracepoint);
	for (int i = 0; i < nlinks; i++)
		assert_non_null(links[i]);
	usleep(1500000);
	for (int i = 0; i < nlinks; i++)
		bpf_link__destroy(links[i]);

	probe_expect(&p, p.skel->maps.uprobe_counts, UPROBE_CHAIN, "uprobe");
	probe_expect(&p, p.skel->maps.switch_counts, NAP_CHAIN, "tp_btf");
	probe_expect(&p, p.skel->maps.sys_counts, NAP_CHAIN, "tp_btf sys_enter");
	if (tp)
		probe_expect(&p, p.skel->maps.tp_counts, NAP_CHAIN, "tracepoint");
	else
		fprintf(stderr, "tracepoint: loaded, not attached (no tracefs)\n");
	probe_stop(&p);
}

/* The per-file table cache: a second process of the same files builds nothing; under a budget
 * one table short, the last table waits (tables just built are not evicted), and once they
 * have aged a walk's miss notice rebuilds it by evicting the least recently used, never
 * passing the budget. */
static void test_table_cache(void **state)
{
	struct unwinder_opts wo = {.pid_maps_fd = -1};
	struct unwinder_stats st, st2;
	struct unwind_probe_bpf *skel;
	struct unwinder *u;
	pid_t p1, p2;

	(void)state;
	p1 = spawn_target();
	p2 = spawn_target();
	skel = unwind_probe_bpf__open_and_load();
	assert_non_null(skel);
	wo.tables_fd = bpf_map__fd(skel->maps.unwind_tables);
	wo.mappings_fd = bpf_map__fd(skel->maps.unwind_mappings);
	wo.used_fd = bpf_map__fd(skel->maps.unwind_used);
	u = unwinder__new(&wo);
	assert_non_null(u);
	assert_int_equal(unwinder__add_pid(u, p1, false), 0);
	unwinder__stats(u, &st);
	assert_true(st.builds >= 3); /* the target, libc, ld.so (and the vDSO) */
	assert_int_equal(st.tables, st.builds);
	assert_int_equal(unwinder__add_pid(u, p2, false), 0);
	unwinder__stats(u, &st2);
	assert_int_equal(st2.builds, st.builds); /* shared: nothing built for the second */
	assert_true(st2.exe_hits >= st.builds);
	assert_int_equal(st2.procs, 2);
	unwinder__remove_pid(u, p2);
	unwinder__stats(u, &st2);
	assert_int_equal(st2.procs, 1);
	assert_int_equal(st2.tables, st.tables); /* kept for the next process of those files */
	unwinder__free(u);

	/* Every table but one fits. */
	wo.budget_bytes = st.bytes - 1;
	u = unwinder__new(&wo);
	assert_non_null(u);
	assert_int_equal(unwinder__add_pid(u, p1, false), 0);
	unwinder__stats(u, &st2);
	assert_true(st2.bytes <= wo.budget_bytes);
	assert_int_equal(st2.evicted, 0);
	assert_int_equal(st2.over_budget, 1);
	assert_int_equal(st2.tables, st.tables - 1);
	usleep(300 * 1000); /* the tables are no longer recent */
	for (uint32_t id = 1; id <= 8; id++)
		assert_int_equal(unwinder__table_missed(u, p1, id), 0);
	/* Queued by the miss, built between readings of the notices (collector__poll). */
	while (unwinder__idle(u))
		;
	unwinder__stats(u, &st2);
	assert_int_equal(st2.rebuilds, 1);
	assert_true(st2.evicted >= 1);
	assert_true(st2.bytes <= wo.budget_bytes);
	assert_true(st2.misses == 8);
	unwinder__free(u);
	unwind_probe_bpf__destroy(skel);
	kill(p1, SIGKILL);
	kill(p2, SIGKILL);
	waitpid(p1, NULL, 0);
	waitpid(p2, NULL, 0);
}

/* The notices of walks that met a table not loaded, handed to the unwinder. */
static int on_notice(void *ctx, void *data, size_t size)
{
	const struct cprof_proc_event *e = data;

	if (size >= sizeof(*e) && e->kind == CPROF_PROC_UNWIND_MISS)
		unwinder__table_missed(ctx, (pid_t)e->pid, (uint32_t)e->code);
	return 0;
}

/* Empties a map of counts (between two phases). */
static void clear_counts(struct bpf_map *counts)
{
	struct cprof_key key;
	int fd = bpf_map__fd(counts);

	while (bpf_map_get_next_key(fd, NULL, &key) == 0)
		bpf_map_delete_elem(fd, &key);
}

/* Tables on demand (the agent's way): the target's files get table ids and no tables; its
 * walks ask for the tables they meet (CPROF_PROC_UNWIND_MISS), which are built then; after that
 * the walks keep their callers. ld.so, mapped but in none of its sampled stacks, never gets a
 * table. */
static void test_tables_on_demand(void **state)
{
	LIBBPF_OPTS(bpf_uprobe_opts, uo, .func_name = "probe_me");
	struct unwinder_opts wo = {.on_demand = true};
	struct unwinder_stats st0, st;
	struct ring_buffer *rb;
	struct bpf_link *link;
	struct probe p;

	(void)state;
	probe_start(&p, &wo);
	assert_int_equal(unwinder__add_pid(p.u, p.pid, true), 0);
	unwinder__stats(p.u, &st0);
	assert_true(st0.on_demand >= 3); /* the target, libc, ld.so */
	assert_int_equal(st0.deferred, 0);
	assert_true(st0.builds <= 1); /* the vDSO's, read from the process at once */
	rb = ring_buffer__new(bpf_map__fd(p.skel->maps.proc_events), on_notice, p.u, NULL);
	assert_non_null(rb);

	/* A walk stops at the first table it misses: the next table is asked for by the walks
	 * after that one is built, a round later. */
	for (int round = 0, n = 1; round < 5 && n > 0; round++) {
		link = bpf_program__attach_uprobe_opts(p.skel->progs.probe_uprobe, p.pid, target, 0,
						       &uo);
		assert_non_null(link);
		usleep(300000);
		bpf_link__destroy(link);
		n = ring_buffer__consume(rb);
		assert_true(n >= 0);
		while (unwinder__idle(p.u))
			;
	}
	unwinder__stats(p.u, &st);
	fprintf(stderr, "on demand: %llu of %llu files built\n",
		(unsigned long long)(st.builds - st0.builds), (unsigned long long)st.on_demand);
	assert_true(st.misses >= 2); /* the target's table and libc's */
	assert_true(st.builds - st0.builds >= 2);
	assert_true(st.builds - st0.builds < st.on_demand);

	clear_counts(p.skel->maps.uprobe_counts);
	link = bpf_program__attach_uprobe_opts(p.skel->progs.probe_uprobe, p.pid, target, 0, &uo);
	assert_non_null(link);
	usleep(1000000);
	bpf_link__destroy(link);
	probe_expect(&p, p.skel->maps.uprobe_counts, UPROBE_CHAIN, "uprobe, tables built");
	ring_buffer__free(rb);
	probe_stop(&p);
}

/* The compiled table of the target: sorted, and at main's first instruction CFA = rsp + 8. */
static void test_table_of_target(void **state)
{
	struct unwind_table t;
	int fd = open(target, O_RDONLY);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(unwind_table__build(fd, &t), 0);
	close(fd);
	assert_true(t.n > 4);
	for (size_t i = 1; i < t.n; i++)
		assert_true(t.rows[i - 1].pc < t.rows[i].pc);
	assert_true(t.build_id[0]);
	assert_true(t.kinds[CPROF_UNW_STOP] >= 1); /* _start */
	assert_null(unwind_table__find(&t, t.rows[0].pc - 1));
	assert_non_null(unwind_table__find(&t, t.rows[t.n - 1].pc + 100));
	unwind_table__free(&t);
}

static void test_table_errors(void **state)
{
	struct unwind_table t;
	int fd = open("/proc/self/status", O_RDONLY);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(unwind_table__build(fd, &t), -ENOEXEC);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_of_target),	 cmocka_unit_test(test_table_errors),
		cmocka_unit_test(test_program_types),	 cmocka_unit_test(test_table_cache),
		cmocka_unit_test(test_tables_on_demand),
	};

	return cmocka_run_group_tests(tests, build_fixture, remove_fixture);
}
