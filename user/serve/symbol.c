/* serve's /debug/pprof/symbol (addresses to names, as pprof asks a remote server) and
 * /debug/pprof/cmdline. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"
#include "sym/symbolizer.h"
#include "util/strbuf.h"

#define MAX_SYMBOL_ADDRS 100000

struct addr_list {
	uint64_t *v;
	size_t n, cap;
	const char *bad;
	char bad_buf[40];
	bool too_many;
};

static void add_addrs(struct addr_list *a, const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && !a->bad && !a->too_many) {
		size_t j = i, n;
		char word[40], *end;
		unsigned long long v;
		uint64_t *nv;

		while (j < len && s[j] != '+' && s[j] != ' ' && s[j] != '\n' && s[j] != '\r')
			j++;
		n = j - i;
		if (n) {
			snprintf(word, sizeof(word), "%.*s", (int)(n < 39 ? n : 39), s + i);
			errno = 0;
			v = strtoull(word, &end, 0);
			if (n >= sizeof(word) || errno || *end || word[0] == '-') {
				snprintf(a->bad_buf, sizeof(a->bad_buf), "%s", word);
				a->bad = a->bad_buf;
				return;
			}
			if (a->n == MAX_SYMBOL_ADDRS) {
				a->too_many = true;
				return;
			}
			if (a->n == a->cap) {
				a->cap = a->cap ? a->cap * 2 : 64;
				nv = realloc(a->v, a->cap * sizeof(*nv));
				if (!nv) {
					a->too_many = true;
					return;
				}
				a->v = nv;
			}
			a->v[a->n++] = v;
		}
		i = j + 1;
	}
}

static void addrs_from_query(void *ctx, const char *key, const char *value)
{
	struct addr_list *a = ctx;

	/* GET /debug/pprof/symbol?pid=N&0x1234+0x5678: the addresses arrive as a key. */
	if (strcmp(key, "pid") == 0 || value)
		return;
	add_addrs(a, key, strlen(key));
}

/* x86-64: addresses from here up are the kernel's. */
#define KERNEL_ADDR_MIN 0xffff800000000000ull

/* Resolves a /symbol request's addresses as one batch: kernel ones in one streamed pass over
 * /proc/kallsyms that keeps only what they need (not the whole table per request), user ones
 * file by file. The lookups that follow are cache hits. */
static int symbol_prepare(struct symbolizer *sym, pid_t pid, const uint64_t *v, size_t n)
{
	struct sym_request *reqs = calloc(n, sizeof(*reqs));
	int err;

	if (!reqs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		reqs[i] = (struct sym_request){
			.addr = v[i], .pid = pid, .kernel = v[i] >= KERNEL_ADDR_MIN};
	err = symbolizer__prepare(sym, reqs, n);
	free(reqs);
	return err;
}

/* The addresses of a /symbol request, from its body and its query; kernel ones only for whom
 * the kernel shows kernel addresses. Answers 400 itself and returns false on a bad one. */
static bool parse_addrs(struct http_request *r, const struct access *acc, struct addr_list *a)
{
	const char *body;
	size_t blen, n = 0;

	body = http_request__body(r, &blen);
	add_addrs(a, body, blen);
	http_request__for_each_query(r, addrs_from_query, a);
	if (a->bad || a->too_many) {
		free(a->v);
		a->v = NULL;
		if (a->bad)
			http_respond_error(r, 400, "invalid address '%s': expected 0xHEX", a->bad);
		else
			http_respond_error(r, 400, "too many addresses (at most %d)",
					   MAX_SYMBOL_ADDRS);
		return false;
	}
	if (access__kernel(acc))
		return true;
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i] < KERNEL_ADDR_MIN)
			a->v[n++] = a->v[i];
	a->n = n;
	return true;
}

int symbol__route(void *ctx, struct http_request *r)
{
	const struct cli_opts *o = ((struct serve_route_ctx *)ctx)->sv->o;
	struct symbolizer_opts so = {.demangle =
					     o->demangle ? SYM_DEMANGLE_FULL : SYM_DEMANGLE_NONE,
				     .debug_dir = o->debug_dir};
	struct capture_params p = {};
	struct addr_list a = {};
	struct strbuf out = {};
	struct symbolizer *sym = NULL;
	struct sym_result res;
	size_t blen;
	char *text;
	int err = 0;

	if (!params__pids(r, &p))
		return 0;
	if (p.npids > 1)
		return http_respond_error(r, 400, "symbol takes one pid");
	if (!parse_addrs(r, &p.access, &a))
		return 0;
	/* pprof only asks whether this is 0. Without a pid there is nothing to look in. */
	strbuf__printf(&out, "num_symbols: %d\n", p.npids ? 1 : 0);
	if (p.npids && a.n) {
		sym = symbolizer__new(&so);
		err = sym ? symbolizer__add_pid(sym, p.pids[0]) : -ENOMEM;
		if (err == -ESRCH || err == -ENOENT) {
			err = 0;
			strbuf__free(&out);
			symbolizer__free(sym);
			free(a.v);
			return http_respond_error(r, 404, "no such process: %d", p.pids[0]);
		}
	}
	if (sym && !err)
		err = symbol_prepare(sym, p.pids[0], a.v, a.n);
	for (size_t i = 0; sym && !err && i < a.n; i++) {
		bool kernel = a.v[i] >= KERNEL_ADDR_MIN;

		err = kernel ? symbolizer__kernel(sym, a.v[i], false, &res)
			     : symbolizer__user(sym, p.pids[0], a.v[i], false, &res);
		if (!err && res.mapping && res.mapping->has_functions)
			strbuf__printf(&out, "0x%" PRIx64 " %s\n", a.v[i], res.frames[0].function);
	}
	symbolizer__free(sym);
	free(a.v);
	if (err || strbuf__err(&out)) {
		strbuf__free(&out);
		return err ? err : -ENOMEM;
	}
	text = strbuf__take(&out, &blen);
	return http_respond_take(r, 200, "text/plain; charset=utf-8", text, blen);
}

int symbol__cmdline(void *ctx, struct http_request *r)
{
	static const char *const known[] = {"pid", NULL};
	struct capture_params p = {};
	char path[64], *buf = NULL;
	size_t len = 0, n;
	FILE *f;

	(void)ctx;
	if (!params__check_known(r, known, "pid") || !params__pids(r, &p))
		return 0;
	if (p.npids > 1)
		return http_respond_error(r, 400, "cmdline takes one pid");
	/* No pid: ours, as net/http/pprof answers with its own process's. */
	snprintf(path, sizeof(path), "/proc/%s/cmdline", p.npids ? "" : "self");
	if (p.npids)
		snprintf(path, sizeof(path), "/proc/%d/cmdline", p.pids[0]);
	f = fopen(path, "re");
	if (!f)
		return http_respond_error(r, 404, "no such process: %d", p.pids[0]);
	buf = malloc(1 << 16);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, (1 << 16) - 1, f);
	fclose(f);
	len = n;
	while (len && buf[len - 1] == '\0')
		len--;
	return http_respond_take(r, 200, "text/plain; charset=utf-8", buf, len);
}
