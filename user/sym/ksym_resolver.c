/* See sym/ksym_resolver.h and bpf/ksym.bpf.c. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "ksym.h"
#include "ksym.skel.h"
#include "sym/ksym_resolver.h"

struct ksym_resolver {
	struct ksym_bpf *skel;
	pthread_mutex_t lock; /* one batch in the program's globals at a time */
	uint64_t text;
};

int ksym_resolver__open(struct ksym_resolver **out)
{
	struct ksym_resolver *k;
	int err;

	*out = NULL;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	pthread_mutex_init(&k->lock, NULL);
	k->skel = ksym_bpf__open();
	if (!k->skel) {
		err = -errno;
		goto fail;
	}
	err = ksym_bpf__load(k->skel);
	if (err)
		goto fail;
	/* The skeleton maps .bss when the kernel lets it (5.5+); the batches go through it. */
	if (!k->skel->bss) {
		err = -EOPNOTSUPP;
		goto fail;
	}
	*out = k;
	return 0;
fail:
	ksym_resolver__free(k);
	return err ? err : -EINVAL;
}

void ksym_resolver__free(struct ksym_resolver *k)
{
	if (!k)
		return;
	ksym_bpf__destroy(k->skel);
	pthread_mutex_destroy(&k->lock);
	free(k);
}

int ksym_resolver__prog_fd(const struct ksym_resolver *k)
{
	return bpf_program__fd(k->skel->progs.ksym_resolve);
}

uint64_t ksym_resolver__text(const struct ksym_resolver *k)
{
	return k->text;
}

char *ksym_resolver__parse(const char *line, size_t len_max)
{
	const char *plus, *mod, *mod_end;
	size_t len = strnlen(line, len_max), nlen, mlen;
	char *name;

	if (len + 1 >= len_max || !len || !strncmp(line, "0x", 2))
		return NULL;
	mod = strstr(line, " [");
	plus = memrchr(line, '+', mod ? (size_t)(mod - line) : len);
	if (!plus || plus == line || strncmp(plus, "+0x", 3))
		return NULL;
	nlen = plus - line;
	mlen = 0;
	if (mod) {
		mod += 2; /* the module's name, up to its build-id or the bracket */
		mod_end = mod + strcspn(mod, " ]");
		mlen = mod_end - mod;
	}
	name = malloc(nlen + (mlen ? mlen + 3 : 0) + 1);
	if (!name)
		return NULL;
	memcpy(name, line, nlen);
	if (mlen)
		sprintf(name + nlen, " [%.*s]", (int)mlen, mod);
	else
		name[nlen] = '\0';
	return name;
}

/* Runs the program over one batch of at most CPROF_KSYM_BATCH addresses. */
static int ksym_resolver__batch(struct ksym_resolver *k, const uint64_t *addrs, size_t n,
				char **names)
{
	LIBBPF_OPTS(bpf_test_run_opts, run);
	struct ksym_bpf__bss *g = k->skel->bss;
	size_t i;
	int err;

	memcpy(g->ksym_addrs, addrs, n * sizeof(*addrs));
	g->ksym_count = n;
	err = bpf_prog_test_run_opts(ksym_resolver__prog_fd(k), &run);
	if (err)
		return -errno;
	if (!k->text)
		k->text = g->ksym_text;
	for (i = 0; i < n; i++)
		names[i] = ksym_resolver__parse(g->ksym_names[i], CPROF_KSYM_NAME);
	return 0;
}

int ksym_resolver__resolve(struct ksym_resolver *k, const uint64_t *addrs, size_t n, char **names)
{
	size_t i, m;
	int err = 0;

	memset(names, 0, n * sizeof(*names));
	pthread_mutex_lock(&k->lock);
	for (i = 0; i < n && !err; i += m) {
		m = n - i < CPROF_KSYM_BATCH ? n - i : CPROF_KSYM_BATCH;
		err = ksym_resolver__batch(k, addrs + i, m, names + i);
	}
	pthread_mutex_unlock(&k->lock);
	if (err)
		for (i = 0; i < n; i++) {
			free(names[i]);
			names[i] = NULL;
		}
	return err;
}
