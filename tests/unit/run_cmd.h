/* For unit tests that build fixtures with the shell: run() formats a command, runs it with
 * system() and says on stderr which one failed. Returns system()'s status. */
#ifndef CPROF_TESTS_UNIT_RUN_CMD_H
#define CPROF_TESTS_UNIT_RUN_CMD_H

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[4 * PATH_MAX];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	if (rc)
		fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
	return rc;
}

#endif
