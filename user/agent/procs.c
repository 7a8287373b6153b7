/* The agent's table of processes: what it knows of each (labels, and the snapshot of its
 * mappings in the symbolizer), from the collector's notices: read at a process's first sample,
 * kept in part from its exec in case it is gone by then, dropped after its last window. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>

#include "agent/session.h"
#include "proc/maps.h"
#include "proc/stat.h"
#include "util/hashmap.h"
#include "util/log.h"

/* New processes a symbolizer takes before it is replaced by a fresh one (its caches of files
 * and mappings only grow while it lives). */
#define SYM_MAX_PROCS 4096
/* Windows between checks that the processes we hold are still alive (exit notices can be
 * lost when the ring buffer is full). */
#define SWEEP_EVERY 6

static void aproc__free(struct aproc *p)
{
	if (!p)
		return;
	free(p->exe);
	free(p->cgroup);
	proc_maps__free(p->exec_maps);
	free(p);
}

/* p's labels: its executable and cgroup (either may be NULL), and the container the cgroup
 * names. */
static void aproc__set_labels(struct aproc *p, const char *exe, const char *cgroup)
{
	free(p->exe);
	free(p->cgroup);
	p->exe = exe ? strdup(exe) : NULL;
	p->cgroup = cgroup ? strdup(cgroup) : NULL;
	if (!p->cgroup || proc__container_id(p->cgroup, p->container, sizeof(p->container)))
		p->container[0] = 0;
}

/* Labels p from rd when the notice reader read them, else from /proc now. */
static void aproc__label(struct aproc *p, const struct proc_read *rd)
{
	char exe[4096], cgroup[4096];

	if (rd && rd->labels) {
		aproc__set_labels(p, rd->exe, rd->cgroup);
		return;
	}
	aproc__set_labels(p, proc__exe(p->pid, exe, sizeof(exe)) ? NULL : exe,
			  proc__cgroup(p->pid, cgroup, sizeof(cgroup)) ? NULL : cgroup);
}

static struct aproc *procs__get(struct session *s, pid_t pid)
{
	void *found;

	return hashmap__find(s->procs, (void *)(uintptr_t)pid, &found) ? found : NULL;
}

/* A new entry for pid, in the table (NULL: no memory). */
static struct aproc *procs__new(struct session *s, pid_t pid)
{
	struct aproc *p = calloc(1, sizeof(*p));

	if (!p || hashmap__insert(s->procs, (void *)(uintptr_t)pid, p)) {
		free(p);
		return NULL;
	}
	p->pid = pid;
	return p;
}

static void procs__drop(struct session *s, pid_t pid)
{
	void *old;
	__u32 key = pid;

	if (hashmap__delete(s->procs, (void *)(uintptr_t)pid, NULL, &old))
		aproc__free(old);
	symbolizer__remove_pid(s->sym, pid);
	/* A reused pid must be announced again. */
	if (s->seen)
		bpf_map__delete_elem(s->seen, &key, sizeof(key), 0);
}

/* Gone before it was read: its snapshot is what its exec saw, if that was kept. */
static void procs__late(struct session *s, struct aproc *p)
{
	int err = symbolizer__add_pid_maps(s->sym, p->pid, p->exec_maps);

	proc_maps__free(p->exec_maps);
	p->exec_maps = NULL;
	if (err) {
		s->procs_missed++;
		return;
	}
	s->sym_adds++;
	s->procs_late++;
}

/* Gone before anything of it was read: remembered as gone, so that it is counted once. */
static void procs__missed(struct session *s, pid_t pid)
{
	struct aproc *p = procs__new(s, pid);

	s->procs_missed++;
	if (!p)
		return;
	p->dead = true;
	p->dead_at = s->nwindow;
}

/* A process was seen (first sample, or a library mapped): what identifies and labels it, and
 * its mappings, read with its notice (rd) or now. */
static void procs__seen(struct session *s, pid_t pid, bool exec, const struct proc_read *rd)
{
	struct proc_stat st = {};
	struct aproc *p = procs__get(s, pid);
	int err;

	if (rd && rd->read) {
		err = rd->stat_err;
		st = rd->st;
	} else {
		err = proc_stat__read(pid, &st);
	}
	if (err) {
		if (p && p->exec_maps)
			procs__late(s, p);
		else if (!p)
			procs__missed(s, pid);
		return;
	}
	if (p && p->starttime != st.starttime) {
		/* Exit notice lost, pid reused, or exec'd and not read yet (starttime 0). */
		p->starttime = st.starttime;
		p->dead = false;
		exec = true;
	}
	if (!p) {
		p = procs__new(s, pid);
		if (!p)
			return;
		p->starttime = st.starttime;
		exec = true;
	}
	p->dead = false;
	if (exec || p->exec_pending)
		aproc__label(p, rd);
	p->exec_pending = false;
	if (rd && rd->pm)
		err = symbolizer__add_pid_maps(s->sym, pid, rd->pm);
	else if (rd && rd->read)
		err = -ESRCH; /* gone by the time its mappings were read */
	else
		err = symbolizer__add_pid(s->sym, pid);
	s->sym_adds++;
	s->procs_read++;
	if ((err == -ESRCH || err == -ENOENT) && p->exec_maps)
		procs__late(s, p);
	else if (err == -ESRCH || err == -ENOENT)
		s->procs_missed++;
	else if (err)
		pr_debug("cannot read the mappings of pid %d: %s\n", pid, strerror(-err));
	proc_maps__free(p->exec_maps);
	p->exec_maps = NULL;
}

/* An exec of a process not read yet: what it needs if it is gone before its first sample is
 * handled (its executable, its code mappings), but not the rest (stat, cgroup, symbol files):
 * most of the processes a busy machine starts are never sampled. */
static void procs__exec(struct session *s, pid_t pid, const struct proc_read *rd)
{
	struct aproc *p = procs__get(s, pid);
	char buf[4096];

	if (!p) {
		p = procs__new(s, pid); /* starttime 0: read in full when seen */
		if (!p)
			return;
	} else if (p->dead) { /* a pid reused */
		p->dead = false;
		p->starttime = 0;
	}
	p->exec_pending = true;
	proc_maps__free(p->exec_maps);
	p->exec_maps = proc_maps__copy_code(rd->pm);
	free(p->exe);
	if (rd->read)
		p->exe = rd->exe ? strdup(rd->exe) : NULL;
	else
		p->exe = proc__exe(pid, buf, sizeof(buf)) == 0 ? strdup(buf) : NULL;
}

void procs__on_proc(void *ctx, const struct cprof_proc_event *e, const struct proc_read *rd)
{
	struct session *s = ctx;
	struct aproc *p;

	switch (e->kind) {
	case CPROF_PROC_NEW:
	case CPROF_PROC_SAMPLED: /* refreshed: its libraries are mapped by now */
	case CPROF_PROC_MMAP:	 /* a library mapped since: read the mappings again */
		procs__seen(s, (pid_t)e->pid, false, rd);
		break;
	case CPROF_PROC_EXEC:
		/* Read in full at its first sample (CPROF_PROC_SAMPLED), not now: most of the
		 * processes a busy machine starts are never sampled at 19 Hz, and reading each
		 * one's mappings, stat and cgroup at its exec was most of the agent's CPU under
		 * process churn. A pid read before keeps its snapshot (the old program's samples of
		 * this window) and gets its new labels and mappings at that sample. */
		p = procs__get(s, (pid_t)e->pid);
		if (rd->pm && (!p || p->exec_maps || p->dead))
			procs__exec(s, (pid_t)e->pid, rd);
		else if (p)
			p->exec_pending = true;
		break;
	case CPROF_PROC_PYCODE:
		/* Read while the process lives: its Python frames resolve after it exits. */
		symbolizer__python_prefetch(s->sym, (pid_t)e->pid, e->code);
		break;
	case CPROF_PROC_EXIT:
		p = procs__get(s, (pid_t)e->pid);
		if (p && !p->dead) {
			p->dead = true;
			p->dead_at = s->nwindow;
		}
		break;
	}
}

int procs__labels(void *ctx, pid_t pid, struct pprof_label *l, int max)
{
	struct session *s = ctx;
	const struct cli_opts *o = s->a->o;
	struct aproc *p;
	int n = 0;

	session__poll(s);
	p = procs__get(s, pid);
	if (!p || p->exec_maps) { /* its notice was lost, or is not read yet: read what we can */
		procs__seen(s, pid, !p, NULL);
		p = procs__get(s, pid);
	}
	if (p && p->exe && n < max)
		l[n++] = (struct pprof_label){.key = "exe", .str = p->exe};
	if (p && p->cgroup && n < max)
		l[n++] = (struct pprof_label){.key = "cgroup", .str = p->cgroup};
	if (p && p->container[0] && n < max)
		l[n++] = (struct pprof_label){.key = "container_id", .str = p->container};
	if (n < max)
		l[n++] = (struct pprof_label){.key = "host", .str = s->a->host};
	for (int i = 0; i < o->nlabels && n < max; i++)
		l[n++] = (struct pprof_label){.key = o->labels[i].key, .str = o->labels[i].value};
	return n;
}

struct collect_pids {
	pid_t *v;
	size_t n, cap;
	bool dead_only;
};

static void collect_pid(const void *key, void *value, void *ctx)
{
	struct collect_pids *c = ctx;
	struct aproc *p = value;
	pid_t *tmp;

	(void)key;
	if (c->dead_only && !p->dead)
		return;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		tmp = realloc(c->v, c->cap * sizeof(*tmp));
		if (!tmp)
			return;
		c->v = tmp;
	}
	c->v[c->n++] = p->pid;
}

/* After a window: forgets exited processes once the window after the one in which they were
 * seen gone is written (a process's samples all precede its exit notice, but a notice handled
 * during a drain can precede samples the drain left for the next window), marks those whose
 * exit notice was lost every SWEEP_EVERY windows, and replaces the symbolizer when it has taken
 * many processes or the agent is over --max-rss. */
void procs__evict(struct session *s)
{
	struct collect_pids c = {.dead_only = s->nwindow % SWEEP_EVERY != 0};
	struct proc_stat st;
	uint64_t evicted = 0, rss;
	struct aproc *p;
	double cpu;

	hashmap__for_each(s->procs, collect_pid, &c);
	for (size_t i = 0; i < c.n; i++) {
		p = procs__get(s, c.v[i]);
		if (!p)
			continue;
		if (!p->dead) {
			/* (starttime 0: exec'd, not read yet) */
			if (proc_stat__read(p->pid, &st) == 0 && st.state != 'Z' &&
			    (st.starttime == p->starttime || !p->starttime))
				continue;
			p->dead = true;
			p->dead_at = s->nwindow - 1; /* gone before this window's drain ended */
		}
		/* nwindow counts the windows written: dead_at + 1 is written too. */
		if (p->dead_at + 2 > s->nwindow)
			continue;
		procs__drop(s, c.v[i]);
		evicted++;
	}
	free(c.v);
	metrics__self(&cpu, &rss);
	if (s->sym_adds > SYM_MAX_PROCS || rss > s->a->o->max_rss) {
		struct symbolizer *fresh = symbolizer__new(&s->so);

		if (fresh) {
			pr_info("dropping the symbol caches (%llu processes since the last time, "
				"rss %.1f MB)\n",
				(unsigned long long)s->sym_adds, rss / 1048576.0);
			metrics__sym_retired(s->a, s->sym);
			symbolizer__free(s->sym);
			malloc_trim(
				0); /* give the freed caches back to the system, not just to malloc */
			s->sym = fresh;
			s->sym_adds = 0;
			c = (struct collect_pids){};
			hashmap__for_each(s->procs, collect_pid, &c);
			for (size_t i = 0; i < c.n; i++)
				if (symbolizer__add_pid(s->sym, c.v[i]) == 0)
					s->sym_adds++;
			free(c.v);
			pthread_mutex_lock(&s->a->lock);
			s->a->m.sym_resets++;
			pthread_mutex_unlock(&s->a->lock);
		}
	}
	pthread_mutex_lock(&s->a->lock);
	s->a->m.procs_evicted += evicted;
	s->a->m.procs_late = s->procs_late;
	s->a->m.procs_tracked = hashmap__size(s->procs);
	pthread_mutex_unlock(&s->a->lock);
}

static void free_aproc(const void *key, void *value, void *ctx)
{
	(void)key;
	(void)ctx;
	aproc__free(value);
}

void procs__free(struct session *s)
{
	if (!s->procs)
		return;
	hashmap__for_each(s->procs, free_aproc, NULL);
	hashmap__free(s->procs);
	s->procs = NULL;
}
