#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/cpus.h"

int cpus__parse(const char *s, struct cpu_set *set)
{
	char *end;
	long a, b;

	set->n = 0;
	while (*s && *s != '\n') {
		a = strtol(s, &end, 10);
		if (end == s || a < 0)
			return -EINVAL;
		b = a;
		s = end;
		if (*s == '-') {
			b = strtol(s + 1, &end, 10);
			if (end == s + 1 || b < a)
				return -EINVAL;
			s = end;
		}
		for (long i = a; i <= b; i++) {
			if (set->n >= CPUS_MAX)
				return -EINVAL;
			set->ids[set->n++] = (int)i;
		}
		if (*s == ',')
			s++;
		else if (*s && *s != '\n')
			return -EINVAL;
	}
	return set->n ? 0 : -EINVAL;
}

int cpus__online(struct cpu_set *set)
{
	char buf[1024];
	FILE *f = fopen("/sys/devices/system/cpu/online", "r");
	int err;

	if (!f)
		return -errno;
	err = fgets(buf, sizeof(buf), f) ? cpus__parse(buf, set) : -EIO;
	fclose(f);
	return err;
}
