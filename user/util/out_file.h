/* The output of a one-shot session (-o PATH), checked before sampling and written at the end.
 *
 * What is at PATH decides how it is written:
 * - nothing, or a regular file: a new file is written beside it and renamed over it at the end
 *   (readers see the old profile or the new one, never half of one). The new file is created
 *   unnamed (O_TMPFILE) before sampling and gets a name only for the rename at the end, so a
 *   failure, a signal or SIGKILL leaves no temporary file behind.
 * - a character or block device, a FIFO: written directly, never replaced (a FIFO is opened at
 *   the end, when there is something to write, and blocks until a reader opens it).
 * - a symlink: followed; the file it leads to is written as above, the symlink stays.
 * - a directory, a socket, anything on a kernel file system (proc, sysfs, ...): an error before
 *   sampling. "-" and NULL mean stdout. */
#ifndef CPROF_UTIL_OUT_FILE_H
#define CPROF_UTIL_OUT_FILE_H

#include <stdio.h>

struct out_file;

/* Checks PATH (NULL or "-": stdout) and prepares to write it: every check that can be made now
 * is made now. On error prints a one-line message naming the problem and returns -errno. */
int out_file__open(const char *path, struct out_file **out);
/* The stream to write the profile to (opens a FIFO now: blocks until it has a reader).
 * NULL with a message printed on error. */
FILE *out_file__stream(struct out_file *of);
/* Flushes and gives the file its name (rename over PATH). Prints the error; returns -errno. */
int out_file__commit(struct out_file *of);
/* Frees of; a file not committed is discarded (nothing left on disk). Safe on NULL. */
void out_file__free(struct out_file *of);
/* The path as given (for messages), "-" for stdout. */
const char *out_file__path(const struct out_file *of);

#endif
