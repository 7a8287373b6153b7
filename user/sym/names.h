/* Private to sym/: which of several names for one address to show. */
#ifndef CPROF_SYM_NAMES_H
#define CPROF_SYM_NAMES_H

#include <string.h>

/* Among aliases of equal binding, prefer the one with fewer leading underscores ("printf" over
 * "_IO_printf"), then the smaller name, so the choice does not depend on table order. */
static inline int sym_name__cmp(const char *a, const char *b)
{
	size_t ua = strspn(a, "_"), ub = strspn(b, "_");

	if (ua != ub)
		return ua < ub ? -1 : 1;
	return strcmp(a, b);
}

#endif
