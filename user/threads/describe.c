/* Turns the records of the task iterator into what a person reads: states, durations, waits,
 * lock owners and wait-for cycles. Pure functions of the records (and of the function names of
 * a waiting thread's stack), so that the unit tests drive them with made-up threads. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/futex.h>

#include "pprof/builder.h"
#include "threads/snapshot.h"
#include "util/array.h"

/* task->__state bits (include/linux/sched.h); stable since Linux 5.14. */
#define TASK_INTERRUPTIBLE   0x0001
#define TASK_UNINTERRUPTIBLE 0x0002
#define TASK_STOPPED	     0x0004
#define TASK_TRACED	     0x0008
#define TASK_PARKED	     0x0040
#define TASK_DEAD	     0x0080
#define TASK_NOLOAD	     0x0400
#define TASK_RTLOCK_WAIT     0x1000
#define TASK_FROZEN	     0x8000
#define EXIT_DEAD	     0x0010
#define EXIT_ZOMBIE	     0x0020

/* FUTEX_TID_MASK: the owner's tid in a PI or robust futex word. */
#define FUTEX_OWNER_MASK 0x3fffffffu

struct threads_snapshot *threads_snapshot__new(void)
{
	return calloc(1, sizeof(struct threads_snapshot));
}

void threads_snapshot__free(struct threads_snapshot *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->ncycles; i++)
		free(s->cycles[i].members);
	free(s->cycles);
	free(s->t);
	free(s);
}

int threads_snapshot__add(struct threads_snapshot *s, const struct cprof_thread *rec)
{
	struct thread_info *t;

	if (array__reserve((void **)&s->t, &s->cap, s->n + 1, sizeof(*s->t)))
		return -ENOMEM;
	t = &s->t[s->n++];
	memset(t, 0, sizeof(*t));
	t->rec = *rec;
	t->owner = -1;
	if (t->rec.nustack > CPROF_MAX_STACK)
		t->rec.nustack = CPROF_MAX_STACK;
	if (t->rec.nkstack > CPROF_MAX_STACK)
		t->rec.nkstack = CPROF_MAX_STACK;
	t->rec.comm[CPROF_COMM_LEN - 1] = '\0';
	t->rec.pcomm[CPROF_COMM_LEN - 1] = '\0';
	if (rec->flags & CPROF_THREAD_ON_CPU)
		s->running++;
	return 0;
}

static int thread_cmp(const void *a, const void *b)
{
	const struct thread_info *x = a, *y = b;

	if (x->rec.pid != y->rec.pid)
		return x->rec.pid < y->rec.pid ? -1 : 1;
	if (x->rec.tid != y->rec.tid)
		return x->rec.tid < y->rec.tid ? -1 : 1;
	return 0;
}

void threads_snapshot__sort(struct threads_snapshot *s)
{
	if (s->n)
		qsort(s->t, s->n, sizeof(*s->t), thread_cmp);
}

const char *threads__state_name(uint32_t state, uint32_t exit_state, bool on_cpu, char *code)
{
	static const struct {
		uint32_t bits;
		char code;
		const char *name;
	} states[] = {
		{TASK_STOPPED, 'T', "stopped"},
		{TASK_TRACED, 't', "tracing stop"},
		{TASK_PARKED, 'P', "parked"},
		{TASK_FROZEN, 'D', "frozen"},
	};

	if (exit_state & EXIT_ZOMBIE) {
		*code = 'Z';
		return "zombie";
	}
	if ((exit_state & EXIT_DEAD) || (state & TASK_DEAD)) {
		*code = 'X';
		return "dead";
	}
	if (state == 0) {
		*code = 'R';
		return on_cpu ? "running" : "runnable";
	}
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		if (state & states[i].bits) {
			*code = states[i].code;
			return states[i].name;
		}
	}
	/* TASK_IDLE is uninterruptible without load: a kernel thread waiting for work. */
	if ((state & TASK_UNINTERRUPTIBLE) && (state & TASK_NOLOAD)) {
		*code = 'I';
		return "idle";
	}
	if (state & (TASK_UNINTERRUPTIBLE | TASK_RTLOCK_WAIT)) {
		*code = 'D';
		return "disk sleep";
	}
	*code = 'S';
	return "sleeping";
}

void threads__format_duration(uint64_t ns, char *buf, size_t len)
{
	uint64_t s = ns / 1000000000ull;

	if (ns < 1000000ull)
		snprintf(buf, len, "%" PRIu64 "us", ns / 1000);
	else if (ns < 1000000000ull)
		snprintf(buf, len, "%" PRIu64 "ms", ns / 1000000);
	else if (s < 60)
		snprintf(buf, len, "%.2fs", ns / 1e9);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
}

/* How long the thread has been in its state, in the scheduler's clock (see threads.h). */
static void describe_duration(struct thread_info *t)
{
	const struct cprof_thread *r = &t->rec;
	uint64_t since;

	if (!r->now || r->exit_state || !r->last_arrival)
		return; /* a zombie's times stop at its exit; nothing says when that was */
	if (r->state == 0 && (r->flags & CPROF_THREAD_ON_CPU))
		since = r->last_arrival;
	else if (r->state == 0)
		since = r->last_queued ? r->last_queued : r->last_arrival + r->slice_ns;
	else
		since = r->last_arrival + r->slice_ns;
	t->state_known_ns = true;
	t->state_ns = r->now > since ? r->now - since : 0;
}

/* The glibc functions that tell what a futex wait is for, by name (with debug symbols the
 * names of the implementation: ___pthread_mutex_lock, __pthread_cond_wait_common...). The
 * innermost match wins: pthread_cond_wait re-taking its mutex is a mutex wait. */
static const struct {
	const char *needle;
	enum thread_wait wait;
	bool write;
} futex_users[] = {
	{"pthread_mutex_lock", THREAD_WAIT_MUTEX},
	{"pthread_mutex_timedlock", THREAD_WAIT_MUTEX},
	{"pthread_mutex_clocklock", THREAD_WAIT_MUTEX},
	{"pthread_mutex_cond_lock", THREAD_WAIT_MUTEX},
	{"pthread_rwlock_wrlock", THREAD_WAIT_RWLOCK, true},
	{"pthread_rwlock_timedwrlock", THREAD_WAIT_RWLOCK, true},
	{"pthread_rwlock_clockwrlock", THREAD_WAIT_RWLOCK, true},
	{"pthread_rwlock_rdlock", THREAD_WAIT_RWLOCK},
	{"pthread_rwlock_timedrdlock", THREAD_WAIT_RWLOCK},
	{"pthread_rwlock_clockrdlock", THREAD_WAIT_RWLOCK},
	{"pthread_cond_wait", THREAD_WAIT_CONDVAR},
	{"pthread_cond_timedwait", THREAD_WAIT_CONDVAR},
	{"pthread_cond_clockwait", THREAD_WAIT_CONDVAR},
	{"sem_wait", THREAD_WAIT_SEMAPHORE},
	{"sem_timedwait", THREAD_WAIT_SEMAPHORE},
	{"sem_clockwait", THREAD_WAIT_SEMAPHORE},
	{"pthread_join", THREAD_WAIT_JOIN},
	{"pthread_timedjoin", THREAD_WAIT_JOIN},
	{"pthread_clockjoin", THREAD_WAIT_JOIN},
};

static const char *const wait_labels[] = {
	[THREAD_WAIT_FUTEX] = "futex",	       [THREAD_WAIT_MUTEX] = "mutex",
	[THREAD_WAIT_RWLOCK] = "rwlock",       [THREAD_WAIT_CONDVAR] = "condvar",
	[THREAD_WAIT_SEMAPHORE] = "semaphore", [THREAD_WAIT_JOIN] = "join",
};

static void classify_futex(struct thread_info *t, const char *const *fnames, size_t nf)
{
	const struct cprof_thread *r = &t->rec;
	uint32_t op = r->args[1] & FUTEX_CMD_MASK;
	uint32_t word = (uint32_t)r->futex[0];

	t->wait = THREAD_WAIT_FUTEX;
	t->lock = r->args[0];
	for (size_t i = 0; i < nf && t->wait == THREAD_WAIT_FUTEX; i++) {
		for (size_t k = 0; fnames[i] && k < sizeof(futex_users) / sizeof(futex_users[0]);
		     k++) {
			if (!strstr(fnames[i], futex_users[k].needle))
				continue;
			t->wait = futex_users[k].wait;
			t->rwlock_write = futex_users[k].write;
			snprintf(t->where, sizeof(t->where), "%s", fnames[i]);
			break;
		}
	}
	/* A PI mutex's futex word is its owner's tid, whoever waits on it. */
	if (op == FUTEX_LOCK_PI || op == FUTEX_LOCK_PI2 || op == FUTEX_WAIT_REQUEUE_PI) {
		if (t->wait == THREAD_WAIT_FUTEX)
			t->wait = THREAD_WAIT_MUTEX;
		if (r->flags & CPROF_THREAD_FUTEX_READ) {
			t->owner_tid = word & FUTEX_OWNER_MASK;
			t->lock_free = word == 0;
		}
	} else if (t->wait == THREAD_WAIT_MUTEX && (r->flags & CPROF_THREAD_FUTEX_READ)) {
		/* glibc's pthread_mutex_t: __lock (the futex word) at 0, __count at 4, __owner at
		 * 8. A robust mutex's word holds the owner too. */
		t->owner_tid = (uint32_t)r->futex[1];
		if (!t->owner_tid && (word & FUTEX_OWNER_MASK) > 2)
			t->owner_tid = word & FUTEX_OWNER_MASK;
		t->lock_free = word == 0;
	} else if (t->wait == THREAD_WAIT_JOIN && (r->flags & CPROF_THREAD_FUTEX_READ)) {
		/* pthread_join waits on the joined thread's tid word, which the kernel clears at
		 * its exit (CLONE_CHILD_CLEARTID). */
		t->owner_tid = word;
	}
	t->wait_label = wait_labels[t->wait];
}

static const char *futex_op_name(uint64_t op)
{
	static const char *const names[] = {
		[FUTEX_WAIT] = "FUTEX_WAIT",
		[FUTEX_WAKE] = "FUTEX_WAKE",
		[FUTEX_FD] = "FUTEX_FD",
		[FUTEX_REQUEUE] = "FUTEX_REQUEUE",
		[FUTEX_CMP_REQUEUE] = "FUTEX_CMP_REQUEUE",
		[FUTEX_WAKE_OP] = "FUTEX_WAKE_OP",
		[FUTEX_LOCK_PI] = "FUTEX_LOCK_PI",
		[FUTEX_UNLOCK_PI] = "FUTEX_UNLOCK_PI",
		[FUTEX_TRYLOCK_PI] = "FUTEX_TRYLOCK_PI",
		[FUTEX_WAIT_BITSET] = "FUTEX_WAIT_BITSET",
		[FUTEX_WAKE_BITSET] = "FUTEX_WAKE_BITSET",
		[FUTEX_WAIT_REQUEUE_PI] = "FUTEX_WAIT_REQUEUE_PI",
		[FUTEX_CMP_REQUEUE_PI] = "FUTEX_CMP_REQUEUE_PI",
		[FUTEX_LOCK_PI2] = "FUTEX_LOCK_PI2",
	};
	uint64_t cmd = op & FUTEX_CMD_MASK;

	return cmd < sizeof(names) / sizeof(names[0]) && names[cmd] ? names[cmd] : "FUTEX_?";
}

/* Syscalls whose first argument is a file descriptor worth naming. */
static bool fd_first(const char *name)
{
	static const char *const fd_calls[] = {
		"read",	       "write",	       "pread64",	 "pwrite64",   "readv",
		"writev",      "preadv",       "pwritev",	 "preadv2",    "pwritev2",
		"recvfrom",    "recvmsg",      "recvmmsg",	 "sendto",     "sendmsg",
		"sendmmsg",    "accept",       "accept4",	 "connect",    "epoll_wait",
		"epoll_pwait", "epoll_pwait2", "fsync",		 "fdatasync",  "flock",
		"ioctl",       "fcntl",	       "io_uring_enter", "getdents64", "splice",
	};

	for (size_t i = 0; i < sizeof(fd_calls) / sizeof(fd_calls[0]); i++)
		if (strcmp(name, fd_calls[i]) == 0)
			return true;
	return false;
}

/* What fd of the thread's process is ("pipe:[123]", "socket:[45]", a path), read from
 * /proc now (the snapshot was just taken). Returns whether it was found. */
static bool fd_target(const struct cprof_thread *r, int fd, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	buf[0] = '\0';
	if (fd < 0 || !r->pid)
		return false;
	snprintf(path, sizeof(path), "/proc/%u/fd/%d", r->pid, fd);
	n = readlink(path, buf, len - 1);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* What the syscall's arguments say, e.g. "read(fd 3)", "futex(0x.., FUTEX_WAIT_PRIVATE, 2)". */
static void describe_syscall(struct thread_info *t, const char *name)
{
	const struct cprof_thread *r = &t->rec;
	uint64_t a[6];
	char target[96] = "";
	char *d = t->wait_desc;
	size_t len = sizeof(t->wait_desc);

	for (int i = 0; i < 6; i++)
		a[i] = r->args[i];

	if (strcmp(name, "futex") == 0)
		snprintf(d, len, "futex(0x%" PRIx64 ", %s%s%s, %" PRIu64 ")", a[0],
			 futex_op_name(a[1]), (a[1] & FUTEX_PRIVATE_FLAG) ? "_PRIVATE" : "",
			 (a[1] & FUTEX_CLOCK_REALTIME) ? "|FUTEX_CLOCK_REALTIME" : "",
			 a[2] & 0xffffffffu);
	else if (fd_first(name))
		snprintf(d, len, "%s(fd %d%s%s)", name, (int)a[0],
			 fd_target(r, (int)a[0], target, sizeof(target)) ? ": " : "", target);
	else if (strcmp(name, "poll") == 0 || strcmp(name, "ppoll") == 0)
		snprintf(d, len, "%s(%" PRIu64 " fds)", name, a[1]);
	else if (strcmp(name, "clock_nanosleep") == 0)
		snprintf(d, len, "clock_nanosleep(clock %d)", (int)a[0]);
	else if (strcmp(name, "wait4") == 0 || strcmp(name, "waitid") == 0)
		snprintf(d, len, "%s(%d)", name, (int)a[strcmp(name, "waitid") == 0]);
	else
		snprintf(d, len, "%s", name);
}

void threads__describe(struct thread_info *t, const char *const *fnames, size_t nf)
{
	const struct cprof_thread *r = &t->rec;
	const char *name;

	t->state = threads__state_name(r->state, r->exit_state, r->flags & CPROF_THREAD_ON_CPU,
				       &t->state_code);
	describe_duration(t);
	t->wait = THREAD_WAIT_NONE;
	t->wait_label = NULL;
	t->wait_desc[0] = '\0';
	t->where[0] = '\0';
	/* A running thread's saved registers are from its last kernel entry, not what it does
	 * now: it waits on nothing. */
	if (!(r->flags & CPROF_THREAD_IN_SYSCALL) || (r->flags & CPROF_THREAD_ON_CPU) ||
	    r->state == 0)
		return;
	name = threads__syscall_name(r->syscall);
	if (!name) {
		t->wait = THREAD_WAIT_SYSCALL;
		t->wait_label = "syscall";
		snprintf(t->wait_desc, sizeof(t->wait_desc), "syscall %" PRId64,
			 (int64_t)r->syscall);
		return;
	}
	describe_syscall(t, name);
	if (strcmp(name, "futex") == 0) {
		classify_futex(t, fnames, nf);
		return;
	}
	t->wait = THREAD_WAIT_SYSCALL;
	t->wait_label = name;
}

void threads__thread_name(const struct threads_snapshot *s, size_t i, char *buf, size_t len)
{
	snprintf(buf, len, "thread %u (%s)", s->t[i].rec.tid, s->t[i].rec.comm);
}

/* The thread of process pid whose own namespace calls it ns_tid: the snapshot is sorted by
 * (pid, tid), so the process's threads are one run; a binary search finds it. */
static long find_thread(const struct threads_snapshot *s, uint32_t pid, uint32_t ns_tid)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->t[mid].rec.pid < pid)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < s->n && s->t[i].rec.pid == pid; i++)
		if (s->t[i].rec.ns_tid == ns_tid)
			return (long)i;
	return -1;
}

static bool links(const struct thread_info *t)
{
	return (t->wait == THREAD_WAIT_MUTEX || t->wait == THREAD_WAIT_JOIN) && t->owner_tid &&
	       !t->lock_free;
}

/* Walks the wait-for edges from i; a walk that comes back to a thread of its own path found
 * a cycle (each thread waits for one thing at most, so each thread is in one cycle at most). */
static int find_cycle(struct threads_snapshot *s, size_t i, uint32_t *mark, uint32_t walk)
{
	struct thread_cycle *c;
	size_t j = i, n = 0, start;

	while (s->t[j].owner >= 0 && !mark[j]) {
		mark[j] = walk;
		j = (size_t)s->t[j].owner;
	}
	if (mark[j] != walk || s->t[j].deadlock || s->t[j].owner < 0)
		return 0; /* the path ended, or joined an earlier walk */
	start = j;
	do {
		n++;
		j = (size_t)s->t[j].owner;
	} while (j != start);
	c = realloc(s->cycles, (s->ncycles + 1) * sizeof(*c));
	if (!c)
		return -ENOMEM;
	s->cycles = c;
	c = &s->cycles[s->ncycles];
	c->members = calloc(n, sizeof(*c->members));
	if (!c->members)
		return -ENOMEM;
	c->n = n;
	s->ncycles++;
	j = start;
	for (size_t k = 0; k < n; k++) {
		c->members[k] = j;
		s->t[j].deadlock = s->ncycles;
		j = (size_t)s->t[j].owner;
	}
	return 0;
}

int threads__link(struct threads_snapshot *s)
{
	uint32_t *mark;
	int err = 0;

	for (size_t i = 0; i < s->n; i++) {
		s->t[i].owner = -1;
		s->t[i].deadlock = 0;
		if (links(&s->t[i]))
			s->t[i].owner = find_thread(s, s->t[i].rec.pid, s->t[i].owner_tid);
	}
	mark = calloc(s->n ? s->n : 1, sizeof(*mark));
	if (!mark)
		return -ENOMEM;
	for (size_t i = 0; i < s->n && !err; i++)
		if (!mark[i] && s->t[i].owner >= 0)
			err = find_cycle(s, i, mark, (uint32_t)i + 1);
	free(mark);
	return err;
}

void threads__wait_phrase(const struct threads_snapshot *s, size_t i, char *buf, size_t len)
{
	const struct thread_info *t = &s->t[i];
	char who[64];

	if (t->owner >= 0)
		threads__thread_name(s, (size_t)t->owner, who, sizeof(who));
	else
		snprintf(who, sizeof(who), "thread %u (not in this snapshot)", t->owner_tid);
	if (t->wait == THREAD_WAIT_JOIN)
		snprintf(buf, len, "%s to exit", who);
	else
		snprintf(buf, len, "lock 0x%" PRIx64 " held by %s", t->lock, who);
}

void threads__cycle_text(const struct threads_snapshot *s, const struct thread_cycle *c, char *buf,
			 size_t len)
{
	size_t off = 0;
	char name[64], what[160];

	buf[0] = '\0';
	for (size_t k = 0; k < c->n && off < len; k++) {
		threads__thread_name(s, c->members[k], name, sizeof(name));
		threads__wait_phrase(s, c->members[k], what, sizeof(what));
		off += snprintf(buf + off, len - off, "%s%swaits for %s", k ? ", which " : name,
				k ? "" : " ", what);
	}
}

int threads__labels(const struct threads_snapshot *s, size_t i, struct pprof_label *labels, int max,
		    char *buf, size_t buflen)
{
	const struct thread_info *t = &s->t[i];
	int n = 0;

	if (n < max)
		labels[n++] = (struct pprof_label){.key = "state", .str = t->state};
	if (n < max && t->wait_label)
		labels[n++] = (struct pprof_label){.key = "wait", .str = t->wait_label};
	if (n < max && t->deadlock) {
		snprintf(buf, buflen, "cycle %zu", t->deadlock);
		labels[n++] = (struct pprof_label){.key = "deadlock", .str = buf};
	}
	return n;
}
