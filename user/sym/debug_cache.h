/* Private to sym/: uncompressed copies of compressed separate debug files.
 *
 * Debian's debug files (libc6-dbg, *-dbgsym) have their DWARF sections zlib-compressed.
 * libdw inflates every one of them into memory when it opens such a file, all at once: 10 MB
 * for libc's 4 MB debug file, to read a few of its functions. An uncompressed copy instead is
 * mapped, and only the pages a lookup reads are ever in memory. So the first time a compressed
 * debug file is needed, it is inflated (a stream: a few buffers of memory) into a copy under
 * the cache directory, named by build-id, as perf's ~/.debug and debuginfod's cache keep
 * copies, and libdwfl reads the copy from then on.
 *
 * The directory is $CPROF_CACHE_DIR, else $XDG_CACHE_HOME/cprof-bpf, else
 * $HOME/.cache/cprof-bpf; CPROF_CACHE_DIR set to an empty string turns the cache off (libdw then
 * inflates in memory, as before). A copy holds the same bytes as the file's sections, so its
 * build-id is the file's and libdwfl checks it as it checks the file itself. */
#ifndef CPROF_SYM_DEBUG_CACHE_H
#define CPROF_SYM_DEBUG_CACHE_H

/* An fd of the uncompressed copy of the debug file open at fd, whose build-id is build_id (hex),
 * made now if there is none yet, and its path in *path (malloc'd). Returns -ENOENT when the
 * file has no compressed section we can inflate (use it as it is), or another -errno (the cache
 * is off or cannot be written: use the file as it is). */
int debug_cache__open(int fd, const char *build_id, char **path);

#endif
