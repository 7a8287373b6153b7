/* The symbolizer's kernel addresses, named by the kernel's own lookup through a BPF program
 * (sym/ksym_resolver.h: microseconds for a batch), each address once, the names kept in kaddrs.
 * Where that program cannot load, or names nothing at an address, from /proc/kallsyms: in one
 * streamed pass that keeps only the symbols of the addresses asked for (symbolizer__prepare),
 * or from the whole table, read on the first address that was not prepared. See
 * sym/internal.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sym/internal.h"
#include "sym/kallsyms.h"
#include "sym/ksym_resolver.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/mem.h"

static void warn_restricted(void)
{
	pr_warn("%s shows no addresses (kernel.kptr_restrict); kernel frames stay unsymbolized\n",
		KALLSYMS_PATH);
}

/* The kernel mapping's start and whether its frames have names, from a source of kernel names
 * (restricted: /proc/kallsyms hides the addresses). */
static void symbolizer__kernel_mapping(struct symbolizer *s, bool restricted, uint64_t start,
				       bool named)
{
	if (restricted)
		warn_restricted();
	s->kernel_mapping.start = restricted ? 0 : start;
	s->kernel_mapping.has_functions = !restricted && named;
	s->kernel_mapped = true;
}

/* The kernel mapping from the whole table, once read. */
static void symbolizer__kernel_table(struct symbolizer *s)
{
	symbolizer__kernel_mapping(s, kallsyms__restricted(s->ksyms), kallsyms__min_addr(s->ksyms),
				   kallsyms__count(s->ksyms) > 0);
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
	symbolizer__kernel_table(s);
}

static void *preload(void *arg)
{
	struct symbolizer *s = arg;

	s->ksyms_err = kallsyms__load(KALLSYMS_PATH, &s->ksyms_loaded);
	return NULL;
}

/* The kernel's own lookup, opened on first use; NULL where it cannot load. */
static struct ksym_resolver *symbolizer__kres(struct symbolizer *s)
{
	int err;

	if (s->kres_tried)
		return s->kres;
	s->kres_tried = true;
	if (s->opts.no_kernel || s->opts.kallsyms_only)
		return NULL;
	err = ksym_resolver__open(&s->kres);
	if (err)
		pr_debug("naming kernel addresses through BPF: %s; reading %s instead\n",
			 strerror(-err), KALLSYMS_PATH);
	return s->kres;
}

void symbolizer__preload_kernel(struct symbolizer *s)
{
	if (s->opts.no_kernel || s->ksyms_tried || s->ksyms_loading || symbolizer__kres(s))
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
	symbolizer__kernel_table(s);
}

/* Room in kaddrs for n more names: emptied when it would hold more than the address cache's
 * bound, as that cache is, which bounds its memory. */
static int symbolizer__kaddrs_room(struct symbolizer *s, size_t n)
{
	if (hashmap__size(s->kaddrs) + n <= s->opts.max_cached_addrs)
		return 0;
	hashmap__free(s->kaddrs);
	s->kaddrs = hashmap__new(hashmap__int_hash, hashmap__int_equal, NULL);
	return s->kaddrs ? 0 : -ENOMEM;
}

/* Names looks[0..n) (lookup addresses, none 0) through the kernel's lookup into kaddrs. Those
 * it names nothing at are moved to the front of looks, their count left in *left, for
 * /proc/kallsyms. */
static int symbolizer__kernel_lookup(struct symbolizer *s, uint64_t *looks, size_t n, size_t *left)
{
	char **names = calloc(n ? n : 1, sizeof(*names));
	const char *name;
	size_t i, k = 0;
	int err;

	*left = n;
	if (!names)
		return -ENOMEM;
	err = ksym_resolver__resolve(s->kres, looks, n, names);
	if (err) {
		pr_debug("naming kernel addresses through BPF: %s\n", strerror(-err));
		free(names);
		return err == -ENOMEM ? err : 0;
	}
	if (!s->kernel_mapped)
		symbolizer__kernel_mapping(s, false, ksym_resolver__text(s->kres), true);
	for (i = 0; i < n; i++) {
		if (!names[i]) {
			looks[k++] = looks[i];
			continue;
		}
		if (!err) {
			name = symbolizer__intern(s, names[i]);
			err = name ? hashmap__insert(s->kaddrs, (void *)(uintptr_t)looks[i],
						     (void *)name)
				   : -ENOMEM;
		}
		free(names[i]);
	}
	free(names);
	*left = k;
	return err;
}

/* One address not prepared, through the kernel's lookup: true when it named it (*name). */
static bool symbolizer__kernel_one(struct symbolizer *s, uint64_t look, const char **name)
{
	size_t left;
	void *found;

	if (!look || s->ksyms || !s->kaddrs || !symbolizer__kres(s) ||
	    symbolizer__kaddrs_room(s, 1) || symbolizer__kernel_lookup(s, &look, 1, &left) ||
	    left || !hashmap__find(s->kaddrs, (void *)(uintptr_t)look, &found))
		return false;
	*name = found;
	return true;
}

int symbolizer__kernel(struct symbolizer *s, uint64_t addr, bool is_return, struct sym_result *res)
{
	uint64_t look = sym_lookup_addr(addr, is_return);
	const char *name = NULL;
	void *found;

	symbolizer__kernel_join(s);
	if (s->kaddrs && hashmap__find(s->kaddrs, (void *)(uintptr_t)look, &found)) {
		name = found;
	} else if (!symbolizer__kernel_one(s, look, &name)) {
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
	err = symbolizer__kaddrs_room(s, nl);
	if (!err && symbolizer__kres(s))
		err = symbolizer__kernel_lookup(s, looks, nl, &nl);
	if (err || !nl)
		goto cleanup;
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
	if (!s->kernel_mapped)
		symbolizer__kernel_mapping(s, info.restricted, info.min_addr, info.count > 0);
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
