/* The GNU build-id of an ELF file, read with pread: its header, its program headers and its
 * PT_NOTE segments, nothing mapped. libelf maps the whole file to answer the same question,
 * and the unmapping that follows costs every other CPU that ran one of our threads a TLB
 * shootdown (an interrupt: on a virtual machine, an exit to the hypervisor). */
#ifndef CPROF_UTIL_BUILD_ID_H
#define CPROF_UTIL_BUILD_ID_H

#include <stddef.h>

/* Writes the build-id of the 64-bit little-endian ELF file open at fd into buf as lowercase hex
 * ("" first). Returns 0; -ENOENT: the file has none; -ENOEXEC: not such an ELF file, or one
 * past this reader's bounds (another reader may still know it); -ERANGE: len too small; else -errno. */
int build_id__read(int fd, char *buf, size_t len);

#endif
