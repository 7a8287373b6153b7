/* The values options take, parsed strictly: a number is the whole argument and in range. Pure
 * functions; the messages are the caller's (cli.c). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_AGE 31536000.0 /* one year, in seconds */

int cli__parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (*end || end == s || (errno && errno != ERANGE))
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int cli__parse_seconds(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (*end || end == s || isnan(v) || (errno && errno != ERANGE))
		return -EINVAL;
	if (errno == ERANGE || !isfinite(v) || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* The number that starts a value with a unit (sizes, ages): finite, not negative; *end is
 * where the unit starts. Returns 0 or -EINVAL. */
static int unit_number(const char *s, double *v, char **end)
{
	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	*v = strtod(s, end);
	return errno || *end == s || !isfinite(*v) || *v < 0 ? -EINVAL : 0;
}

int cli__parse_size(const char *s, uint64_t plain_unit, uint64_t *out)
{
	double v, mul = (double)plain_unit;
	char *end;

	if (unit_number(s, &v, &end))
		return -EINVAL;
	switch (*end) {
	case 0:
		break;
	case 'k':
	case 'K':
		mul = 1024.0;
		break;
	case 'm':
	case 'M':
		mul = 1024.0 * 1024;
		break;
	case 'g':
	case 'G':
		mul = 1024.0 * 1024 * 1024;
		break;
	case 't':
	case 'T':
		mul = 1024.0 * 1024 * 1024 * 1024;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1] && strcmp(end + 1, "B") && strcmp(end + 1, "iB"))
		return -EINVAL;
	if (v * mul > 1e18)
		return -ERANGE;
	*out = (uint64_t)(v * mul);
	return 0;
}

int cli__parse_age(const char *s, double *out)
{
	double v, mul = 1;
	char *end;

	if (unit_number(s, &v, &end))
		return -EINVAL;
	if (*end && end[1])
		return -EINVAL;
	switch (*end) {
	case 0:
	case 's':
		break;
	case 'm':
		mul = 60;
		break;
	case 'h':
		mul = 3600;
		break;
	case 'd':
		mul = 86400;
		break;
	default:
		return -EINVAL;
	}
	if (v * mul > MAX_AGE)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

/* Noise floors: a spike must also exceed the moving average by this much. */
static const double spike_floor[3] = {
	[TRIGGER_CPU] = 5.0,		    /* percentage points of one core */
	[TRIGGER_RSS] = 32.0 * 1024 * 1024, /* bytes */
	[TRIGGER_THREADS] = 4,
};

/* The threshold after '>': FACTORx (a spike) or an absolute value (rss: a size). */
static int parse_threshold(const char *val, struct trigger_rule *r, const char *metric)
{
	size_t n = strlen(val);
	uint64_t size;
	char *end;

	if (n > 1 && (val[n - 1] == 'x' || val[n - 1] == 'X')) {
		errno = 0;
		r->factor = strtod(val, &end);
		if (errno || end != val + n - 1 || !(r->factor > 1.0) || r->factor > 1000)
			return -EINVAL;
		r->spike = true;
		r->min_delta = spike_floor[r->metric];
		snprintf(r->name, sizeof(r->name), "%s_spike_%gx", metric, r->factor);
	} else if (r->metric == TRIGGER_RSS) {
		if (cli__parse_size(val, 1, &size) || !size)
			return -EINVAL;
		r->limit = (double)size;
		snprintf(r->name, sizeof(r->name), "rss_gt_%s", val);
	} else {
		errno = 0;
		r->limit = strtod(val, &end);
		if (errno || end == val || *end || !(r->limit > 0) || r->limit > 1e7)
			return -EINVAL;
		snprintf(r->name, sizeof(r->name), "%s_gt_%g", metric, r->limit);
	}
	return 0;
}

int trigger_rule__parse(const char *s, struct trigger_rule *r)
{
	static const char *const names[] = {"cpu", "rss", "threads"};
	const char *gt = strchr(s, '>');
	size_t mlen = gt ? (size_t)(gt - s) : 0;
	int m;

	memset(r, 0, sizeof(*r));
	if (!gt || strlen(s) >= sizeof(r->text))
		return -EINVAL;
	for (m = 0; m < 3; m++)
		if (strlen(names[m]) == mlen && strncmp(s, names[m], mlen) == 0)
			break;
	if (m == 3)
		return -EINVAL;
	r->metric = (enum trigger_metric)m;
	if (parse_threshold(gt + 1, r, names[m]))
		return -EINVAL;
	for (char *p = r->name; *p; p++)
		if (*p == '.')
			*p = '_';
	snprintf(r->text, sizeof(r->text), "%s", s);
	return 0;
}
