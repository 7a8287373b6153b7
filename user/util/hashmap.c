#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/hashmap.h"

/* Linear probing over a power-of-two table, grown to keep the load under 3/4 so probe chains
 * stay short. Each slot caches the full hash: most mismatches are rejected without calling the
 * equality callback, and growing never calls the hash callback again. Removal shifts the
 * following entries of the run back, so no tombstones are needed. */
#define HASHMAP_MIN_CAP 16

struct hashmap_slot {
	const void *key; /* NULL: empty */
	void *value;
	uint64_t hash;
};

struct hashmap {
	hashmap_hash_fn hash;
	hashmap_equal_fn equal;
	void *ctx;
	struct hashmap_slot *slots;
	size_t cap; /* power of two */
	size_t size;
};

struct hashmap *hashmap__new(hashmap_hash_fn hash, hashmap_equal_fn equal, void *ctx)
{
	struct hashmap *m;

	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->slots = calloc(HASHMAP_MIN_CAP, sizeof(*m->slots));
	if (!m->slots) {
		free(m);
		return NULL;
	}
	m->hash = hash;
	m->equal = equal;
	m->ctx = ctx;
	m->cap = HASHMAP_MIN_CAP;
	return m;
}

void hashmap__free(struct hashmap *m)
{
	if (!m)
		return;
	free(m->slots);
	free(m);
}

size_t hashmap__size(const struct hashmap *m)
{
	return m->size;
}

/* Callbacks may return weak hashes (an id, a pointer): mix so the low bits the mask keeps
 * depend on every input bit. */
static uint64_t hashmap__mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* The slot holding key, or the empty slot where it would go. */
static struct hashmap_slot *hashmap__probe(const struct hashmap *m, const void *key, uint64_t h)
{
	size_t mask = m->cap - 1;
	size_t i = h & mask;

	for (;;) {
		struct hashmap_slot *s = &m->slots[i];

		if (!s->key)
			return s;
		if (s->hash == h && m->equal(s->key, key, m->ctx))
			return s;
		i = (i + 1) & mask;
	}
}

static int hashmap__grow(struct hashmap *m)
{
	struct hashmap_slot *old = m->slots;
	size_t old_cap = m->cap, i;

	m->slots = calloc(old_cap * 2, sizeof(*m->slots));
	if (!m->slots) {
		m->slots = old;
		return -ENOMEM;
	}
	m->cap = old_cap * 2;
	for (i = 0; i < old_cap; i++) {
		size_t mask = m->cap - 1, j;

		if (!old[i].key)
			continue;
		/* Keys in the old table are distinct: find the first free slot. */
		for (j = old[i].hash & mask; m->slots[j].key; j = (j + 1) & mask)
			;
		m->slots[j] = old[i];
	}
	free(old);
	return 0;
}

bool hashmap__find(const struct hashmap *m, const void *key, void **value)
{
	struct hashmap_slot *s = hashmap__probe(m, key, hashmap__mix(m->hash(key, m->ctx)));

	if (!s->key)
		return false;
	if (value)
		*value = s->value;
	return true;
}

int hashmap__insert(struct hashmap *m, const void *key, void *value)
{
	struct hashmap_slot *s;
	uint64_t h;
	int err;

	if (!key)
		return -EINVAL;
	h = hashmap__mix(m->hash(key, m->ctx));
	s = hashmap__probe(m, key, h);
	if (s->key)
		return -EEXIST;
	if ((m->size + 1) * 4 > m->cap * 3) {
		err = hashmap__grow(m);
		if (err)
			return err;
		s = hashmap__probe(m, key, h);
	}
	s->key = key;
	s->value = value;
	s->hash = h;
	m->size++;
	return 0;
}

/* FNV-1a: simple and good enough for interning tables; the hash is not exposed to untrusted
 * input that could aim for collisions. */
uint64_t hashmap__hash_bytes(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

uint64_t hashmap__hash_str(uint64_t h, const char *s)
{
	/* Hash the terminator too, so ("ab", "c") and ("a", "bc") chain differently. */
	return hashmap__hash_bytes(h, s, strlen(s) + 1);
}

uint64_t hashmap__hash_u64(uint64_t h, uint64_t v)
{
	return hashmap__hash_bytes(h, &v, sizeof(v));
}

bool hashmap__delete(struct hashmap *m, const void *key, const void **old_key, void **old_value)
{
	struct hashmap_slot *s = hashmap__probe(m, key, hashmap__mix(m->hash(key, m->ctx)));
	size_t mask = m->cap - 1, hole, i;

	if (!s->key)
		return false;
	if (old_key)
		*old_key = s->key;
	if (old_value)
		*old_value = s->value;
	/* Backward-shift: move later entries of the run into the hole when the hole lies between
	 * their home slot and where they are now, so every remaining key stays reachable. */
	hole = (size_t)(s - m->slots);
	for (i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
		size_t home = m->slots[i].hash & mask;

		if (((i - home) & mask) >= ((i - hole) & mask)) {
			m->slots[hole] = m->slots[i];
			hole = i;
		}
	}
	m->slots[hole].key = NULL;
	m->slots[hole].value = NULL;
	m->size--;
	return true;
}

void hashmap__for_each(const struct hashmap *m, hashmap_visit_fn fn, void *ctx)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key)
			fn(m->slots[i].key, m->slots[i].value, ctx);
}

uint64_t hashmap__str_hash(const void *key, void *ctx)
{
	(void)ctx;
	return hashmap__hash_str(HASHMAP_HASH_INIT, key);
}

bool hashmap__str_equal(const void *a, const void *b, void *ctx)
{
	(void)ctx;
	return strcmp(a, b) == 0;
}

uint64_t hashmap__int_hash(const void *key, void *ctx)
{
	(void)ctx;
	return (uint64_t)(uintptr_t)key;
}

bool hashmap__int_equal(const void *a, const void *b, void *ctx)
{
	(void)ctx;
	return a == b;
}
