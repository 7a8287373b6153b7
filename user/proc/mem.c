#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "proc/mem.h"

int proc_mem__pread(int fd, uint64_t addr, void *buf, size_t size)
{
	ssize_t n = pread(fd, buf, size, (off_t)addr);

	if (n < 0)
		return -errno;
	return (size_t)n == size ? 0 : -EIO;
}

int proc_mem__read(pid_t pid, uint64_t addr, void *buf, size_t size)
{
	char path[64];
	int fd, err;

	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	err = proc_mem__pread(fd, addr, buf, size);
	close(fd);
	return err;
}
