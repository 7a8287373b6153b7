/* Shared between bpf/ksym.bpf.c and user/sym/ksym_resolver.c. */
#ifndef CPROF_KSYM_H
#define CPROF_KSYM_H

/* Addresses named per run of the program. */
#define CPROF_KSYM_BATCH 64
/* Bytes of one name as formatted ("function+0xoff/0xsize [module]", NUL included); a longer
 * one is cut short, and named from /proc/kallsyms instead. */
#define CPROF_KSYM_NAME 256

#endif
