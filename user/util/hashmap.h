/* A generic open-addressing hash map. Keys and values are caller-owned pointers: the map stores
 * them, never copies or frees them, so a key must stay valid and unchanged while it is in the
 * map. Hashing and equality are callbacks, so one map type serves strings, structs and ids.
 * Insertion order is not kept; callers that need an order keep their own array. */
#ifndef CPROF_UTIL_HASHMAP_H
#define CPROF_UTIL_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t (*hashmap_hash_fn)(const void *key, void *ctx);
typedef bool (*hashmap_equal_fn)(const void *a, const void *b, void *ctx);

struct hashmap;

/* ctx is passed to both callbacks. Returns NULL when out of memory. */
struct hashmap *hashmap__new(hashmap_hash_fn hash, hashmap_equal_fn equal, void *ctx);
/* Frees the table only, not the keys or values. Safe on NULL. */
void hashmap__free(struct hashmap *m);

/* Looks key up; on a hit stores the value in *value (when value is non-NULL), returns true. */
bool hashmap__find(const struct hashmap *m, const void *key, void **value);
/* Adds key -> value. Returns 0, -EEXIST when an equal key is in the map, or -ENOMEM. */
int hashmap__insert(struct hashmap *m, const void *key, void *value);
/* Removes key; the stored key and value are returned through old_key/old_value (either may be
 * NULL) so the caller can free them. Returns false when key is absent. */
bool hashmap__delete(struct hashmap *m, const void *key, const void **old_key, void **old_value);
size_t hashmap__size(const struct hashmap *m);

typedef void (*hashmap_visit_fn)(const void *key, void *value, void *ctx);
/* Calls fn for every entry, in no particular order. fn must not change the map. */
void hashmap__for_each(const struct hashmap *m, hashmap_visit_fn fn, void *ctx);

/* Ready-made callbacks: NUL-terminated strings, and integers stored in the key pointer itself
 * ((void *)(uintptr_t)n, n != 0). */
uint64_t hashmap__str_hash(const void *key, void *ctx);
bool hashmap__str_equal(const void *a, const void *b, void *ctx);
uint64_t hashmap__int_hash(const void *key, void *ctx);
bool hashmap__int_equal(const void *a, const void *b, void *ctx);

/* Hash helpers for callbacks. Combine several fields by chaining: h = hashmap__hash_u64(h, x). */
uint64_t hashmap__hash_bytes(uint64_t h, const void *data, size_t len);
uint64_t hashmap__hash_str(uint64_t h, const char *s);
uint64_t hashmap__hash_u64(uint64_t h, uint64_t v);
/* The initial value to chain from. */
#define HASHMAP_HASH_INIT 0xcbf29ce484222325ULL

#endif
