/* Memory checkpoints for finding where the profiler's own memory goes: at -vv, or when
 * CPROF_DEBUG_MEM is set in the environment, each checkpoint prints this process's resident
 * memory (VmRSS, RssAnon, RssFile) and its peak so far (VmHWM) from /proc/self/status. */
#ifndef CPROF_UTIL_MEM_H
#define CPROF_UTIL_MEM_H

void mem__checkpoint(const char *where);

#endif
