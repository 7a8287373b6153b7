/* Unit tests of util/no_debuginfod: with DEBUGINFOD_URLS unset, looking for the debug info of a
 * file that has none on the disk (a distribution binary) leaves libdebuginfod unloaded; with a
 * server named (a closed port: the question fails at once) the same lookup loads it, which shows
 * that the lookup is one that would load it. The second half runs in a child: libdw decides
 * whether it has the library once per process. */
#include <dlfcn.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "sym/dwarf.h"

#define DEBUGINFOD_SONAME "libdebuginfod.so.1"
/* Debian's binaries are stripped, their debug info in -dbgsym packages. */
#define NO_DEBUG_FILE "/usr/bin/ls"

static bool debuginfod_mapped(void)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	assert_non_null(f);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "libdebuginfod") != NULL;
	fclose(f);
	return found;
}

/* Asks libdw for the DWARF of NO_DEBUG_FILE: a search on the disk, then debuginfod's turn.
 * Returns whether DWARF was found (the test needs a file without). */
static bool look_up(void)
{
	struct sym_dwarf *d = NULL;
	bool present;
	int fd = open(NO_DEBUG_FILE, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return true; /* no such file: nothing to test with */
	assert_int_equal(sym_dwarf__open(fd, NO_DEBUG_FILE, NULL, &d), 0);
	present = sym_dwarf__present(d);
	sym_dwarf__free(d);
	close(fd);
	return present;
}

/* Whether the lookup with a server named loads libdebuginfod, in a child forked before this
 * process asks libdw anything (libdw decides once per process, and a fork inherits that).
 * Returns 0: it does; 1: it does not; 2: not installed or not asked (nothing to compare). */
static int loaded_with_a_server(void)
{
	char cache[] = "/tmp/cprof-debuginfod-XXXXXX";
	pid_t pid;
	int status;

	assert_non_null(mkdtemp(cache));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("DEBUGINFOD_URLS", "http://127.0.0.1:1", 1);
		setenv("DEBUGINFOD_CACHE_PATH", cache, 1);
		setenv("DEBUGINFOD_TIMEOUT", "2", 1);
		if (look_up())
			_exit(2); /* its debug info is installed here */
		if (debuginfod_mapped())
			_exit(0);
		_exit(dlopen(DEBUGINFOD_SONAME, RTLD_LAZY) ? 1 : 2);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	rmdir(cache);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void test_not_loaded_without_servers(void **state)
{
	int with_server;

	(void)state;
	if (debuginfod_mapped())
		skip(); /* linked in by something else: nothing to tell apart */
	with_server = loaded_with_a_server();
	if (with_server == 2)
		skip();
	assert_int_equal(with_server, 0);
	unsetenv("DEBUGINFOD_URLS");
	assert_false(look_up());
	assert_false(debuginfod_mapped());
	assert_null(dlopen(DEBUGINFOD_SONAME, RTLD_LAZY));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_loaded_without_servers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
