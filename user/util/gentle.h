/* Running at the idle scheduling class for a while: a short job (a thread snapshot) that takes
 * no CPU from the machine's own threads, such as a spinning thread of the process it reads,
 * unless it waits too long for a free one. */
#ifndef CPROF_UTIL_GENTLE_H
#define CPROF_UTIL_GENTLE_H

struct gentle;

/* Puts the calling thread (and the threads it creates from now on) in SCHED_IDLE, and after
 * deadline_ms every thread of the process back in the caller's class: on a machine whose CPUs
 * are all busy the job then runs as it would have. NULL when it cannot (nothing changed). */
struct gentle *gentle__start(int deadline_ms);
/* Every thread of the process back in the caller's class; frees g. NULL is a no-op. */
void gentle__stop(struct gentle *g);

#endif
