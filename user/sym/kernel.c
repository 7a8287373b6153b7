/* The symbolizer's kernel addresses: named from /proc/kallsyms, either in one streamed pass
 * that keeps only the symbols of the addresses asked for (symbolizer__prepare), or from the whole
 * table, read on the first address that was not prepared. See sym/internal.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sym/internal.h"
#include "sym/kallsyms.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/mem.h"

static void warn_restricted(void)
{
	pr_warn("%s shows no addresses (kernel.kptr_restrict); kernel frames stay unsymbolized\n",
		KALLSYMS_PATH);
}

static void symbolizer__load_kallsyms(struct symbolizer *s)
{
	int err;

	s->ksyms_tried = true;
	mem__checkpoint("kallsyms start");
	err = kallsyms__load(KALLSYMS_PATH, &s->ksyms);
	mem__checkpoint("kallsyms loaded");
	if (err) {
		pr_warn("cannot read %s: %s; kernel frames stay unsymbolized\n", KALLSYMS_PATH,
			strerror(-err));
		return;
	}
	if (kallsyms__restricted(s->ksyms))
		warn_restricted();
	s->kernel_mapping.start = kallsyms__min_addr(s->ksyms);
	s->kernel_mapping.has_functions = kallsyms__count(s->ksyms) > 0;
}

static void *preload(void *arg)
{
	struct symbolizer *s = arg;

	s->ksyms_err = kallsyms__load(KALLSYMS_PATH, &s->ksyms_loaded);
	return NULL;
}

void symbolizer__preload_kernel(struct symbolizer *s)
{
	if (s->opts.no_kernel || s->ksyms_tried || s->ksyms_loading)
		return;
	s->ksyms_loaded = NULL;
	s->ksyms_loading = pthread_create(&s->ksyms_thread, NULL, preload, s) == 0;
}

void symbolizer__kernel_join(struct symbolizer *s)
{
	if (!s->ksyms_loading)
		return;
	pthread_join(s->ksyms_thread, NULL);
	s->ksyms_loading = false;
	s->ksyms_tried = true;
	if (s->ksyms_err) {
		pr_warn("cannot read %s: %s; kernel frames stay unsymbolized\n", KALLSYMS_PATH,
			strerror(-s->ksyms_err));
		return;
	}
	s->ksyms = s->ksyms_loaded;
	s->ksyms_loaded = NULL;
	if (kallsyms__restricted(s->ksyms))
		warn_restricted();
	s->kernel_mapping.start = kallsyms__min_addr(s->ksyms);
	s->kernel_mapping.has_functions = kallsyms__count(s->ksyms) > 0;
}

int symbolizer__kernel(struct symbolizer *s, uint64_t addr, bool is_return, struct sym_result *res)
{
	uint64_t look = sym_lookup_addr(addr, is_return);
	const char *name = NULL;
	void *found;

	symbolizer__kernel_join(s);
	if (s->kaddrs && hashmap__find(s->kaddrs, (void *)(uintptr_t)look, &found)) {
		name = found;
	} else {
		if (!s->opts.no_kernel && !s->ksyms_tried)
			symbolizer__load_kallsyms(s);
		if (s->ksyms)
			name = kallsyms__lookup(s->ksyms, look);
	}
	if (name)
		return symbolizer__set_frame(s, res, &s->kernel_mapping, name);
	return symbolizer__stub(s, res, &s->kernel_mapping, NULL, addr);
}

static int u64_cmp(const void *pa, const void *pb)
{
	uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;

	return a < b ? -1 : a > b;
}

static void symbolizer__kernel_info(struct symbolizer *s, const struct kallsyms_info *info)
{
	if (s->kernel_streamed)
		return;
	s->kernel_streamed = true;
	if (info->restricted)
		warn_restricted();
	s->kernel_mapping.start = info->restricted ? 0 : info->min_addr;
	s->kernel_mapping.has_functions = !info->restricted && info->count > 0;
}

/* The kernel addresses of reqs that are not known yet, as lookup addresses, sorted, distinct. */
static uint64_t *symbolizer__kernel_misses(struct symbolizer *s, const struct sym_request *reqs,
					   size_t n, size_t *nout)
{
	uint64_t *looks, look;
	size_t i, k = 0;

	*nout = 0;
	looks = malloc((n ? n : 1) * sizeof(*looks));
	if (!looks)
		return NULL;
	for (i = 0; i < n; i++) {
		if (!reqs[i].kernel)
			continue;
		look = sym_lookup_addr(reqs[i].addr, reqs[i].is_return);
		/* (0 is no hashmap key: such a frame takes the unprepared path.) */
		if (look && !hashmap__find(s->kaddrs, (void *)(uintptr_t)look, NULL))
			looks[k++] = look;
	}
	qsort(looks, k, sizeof(*looks), u64_cmp);
	for (i = 0; i < k; i++)
		if (!*nout || looks[*nout - 1] != looks[i])
			looks[(*nout)++] = looks[i];
	return looks;
}

int symbolizer__prepare_kernel(struct symbolizer *s, const struct sym_request *reqs, size_t n)
{
	struct kallsyms_info info;
	const char *name;
	uint64_t *looks;
	char **names = NULL;
	size_t nl, i;
	int err = 0;

	symbolizer__kernel_join(s);
	/* Not read (--no-kernel), or found unreadable: kernel frames are stubs anyway. */
	if (s->opts.no_kernel || (s->ksyms_tried && !s->ksyms) || !s->kaddrs)
		return 0;
	looks = symbolizer__kernel_misses(s, reqs, n, &nl);
	if (!looks)
		return -ENOMEM;
	if (!nl || s->ksyms) /* nothing new, or the whole table is already read */
		goto cleanup;
	if (hashmap__size(s->kaddrs) + nl > s->opts.max_cached_addrs) {
		/* Emptied when full, as the address cache is: that bounds its memory. */
		hashmap__free(s->kaddrs);
		s->kaddrs = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
		if (!s->kaddrs) {
			err = -ENOMEM;
			goto cleanup;
		}
	}
	names = calloc(nl, sizeof(*names));
	if (!names) {
		err = -ENOMEM;
		goto cleanup;
	}
	err = kallsyms__resolve(KALLSYMS_PATH, looks, nl, names, &info);
	if (err == -ENOMEM)
		goto cleanup;
	if (err) {
		pr_warn("cannot read %s: %s; kernel frames stay unsymbolized\n", KALLSYMS_PATH,
			strerror(-err));
		s->ksyms_tried = true;
		err = 0;
		goto cleanup;
	}
	symbolizer__kernel_info(s, &info);
	for (i = 0; i < nl && !err; i++) {
		name = names[i] ? symbolizer__intern(s, names[i]) : NULL;
		if (names[i] && !name)
			err = -ENOMEM;
		else
			err = hashmap__insert(s->kaddrs, (void *)(uintptr_t)looks[i], (void *)name);
	}
cleanup:
	for (i = 0; names && i < nl; i++)
		free(names[i]);
	free(names);
	free(looks);
	return err;
}
