/* See util/bigpages.h. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util/bigpages.h"

#define THP_ENABLED   "/sys/kernel/mm/transparent_hugepage/enabled"
#define THP_PAGE_SIZE "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"
/* malloc's largest mmap threshold on 64-bit (half its 64 MiB heap size), and the most reserved
 * below it. */
#define BIGPAGES_THRESHOLD (32 << 20)
#define BIGPAGES_MAX	   (BIGPAGES_THRESHOLD - (1 << 20))

/* The huge page size when the kernel gives huge pages to advised memory, else 0. */
static size_t thp_size(void)
{
	char line[128] = "";
	unsigned long size = 0;
	FILE *f;

	f = fopen(THP_ENABLED, "re");
	if (!f)
		return 0;
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	if (!strstr(line, "[always]") && !strstr(line, "[madvise]"))
		return 0;
	f = fopen(THP_PAGE_SIZE, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%lu", &size) != 1)
		size = 0;
	fclose(f);
	return size;
}

int bigpages__heap(size_t bytes)
{
	size_t huge = thp_size();
	uintptr_t start, end;
	char *p;
	int err = 0;

	if (!huge)
		return -EOPNOTSUPP;
	/* Large blocks from the heap rather than a mapping each (up to malloc's largest
	 * threshold), the heap not given back when they are freed (a fixed threshold also stops
	 * malloc from adjusting it), and threads created from now on allocating from it too rather
	 * than from heaps of their own. Fails where malloc is not glibc's (the sanitizers'). */
	if (bytes > BIGPAGES_MAX)
		bytes = BIGPAGES_MAX;
	if (!mallopt(M_MMAP_THRESHOLD, BIGPAGES_THRESHOLD) ||
	    !mallopt(M_TRIM_THRESHOLD, 2 * BIGPAGES_THRESHOLD) || !mallopt(M_ARENA_MAX, 1))
		return -EOPNOTSUPP;
	/* Grows the heap by bytes (no page is touched yet), advises the huge-page-aligned part of
	 * it, and hands it back to malloc's top, where the next allocations are carved from. */
	p = malloc(bytes);
	if (!p)
		return -ENOMEM;
	start = ((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1);
	end = ((uintptr_t)p + bytes) & ~(uintptr_t)(huge - 1);
	if (end > start && madvise((void *)start, end - start, MADV_HUGEPAGE))
		err = -errno;
	free(p);
	return err;
}
