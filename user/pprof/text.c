/* Text outputs: Brendan Gregg's folded stacks and a `pprof -top` style table. Both read the
 * interned tables, so they agree with the encoded profile. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "pprof/internal.h"

/* What a text view starts with: the profile symbolized, and the index of the value it shows
 * (sample_index, -1 for the default). Returns 0, -EINVAL (no such value) or the resolver's
 * error. */
static int text__begin(struct pprof_builder *b, int sample_index, int *idx)
{
	int err = pprof_builder__resolve(b);

	if (err)
		return err;
	if (sample_index == -1)
		sample_index = b->default_index;
	if (sample_index < 0 || sample_index >= b->cfg.nvalues)
		return -EINVAL;
	*idx = sample_index;
	return 0;
}

/* A growable string. */
struct pp_buf {
	char *s;
	size_t len, cap;
};

/* Appends s; with clean, replaces what would break a folded line: ';' separates frames and a
 * line break ends the record. */
static int pp_buf__append(struct pp_buf *buf, const char *s, bool clean)
{
	size_t n = strlen(s), i;
	int err;

	err = array__reserve((void **)&buf->s, &buf->cap, buf->len + n + 1, 1);
	if (err)
		return err;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (clean && (c == ';' || c == '\n' || c == '\r'))
			c = '_';
		buf->s[buf->len++] = c;
	}
	buf->s[buf->len] = '\0';
	return 0;
}

/* Writes the stack of s, root first, into buf. Inlined functions expand to their own frames:
 * a location's lines are innermost first, so they are walked backwards too. */
static int text__fold(const struct pprof_builder *b, const struct pp_sample *s, struct pp_buf *buf)
{
	bool first = true;
	uint32_t i;
	int err, j;

	buf->len = 0;
	for (i = s->nlocs; i-- > 0;) {
		const struct pp_location *loc = pp__location(b, s->location_ids[i]);

		for (j = loc->nlines; j-- > 0;) {
			const struct pp_function *f = pp__function(b, loc->lines[j].function_id);

			err = first ? 0 : pp_buf__append(buf, ";", false);
			if (!err)
				err = pp_buf__append(buf, pp__str(b, f->name), true);
			if (err)
				return err;
			first = false;
		}
	}
	/* A sample without frames keeps its value under a name, like perf's collapse scripts. */
	return first ? pp_buf__append(buf, "[unknown]", false) : 0;
}

struct folded {
	char *stack;
	int64_t value;
};

static uint64_t folded_hash(const void *key, void *ctx)
{
	(void)ctx;
	return hashmap__hash_str(HASHMAP_HASH_INIT, ((const struct folded *)key)->stack);
}

static bool folded_equal(const void *a, const void *b, void *ctx)
{
	(void)ctx;
	return strcmp(((const struct folded *)a)->stack, ((const struct folded *)b)->stack) == 0;
}

static int folded_cmp(const void *a, const void *b)
{
	return strcmp((*(struct folded *const *)a)->stack, (*(struct folded *const *)b)->stack);
}

/* Adds value to the entry of the stack in buf, creating it on first sight. */
static int text__fold_add(struct hashmap *idx, struct folded ***arr, size_t *n, size_t *cap,
			  const struct pp_buf *buf, int64_t value)
{
	struct folded key = {.stack = buf->s}, *e;
	void *val;
	int err;

	if (hashmap__find(idx, &key, &val)) {
		((struct folded *)val)->value += value;
		return 0;
	}
	err = array__reserve((void **)arr, cap, *n + 1, sizeof(**arr));
	if (err)
		return err;
	e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->stack = strdup(buf->s);
	e->value = value;
	if (!e->stack) {
		free(e);
		return -ENOMEM;
	}
	err = hashmap__insert(idx, e, e);
	if (err) {
		free(e->stack);
		free(e);
		return err;
	}
	(*arr)[(*n)++] = e;
	return 0;
}

int pprof_builder__write_folded(struct pprof_builder *b, FILE *f, int sample_index)
{
	struct folded **rows = NULL;
	size_t nrows = 0, cap = 0, i;
	struct pp_buf buf = {};
	struct hashmap *idx;
	int err, vi;

	err = text__begin(b, sample_index, &vi);
	if (err)
		return err;
	idx = hashmap__new(folded_hash, folded_equal, NULL);
	if (!idx)
		return -ENOMEM;
	for (i = 0; i < b->nsamples; i++) {
		const struct pp_sample *s = b->samples[i];

		if (!s->values[vi])
			continue;
		err = text__fold(b, s, &buf);
		if (err)
			goto cleanup;
		err = text__fold_add(idx, &rows, &nrows, &cap, &buf, s->values[vi]);
		if (err)
			goto cleanup;
	}
	/* Sorted, so that the output does not depend on the order samples arrived in. */
	if (nrows)
		qsort(rows, nrows, sizeof(*rows), folded_cmp);
	for (i = 0; i < nrows; i++) {
		if (rows[i]->value &&
		    fprintf(f, "%s %" PRId64 "\n", rows[i]->stack, rows[i]->value) < 0) {
			err = -EIO;
			goto cleanup;
		}
	}
	err = fflush(f) ? -EIO : 0;
cleanup:
	for (i = 0; i < nrows; i++) {
		free(rows[i]->stack);
		free(rows[i]);
	}
	free(rows);
	free(buf.s);
	hashmap__free(idx);
	return err;
}

/* Formats v like pprof's scaled labels: nanoseconds as "1.50s" or "20ms", bytes as "12.50MB"
 * (binary multiples, as pprof uses), other units as plain integers. */
static void text__format_value(char *out, size_t len, int64_t v, const char *unit)
{
	static const struct {
		const char *unit;
		const char *names[6];
		double factor;
	} scales[] = {
		{"nanoseconds", {"ns", "us", "ms", "s"}, 1000},
		{"bytes", {"B", "kB", "MB", "GB", "TB", "PB"}, 1024},
	};
	size_t i, k;

	for (i = 0; i < sizeof(scales) / sizeof(scales[0]); i++) {
		double d = (double)v, mag = d < 0 ? -d : d;
		char num[64];
		size_t n;

		if (strcmp(unit, scales[i].unit) != 0)
			continue;
		if (v == 0) {
			snprintf(out, len, "0");
			return;
		}
		for (k = 0; k + 1 < 6 && scales[i].names[k + 1] && mag >= scales[i].factor; k++) {
			d /= scales[i].factor;
			mag /= scales[i].factor;
		}
		snprintf(num, sizeof(num), "%.2f", d);
		n = strlen(num);
		if (n > 3 && strcmp(num + n - 3, ".00") == 0)
			num[n - 3] = '\0';
		snprintf(out, len, "%s%s", num, scales[i].names[k]);
		return;
	}
	snprintf(out, len, "%" PRId64, v);
}

struct top_row {
	const char *name;
	int64_t flat, cum;
};

static int top_row_cmp(const void *a, const void *b)
{
	const struct top_row *x = a, *y = b;

	if (x->flat != y->flat)
		return x->flat > y->flat ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Per function name (a string index): flat is the value of samples whose innermost frame it is,
 * cum of samples it appears in at all. seen[] holds the last sample (plus one) a name was
 * counted for, so a recursive function adds a sample's value to cum once. */
struct top_acc {
	int64_t *flat, *cum;
	size_t *seen;
	int64_t total;
};

static void text__top_sample(const struct pprof_builder *b, const struct pp_sample *s, size_t si,
			     int64_t v, struct top_acc *acc)
{
	uint32_t i;
	int j;

	acc->total += v;
	for (i = 0; i < s->nlocs; i++) {
		const struct pp_location *loc = pp__location(b, s->location_ids[i]);

		for (j = 0; j < loc->nlines; j++) {
			int64_t name = pp__function(b, loc->lines[j].function_id)->name;

			if (i == 0 && j == 0)
				acc->flat[name] += v;
			if (acc->seen[name] != si + 1) {
				acc->seen[name] = si + 1;
				acc->cum[name] += v;
			}
		}
	}
}

/* A percentage as pprof prints it: six columns, "100%" for a whole, two decimals from 1% up and
 * one significant digit below. */
static void text__pct(char *out, size_t len, int64_t v, int64_t total)
{
	double r = total ? 100.0 * (double)v / (double)total : 0.0;
	double mag = r < 0 ? -r : r;

	if (mag >= 99.95 && mag <= 100.05)
		snprintf(out, len, "  100%%");
	else if (mag >= 1.0)
		snprintf(out, len, "%5.2f%%", r);
	else
		snprintf(out, len, "%5.1g%%", r);
}

static int text__top_print(FILE *f, const struct top_row *rows, size_t nrows, size_t shown,
			   int64_t total, const char *unit)
{
	char a[32], c[32], pf[32], ps[32], pc[32];
	int64_t sum = 0;
	size_t i;

	for (i = 0; i < shown; i++)
		sum += rows[i].flat;
	text__format_value(a, sizeof(a), sum, unit);
	text__format_value(c, sizeof(c), total, unit);
	text__pct(ps, sizeof(ps), sum, total);
	/* pprof trims the leading blanks of the percentage in the header. */
	fprintf(f, "Showing nodes accounting for %s, %s of %s total\n", a, ps + strspn(ps, " "), c);
	if (shown < nrows)
		fprintf(f, "Showing top %zu nodes out of %zu\n", shown, nrows);
	fprintf(f, "%10s %6s %6s %10s %6s\n", "flat", "flat%", "sum%", "cum", "cum%");
	sum = 0;
	for (i = 0; i < shown; i++) {
		sum += rows[i].flat;
		text__format_value(a, sizeof(a), rows[i].flat, unit);
		text__format_value(c, sizeof(c), rows[i].cum, unit);
		text__pct(pf, sizeof(pf), rows[i].flat, total);
		text__pct(ps, sizeof(ps), sum, total);
		text__pct(pc, sizeof(pc), rows[i].cum, total);
		fprintf(f, "%10s %s %s %10s %s  %s\n", a, pf, ps, c, pc, rows[i].name);
	}
	return fflush(f) || ferror(f) ? -EIO : 0;
}

int pprof_builder__write_top(struct pprof_builder *b, FILE *f, int sample_index, int max_rows)
{
	struct top_acc acc = {};
	struct top_row *rows = NULL;
	size_t i, nrows = 0, shown;
	int err, vi;

	err = text__begin(b, sample_index, &vi);
	if (err)
		return err;
	acc.flat = calloc(b->nstrings, sizeof(*acc.flat));
	acc.cum = calloc(b->nstrings, sizeof(*acc.cum));
	acc.seen = calloc(b->nstrings, sizeof(*acc.seen));
	rows = calloc(b->nstrings, sizeof(*rows));
	if (!acc.flat || !acc.cum || !acc.seen || !rows) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (i = 0; i < b->nsamples; i++) {
		if (b->samples[i]->values[vi])
			text__top_sample(b, b->samples[i], i, b->samples[i]->values[vi], &acc);
	}
	for (i = 0; i < b->nstrings; i++) {
		if (!acc.seen[i])
			continue;
		rows[nrows].name = b->strings[i];
		rows[nrows].flat = acc.flat[i];
		rows[nrows].cum = acc.cum[i];
		nrows++;
	}
	if (nrows)
		qsort(rows, nrows, sizeof(*rows), top_row_cmp);
	shown = max_rows > 0 && (size_t)max_rows < nrows ? (size_t)max_rows : nrows;
	err = text__top_print(f, rows, nrows, shown, acc.total, pp__str(b, b->sample_unit[vi]));
cleanup:
	free(acc.flat);
	free(acc.cum);
	free(acc.seen);
	free(rows);
	return err;
}
