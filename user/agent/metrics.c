/* The agent's counters as Prometheus text (/metrics), its health (/healthz), and its own cost. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

#include "agent/internal.h"
#include "collect/drops.h"
#include "util/clock.h"
#include "util/strbuf.h"

void metrics__self(double *cpu_seconds, uint64_t *rss)
{
	struct rusage ru;
	unsigned long size = 0, res = 0;
	FILE *f;

	*cpu_seconds = 0;
	*rss = 0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		*cpu_seconds = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
			       ru.ru_stime.tv_usec / 1e6;
	f = fopen("/proc/self/statm", "re");
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &res) == 2)
			*rss = (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
		fclose(f);
	}
}

bool metrics__healthy(struct agent *a, const char **why)
{
	int64_t now = clock__ns(CLOCK_MONOTONIC), last;
	double slack = a->o->watch ? 0 : a->o->interval * 2 + 5;
	bool full;

	pthread_mutex_lock(&a->lock);
	last = a->m.last_window_mono ? a->m.last_window_mono : a->m.started_mono;
	full = a->m.store_full;
	pthread_mutex_unlock(&a->lock);
	if (full) {
		*why = "store full: the file system is below --min-free, profiles are not stored";
		return false;
	}
	if (!a->o->watch && now - last >= (int64_t)(slack * 1e9)) {
		*why = "windows are late";
		return false;
	}
	return true;
}

static void put(struct strbuf *b, const char *name, const char *type, const char *help, double v)
{
	strbuf__printf(b,
		       "# HELP cprof_agent_%s %s\n# TYPE cprof_agent_%s %s\n"
		       "cprof_agent_%s %.17g\n",
		       name, help, name, type, name, v);
}

/* The unwind tables (as of the last window): what they hold and where their time went. */
static void metrics__unwind(struct strbuf *b, const struct agent_metrics *m)
{
	const struct unwinder_stats *u = &m->unwind;

	put(b, "unwind_tables", "gauge", "Executables with an unwind table in BPF.", u->tables);
	put(b, "unwind_table_bytes", "gauge", "Bytes of unwind tables in BPF.", u->bytes);
	put(b, "unwind_tables_built_total", "counter", "Unwind tables compiled and loaded.",
	    u->builds);
	put(b, "unwind_build_seconds_total", "counter",
	    "CPU time spent compiling and loading unwind tables (and reading --unwind-cache).",
	    u->build_ns / 1e9);
	put(b, "unwind_procs_total", "counter",
	    "Sampled processes whose mappings were given to the unwinder.", u->pids);
	put(b, "unwind_execs_total", "counter",
	    "Exec'd processes given the tables already built (maps read, no build).", u->execs);
	put(b, "unwind_proc_seconds_total", "counter",
	    "Time spent on those processes (maps read, trie updates, builds done inline).",
	    u->pid_ns / 1e9);
	put(b, "unwind_exe_hits_total", "counter",
	    "Executable mappings whose table was already known (shared, no work).", u->exe_hits);
	put(b, "unwind_deferred_total", "counter",
	    "Mappings queued for a later build (large file or over --unwind-cpu).", u->deferred);
	put(b, "unwind_on_demand_total", "counter",
	    "Executables named for the unwinder, their table built when a walk first needs it.",
	    u->on_demand);
	put(b, "unwind_pending", "gauge", "Mappings waiting for a table now.", u->pending);
	put(b, "unwind_over_budget_total", "counter",
	    "Executables left to frame pointers: --unwind-mem or table slots full.",
	    u->over_budget + u->queue_full);
	put(b, "unwind_no_cfi_total", "counter",
	    "Executables without usable .eh_frame (frame pointers).", u->no_cfi);
	put(b, "unwind_failed_total", "counter", "Tables that could not be built or loaded.",
	    u->failed);
	put(b, "unwind_budget_bytes", "gauge", "Memory budget of the unwind tables (--unwind-mem).",
	    u->budget_bytes);
	put(b, "unwind_evictions_total", "counter",
	    "Unwind tables evicted to fit --unwind-mem (least recently sampled first).",
	    u->evicted);
	put(b, "unwind_rebuilds_total", "counter",
	    "Tables built again after an eviction, or once room was made (also in built_total).",
	    u->rebuilds);
	put(b, "unwind_misses_total", "counter",
	    "Notices of walks that met a table not loaded (frame pointers meanwhile).", u->misses);
	put(b, "unwind_no_room_total", "counter",
	    "Rebuilds put off: the tables used in the last second fill --unwind-mem.", u->no_room);
	put(b, "unwind_executables", "gauge",
	    "Executables the unwinder knows now (with a table, mapped, or remembered).",
	    u->records);
	put(b, "unwind_executables_forgotten_total", "counter",
	    "Executables forgotten: no process mapped them and they had no table.", u->forgotten);
	put(b, "unwind_processes", "gauge", "Processes whose mappings the unwinder holds now.",
	    u->procs);
	put(b, "unwind_processes_swept_total", "counter",
	    "Processes forgotten without an exit notice (gone when checked).", u->swept);
	put(b, "unwind_cache_loads_total", "counter",
	    "Unwind tables read from --unwind-cache instead of built.", u->cache_loads);
	put(b, "unwind_cache_load_seconds_total", "counter",
	    "CPU time reading and checking tables from --unwind-cache.", u->cache_load_ns / 1e9);
	put(b, "unwind_cache_stores_total", "counter", "Unwind tables written to --unwind-cache.",
	    u->cache_stores);
	put(b, "unwind_cache_rejected_total", "counter",
	    "Files of --unwind-cache that failed their checks (removed, not loaded).",
	    u->cache_rejected);
	put(b, "unwind_cache_removed_total", "counter",
	    "Files of --unwind-cache removed to stay within --unwind-cache-size.",
	    u->cache_removed);
	put(b, "unwind_cache_bytes", "gauge", "Bytes of the files in --unwind-cache.",
	    u->cache_bytes);
}

void metrics__sym_retired(struct agent *a, const struct symbolizer *sym)
{
	struct symbolizer_stats st;

	symbolizer__stats(sym, &st);
	pthread_mutex_lock(&a->lock);
	a->m.sym_base.file_hits += st.file_hits;
	a->m.sym_base.file_misses += st.file_misses;
	a->m.sym_base.addr_hits += st.addr_hits;
	a->m.sym_base.addr_misses += st.addr_misses;
	a->m.sym = (struct symbolizer_stats){}; /* the next window reads the new one */
	pthread_mutex_unlock(&a->lock);
}

/* The symbol caches (as of the last window): what they hold against their caps, and how often
 * they answer. */
static void metrics__sym(struct strbuf *b, const struct agent_metrics *m)
{
	const struct symbolizer_stats *s = &m->sym, *base = &m->sym_base;

	put(b, "symbol_files", "gauge", "ELF files whose symbols are cached (shared by processes).",
	    s->files);
	put(b, "symbol_processes", "gauge", "Processes with a mappings snapshot in the symbolizer.",
	    s->procs);
	put(b, "symbol_file_hits_total", "counter",
	    "Mapped files of new processes found in the symbol cache (nothing read).",
	    base->file_hits + s->file_hits);
	put(b, "symbol_file_misses_total", "counter",
	    "Mapped files of new processes read for their symbols.",
	    base->file_misses + s->file_misses);
	put(b, "symbol_addrs", "gauge", "Resolved addresses cached.", s->addrs);
	put(b, "symbol_addrs_max", "gauge", "Cap of the address cache (emptied when full).",
	    s->max_addrs);
	put(b, "symbol_addr_hits_total", "counter", "Address lookups answered by the cache.",
	    base->addr_hits + s->addr_hits);
	put(b, "symbol_addr_misses_total", "counter", "Addresses resolved from ELF or DWARF data.",
	    base->addr_misses + s->addr_misses);
	put(b, "symbol_dwarf_open", "gauge", "DWARF readers open.", s->dwarf_open);
	put(b, "symbol_dwarf_open_max", "gauge",
	    "Cap of the DWARF readers open (least recently used closed).", s->max_dwarf_open);
}

/* The processes: notices, what was read of them, what was held and forgotten. */
static void metrics__procs(struct strbuf *b, const struct agent_metrics *m)
{
	put(b, "procs_missed_total", "counter",
	    "Processes that exited before their mappings were read.",
	    m->dropped[CPROF_DROP_PROCS_MISSED]);
	put(b, "procs_tracked", "gauge", "Processes whose state the agent holds.",
	    m->procs_tracked);
	put(b, "procs_evicted_total", "counter", "Exited processes forgotten.", m->procs_evicted);
	put(b, "execs_total", "counter", "Exec notices.", m->execs);
	put(b, "execs_unread_total", "counter",
	    "Exec'd processes that exited unsampled within 10 ms: forgotten, nothing of them read.",
	    m->execs_unread);
	put(b, "procs_late_total", "counter",
	    "Processes gone before their first sample was read, symbolized from their exec.",
	    m->procs_late);
}

char *metrics__render(struct agent *a)
{
	struct strbuf b = {};
	struct agent_metrics m;
	double cpu;
	uint64_t rss, lost;

	metrics__self(&cpu, &rss);
	pthread_mutex_lock(&a->lock);
	m = a->m;
	pthread_mutex_unlock(&a->lock);
	lost = m.dropped[CPROF_DROP_KEYS_FULL] + m.dropped[CPROF_DROP_USTACK_COLLIDE] +
	       m.dropped[CPROF_DROP_KSTACK_COLLIDE] + m.dropped[CPROF_DROP_USTACK_ERR] +
	       m.dropped[CPROF_DROP_KSTACK_ERR] + m.dropped[CPROF_DROP_EVENTS_LOST] +
	       m.dropped[CPROF_DROP_STACK_EVICTED];
	put(&b, "windows_total", "counter", "Windows drained.", m.windows);
	put(&b, "samples_total", "counter", "CPU samples taken.", m.samples);
	put(&b, "samples_dropped_total", "counter",
	    "Samples dropped because the aggregation map was full.",
	    m.dropped[CPROF_DROP_KEYS_FULL]);
	put(&b, "stacks_lost_total", "counter",
	    "Samples, stacks or notices lost (collisions, unreadable, evicted, ring buffer full).",
	    lost);
	put(&b, "stacks_truncated_total", "counter", "Stacks cut at the depth limit.",
	    m.dropped[CPROF_DROP_STACK_TRUNCATED]);
	put(&b, "stacks_trimmed_total", "counter", "Unused stacks deleted from the stack map.",
	    m.trimmed_stacks);
	strbuf__puts(&b, "# HELP cprof_agent_dropped_total What windows lost, by reason (see the "
			 "profile comments).\n"
			 "# TYPE cprof_agent_dropped_total counter\n");
	drops__prometheus(&b, "cprof_agent_dropped_total", "", m.dropped);
	metrics__procs(&b, &m);
	put(&b, "symbol_cache_resets_total", "counter",
	    "Times the symbol caches were dropped (size or --max-rss).", m.sym_resets);
	put(&b, "store_written_total", "counter", "Profiles written to the local store.",
	    m.store_written);
	put(&b, "store_deleted_total", "counter", "Profiles deleted by retention.",
	    m.store_deleted);
	put(&b, "store_dropped_total", "counter",
	    "Profiles not stored (disk space kept free, or write errors).", m.store_dropped);
	put(&b, "store_bytes", "gauge", "Bytes in the local store.", m.store_bytes);
	put(&b, "store_files", "gauge", "Profiles in the local store.", m.store_files);
	put(&b, "store_full", "gauge",
	    "1 while the store's file system is below --min-free and profiles are not stored.",
	    m.store_full);
	put(&b, "push_enqueued_total", "counter", "Pushes queued.", m.push_enqueued);
	put(&b, "push_sent_total", "counter", "Pushes the server accepted.", m.push_ok);
	put(&b, "push_failed_total", "counter", "Push attempts that failed (retried).",
	    m.push_failed);
	put(&b, "push_dropped_total", "counter", "Pushes dropped: queue over its cap.",
	    m.push_dropped);
	put(&b, "push_rejected_total", "counter", "Pushes the server refused for good (4xx).",
	    m.push_rejected);
	put(&b, "queue_bytes", "gauge", "Bytes waiting in the push queue.", m.queue_bytes);
	put(&b, "queue_files", "gauge", "Pushes waiting in the queue.", m.queue_files);
	put(&b, "triggers_fired_total", "counter", "Trigger rules that fired.", m.triggers_fired);
	put(&b, "triggers_skipped_total", "counter",
	    "Fired triggers skipped: another capture was running.", m.triggers_skipped);
	put(&b, "trigger_captures_total", "counter", "Triggered captures written.",
	    m.trigger_captures);
	put(&b, "cpu_seconds_total", "counter", "The agent's own CPU time.", cpu);
	put(&b, "cpu_percent", "gauge", "The agent's own CPU, percent of one core, last window.",
	    m.own_cpu_pct);
	put(&b, "rss_bytes", "gauge", "The agent's own resident memory.", (double)rss);
	metrics__unwind(&b, &m);
	metrics__sym(&b, &m);
	if (strbuf__err(&b)) {
		strbuf__free(&b);
		return NULL;
	}
	return strbuf__take(&b, NULL);
}
