/* The snapshot as text, in the layouts of Go's goroutine dumps: debug=2, one block per thread
 * (a header with its wait, state and duration, then what it waits for, then its frames as
 * `function(...)` and `\tfile:line`), and debug=1, identical stacks grouped with their count,
 * their labels and `#\taddress\tfunction\tfile:line` per frame. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sym/symbolizer.h"
#include "threads/snapshot.h"
#include "util/hashmap.h"

/* Resolves one frame; kernel frames are return addresses (a sleeping thread's kernel stack
 * starts in the scheduler), so are user frames but the leaf, which is the instruction after
 * `syscall` (looked up at the syscall itself) or, for a thread that was interrupted, the
 * interrupted instruction. */
static int resolve(struct symbolizer *sym, const struct thread_info *t, bool kernel, uint32_t i,
		   struct sym_result *res)
{
	const struct cprof_thread *r = &t->rec;
	bool ret;

	if (kernel)
		return symbolizer__kernel(sym, r->kstack[i], true, res);
	ret = i > 0 || (r->flags & CPROF_THREAD_IN_SYSCALL);
	return symbolizer__user(sym, (pid_t)r->pid, r->ustack[i], ret, res);
}

static void print_location(FILE *f, const struct sym_result *res, const struct sym_frame *fr,
			   bool kernel)
{
	if (fr->file && fr->line)
		fprintf(f, "\t%s:%" PRId64 "\n", fr->file, fr->line);
	else if (fr->file)
		fprintf(f, "\t%s\n", fr->file);
	else if (kernel)
		fprintf(f, "\t[kernel.kallsyms]\n");
	else if (res->mapping && res->mapping->path)
		fprintf(f, "\t%s\n", res->mapping->path);
	else
		fprintf(f, "\t?\n");
}

/* Go writes a frame as `pkg.function(args)`; C names get "(...)" unless they carry their own
 * parameter list (demangled C++). */
static int print_frames(FILE *f, struct symbolizer *sym, const struct thread_info *t)
{
	const struct cprof_thread *r = &t->rec;
	struct sym_result res;
	int err;

	for (int k = 0; k < 2; k++) {
		bool kernel = k == 0;
		uint32_t n = kernel ? r->nkstack : r->nustack;

		for (uint32_t i = 0; i < n; i++) {
			err = resolve(sym, t, kernel, i, &res);
			if (err)
				return err;
			for (int j = 0; j < res.nframes; j++) {
				const char *fn = res.frames[j].function;

				fprintf(f, "%s%s\n", fn, strchr(fn, '(') ? "" : "(...)");
				print_location(f, &res, &res.frames[j], kernel);
			}
		}
	}
	return 0;
}

/* The bracket of a thread's header: [wait, state, duration]. */
static void bracket(const struct thread_info *t, char *buf, size_t len)
{
	char dur[32] = "";
	size_t off = 0;

	buf[0] = '\0';
	if (t->wait_label)
		off += snprintf(buf + off, len - off, "%s, ", t->wait_label);
	if (off < len)
		off += snprintf(buf + off, len - off, "%s", t->state);
	if (t->state_known_ns && off < len) {
		threads__format_duration(t->state_ns, dur, sizeof(dur));
		snprintf(buf + off, len - off, ", %s", dur);
	}
}

static void print_lock_line(FILE *f, const struct threads_snapshot *s, size_t i)
{
	const struct thread_info *t = &s->t[i];
	char what[200];

	switch (t->wait) {
	case THREAD_WAIT_MUTEX:
	case THREAD_WAIT_JOIN:
		if (t->lock_free)
			fprintf(f,
				"# lock: waiting for lock 0x%" PRIx64
				", free when read (the wait is ending)\n",
				t->lock);
		else if (!t->owner_tid)
			fprintf(f,
				"# lock: waiting for lock 0x%" PRIx64
				" held by a thread the lock does not record\n",
				t->lock);
		else {
			threads__wait_phrase(s, i, what, sizeof(what));
			fprintf(f, "# lock: waiting for %s\n", what);
		}
		break;
	case THREAD_WAIT_RWLOCK:
		fprintf(f, "# lock: waiting for rwlock (futex 0x%" PRIx64 ") to %s\n", t->lock,
			t->rwlock_write ? "write" : "read");
		break;
	case THREAD_WAIT_CONDVAR:
		fprintf(f, "# lock: waiting on a condition variable (futex 0x%" PRIx64 ")\n",
			t->lock);
		break;
	case THREAD_WAIT_SEMAPHORE:
		fprintf(f, "# lock: waiting on semaphore 0x%" PRIx64 "\n", t->lock);
		break;
	default:
		break;
	}
}

static void print_notes(FILE *f, const struct thread_info *t)
{
	const struct cprof_thread *r = &t->rec;

	if (r->flags & CPROF_THREAD_SELF)
		fprintf(f, "# note: the snapshot's own thread\n");
	else if (r->flags & CPROF_THREAD_ON_CPU)
		fprintf(f,
			"# note: running on CPU %d when read: no kernel stack, and the user "
			"stack is from its last kernel entry (at most a scheduler tick ago)\n",
			r->cpu);
	if (r->flags & CPROF_THREAD_REGS_CHANGED)
		fprintf(f, "# note: it entered the kernel again while its stack was read: the "
			   "stack may mix two moments\n");
	if (r->flags & CPROF_THREAD_KTHREAD)
		fprintf(f, "# note: a kernel thread\n");
	if (r->exit_state)
		fprintf(f, "# note: exited, not yet reaped: no stacks\n");
	else if (!(r->flags & CPROF_THREAD_KTHREAD) && !(r->flags & CPROF_THREAD_USER_REGS))
		fprintf(f, "# note: no user registers saved\n");
	else if (r->ustack_err == CPROF_STAT_USTACK_NO_RULE)
		fprintf(f, "# note: user stack cut short: a pc with no usable unwind rule\n");
	else if (r->ustack_err == CPROF_STAT_USTACK_BAD_READ)
		fprintf(f, "# note: user stack cut short: a saved register could not be read\n");
	else if (r->ustack_err == CPROF_STAT_USTACK_NO_TABLE)
		fprintf(f, "# note: user stack cut short: a pc with no unwind table\n");
	if (r->flags & CPROF_THREAD_USTACK_TRUNCATED)
		fprintf(f, "# note: user stack truncated at %d frames\n", CPROF_MAX_STACK);
}

static int write_debug2(const struct threads_snapshot *s, struct symbolizer *sym, FILE *f)
{
	char line[2048], br[160];
	uint32_t pid = 0;
	int err;

	for (size_t c = 0; c < s->ncycles; c++) {
		threads__cycle_text(s, &s->cycles[c], line, sizeof(line));
		fprintf(f, "DEADLOCK (cycle %zu): %s\n\n", c + 1, line);
	}
	for (size_t i = 0; i < s->n; i++) {
		const struct thread_info *t = &s->t[i];

		if (i == 0 || t->rec.pid != pid) {
			size_t n = 0;

			pid = t->rec.pid;
			for (size_t j = i; j < s->n && s->t[j].rec.pid == pid; j++)
				n++;
			fprintf(f, "process %u (%s): %zu threads\n\n", pid, t->rec.pcomm, n);
		}
		bracket(t, br, sizeof(br));
		fprintf(f, "thread %u \"%s\" [%s]:\n", t->rec.tid, t->rec.comm, br);
		if (t->wait_desc[0])
			fprintf(f, "# wait: %s%s%s\n", t->wait_desc, t->where[0] ? " in " : "",
				t->where);
		print_lock_line(f, s, i);
		if (t->deadlock) {
			threads__cycle_text(s, &s->cycles[t->deadlock - 1], line, sizeof(line));
			fprintf(f, "# DEADLOCK (cycle %zu): %s\n", t->deadlock, line);
		}
		print_notes(f, t);
		err = print_frames(f, sym, t);
		if (err)
			return err;
		fputc('\n', f);
	}
	return 0;
}

/* debug=1: threads with the same process, stacks, state and wait, counted. */
struct group {
	size_t first; /* a thread of the group */
	size_t count;
};

static bool same_group(const struct thread_info *a, const struct thread_info *b)
{
	const struct cprof_thread *x = &a->rec, *y = &b->rec;

	return x->pid == y->pid && x->nkstack == y->nkstack && x->nustack == y->nustack &&
	       a->state == b->state && a->wait_label == b->wait_label &&
	       a->deadlock == b->deadlock &&
	       !memcmp(x->kstack, y->kstack, x->nkstack * sizeof(x->kstack[0])) &&
	       !memcmp(x->ustack, y->ustack, x->nustack * sizeof(x->ustack[0]));
}

static uint64_t group_hash(const void *key, void *ctx)
{
	const struct thread_info *t = key;
	uint64_t h = HASHMAP_HASH_INIT;

	(void)ctx;
	h = hashmap__hash_u64(h, t->rec.pid);
	h = hashmap__hash_bytes(h, t->rec.kstack, t->rec.nkstack * sizeof(t->rec.kstack[0]));
	h = hashmap__hash_bytes(h, t->rec.ustack, t->rec.nustack * sizeof(t->rec.ustack[0]));
	return hashmap__hash_str(h, t->state);
}

static bool group_equal(const void *a, const void *b, void *ctx)
{
	(void)ctx;
	return same_group(a, b);
}

static int group_cmp(const void *a, const void *b)
{
	const struct group *x = a, *y = b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

static int print_group(FILE *f, struct symbolizer *sym, const struct thread_info *t, size_t count)
{
	const struct cprof_thread *r = &t->rec;
	struct sym_result res;
	int err;

	fprintf(f, "%zu @", count);
	for (uint32_t i = 0; i < r->nkstack; i++)
		fprintf(f, " 0x%llx", (unsigned long long)r->kstack[i]);
	for (uint32_t i = 0; i < r->nustack; i++)
		fprintf(f, " 0x%llx", (unsigned long long)r->ustack[i]);
	fprintf(f, "\n# labels: {\"pid\":\"%u\", \"comm\":\"%s\", \"state\":\"%s\"", r->pid,
		r->pcomm, t->state);
	if (t->wait_label)
		fprintf(f, ", \"wait\":\"%s\"", t->wait_label);
	if (t->deadlock)
		fprintf(f, ", \"deadlock\":\"cycle %zu\"", t->deadlock);
	fprintf(f, "}\n");
	for (int k = 0; k < 2; k++) {
		bool kernel = k == 0;
		uint32_t n = kernel ? r->nkstack : r->nustack;

		for (uint32_t i = 0; i < n; i++) {
			uint64_t addr = kernel ? r->kstack[i] : r->ustack[i];

			err = resolve(sym, t, kernel, i, &res);
			if (err)
				return err;
			for (int j = 0; j < res.nframes; j++) {
				const struct sym_frame *fr = &res.frames[j];

				fprintf(f, "#\t0x%" PRIx64 "\t%s\t", addr, fr->function);
				if (fr->file && fr->line)
					fprintf(f, "%s:%" PRId64 "\n", fr->file, fr->line);
				else
					fprintf(f, "%s\n",
						fr->file      ? fr->file
						: kernel      ? "[kernel.kallsyms]"
						: res.mapping ? res.mapping->path
							      : "?");
			}
		}
	}
	fputc('\n', f);
	return 0;
}

static int write_debug1(const struct threads_snapshot *s, struct symbolizer *sym, FILE *f)
{
	struct hashmap *idx = hashmap__new(group_hash, group_equal, NULL);
	struct group *groups = calloc(s->n ? s->n : 1, sizeof(*groups));
	size_t ng = 0;
	char line[2048];
	void *val;
	int err = 0;

	if (!idx || !groups) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (size_t i = 0; i < s->n; i++) {
		if (hashmap__find(idx, &s->t[i], &val)) {
			groups[(uintptr_t)val].count++;
			continue;
		}
		groups[ng] = (struct group){.first = i, .count = 1};
		err = hashmap__insert(idx, &s->t[i], (void *)(uintptr_t)ng);
		if (err)
			goto cleanup;
		ng++;
	}
	qsort(groups, ng, sizeof(*groups), group_cmp);
	fprintf(f, "threads profile: total %zu\n", s->n);
	for (size_t c = 0; c < s->ncycles; c++) {
		threads__cycle_text(s, &s->cycles[c], line, sizeof(line));
		fprintf(f, "# DEADLOCK (cycle %zu): %s\n", c + 1, line);
	}
	for (size_t g = 0; g < ng && !err; g++)
		err = print_group(f, sym, &s->t[groups[g].first], groups[g].count);
cleanup:
	hashmap__free(idx);
	free(groups);
	return err;
}

static uint32_t prepared_user(const struct cprof_thread *r, uint32_t max_user)
{
	return r->nustack < max_user ? r->nustack : max_user;
}

int threads__prepare(const struct threads_snapshot *s, struct symbolizer *sym,
		     bool (*want)(const struct thread_info *t), bool kernel, uint32_t max_user)
{
	struct sym_request *reqs;
	size_t n = 0;
	int err;

	for (size_t i = 0; i < s->n; i++)
		if (!want || want(&s->t[i]))
			n += (kernel ? s->t[i].rec.nkstack : 0) +
			     prepared_user(&s->t[i].rec, max_user);
	if (!n)
		return 0;
	reqs = calloc(n, sizeof(*reqs));
	if (!reqs)
		return -ENOMEM;
	n = 0;
	for (size_t i = 0; i < s->n; i++) {
		const struct cprof_thread *r = &s->t[i].rec;

		if (want && !want(&s->t[i]))
			continue;
		for (uint32_t k = 0; kernel && k < r->nkstack; k++)
			reqs[n++] = (struct sym_request){
				.addr = r->kstack[k], .kernel = true, .is_return = true};
		for (uint32_t k = 0; k < prepared_user(r, max_user); k++)
			reqs[n++] = (struct sym_request){
				.addr = r->ustack[k],
				.pid = (pid_t)r->pid,
				.is_return = k > 0 || (r->flags & CPROF_THREAD_IN_SYSCALL)};
	}
	err = symbolizer__prepare(sym, reqs, n);
	free(reqs);
	return err;
}

int threads__write_text(const struct threads_snapshot *s, struct symbolizer *sym, FILE *f,
			int debug)
{
	int err = threads__prepare(s, sym, NULL, true, CPROF_MAX_STACK);

	if (!err)
		err = debug == 1 ? write_debug1(s, sym, f) : write_debug2(s, sym, f);

	if (!err && (fflush(f) || ferror(f)))
		err = -EIO;
	return err;
}
