#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collect/collector.h"
#include "util/log.h"

extern const struct collector_ops cpu_collector_ops;
extern const struct collector_ops heap_collector_ops;
extern const struct collector_ops mutex_collector_ops;
extern const struct collector_ops offcpu_collector_ops;
extern const struct collector_ops wall_collector_ops;

static const struct collector_ops *const all_ops[] = {
	&cpu_collector_ops,    &heap_collector_ops, &mutex_collector_ops,
	&offcpu_collector_ops, &wall_collector_ops,
};

const struct collector_ops *collector__find(const char *type)
{
	if (strcmp(type, "block") == 0) /* Go's name of the off-CPU profile */
		type = "offcpu";
	else if (strcmp(type, "cpu,offcpu") == 0 || strcmp(type, "offcpu,cpu") == 0)
		type = "wall";
	for (size_t i = 0; i < sizeof(all_ops) / sizeof(all_ops[0]); i++)
		if (strcmp(all_ops[i]->name, type) == 0)
			return all_ops[i];
	return NULL;
}

const struct collector_ops *collector__nth(size_t i)
{
	return i < sizeof(all_ops) / sizeof(all_ops[0]) ? all_ops[i] : NULL;
}

const char *collector__names(void)
{
	static char names[128];

	if (!names[0]) {
		for (size_t i = 0; i < sizeof(all_ops) / sizeof(all_ops[0]); i++) {
			if (i)
				strncat(names, ",", sizeof(names) - strlen(names) - 1);
			strncat(names, all_ops[i]->name, sizeof(names) - strlen(names) - 1);
		}
	}
	return names;
}

static int handle_proc_event(void *ctx, void *data, size_t size)
{
	struct collector *c = ctx;

	const struct cprof_proc_event *e = data;

	if (size < sizeof(struct cprof_proc_event))
		return 0;
	if (c->unw && e->kind == CPROF_PROC_EXIT)
		unwinder__remove_pid(c->unw, e->pid);
	else if (c->unw)
		unwinder__add_pid(c->unw, e->pid, true);
	if (c->opts.on_proc)
		c->opts.on_proc(c->opts.ctx, data);
	return 0;
}

int collector__bind(struct collector *c, struct bpf_object *obj)
{
	c->obj = obj;
	c->targets = bpf_object__find_map_by_name(obj, "targets");
	c->stacks = bpf_object__find_map_by_name(obj, "stacks");
	c->stats = bpf_object__find_map_by_name(obj, "stats");
	c->proc_events = bpf_object__find_map_by_name(obj, "proc_events");
	c->ustacks = bpf_object__find_map_by_name(obj, "ustacks");
	if (!c->targets || !c->stacks || !c->stats || !c->proc_events)
		return -ENOENT;
	return 0;
}

int collector__add_target(struct collector *c, pid_t pid)
{
	__u32 key = pid;
	__u8 one = 1;

	if (bpf_map__update_elem(c->targets, &key, sizeof(key), &one, sizeof(one), BPF_ANY))
		return -errno;
	return 0;
}

/* Tables for the table unwinder: built for the targets now, for other processes as their
 * notices arrive (handle_proc_event). */
static int collector__start_unwinder(struct collector *c)
{
	struct bpf_map *tables = bpf_object__find_map_by_name(c->obj, "unwind_tables");
	struct bpf_map *mappings = bpf_object__find_map_by_name(c->obj, "unwind_mappings");
	struct unwinder_opts uo = {.budget_bytes = c->opts.unwind_mem};

	if (c->opts.unwind_mode == CPROF_UNWIND_FP || !tables || !mappings || !c->ustacks)
		return 0;
	uo.tables_fd = bpf_map__fd(tables);
	uo.mappings_fd = bpf_map__fd(mappings);
	c->unw = unwinder__new(&uo);
	if (!c->unw)
		return -ENOMEM;
	for (size_t i = 0; !c->opts.all && i < c->opts.npids; i++)
		unwinder__add_pid(c->unw, c->opts.pids[i], false);
	return 0;
}

int collector__open(const struct collector_ops *ops, const struct collect_opts *o,
		    struct collector **out)
{
	struct collector *c;
	int err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ops = ops;
	c->opts = *o;
	err = ops->open(c);
	if (err)
		goto cleanup;
	if (!c->obj) {
		err = -EINVAL;
		goto cleanup;
	}
	/* Tables of the targets first: a target's samples before its tables are in would be
	 * walked with frame pointers only. */
	if (!o->load_only) {
		err = collector__start_unwinder(c);
		if (err)
			goto cleanup;
	}
	for (size_t i = 0; !o->all && i < o->npids; i++) {
		err = collector__add_target(c, o->pids[i]);
		if (err) {
			pr_err("cannot add target %d: %s\n", o->pids[i], strerror(-err));
			goto cleanup;
		}
	}
	if (o->load_only)
		goto done;
	c->rb = ring_buffer__new(bpf_map__fd(c->proc_events), handle_proc_event, c, NULL);
	if (!c->rb) {
		err = -errno;
		pr_err("cannot open the ring buffer: %s\n", strerror(-err));
		goto cleanup;
	}
done:
	*out = c;
	return 0;
cleanup:
	collector__free(c);
	return err;
}

void collector__free(struct collector *c)
{
	if (!c)
		return;
	ring_buffer__free(c->rb);
	unwinder__free(c->unw);
	if (c->ops && c->ops->close)
		c->ops->close(c);
	free(c);
}

int collector__poll(struct collector *c, int timeout_ms)
{
	int n = ring_buffer__poll(c->rb, timeout_ms);

	/* Notices first, then one big executable's table, if any is waiting. */
	if (n >= 0 && c->unw)
		unwinder__idle(c->unw);
	if (n == -EINTR)
		return 0;
	return n < 0 ? n : 0;
}

/* Runs of the collector's programs that the kernel skipped because a BPF program was already
 * running on that CPU (a tracepoint hit from inside another program, e.g. under a high switch
 * rate): they are lost events. */
static uint64_t prog_misses(struct collector *c)
{
	struct bpf_program *prog;
	uint64_t n = 0;

	bpf_object__for_each_program(prog, c->obj)
	{
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(prog);

		if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
			n += info.recursion_misses;
	}
	return n;
}

int collector__stats(struct collector *c, struct collect_stats *st)
{
	int ncpu = libbpf_num_possible_cpus();
	__u64 *vals;

	if (ncpu <= 0)
		return ncpu ? ncpu : -EINVAL;
	vals = calloc(ncpu, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	*st = c->ustats;
	if (c->unw)
		unwinder__stats(c->unw, &st->unwind);
	for (__u32 i = 0; i < CPROF_STAT_NR; i++) {
		if (bpf_map__lookup_elem(c->stats, &i, sizeof(i), vals, ncpu * sizeof(*vals), 0))
			continue;
		st->bpf[i] = 0;
		for (int cpu = 0; cpu < ncpu; cpu++)
			st->bpf[i] += vals[cpu];
	}
	free(vals);
	st->prog_misses = prog_misses(c);
	return 0;
}

void collector__stop(struct collector *c)
{
	if (c->ops->stop)
		c->ops->stop(c);
}

int collector__drain(struct collector *c, struct pprof_builder *b)
{
	return c->ops->drain(c, b);
}

/* A stack walked by the table unwinder (bpf/unwind.bpf.h), from the `ustacks` map. */
static uint32_t collector__read_table_stack(struct collector *c, __s32 id, uint64_t *ips)
{
	struct cprof_ustack st;

	if (!c->ustacks || bpf_map__lookup_elem(c->ustacks, &id, sizeof(id), &st, sizeof(st), 0) ||
	    st.n > CPROF_MAX_STACK) {
		c->ustats.lost_stack_reads++;
		return 0;
	}
	memcpy(ips, st.ips, st.n * sizeof(*ips));
	if (st.truncated)
		c->ustats.truncated_stacks++;
	return st.n;
}

uint32_t collector__read_stack(struct collector *c, __s32 id, uint64_t *ips)
{
	uint32_t n = 0;

	if (id < 0)
		return 0;
	if (id & CPROF_USTACK_ID_TABLE)
		return collector__read_table_stack(c, id, ips);
	if (bpf_map__lookup_elem(c->stacks, &id, sizeof(id), ips, CPROF_MAX_STACK * sizeof(*ips),
				 0)) {
		c->ustats.lost_stack_reads++;
		return 0;
	}
	while (n < CPROF_MAX_STACK && ips[n])
		n++;
	if (n == CPROF_MAX_STACK)
		c->ustats.truncated_stacks++;
	return n;
}

int collector__drain_map(struct collector *c, struct bpf_map *map, size_t value_size, bool del,
			 int (*fn)(struct collector *c, const struct cprof_key *k, const void *val,
				   void *ctx),
			 void *ctx)
{
	struct cprof_key key, next;
	struct cprof_key *prev = NULL;
	void *val;
	int fd = bpf_map__fd(map), err = 0;

	val = malloc(value_size);
	if (!val)
		return -ENOMEM;
	/* Keys are collected first when deleting, since deleting while iterating restarts the walk
	 * from the beginning on a hash map. At the end of a session the programs are detached, so
	 * the map no longer changes under us. */
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, val))
			continue; /* deleted meanwhile */
		err = fn(c, &key, val, ctx);
		if (err)
			break;
	}
	if (!err && del) {
		while (bpf_map_get_next_key(fd, NULL, &next) == 0)
			if (bpf_map_delete_elem(fd, &next))
				break;
	}
	free(val);
	return err;
}

void collector__raw_sample(struct collector *c, const struct cprof_key *k, uint64_t *ubuf,
			   uint64_t *kbuf, struct pprof_raw_sample *s)
{
	memset(s, 0, sizeof(*s));
	s->pid = k->pid;
	s->ustack = ubuf;
	s->nustack = collector__read_stack(c, k->user_stack_id, ubuf);
	s->kstack = kbuf;
	s->nkstack = collector__read_stack(c, k->kern_stack_id, kbuf);
	s->labels[0] = (struct pprof_label){.key = "pid", .num = k->pid};
	s->labels[1] = (struct pprof_label){.key = "comm", .str = k->comm};
	s->nlabels = 2;
	if (c->opts.pid_labels)
		s->nlabels += c->opts.pid_labels(c->opts.ctx, k->pid, &s->labels[2],
						 PPROF_MAX_LABELS - 2);
}
