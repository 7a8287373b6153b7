/* Growing arrays: the one place that doubles a capacity and checks it for overflow. */
#ifndef CPROF_UTIL_ARRAY_H
#define CPROF_UTIL_ARRAY_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* Makes room for at least need elements of size elem in *arr, whose room is *cap elements
 * (doubling, from 16). Returns 0, or -ENOMEM with *arr and *cap unchanged. */
static inline int array__reserve(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 16;
	void *p;

	if (need <= *cap)
		return 0;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return -ENOMEM;
		ncap *= 2;
	}
	if (ncap > SIZE_MAX / elem)
		return -ENOMEM;
	p = realloc(*arr, ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

#endif
