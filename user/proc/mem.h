/* Reading another process's memory through /proc/PID/mem (ptrace-mode read access). */
#ifndef CPROF_PROC_MEM_H
#define CPROF_PROC_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reads exactly size bytes at addr of the process open as fd (/proc/PID/mem). Returns 0,
 * -errno, or -EIO for a short read (an unmapped page). */
int proc_mem__pread(int fd, uint64_t addr, void *buf, size_t size);
/* The same for pid, opening and closing its /proc/PID/mem. */
int proc_mem__read(pid_t pid, uint64_t addr, void *buf, size_t size);

#endif
