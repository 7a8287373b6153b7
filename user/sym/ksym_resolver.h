/* Kernel addresses named by the kernel's own symbol lookup, through a small BPF program run on
 * demand (bpf/ksym.bpf.c): microseconds per batch of addresses, where /proc/kallsyms costs tens
 * of milliseconds of CPU to read whole. The symbolizer's first choice for kernel frames; it
 * falls back to /proc/kallsyms where this cannot load or names nothing (sym/kernel.c). */
#ifndef CPROF_SYM_KSYM_RESOLVER_H
#define CPROF_SYM_KSYM_RESOLVER_H

#include <stddef.h>
#include <stdint.h>

struct ksym_resolver;

/* Loads the program. Returns 0 or -errno (a kernel without syscall programs or bpf_snprintf,
 * or not privileged). */
int ksym_resolver__open(struct ksym_resolver **out);
void ksym_resolver__free(struct ksym_resolver *k);

/* names[i]: the function holding addrs[i] as /proc/kallsyms would name it ("fn", or
 * "fn [module]"), malloc'd (the caller frees it); NULL where the kernel knows no symbol there,
 * or its name is longer than the program formats. Safe to call from several threads. Returns 0
 * or -errno (then every names[i] is NULL). */
int ksym_resolver__resolve(struct ksym_resolver *k, const uint64_t *addrs, size_t n, char **names);

/* The program's fd (cprof-bpf check). */
int ksym_resolver__prog_fd(const struct ksym_resolver *k);

/* The core kernel's first address (_text), 0 when unknown. */
uint64_t ksym_resolver__text(const struct ksym_resolver *k);

/* One line of the program's "%pS" output for addr to a name, as ksym_resolver__resolve gives it
 * (exposed for the unit tests): "fn+0xoff/0xsize [module buildid]" -> "fn [module]"; NULL
 * when the line is no symbol ("0x..."), is cut short (len_max - 1 bytes), or out of memory. */
char *ksym_resolver__parse(const char *line, size_t len_max);

#endif
