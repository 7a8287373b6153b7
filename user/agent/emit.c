/* What becomes of a finished profile (a window or a triggered capture): a file in the store,
 * and one push per service (the --app-name or service_name label, else each process's
 * executable) queued for the push thread. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/internal.h"

struct emit_ctx {
	struct agent *a;
	const char *labels;
	int64_t from, until;
	int freq;
};

static int push_part(void *ctx, const char *service, const uint8_t *gz, size_t len)
{
	struct emit_ctx *e = ctx;
	struct push_item it = {.app = service,
			       .labels = e->labels,
			       .from = e->from,
			       .until = e->until,
			       .freq = e->freq,
			       .body = gz,
			       .len = len};

	pusher__enqueue(e->a->push, &it); /* a failure is counted as a drop */
	return 0;
}

/* "host=H,k=v,...,extra" for Pyroscope's name{...}. */
static void push_labels(struct agent *a, const char *extra, char *out, size_t len)
{
	char v[256];
	size_t n;

	push__sanitize(a->host, v, sizeof(v));
	snprintf(out, len, "host=%s", v);
	for (int i = 0; i < a->o->nlabels; i++) {
		if (strcmp(a->o->labels[i].key, "service_name") == 0)
			continue;
		push__sanitize(a->o->labels[i].value, v, sizeof(v));
		n = strlen(out);
		snprintf(out + n, len - n, ",%s=%s", a->o->labels[i].key, v);
	}
	if (extra && *extra) {
		n = strlen(out);
		snprintf(out + n, len - n, ",%s", extra);
	}
}

int agent__emit(struct agent *a, const char *name, const uint8_t *raw, size_t rawlen,
		const uint8_t *gz, size_t gzlen, int64_t from, int64_t until, int freq,
		const char *extra_labels)
{
	char labels[2048], app[256];
	struct emit_ctx e = {a, labels, from, until, freq};
	const char *svc = a->o->app_name;
	int err = 0;

	if (a->store)
		err = store__write(a->store, name, gz, gzlen);
	if (!a->push)
		return err;
	push_labels(a, extra_labels, labels, sizeof(labels));
	for (int i = 0; !svc && i < a->o->nlabels; i++)
		if (strcmp(a->o->labels[i].key, "service_name") == 0)
			svc = a->o->labels[i].value;
	if (svc) {
		push__sanitize(svc, app, sizeof(app));
		return push_part(&e, app, gz, gzlen);
	}
	/* One push per service: each process's executable name. */
	return split__by_label(raw, rawlen, "exe", true, "unknown", push_part, &e);
}

void agent__profile_name(char *buf, size_t len, const char *kind, int64_t t0, pid_t pid,
			 const char *rule)
{
	time_t secs = t0 / 1000000000ll;
	char stamp[32];
	struct tm tm;

	gmtime_r(&secs, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
	if (rule)
		snprintf(buf, len, "%s-%s.%03dZ-pid%d-%s.pb.gz", kind, stamp,
			 (int)(t0 / 1000000 % 1000), (int)pid, rule);
	else
		snprintf(buf, len, "%s-%s.%03dZ.pb.gz", kind, stamp, (int)(t0 / 1000000 % 1000));
}
