/* /proc/PID/maps and friends: what a process has mapped, read once when the process is first
 * seen so that its samples can still be symbolized after it exits. */
#ifndef CPROF_PROC_MAPS_H
#define CPROF_PROC_MAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct proc_map {
	uint64_t start, end; /* [start, end) */
	uint64_t offset;     /* file offset of start */
	uint64_t inode;
	uint32_t dev_major, dev_minor;
	char perms[5]; /* "r-xp" */
	char *path;    /* as /proc shows it, " (deleted)" stripped; NULL when anonymous */
	bool deleted;  /* the file was deleted or replaced since it was mapped */
};

struct proc_maps {
	pid_t pid;
	struct proc_map *maps; /* sorted by start, as the kernel lists them */
	size_t n;
};

/* Reads /proc/PID/maps. Returns 0, or -errno (-ESRCH when the process is gone). */
int proc_maps__read(pid_t pid, struct proc_maps **out);
/* Parses maps text from f (the format of /proc/PID/maps); for tests and for read(). */
int proc_maps__parse(FILE *f, pid_t pid, struct proc_maps **out);
/* The mapping holding addr, or NULL. Binary search. */
const struct proc_map *proc_maps__find(const struct proc_maps *m, uint64_t addr);
void proc_maps__free(struct proc_maps *m);
/* A copy of m's executable mappings (what a symbolizer needs of it), or NULL (no memory). */
struct proc_maps *proc_maps__copy_code(const struct proc_maps *m);
/* Opens (read-only) the file that map of pid maps: through /proc/PID/map_files, the mapped file
 * itself, else by its path as pid sees it (/proc/PID/root/PATH) unless the file was deleted or
 * replaced since. Returns an fd or -errno. */
int proc_map__open(pid_t pid, const struct proc_map *map);

/* The process's command name (/proc/PID/comm, no newline). Returns 0 or -errno. */
int proc__comm(pid_t pid, char *buf, size_t len);
/* The path of the executable (readlink /proc/PID/exe). Returns 0 or -errno. */
int proc__exe(pid_t pid, char *buf, size_t len);
/* 0 when the process exists (kill(pid, 0) or /proc/PID), else -ESRCH. */
int proc__exists(pid_t pid);

#endif
