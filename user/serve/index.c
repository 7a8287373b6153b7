/* serve's index page, /debug/pprof/: the routes, and every process with links to capture it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collect/collector.h"
#include "http/procs.h"
#include "serve/serve_int.h"
#include "util/strbuf.h"

static void index_links(struct strbuf *b, const char *pid)
{
	char q[48];

	snprintf(q, sizeof(q), "%s%s", pid ? "pid=" : "", pid ? pid : "");
	const struct pprof_route *pprof_routes = serve__pprof_routes;

	for (size_t i = 0; i < serve__npprof_routes; i++) {
		if (!collector__find(pprof_routes[i].type) || pprof_routes[i].no_index_link)
			continue;
		strbuf__printf(b,
			       "<a href=\"flamegraph?%s%stype=%s&amp;seconds=%g\">%s</a> "
			       "<a class=pp href=\"%s?%s%sseconds=%g\" title=\"pprof "
			       "download\">&#8595;</a> ",
			       q, *q ? "&amp;" : "", pprof_routes[i].name, DEFAULT_FLAME_SECONDS,
			       strcmp(pprof_routes[i].name, "profile") ? pprof_routes[i].name
								       : "cpu",
			       pprof_routes[i].name, q, *q ? "&amp;" : "", DEFAULT_SECONDS);
	}
}

static const char index_head[] =
	"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><link rel=icon "
	"href=\"data:,\"><title>cprof-bpf "
	"/debug/pprof/</title><style>"
	"body{font:13px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu "
	"Sans',sans-serif;margin:16px 24px;color:#1d1d1f}"
	"h1{font-size:18px;margin:0 0 4px}h2{font-size:14px;margin:18px 0 6px}"
	"table{border-collapse:collapse}td,th{padding:3px 12px 3px 0;text-align:left;"
	"border-bottom:1px solid #eee;vertical-align:top}th{color:#6e6e73;font-weight:500}"
	"td.n{text-align:right;font-variant-numeric:tabular-nums}"
	"td.cmd{font-family:ui-monospace,'DejaVu Sans "
	"Mono',monospace;max-width:560px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}"
	"a{color:#0a66c2;text-decoration:none}a:hover{text-decoration:underline}a.pp{color:#6e6e73}"
	".muted{color:#6e6e73}code{background:#f5f5f7;padding:1px 4px;border-radius:3px}"
	"</style></head><body>";

int index__route(void *ctx, struct http_request *r)
{
	struct serve *sv = ((struct serve_route_ctx *)ctx)->sv;
	struct proc_row *rows = NULL;
	struct strbuf b = {};
	char pid[16], *body;
	double interval = 0;
	size_t n = 0, len;
	int err;

	err = procs_table__get(sv->procs, &rows, &n, &interval);
	if (err)
		return err;
	strbuf__puts(&b, index_head);
	strbuf__printf(&b,
		       "<h1>/debug/pprof/</h1><div class=muted>cprof-bpf %s: profiles of any "
		       "process on this machine, as net/http/pprof serves them. "
		       "<code>go tool pprof '%s/debug/pprof/profile?pid=PID&amp;seconds=10'</code>"
		       "</div><h2>Profile types</h2><table><tr><th>route</th><th>type</th><th>"
		       "</th><th>what it shows</th></tr>",
		       CPROF_VERSION, http_server__url(sv->srv));
	for (size_t i = 0; i < serve__npprof_routes; i++) {
		const struct pprof_route *rt = &serve__pprof_routes[i];
		bool have = collector__find(rt->type) != NULL;

		strbuf__printf(
			&b,
			"<tr><td><code>/debug/pprof/%s?pid=&amp;seconds=</code></td><td>%s</td>"
			"<td>%s</td><td>%s</td></tr>",
			rt->name, rt->type,
			have ? ""
			     : "<span class=muted>not compiled "
			       "in (501)</span>",
			rt->what);
	}
	strbuf__puts(&b, "<tr><td><code>/debug/pprof/flamegraph?pid=&amp;seconds=&amp;type=</code>"
			 "</td><td>any</td><td></td><td>the capture as an interactive flame "
			 "graph</td></tr>"
			 "<tr><td><code>/debug/pprof/symbol</code>, <code>/debug/pprof/cmdline?pid="
			 "</code></td><td></td><td></td><td>addresses to names; the command "
			 "line</td></tr>"
			 "<tr><td><code>/metrics</code>, <code>/healthz</code></td><td></td><td>"
			 "</td><td>the server's own counters; liveness</td></tr></table>");
	strbuf__printf(
		&b,
		"<h2>Processes</h2><div class=muted>%zu processes; CPU%% over the last "
		"%.1f s (100%% = one core). Links open a %g s flame graph; &#8595; downloads "
		"a %g s pprof profile.</div><table><tr><th>pid</th><th>CPU%%</th>"
		"<th>RSS</th><th>command</th><th>capture</th></tr>"
		"<tr><td>all</td><td></td><td></td><td class=cmd>whole system</td><td>",
		n, interval, DEFAULT_FLAME_SECONDS, DEFAULT_SECONDS);
	index_links(&b, NULL);
	strbuf__puts(&b, "</td></tr>");
	for (size_t i = 0; i < n; i++) {
		snprintf(pid, sizeof(pid), "%d", rows[i].pid);
		strbuf__printf(
			&b,
			"<tr><td class=n><a href=\"cmdline?pid=%d\">%d</a></td>"
			"<td class=n>%.1f</td><td class=n>%.1f MiB</td><td class=cmd title=\"",
			rows[i].pid, rows[i].pid, rows[i].cpu, rows[i].rss / 1048576.0);
		strbuf__html(&b, rows[i].cmdline);
		strbuf__puts(&b, "\">");
		strbuf__html(&b, rows[i].cmdline);
		strbuf__puts(&b, "</td><td>");
		index_links(&b, pid);
		strbuf__puts(&b, "</td></tr>");
	}
	strbuf__puts(&b, "</table></body></html>\n");
	free(rows);
	if (strbuf__err(&b)) {
		strbuf__free(&b);
		return -ENOMEM;
	}
	body = strbuf__take(&b, &len);
	return http_respond_take(r, 200, "text/html; charset=utf-8", body, len);
}
