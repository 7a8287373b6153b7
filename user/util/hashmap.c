#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/hashmap.h"

#define HASHMAP_MIN_BUCKETS 16

struct hashmap_entry {
	const void *key;
	void *value;
	uint64_t hash;
	struct hashmap_entry *next;
};

struct hashmap {
	hashmap_hash_fn hash;
	hashmap_equal_fn equal;
	struct hashmap_entry **buckets;
	size_t nbuckets; /* a power of two, or 0 before the first add */
	size_t size;
};

struct hashmap *hashmap__new(hashmap_hash_fn hash, hashmap_equal_fn equal)
{
	struct hashmap *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->hash = hash;
	m->equal = equal;
	return m;
}

void hashmap__free(struct hashmap *m)
{
	struct hashmap_entry *e, *next;
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->nbuckets; i++) {
		for (e = m->buckets[i]; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(m->buckets);
	free(m);
}

static struct hashmap_entry **hashmap__slot(const struct hashmap *m, const void *key, uint64_t h)
{
	struct hashmap_entry **pe;

	if (!m->nbuckets)
		return NULL;
	for (pe = &m->buckets[h & (m->nbuckets - 1)]; *pe; pe = &(*pe)->next) {
		if ((*pe)->hash == h && m->equal((*pe)->key, key))
			return pe;
	}
	return NULL;
}

static int hashmap__grow(struct hashmap *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : HASHMAP_MIN_BUCKETS;
	struct hashmap_entry **b, *e, *next;
	size_t i;

	b = calloc(n, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (i = 0; i < m->nbuckets; i++) {
		for (e = m->buckets[i]; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
	return 0;
}

int hashmap__add(struct hashmap *m, const void *key, void *value)
{
	uint64_t h = m->hash(key);
	struct hashmap_entry *e;
	size_t i;
	int err;

	if (hashmap__slot(m, key, h))
		return -EEXIST;
	/* Keep the load factor under 3/4 so chains stay short. */
	if ((m->size + 1) * 4 > m->nbuckets * 3) {
		err = hashmap__grow(m);
		if (err)
			return err;
	}
	e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->key = key;
	e->value = value;
	e->hash = h;
	i = h & (m->nbuckets - 1);
	e->next = m->buckets[i];
	m->buckets[i] = e;
	m->size++;
	return 0;
}

bool hashmap__find(const struct hashmap *m, const void *key, void **value)
{
	struct hashmap_entry **pe = hashmap__slot(m, key, m->hash(key));

	if (!pe)
		return false;
	if (value)
		*value = (*pe)->value;
	return true;
}

bool hashmap__delete(struct hashmap *m, const void *key, const void **old_key, void **old_value)
{
	struct hashmap_entry **pe = hashmap__slot(m, key, m->hash(key));
	struct hashmap_entry *e;

	if (!pe)
		return false;
	e = *pe;
	*pe = e->next;
	if (old_key)
		*old_key = e->key;
	if (old_value)
		*old_value = e->value;
	free(e);
	m->size--;
	return true;
}

size_t hashmap__size(const struct hashmap *m)
{
	return m->size;
}

void hashmap__for_each(const struct hashmap *m, hashmap_visit_fn fn, void *ctx)
{
	struct hashmap_entry *e, *next;
	size_t i;

	for (i = 0; i < m->nbuckets; i++) {
		for (e = m->buckets[i]; e; e = next) {
			next = e->next;
			fn(e->key, e->value, ctx);
		}
	}
}

/* FNV-1a: short keys (paths, symbol names), good enough spread for a power-of-two table once
 * the final mix below folds the high bits in. */
uint64_t hashmap__str_hash(const void *key)
{
	const unsigned char *p = key;
	uint64_t h = 0xcbf29ce484222325ULL;

	while (*p) {
		h ^= *p++;
		h *= 0x100000001b3ULL;
	}
	return h ^ (h >> 32);
}

bool hashmap__str_equal(const void *a, const void *b)
{
	return strcmp(a, b) == 0;
}

/* The splitmix64 finalizer: pids and addresses are dense, the low bits need mixing. */
uint64_t hashmap__int_hash(const void *key)
{
	uint64_t x = (uintptr_t)key;

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

bool hashmap__int_equal(const void *a, const void *b)
{
	return a == b;
}
