/* Logging: a few levels, one verbosity switch (-v), everything on stderr prefixed "cprof-bpf: ".
 * libbpf's own messages are routed through the same switch (log__route_libbpf). */
#ifndef CPROF_UTIL_LOG_H
#define CPROF_UTIL_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN = 1,
	LOG_INFO = 2,
	LOG_DEBUG = 3,
};

/* Messages at or below this level are printed. Default LOG_WARN; -v raises it to LOG_INFO,
 * -vv to LOG_DEBUG; -q lowers it to LOG_ERROR. */
extern int log_verbosity;

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Routes libbpf's messages through log_verbosity. */
void log__route_libbpf(void);

#define pr_err(...)   log_msg(LOG_ERROR, __VA_ARGS__)
#define pr_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define pr_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define pr_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
