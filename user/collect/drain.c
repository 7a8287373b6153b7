/* Reading what a collector's BPF side aggregated: the drain of its maps into a profile (in
 * batches, deleting as it goes when asked), the stacks its keys name (from the kernel's stack
 * map or the table unwinder's), and trimming the stacks no key names any more in a live
 * collector. The rest of a collector's life is in collector.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "collect/collector.h"
#include "util/hashmap.h"
#include "util/log.h"

static void collector__trim_stacks(struct collector *c);

int collector__drain(struct collector *c, struct pprof_builder *b)
{
	int err = c->ops->drain(c, b);

	if (!err && c->opts.live)
		collector__trim_stacks(c);
	return err;
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

/* Remembers which stacks a drained key references, so a live trim keeps them. */
static void collector__mark_refs(struct collector *c, const struct cprof_key *k)
{
	const __s32 ids[2] = {k->user_stack_id, k->kern_stack_id};

	for (int i = 0; c->stack_refs && i < 2; i++)
		if (ids[i] >= 0 && (__u32)ids[i] < c->nstack_ids)
			c->stack_refs[ids[i] / 64] |= 1ull << (ids[i] % 64);
	/* A stack walked by the table unwinder lives in `ustacks` under an id with the
	 * CPROF_USTACK_ID_TABLE bit (never 0, so it can be a hashmap int key). */
	if (c->ustack_refs && k->user_stack_id >= 0 && (k->user_stack_id & CPROF_USTACK_ID_TABLE) &&
	    !hashmap__find(c->ustack_refs, (void *)(uintptr_t)k->user_stack_id, NULL))
		hashmap__insert(c->ustack_refs, (void *)(uintptr_t)k->user_stack_id, NULL);
}

static void collector__note_drained(struct collector *c, struct bpf_map *map)
{
	for (int i = 0; i < c->ndrained; i++)
		if (c->drained[i] == map)
			return;
	if (c->ndrained < (int)(sizeof(c->drained) / sizeof(c->drained[0])))
		c->drained[c->ndrained++] = map;
}

/* Live drains mark the stacks they read; the stack map has ids below its bucket count, the
 * next power of two of max_entries. */
static int collector__init_refs(struct collector *c)
{
	__u32 n = 1;

	if (!c->opts.live || c->stack_refs)
		return 0;
	while (n < bpf_map__max_entries(c->stacks))
		n <<= 1;
	c->stack_refs = calloc((n + 63) / 64, sizeof(*c->stack_refs));
	if (!c->stack_refs)
		return -ENOMEM;
	c->nstack_ids = n;
	if (c->ustacks && c->unw) {
		c->ustack_refs = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
		if (!c->ustack_refs)
			return -ENOMEM;
	}
	return 0;
}

typedef int (*drain_fn)(struct collector *c, const struct cprof_key *k, const void *val, void *ctx);

/* Takes and deletes entries bucket by bucket, atomically with respect to the BPF programs: an
 * increment either happened before its bucket was taken (it is in this batch) or creates a new
 * entry (the next drain). Returns -EOPNOTSUPP where the kernel has no batch operations. */
static int collector__drain_batch(struct collector *c, int fd, size_t value_size, drain_fn fn,
				  void *ctx)
{
	__u32 cap = 256, count, in = 0, out = 0;
	struct cprof_key *keys = NULL;
	bool first = true;
	void *vals = NULL, *tmp;
	int err = 0, ret;

	for (;;) {
		if (!keys) {
			keys = calloc(cap, sizeof(*keys));
			vals = calloc(cap, value_size);
			if (!keys || !vals) {
				err = -ENOMEM;
				break;
			}
		}
		count = cap;
		ret = bpf_map_lookup_and_delete_batch(fd, first ? NULL : &in, &out, keys, vals,
						      &count, NULL);
		ret = ret < 0 ? -errno : 0;
		if (ret == -ENOSPC && count == 0) {
			/* One bucket holds more than cap entries: retry it with more room. */
			cap *= 2;
			free(keys);
			free(vals);
			keys = NULL;
			vals = NULL;
			continue;
		}
		if (ret && ret != -ENOENT) {
			err = first && (ret == -EINVAL || ret == -EOPNOTSUPP ||
					ret == -524 /* ENOTSUPP */)
				      ? -EOPNOTSUPP
				      : ret;
			break;
		}
		for (__u32 i = 0; i < count && !err; i++) {
			tmp = (char *)vals + (size_t)i * value_size;
			collector__mark_refs(c, &keys[i]);
			err = fn(c, &keys[i], tmp, ctx);
		}
		if (err || ret == -ENOENT)
			break;
		in = out;
		first = false;
	}
	free(keys);
	free(vals);
	return err;
}

int collector__drain_map(struct collector *c, struct bpf_map *map, size_t value_size, bool del,
			 drain_fn fn, void *ctx)
{
	struct cprof_key key, next;
	struct cprof_key *prev = NULL;
	void *val;
	int fd = bpf_map__fd(map), err = 0;

	err = collector__init_refs(c);
	if (err)
		return err;
	collector__note_drained(c, map);
	if (c->view) /* a partial view: other readers still count on these entries */
		del = false;
	if (del) {
		err = collector__drain_batch(c, fd, value_size, fn, ctx);
		if (err != -EOPNOTSUPP)
			return err;
		err = 0;
	}
	val = malloc(value_size);
	if (!val)
		return -ENOMEM;
	/* Without batch operations, keys are collected first when deleting, since deleting while
	 * iterating restarts the walk from the beginning on a hash map. */
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, val))
			continue; /* deleted meanwhile */
		if (c->view && !c->view->value(c->view->ctx, &key, val))
			continue;
		collector__mark_refs(c, &key);
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

/* After a live drain: deletes every stack that neither the keys just drained nor the keys
 * created since (the next window's, rescanned now) reference. A stack in use stays; one
 * deleted and needed again is stored again by the next sample that has it. The only stack that
 * can go missing is one first used again by a key created between the rescan and the deletion
 * (a few hundred microseconds): it is counted as a lost stack read when drained. */
/* The ids of `ustacks` that no key marked (a hash map: collected before deleting, since a
 * hash map's walk restarts when its current key is deleted). */
static __u32 *collector__unmarked_ustacks(struct collector *c, size_t *n)
{
	__u32 id, nid, *pid = NULL, *ids = NULL, *tmp;
	size_t cap = 0;
	int fd = bpf_map__fd(c->ustacks);

	*n = 0;
	while (bpf_map_get_next_key(fd, pid, &nid) == 0) {
		id = nid;
		pid = &id;
		if (hashmap__find(c->ustack_refs, (void *)(uintptr_t)id, NULL))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 256;
			tmp = realloc(ids, cap * sizeof(*ids));
			if (!tmp)
				break;
			ids = tmp;
		}
		ids[(*n)++] = id;
	}
	return ids;
}

static void collector__trim_stacks(struct collector *c)
{
	struct cprof_key key, next, *prev = NULL;
	__u32 id, nid, *pid = NULL, *ids = NULL, *uids = NULL, *tmp;
	size_t n = 0, cap = 0, nu = 0;
	int fd = bpf_map__fd(c->stacks);

	if (!c->stack_refs)
		return;
	/* The stack ids first, deleting nothing: a stack map's walk restarts from the first
	 * bucket when the current one was deleted. */
	while (bpf_map_get_next_key(fd, pid, &nid) == 0) {
		id = nid;
		pid = &id;
		if (id < c->nstack_ids && (c->stack_refs[id / 64] & (1ull << (id % 64))))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			tmp = realloc(ids, cap * sizeof(*ids));
			if (!tmp)
				break;
			ids = tmp;
		}
		ids[n++] = id;
	}
	if (c->ustack_refs)
		uids = collector__unmarked_ustacks(c, &nu);
	/* Then what the next window's keys reference, just before deleting the rest. */
	for (int i = 0; i < c->ndrained; i++) {
		prev = NULL;
		while (bpf_map_get_next_key(bpf_map__fd(c->drained[i]), prev, &next) == 0) {
			key = next;
			prev = &key;
			collector__mark_refs(c, &key);
		}
	}
	for (size_t i = 0; i < n; i++) {
		id = ids[i];
		if (id < c->nstack_ids && (c->stack_refs[id / 64] & (1ull << (id % 64))))
			continue;
		if (bpf_map_delete_elem(fd, &id) == 0)
			c->ustats.trimmed_stacks++;
	}
	for (size_t i = 0; i < nu; i++) {
		if (hashmap__find(c->ustack_refs, (void *)(uintptr_t)uids[i], NULL))
			continue;
		if (bpf_map_delete_elem(bpf_map__fd(c->ustacks), &uids[i]) == 0)
			c->ustats.trimmed_stacks++;
	}
	free(ids);
	free(uids);
	memset(c->stack_refs, 0, (c->nstack_ids + 63) / 64 * sizeof(*c->stack_refs));
	if (c->ustack_refs) {
		hashmap__free(c->ustack_refs);
		c->ustack_refs = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	}
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
