/* serve's /metrics: Prometheus text of its requests, captures, drops and BPF maps. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "collect/collector.h"
#include "collect/drops.h"
#include "collect/pool.h"
#include "serve/serve_int.h"
#include "util/log.h"
#include "util/strbuf.h"

static int type_slot(const char *type)
{
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		if (strcmp(collector__nth(i)->name, type) == 0)
			return i;
	return -1;
}

void metrics__count_capture(struct serve *sv, const char *type, enum capture_result res,
			    const struct capture_stats *st, double secs)
{
	int slot = type_slot(type);
	struct type_metrics *m;
	const uint64_t *bpf = st->counters.bpf;

	if (slot < 0)
		return;
	pthread_mutex_lock(&sv->lock);
	m = &sv->types[slot];
	if (res == CAPTURE_OK)
		m->ok++;
	else if (res == CAPTURE_CANCELLED)
		m->cancelled++;
	else
		m->failed++;
	m->seconds += secs;
	if (res != CAPTURE_FAILED) {
		m->samples += bpf[CPROF_STAT_SAMPLES];
		drops__add(m->drops, &st->counters);
		m->last_stacks = st->stacks;
		m->max_keys = st->max_keys;
		if (st->max_keys && (double)st->stacks / st->max_keys > m->peak_fill)
			m->peak_fill = (double)st->stacks / st->max_keys;
	}
	pthread_mutex_unlock(&sv->lock);
}

void metrics__on_request(void *ctx, const char *path, int status, double seconds)
{
	struct serve *sv = ctx;

	pthread_mutex_lock(&sv->lock);
	if (status >= 100 && status < 600)
		sv->codes[status]++;
	sv->request_seconds += seconds;
	pthread_mutex_unlock(&sv->lock);
	pr_info("%d %s %.3fs\n", status, path, seconds);
}

/* The shared collectors (collect/pool.h): how many are loaded, how many captures use them. */
static void pool_metrics(struct serve *sv, struct strbuf *b)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} m[] = {
		{"cprof_collectors_loaded", "gauge", "BPF collectors loaded and attached now.",
		 offsetof(struct collector_pool_stats, loaded)},
		{"cprof_collector_captures", "gauge",
		 "Captures using the loaded collectors now (more than cprof_collectors_loaded: "
		 "some share one).",
		 offsetof(struct collector_pool_stats, windows)},
		{"cprof_collector_captures_max", "gauge",
		 "The most captures one collector has served at once.",
		 offsetof(struct collector_pool_stats, most_windows)},
		{"cprof_collectors_opened_total", "counter", "BPF collectors loaded and attached.",
		 offsetof(struct collector_pool_stats, opened)},
		{"cprof_captures_shared_total", "counter",
		 "Captures that used a collector already loaded by another capture.",
		 offsetof(struct collector_pool_stats, joined)},
	};
	struct collector_pool_stats st[MAX_TYPES];
	int n = 0;

	for (; n < MAX_TYPES && collector__nth(n); n++)
		collector_pool__stats(sv->pool, collector__nth(n), &st[n]);
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		strbuf__printf(b, "# HELP %s %s\n# TYPE %s %s\n", m[i].name, m[i].help, m[i].name,
			       m[i].type);
		for (int t = 0; t < n; t++)
			strbuf__printf(b, "%s{type=\"%s\"} %" PRIu64 "\n", m[i].name,
				       collector__nth(t)->name,
				       *(const uint64_t *)((const char *)&st[t] + m[i].off));
	}
}

/* Requests and captures overall. */
static void http_metrics(struct serve *sv, struct strbuf *b)
{
	strbuf__puts(b, "# HELP cprof_http_requests_total HTTP requests answered, by status.\n"
			"# TYPE cprof_http_requests_total counter\n");
	for (int c = 100; c < 600; c++)
		if (sv->codes[c])
			strbuf__printf(b, "cprof_http_requests_total{code=\"%d\"} %" PRIu64 "\n", c,
				       sv->codes[c]);
	strbuf__printf(b,
		       "# HELP cprof_http_request_seconds_total Time spent answering requests.\n"
		       "# TYPE cprof_http_request_seconds_total counter\n"
		       "cprof_http_request_seconds_total %.6f\n"
		       "# HELP cprof_captures_active Captures running now.\n"
		       "# TYPE cprof_captures_active gauge\n"
		       "cprof_captures_active %d\n"
		       "# HELP cprof_captures_limit Captures allowed at once (--max-captures).\n"
		       "# TYPE cprof_captures_limit gauge\n"
		       "cprof_captures_limit %d\n",
		       sv->request_seconds, sv->active, sv->o->max_captures);
}

/* Per profile type: captures, time, samples, drops. */
static void type_metrics(struct serve *sv, struct strbuf *b)
{
	strbuf__puts(b, "# HELP cprof_captures_total Captures by profile type and result.\n"
			"# TYPE cprof_captures_total counter\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++) {
		const struct type_metrics *m = &sv->types[i];
		const char *t = collector__nth(i)->name;

		strbuf__printf(b,
			       "cprof_captures_total{type=\"%s\",result=\"ok\"} %" PRIu64 "\n"
			       "cprof_captures_total{type=\"%s\",result=\"cancelled\"} %" PRIu64
			       "\n"
			       "cprof_captures_total{type=\"%s\",result=\"error\"} %" PRIu64 "\n",
			       t, m->ok, t, m->cancelled, t, m->failed);
	}
	strbuf__puts(b, "# HELP cprof_capture_seconds_total Time spent capturing.\n"
			"# TYPE cprof_capture_seconds_total counter\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		strbuf__printf(b, "cprof_capture_seconds_total{type=\"%s\"} %.3f\n",
			       collector__nth(i)->name, sv->types[i].seconds);
	strbuf__puts(b, "# HELP cprof_samples_total Events that passed the target filter.\n"
			"# TYPE cprof_samples_total counter\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		strbuf__printf(b, "cprof_samples_total{type=\"%s\"} %" PRIu64 "\n",
			       collector__nth(i)->name, sv->types[i].samples);
	strbuf__puts(b, "# HELP cprof_dropped_total What captures lost, by reason (see the "
			"profile comments).\n"
			"# TYPE cprof_dropped_total counter\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++) {
		char labels[64];

		snprintf(labels, sizeof(labels), "type=\"%s\"", collector__nth(i)->name);
		drops__prometheus(b, "cprof_dropped_total", labels, sv->types[i].drops);
	}
}

/* The aggregation maps of the last captures. */
static void map_metrics(struct serve *sv, struct strbuf *b)
{
	strbuf__puts(b, "# HELP cprof_bpf_map_entries Entries of the BPF aggregation map used by "
			"the last capture.\n"
			"# TYPE cprof_bpf_map_entries gauge\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		strbuf__printf(b, "cprof_bpf_map_entries{type=\"%s\",map=\"keys\"} %zu\n",
			       collector__nth(i)->name, sv->types[i].last_stacks);
	strbuf__puts(b, "# HELP cprof_bpf_map_capacity Capacity of the BPF aggregation map "
			"(--max-stacks).\n"
			"# TYPE cprof_bpf_map_capacity gauge\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		strbuf__printf(b, "cprof_bpf_map_capacity{type=\"%s\",map=\"keys\"} %u\n",
			       collector__nth(i)->name,
			       sv->types[i].max_keys ? sv->types[i].max_keys
						     : (sv->o->max_keys ? sv->o->max_keys
									: CPROF_DEFAULT_MAX_KEYS));
	strbuf__puts(b, "# HELP cprof_bpf_map_fill_ratio_max Highest fill of the aggregation map "
			"seen in one capture.\n"
			"# TYPE cprof_bpf_map_fill_ratio_max gauge\n");
	for (int i = 0; i < MAX_TYPES && collector__nth(i); i++)
		strbuf__printf(b, "cprof_bpf_map_fill_ratio_max{type=\"%s\",map=\"keys\"} %.4f\n",
			       collector__nth(i)->name, sv->types[i].peak_fill);
}

int metrics__route(void *ctx, struct http_request *r)
{
	struct serve *sv = ((struct serve_route_ctx *)ctx)->sv;
	struct strbuf b = {};
	char *body;
	size_t len;

	pthread_mutex_lock(&sv->lock);
	http_metrics(sv, &b);
	type_metrics(sv, &b);
	map_metrics(sv, &b);
	pool_metrics(sv, &b);
	strbuf__printf(&b,
		       "# HELP cprof_errors_total Requests that failed inside the server.\n"
		       "# TYPE cprof_errors_total counter\n"
		       "cprof_errors_total %" PRIu64 "\n"
		       "# HELP cprof_start_time_seconds When the server started.\n"
		       "# TYPE cprof_start_time_seconds gauge\n"
		       "cprof_start_time_seconds %lld\n",
		       sv->errors_internal, (long long)sv->started);
	pthread_mutex_unlock(&sv->lock);
	if (strbuf__err(&b)) {
		strbuf__free(&b);
		return -ENOMEM;
	}
	body = strbuf__take(&b, &len);
	return http_respond_take(r, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
}

void metrics__count_internal_error(struct serve *sv)
{
	pthread_mutex_lock(&sv->lock);
	sv->errors_internal++;
	pthread_mutex_unlock(&sv->lock);
}

/* --min-wait for mutex captures, --min-block for block (offcpu) ones. */
