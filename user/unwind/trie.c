/* A process's mappings as entries of the BPF unwinder's LPM trie, (pid, address prefix) ->
 * mapping: as few aligned blocks as the process's other code allows. See internal.h. */
#include <errno.h>
#include <bpf/bpf.h>

#include "proc/maps.h"
#include "unwind/internal.h"
#include "util/array.h"

static int pid_push(struct unw_pid *p, const struct cprof_unwind_lpm_key *k)
{
	if (array__reserve((void **)&p->keys, &p->cap, p->n + 1, sizeof(*p->keys)))
		return -ENOMEM;
	p->keys[p->n++] = *k;
	return 0;
}

/* Whether the aligned block [lo, hi] holds no code of the process being read but the mapping
 * [start, end): then one trie entry may cover it. Its other addresses (the file's data, gaps)
 * find the entry but not the code (the walk checks the mapping's bounds: bpf/unwind.bpf.h,
 * find_mapping), and no address of other code is inside it, so the longest match of any code
 * address stays its own mapping's. */
static bool block_clean(const struct proc_maps *r, uint64_t lo, uint64_t hi, uint64_t start,
			uint64_t end)
{
	size_t a = 0, b = r->n, mid;

	/* The mappings are sorted and do not overlap: the first ending above lo, then those
	 * starting in the block (a few: the search is per block of every mapping of a reading). */
	while (a < b) {
		mid = a + (b - a) / 2;
		if (r->maps[mid].end - 1 < lo)
			a = mid + 1;
		else
			b = mid;
	}
	for (; a < r->n && r->maps[a].start <= hi; a++) {
		const struct proc_map *m = &r->maps[a];

		if (m->perms[2] == 'x' && !(m->start == start && m->end == end))
			return false;
	}
	return true;
}

static int add_block(struct unwinder *u, struct unw_pid *p, pid_t pid, uint64_t lo, int bits,
		     const struct cprof_unwind_mapping *val)
{
	struct cprof_unwind_lpm_key k = {.prefixlen = (uint32_t)(32 + 64 - bits),
					 .pid_be = __builtin_bswap32((uint32_t)pid),
					 .addr_be = __builtin_bswap64(lo)};

	if (bpf_map_update_elem(u->o.mappings_fd, &k, val, BPF_ANY)) {
		u->st.failed++;
		return -errno;
	}
	return pid_push(p, &k);
}

/* Covers [from, to), part of the mapping val, with few aligned power-of-two blocks: the
 * smallest block holding it where block_clean allows, else its two halves in turn. */
static int cover(struct unwinder *u, struct unw_pid *p, pid_t pid, uint64_t from, uint64_t to,
		 const struct cprof_unwind_mapping *val)
{
	uint64_t diff = from ^ (to - 1), lo, mid;
	int bits = diff ? 64 - __builtin_clzll(diff) : 0, err;

	if (bits >= 64)
		return -ERANGE; /* not user addresses */
	lo = from & ~((1ull << bits) - 1);
	if (block_clean(u->reading, lo, lo | ((1ull << bits) - 1), val->start, val->end))
		return add_block(u, p, pid, lo, bits, val);
	mid = lo | (1ull << (bits - 1)); /* from < mid <= to - 1: both halves smaller */
	err = cover(u, p, pid, from, mid, val);
	return err ? err : cover(u, p, pid, mid, to, val);
}

/* Puts the mapping val, [start, end), in the trie. While its process's mappings are being read,
 * with few entries (cover: a trie update is a system call); otherwise (a table built later)
 * with the aligned power-of-two blocks that make up the range exactly. */
int unwinder__add_range(struct unwinder *u, struct unw_pid *p, pid_t pid, uint64_t start,
			uint64_t end, const struct cprof_unwind_mapping *val)
{
	int err;

	if (u->reading && start < end)
		return cover(u, p, pid, start, end, val);
	while (start < end) {
		int bits = start ? __builtin_ctzll(start) : 63;

		while (bits > 0 && (bits >= 64 || start + (1ull << bits) > end ||
				    start + (1ull << bits) < start))
			bits--;
		err = add_block(u, p, pid, start, bits, val);
		if (err)
			return err;
		start += 1ull << bits;
	}
	return 0;
}
