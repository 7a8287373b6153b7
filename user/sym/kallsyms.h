/* /proc/kallsyms text symbols, either all of them sorted for binary search, or only those that
 * name a given set of addresses, read in one streamed pass; or one symbol's address range. The
 * symbolizer reads them; the off-CPU collectors look up one range. */
#ifndef CPROF_SYM_KALLSYMS_H
#define CPROF_SYM_KALLSYMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kallsyms;

/* Reads the text symbols (t, T, w, W) of a file in /proc/kallsyms format. Module symbols are
 * named "fn [module]". Returns 0 or -errno. */
int kallsyms__load(const char *path, struct kallsyms **out);
void kallsyms__free(struct kallsyms *k);
/* The symbol at or before addr, or NULL (before the first symbol, or restricted). */
const char *kallsyms__lookup(const struct kallsyms *k, uint64_t addr);
/* Every address read as zero: kptr_restrict hides them from us. */
bool kallsyms__restricted(const struct kallsyms *k);
size_t kallsyms__count(const struct kallsyms *k);
/* The lowest symbol address, 0 when there is none. */
uint64_t kallsyms__min_addr(const struct kallsyms *k);

/* What one pass over the file saw. */
struct kallsyms_info {
	size_t count;	   /* text symbols */
	uint64_t min_addr; /* the lowest of their addresses */
	bool restricted;   /* every address read as zero */
};

/* Resolves n sorted, distinct addresses in one pass over the file, keeping nothing else:
 * names[i] is what kallsyms__lookup would return for addrs[i], malloc'd (the caller frees it),
 * or NULL (none, or restricted). Returns 0 or -errno (then every names[i] is NULL). */
int kallsyms__resolve(const char *path, const uint64_t *addrs, size_t n, char **names,
		      struct kallsyms_info *info);

/* The address range of the core kernel's text symbol name in a file in /proc/kallsyms format:
 * [its address, the next text symbol's). Returns 0 or -errno (-ENOENT: not there, or
 * addresses hidden). */
int kallsyms__range(const char *path, const char *name, uint64_t *lo, uint64_t *hi);

#endif
