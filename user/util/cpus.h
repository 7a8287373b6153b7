#ifndef CPROF_UTIL_CPUS_H
#define CPROF_UTIL_CPUS_H

#define CPUS_MAX 4096

struct cpu_set {
	int n;
	int ids[CPUS_MAX];
};

/* Parses /sys/devices/system/cpu/online ("0-3,5"). Returns 0 or -errno. */
int cpus__online(struct cpu_set *set);
/* Parses a CPU list string like the file's content. Returns 0 or -EINVAL. */
int cpus__parse(const char *list, struct cpu_set *set);

#endif
