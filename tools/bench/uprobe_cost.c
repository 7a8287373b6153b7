/* What one uprobe trap costs on this machine, by attach method and program, measured in this
 * process (tools/bench/bench_heap.py builds and runs it). Each spec is
 *
 *     LOOP/PROBES/METHOD/PROG[/nopid]
 *
 * LOOP    push | nop5 | test: calls of a function of this program that begins with that
 *         instruction (push is emulated at a breakpoint, test is single-stepped out of line,
 *         nop5 is what the kernel's optimized uprobes rewrite into a call);
 *         malloc: 16-256 byte malloc/free pairs through this process's libc.
 * PROBES  comma list: entry, ret (the loop's function), or for malloc: malloc, malloc-ret, free,
 *         free-push (free's breakpoint past its `test %rdi,%rdi; je` on the push, as cprof-bpf
 *         places it); none: no probe (the baseline).
 * METHOD  perf (a perf_event uprobe, bpf_program__attach_uprobe), multi (a uprobe_multi link),
 *         session (a uprobe_multi session: one program at entry and return).
 * PROG    empty | shared (one counter in an array: a cache line shared by the cores) | percpu
 *         (bpftrace's count()) | sleepable (empty, BPF_F_SLEEPABLE) | a program of
 *         uprobe_cost.bpf.c by name (the pieces of an unsampled call).
 * nopid   no pid filter (not allowed on malloc: that would trap every process on the machine).
 *
 *     uprobe_cost [-t THREADS] [-n CALLS] BPF_OBJ SPEC...
 *
 * prints per spec: calls per second per thread, and ns per call of wall and of thread CPU time. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collect/uprobe_multi.h"

#define MAX_THREADS  8
#define MAX_PROBES   8

/* Functions to probe, each beginning with the instruction it is named after. */
void f_push(void);
void f_nop5(void);
void f_test(void *);
__asm__(".text\n"
	".globl f_push\n.type f_push,@function\nf_push:\n"
	"push %rbp\nmov %rsp,%rbp\npop %rbp\nret\n"
	".globl f_nop5\n.type f_nop5,@function\nf_nop5:\n"
	".byte 0x0f,0x1f,0x44,0x00,0x00\nret\n"
	".globl f_test\n.type f_test,@function\nf_test:\n"
	"test %rdi,%rdi\nret\n");

enum loop {
	L_PUSH,
	L_NOP5,
	L_TEST,
	L_MALLOC
};

static enum loop loop;
static long calls = 2000000;
static int nthreads = 1;
static pthread_barrier_t barrier;
static void *volatile sink;

static double now(clockid_t c)
{
	struct timespec t;

	clock_gettime(c, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

struct result {
	double wall, cpu;
};

static void *worker(void *arg)
{
	struct result *r = arg;
	unsigned int x = (unsigned int)(uintptr_t)arg | 1u;
	double w, c;

	pthread_barrier_wait(&barrier);
	w = now(CLOCK_MONOTONIC);
	c = now(CLOCK_THREAD_CPUTIME_ID);
	for (long i = 0; i < calls; i++) {
		switch (loop) {
		case L_PUSH:
			f_push();
			break;
		case L_NOP5:
			f_nop5();
			break;
		case L_TEST:
			f_test(&x);
			break;
		case L_MALLOC: {
			char *p;

			x = x * 1103515245u + 12345u;
			p = malloc(16 + (x >> 16) % 241);
			p[0] = 1;
			sink = p;
			free(p);
			break;
		}
		}
	}
	r->cpu = now(CLOCK_THREAD_CPUTIME_ID) - c;
	r->wall = now(CLOCK_MONOTONIC) - w;
	return NULL;
}

static int run(struct result *avg)
{
	pthread_t t[MAX_THREADS];
	struct result r[MAX_THREADS];

	pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
	for (int i = 1; i < nthreads; i++)
		if (pthread_create(&t[i], NULL, worker, &r[i]))
			return -1;
	worker(&r[0]);
	avg->wall = avg->cpu = 0;
	for (int i = 0; i < nthreads; i++) {
		if (i)
			pthread_join(t[i], NULL);
		avg->wall += r[i].wall / nthreads;
		avg->cpu += r[i].cpu / nthreads;
	}
	pthread_barrier_destroy(&barrier);
	return 0;
}

/* File offset of a function of this process: its address minus its mapping's start, plus the
 * mapping's file offset, from /proc/self/maps. */
static int file_offset(const void *addr, char *path, size_t len, uint64_t *off)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[4096], p[4096];
	unsigned long lo, hi, fo;
	int found = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		p[0] = '\0';
		if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %4095s", &lo, &hi, &fo, p) < 3)
			continue;
		if ((uintptr_t)addr >= lo && (uintptr_t)addr < hi && p[0] == '/') {
			snprintf(path, len, "%s", p);
			*off = (uintptr_t)addr - lo + fo;
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

struct probe {
	char path[4096];
	uint64_t off;
	bool ret;
};

/* The probe points of a spec's PROBES. */
static int probes_of(const char *list, struct probe *pr, int *n)
{
	char buf[256], *save = NULL, *tok;
	const void *fn = loop == L_PUSH	  ? (void *)f_push
			 : loop == L_NOP5 ? (void *)f_nop5
					  : (void *)f_test;
	int err;

	*n = 0;
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const void *at;
		int skip = 0;
		bool ret = false;

		if (strcmp(tok, "none") == 0)
			continue;
		if (*n == MAX_PROBES)
			return -E2BIG;
		if (loop != L_MALLOC && (!strcmp(tok, "entry") || !strcmp(tok, "ret"))) {
			at = fn;
			ret = !strcmp(tok, "ret");
		} else if (loop == L_MALLOC && !strncmp(tok, "malloc", 6)) {
			at = (void *)malloc;
			ret = !strcmp(tok, "malloc-ret");
		} else if (loop == L_MALLOC && !strcmp(tok, "free")) {
			at = (void *)free;
		} else if (loop == L_MALLOC && !strcmp(tok, "free-push")) {
			const unsigned char *b = (const unsigned char *)free;

			at = (void *)free;
			/* test %rdi,%rdi; je rel8 | je rel32 */
			if (b[0] == 0x48 && b[1] == 0x85 && b[2] == 0xff)
				skip = b[3] == 0x74 ? 5 : b[3] == 0x0f ? 9 : 0;
			if (!skip)
				return -ENOTSUP;
		} else {
			return -EINVAL;
		}
		err = file_offset(at, pr[*n].path, sizeof(pr[*n].path), &pr[*n].off);
		if (err)
			return err;
		pr[*n].off += (uint64_t)skip;
		pr[*n].ret = ret;
		(*n)++;
	}
	return 0;
}

static int attach_multi(struct bpf_program *prog, const struct probe *p, bool session, pid_t pid)
{
	struct uprobe_multi_attr a = {
		.prog_fd = (__u32)bpf_program__fd(prog),
		.attach_type = session ? CPROF_BPF_TRACE_UPROBE_SESSION : CPROF_BPF_TRACE_UPROBE_MULTI,
		.path = (__u64)(uintptr_t)p->path,
		.offsets = (__u64)(uintptr_t)&p->off,
		.cnt = 1,
		.multi_flags = !session && p->ret ? CPROF_BPF_F_UPROBE_MULTI_RETURN : 0,
		.pid = (__u32)pid,
	};
	int fd = (int)syscall(__NR_bpf, BPF_LINK_CREATE, &a, sizeof(a));

	return fd < 0 ? -errno : fd;
}

/* One spec: attach, run, detach. */
static int measure(const char *obj_path, const char *spec, struct result *res)
{
	char loop_s[16], probes_s[128], method[16], prog_s[32], opt[16] = "";
	struct probe pr[MAX_PROBES];
	struct bpf_link *links[MAX_PROBES] = {0};
	int fds[MAX_PROBES], n, nfd = 0, err;
	struct bpf_object *obj = NULL;
	struct bpf_program *prog = NULL, *q;
	struct bpf_map *m;
	bool session, multi, want_ret = false;
	pid_t pid;

	if (sscanf(spec, "%15[^/]/%127[^/]/%15[^/]/%31[^/]/%15s", loop_s, probes_s, method, prog_s,
		   opt) < 4)
		return -EINVAL;
	loop = !strcmp(loop_s, "push")	 ? L_PUSH
	       : !strcmp(loop_s, "nop5") ? L_NOP5
	       : !strcmp(loop_s, "test") ? L_TEST
					 : L_MALLOC;
	if (loop == L_MALLOC && strcmp(loop_s, "malloc"))
		return -EINVAL;
	err = probes_of(probes_s, pr, &n);
	if (err)
		return err;
	if (!strcmp(opt, "nopid") && loop == L_MALLOC)
		return -EPERM;
	session = !strcmp(method, "session");
	multi = session || !strcmp(method, "multi");
	if (!multi && strcmp(method, "perf"))
		return -EINVAL;
	pid = !strcmp(opt, "nopid") ? (multi ? 0 : -1) : getpid();
	for (int i = 0; i < n; i++)
		want_ret |= pr[i].ret;

	if (n) {
		obj = bpf_object__open_file(obj_path, NULL);
		if (!obj)
			return -errno;
		prog = bpf_object__find_program_by_name(obj,
							!strcmp(prog_s, "sleepable") ? "empty"
							: !strcmp(prog_s, "shared") ? "count_shared"
							: !strcmp(prog_s, "percpu") ? "count_percpu"
										    : prog_s);
		if (!prog) {
			err = -ENOENT;
			goto out;
		}
		bpf_object__for_each_program(q, obj) bpf_program__set_autoload(q, q == prog);
		if (multi)
			bpf_program__set_expected_attach_type(
				prog, (enum bpf_attach_type)(session ? CPROF_BPF_TRACE_UPROBE_SESSION : CPROF_BPF_TRACE_UPROBE_MULTI));
		if (!strcmp(prog_s, "sleepable"))
			bpf_program__set_flags(prog, BPF_F_SLEEPABLE);
		/* A session entry returning 1 skips the return; 0 asks for it. */
		bpf_object__for_each_map(m, obj)
		{
			int r = session && !want_ret;

			if (strstr(bpf_map__name(m), ".rodata"))
				bpf_map__set_initial_value(m, &r, sizeof(r));
		}
		err = bpf_object__load(obj);
		if (err)
			goto out;
	}
	for (int i = 0; i < n; i++) {
		if (session && pr[i].ret)
			continue; /* the entry's session covers the return */
		if (multi) {
			fds[nfd] = attach_multi(prog, &pr[i], session, pid);
			if (fds[nfd] < 0) {
				err = fds[nfd];
				goto out;
			}
			nfd++;
		} else {
			links[i] = bpf_program__attach_uprobe(prog, pr[i].ret, pid, pr[i].path,
							      pr[i].off);
			if (!links[i]) {
				err = -errno;
				goto out;
			}
		}
	}
	err = run(res);
out:
	for (int i = 0; i < nfd; i++)
		close(fds[i]);
	for (int i = 0; i < n; i++)
		bpf_link__destroy(links[i]);
	bpf_object__close(obj);
	return err;
}

int main(int argc, char **argv)
{
	int c, err, rc = 0;

	while ((c = getopt(argc, argv, "t:n:")) != -1) {
		if (c == 't')
			nthreads = atoi(optarg);
		else if (c == 'n')
			calls = atol(optarg);
		else
			return 2;
	}
	if (nthreads < 1 || nthreads > MAX_THREADS || calls < 1 || optind + 1 >= argc) {
		fprintf(stderr, "usage: uprobe_cost [-t THREADS] [-n CALLS] BPF_OBJ SPEC...\n");
		return 2;
	}
	libbpf_set_print(NULL);
	for (int i = optind + 1; i < argc; i++) {
		struct result r;

		err = measure(argv[optind], argv[i], &r);
		if (err) {
			printf("%s error %s\n", argv[i], strerror(-err));
			rc = 1;
			continue;
		}
		printf("%s calls/s %.0f wall_ns %.1f cpu_ns %.1f\n", argv[i], calls / r.wall,
		       r.wall / calls * 1e9, r.cpu / calls * 1e9);
		fflush(stdout);
	}
	return rc;
}
