/* --listen: /metrics (Prometheus text) and /healthz on the HTTP server module of `serve`. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/internal.h"
#include "util/log.h"

#include "http/server.h"

struct agent_http {
	struct http_server *srv;
	struct http_route routes[2];
};

static int metrics_handler(void *ctx, struct http_request *req)
{
	char *text = metrics__render(ctx);
	int err;

	if (!text)
		return -ENOMEM;
	err = http_respond(req, 200, "text/plain; version=0.0.4", text, strlen(text));
	free(text);
	return err;
}

static int healthz_handler(void *ctx, struct http_request *req)
{
	const char *why = "";
	char line[160];
	int n;

	if (metrics__healthy(ctx, &why))
		return http_respond(req, 200, "text/plain", "ok\n", 3);
	n = snprintf(line, sizeof(line), "%s\n", why);
	return http_respond(req, 503, "text/plain", line, (size_t)n);
}

int agent_http__start(struct agent *a, struct agent_http **out)
{
	struct agent_http *h = calloc(1, sizeof(*h));
	struct http_server_opts o = {
		.listen = a->o->listen, .token_file = a->o->listen_token, .nroutes = 2};
	int err;

	if (!h)
		return -ENOMEM;
	h->routes[0] = (struct http_route){"/metrics", NULL, metrics_handler, a, false};
	h->routes[1] = (struct http_route){"/healthz", NULL, healthz_handler, a, true};
	o.routes = h->routes;
	err = http_server__new(&o, &h->srv);
	if (!err)
		err = http_server__start(h->srv);
	if (err) {
		agent_http__stop(h);
		return err;
	}
	pr_info("agent: /metrics and /healthz on %s\n", http_server__url(h->srv));
	*out = h;
	return 0;
}

void agent_http__stop(struct agent_http *h)
{
	if (!h)
		return;
	if (h->srv) {
		http_server__stop(h->srv);
		http_server__free(h->srv);
	}
	free(h);
}
