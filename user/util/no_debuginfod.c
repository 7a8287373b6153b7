/* libdebuginfod loaded only when there is a server to ask.
 *
 * libdw 0.188 (Debian 12) dlopens libdebuginfod the first time it looks for a file's separate
 * debug info and finds none on the disk, whether or not DEBUGINFOD_URLS names a server: that
 * maps, relocates and initializes libcurl, GnuTLS and some twenty libraries more (17-27 ms of
 * CPU here, and 2-3 MB of resident memory), for a client that then has nothing to ask. Later
 * elfutils skip the library without servers. This definition of dlopen, which libdw calls
 * through the dynamic linker, does the same: it refuses that one library while DEBUGINFOD_URLS
 * is unset or empty (libdw then searches the disk only, as it does when the library is not
 * installed); every other call goes to libc's dlopen. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#define DEBUGINFOD_SONAME "libdebuginfod.so.1"

void *dlopen(const char *file, int mode)
{
	static void *(*real)(const char *, int);
	const char *urls;

	if (file && !strcmp(file, DEBUGINFOD_SONAME)) {
		urls = getenv("DEBUGINFOD_URLS");
		if (!urls || !urls[0])
			return NULL;
	}
	if (!real)
		real = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
	return real ? real(file, mode) : NULL;
}
