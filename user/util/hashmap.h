/* A small chained hash table. Keys and values are opaque pointers owned by the caller; integer
 * keys are stored as (void *)(uintptr_t)key with the hashmap__int_* helpers. Not thread-safe. */
#ifndef CPROF_UTIL_HASHMAP_H
#define CPROF_UTIL_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t (*hashmap_hash_fn)(const void *key);
typedef bool (*hashmap_equal_fn)(const void *a, const void *b);
typedef void (*hashmap_visit_fn)(const void *key, void *value, void *ctx);

struct hashmap;

struct hashmap *hashmap__new(hashmap_hash_fn hash, hashmap_equal_fn equal);
/* Frees the table only; keys and values stay the caller's (free them with for_each first). */
void hashmap__free(struct hashmap *m);
/* Adds key -> value. Returns 0, -EEXIST when key is present, or -ENOMEM. */
int hashmap__add(struct hashmap *m, const void *key, void *value);
/* true and *value set (value may be NULL) when key is present. */
bool hashmap__find(const struct hashmap *m, const void *key, void **value);
/* Removes key; true when it was present, with the stored key and value returned if asked. */
bool hashmap__delete(struct hashmap *m, const void *key, const void **old_key, void **old_value);
size_t hashmap__size(const struct hashmap *m);
/* Calls fn on every entry, in no particular order; fn must not change the table. */
void hashmap__for_each(const struct hashmap *m, hashmap_visit_fn fn, void *ctx);

uint64_t hashmap__str_hash(const void *key);
bool hashmap__str_equal(const void *a, const void *b);
uint64_t hashmap__int_hash(const void *key);
bool hashmap__int_equal(const void *a, const void *b);

#endif
