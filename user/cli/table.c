/* The one table of options of record, serve, agent and watch, and the parsers of the values
 * that are neither numbers nor sizes. A new option is one row here and its field in
 * struct cli_opts; getopt_long, --help, the checks and their messages follow from the row. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "collect/collector.h"
#include "util/log.h"

#define MAX_DURATION	31536000.0   /* one year, in seconds */
#define MAX_MIN_WAIT_US 3600000000.0 /* an hour */
#define MAX_PID		4194304	     /* the kernel's PID_MAX_LIMIT */

static int parse_pids(const struct cli_option *opt, const char *arg, struct cli_opts *o, char *msg,
		      size_t len)
{
	char *copy = strdup(arg), *tok, *save = NULL;
	pid_t *pids;
	long v;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if ((err = cli__parse_long(tok, (long)opt->min, (long)opt->max, &v))) {
			cli__bad_value(msg, len, opt->what, tok, err, "not an integer", opt->range);
			break;
		}
		if (o->npids >= CPROF_MAX_TARGETS) {
			snprintf(msg, len, "too many pids (at most %d)", CPROF_MAX_TARGETS);
			err = -EINVAL;
			break;
		}
		pids = realloc(o->pids, (o->npids + 1) * sizeof(*pids));
		if (!pids) {
			err = -ENOMEM;
			break;
		}
		o->pids = pids;
		pids[o->npids++] = (pid_t)v;
	}
	free(copy);
	if (!err && o->npids == 0)
		err = cli__bad_value(msg, len, opt->what, arg, -EINVAL, "not an integer",
				     opt->range);
	return err;
}

static int parse_type(const struct cli_option *opt, const char *arg, struct cli_opts *o, char *msg,
		      size_t len)
{
	(void)opt;
	if (!collector__find(arg)) {
		snprintf(msg, len, "unknown profile type '%s' (known: %s)", arg,
			 collector__names());
		return -EINVAL;
	}
	o->type = arg;
	return 0;
}

/* One of names (NULL-terminated), its index into *out; -EINVAL when none. */
static int parse_choice(const char *arg, const char *const *names, int *out)
{
	for (int i = 0; names[i]; i++) {
		if (strcmp(arg, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_format(const struct cli_option *opt, const char *arg, struct cli_opts *o,
			char *msg, size_t len)
{
	/* In the order of enum out_format. */
	static const char *const names[] = {"pprof", "folded", "top", "text", "grouped", NULL};
	int i;

	(void)opt;
	if (parse_choice(arg, names, &i)) {
		snprintf(msg, len, "unknown format '%s' (known: pprof,folded,top,text,grouped)",
			 arg);
		return -EINVAL;
	}
	o->format = (enum out_format)i;
	return 0;
}

static int parse_demangle(const struct cli_option *opt, const char *arg, struct cli_opts *o,
			  char *msg, size_t len)
{
	static const char *const names[] = {"none", "full", NULL};
	int i;

	(void)opt, (void)msg, (void)len;
	if (parse_choice(arg, names, &i))
		return -EINVAL;
	o->demangle = i == 1;
	return 0;
}

static int parse_unwind(const struct cli_option *opt, const char *arg, struct cli_opts *o,
			char *msg, size_t len)
{
	static const char *const names[] = {
		[CPROF_UNWIND_AUTO] = "auto",
		[CPROF_UNWIND_FP] = "fp",
		[CPROF_UNWIND_DWARF] = "dwarf",
		NULL,
	};

	(void)opt, (void)msg, (void)len;
	return parse_choice(arg, names, &o->unwind);
}

static int parse_debug_dir(const struct cli_option *opt, const char *arg, struct cli_opts *o,
			   char *msg, size_t len)
{
	(void)opt, (void)msg, (void)len;
	if (arg[0] != '/')
		return -EINVAL;
	o->debug_dir = arg;
	return 0;
}

static int parse_unwind_cache(const struct cli_option *opt, const char *arg, struct cli_opts *o,
			      char *msg, size_t len)
{
	(void)opt, (void)msg, (void)len;
	if (strcmp(arg, "off") == 0) {
		o->unwind_cache = NULL;
		return 0;
	}
	if (arg[0] != '/')
		return -EINVAL;
	o->unwind_cache = arg;
	return 0;
}

static int parse_label(const struct cli_option *opt, const char *arg, struct cli_opts *o, char *msg,
		       size_t len)
{
	const char *eq = strchr(arg, '=');
	size_t klen = eq ? (size_t)(eq - arg) : 0;

	(void)opt;
	if (!eq || !klen || !eq[1])
		return -EINVAL;
	for (size_t i = 0; i < klen; i++) {
		char c = arg[i];

		if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (i && c >= '0' && c <= '9'))) {
			snprintf(msg, len, "invalid --label key '%.*s': letters, digits and _ only",
				 (int)klen, arg);
			return -EINVAL;
		}
	}
	if (o->nlabels >= CLI_MAX_LABELS) {
		snprintf(msg, len, "too many --label (at most %d)", CLI_MAX_LABELS);
		return -EINVAL;
	}
	o->labels[o->nlabels].key = strndup(arg, klen);
	o->labels[o->nlabels].value = strdup(eq + 1);
	o->nlabels++; /* freed by cli__free, even half made */
	if (!o->labels[o->nlabels - 1].key || !o->labels[o->nlabels - 1].value)
		return -ENOMEM;
	return 0;
}

/* SIZE or PCT%: a percentage is kept with bit 63 set, resolved against the file system later. */
static int parse_min_free(const struct cli_option *opt, const char *arg, struct cli_opts *o,
			  char *msg, size_t len)
{
	size_t n = strlen(arg);
	long pct;
	char buf[16];

	(void)opt;
	if (n && arg[n - 1] == '%') {
		if (n >= sizeof(buf))
			return -EINVAL;
		memcpy(buf, arg, n - 1);
		buf[n - 1] = 0;
		if (cli__parse_long(buf, 0, 99, &pct))
			return cli__bad_value(msg, len, "--min-free", arg, -EINVAL, NULL,
					      "0% to 99%");
		o->min_free = (uint64_t)pct | (1ull << 63);
		return 0;
	}
	if (cli__parse_size(arg, 1, &o->min_free) || (o->min_free >> 63))
		return -EINVAL;
	return 0;
}

static int parse_push(const struct cli_option *opt, const char *arg, struct cli_opts *o, char *msg,
		      size_t len)
{
	(void)opt, (void)msg, (void)len;
	if (strncmp(arg, "http://", 7) && strncmp(arg, "https://", 8))
		return -EINVAL;
	o->push_url = arg;
	return 0;
}

/* Reads a secret from a file (first line), so it is not in the command line for all to see. */
static int read_secret(const char *path, char **out, char *msg, size_t len)
{
	char buf[4096];
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f) {
		snprintf(msg, len, "cannot read %s: %s", path, strerror(errno));
		return -EINVAL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	if (!buf[0]) {
		snprintf(msg, len, "%s is empty", path);
		return -EINVAL;
	}
	free(*out);
	*out = strdup(buf);
	return *out ? 0 : -ENOMEM;
}

static int parse_basic_auth(const struct cli_option *opt, const char *arg, struct cli_opts *o,
			    char *msg, size_t len)
{
	int err = read_secret(arg, &o->basic_auth, msg, len);

	(void)opt;
	if (!err && !strchr(o->basic_auth, ':'))
		err = -EINVAL;
	return err;
}

static int parse_bearer(const struct cli_option *opt, const char *arg, struct cli_opts *o,
			char *msg, size_t len)
{
	(void)opt;
	return read_secret(arg, &o->bearer_token, msg, len);
}

static int parse_trigger(const struct cli_option *opt, const char *arg, struct cli_opts *o,
			 char *msg, size_t len)
{
	(void)opt;
	if (o->nrules >= TRIGGER_MAX_RULES) {
		snprintf(msg, len, "too many --trigger (at most %d)", TRIGGER_MAX_RULES);
		return -EINVAL;
	}
	if (trigger_rule__parse(arg, &o->rules[o->nrules]))
		return -EINVAL;
	o->nrules++;
	return 0;
}

static int parse_metrics_listen(const struct cli_option *opt, const char *arg, struct cli_opts *o,
				char *msg, size_t len)
{
	(void)opt, (void)msg, (void)len;
	if (!strrchr(arg, ':'))
		return -EINVAL;
	o->listen = arg;
	return 0;
}

static int parse_verbose(const struct cli_option *opt, const char *arg, struct cli_opts *o,
			 char *msg, size_t len)
{
	(void)opt, (void)arg, (void)o, (void)msg, (void)len;
	log_verbosity++;
	return 0;
}

static int parse_quiet(const struct cli_option *opt, const char *arg, struct cli_opts *o, char *msg,
		       size_t len)
{
	(void)opt, (void)arg, (void)o, (void)msg, (void)len;
	log_verbosity = LOG_ERROR;
	return 0;
}

/* The field of a row, and the row's kind of value with its range. */
#define FIELD(f)	   .off = offsetof(struct cli_opts, f), .size = sizeof(((struct cli_opts *)0)->f)
#define INT(f, lo, hi)	   .kind = CLI_INT, FIELD(f), .min = (lo), .max = (hi)
#define SECONDS(f, lo, hi) .kind = CLI_SECONDS, FIELD(f), .min = (lo), .max = (hi)
#define SIZE(f, u, lo, hi) .kind = CLI_SIZE, FIELD(f), .unit = (u), .min = (lo), .max = (hi)
#define CUSTOM(fn)	   .kind = CLI_CUSTOM, .parse = (fn)
#define ALL		   (CLI_R | CLI_S | CLI_A | CLI_W)

/* clang-format off */
const struct cli_option cli__options[] = {
	/* Targets */
	{"pid", 'p', CUSTOM(parse_pids), .cmds = CLI_R | CLI_A | CLI_W, .min = 1, .max = MAX_PID,
	 .arg = "PID[,PID...]", .help = "record: profile these processes (all their threads);\n"
	 "agent, watch: run the triggers for these only", .what = "pid",
	 .range = "1 to 4194304", .query = "pid", .sec = CLI_SEC_TARGET},
	{"all", 'a', .kind = CLI_FLAG, FIELD(all), .cmds = CLI_R,
	 .help = "profile the whole system (idle excluded)", .sec = CLI_SEC_TARGET},
	{NULL, .arg = "-- CMD [ARGS...]", .cmds = CLI_R,
	 .help = "run CMD and profile it (and its children) until it exits", .sec = CLI_SEC_TARGET},
	/* serve's server */
	{"listen", 'l', .kind = CLI_STRING, FIELD(listen), .cmds = CLI_S, .arg = "HOST:PORT",
	 .help = "address to listen on (default 127.0.0.1:6060; :PORT = all\n"
	 "interfaces; port 0 picks a free one)", .sec = CLI_SEC_SERVER,
	 .why = "agent's --listen serves /metrics only and has no short flag: its -l is --label"},
	{"token-file", 0, .kind = CLI_STRING, FIELD(token_file), .cmds = CLI_S, .arg = "FILE",
	 .help = "require the token in FILE (first line): as a Bearer header or\n"
	 "as the basic-auth password (http://x:TOKEN@host:port/...)", .sec = CLI_SEC_SERVER},
	{"tls-cert", 0, .kind = CLI_STRING, FIELD(tls_cert), .cmds = CLI_S, .arg = "FILE",
	 .help = "serve HTTPS with this PEM certificate ...", .sec = CLI_SEC_SERVER},
	{"tls-key", 0, .kind = CLI_STRING, FIELD(tls_key), .cmds = CLI_S, .arg = "FILE",
	 .help = "... and this PEM private key", .sec = CLI_SEC_SERVER},
	{"max-captures", 0, INT(max_captures, 1, 64), .cmds = CLI_S, .arg = "N", .range = "1 to 64",
	 .help = "captures running at once, 1-64 (default 4); more get 503",
	 .sec = CLI_SEC_SERVER},
	{"max-seconds", 0, SECONDS(max_seconds, 0.001, MAX_DURATION), .cmds = CLI_S, .arg = "S",
	 .range = "0.001 to 31536000 seconds (a year)",
	 .help = "longest capture a request may ask for (default 3600)", .sec = CLI_SEC_SERVER},
	{"idle-timeout", 0, INT(idle_timeout, 1, 86400), .cmds = CLI_S, .arg = "S",
	 .range = "1 to 86400 seconds", .help = "close connections idle this long (default 30; a "
	 "running\ncapture is never idle)", .sec = CLI_SEC_SERVER},
	{"request-timeout", 0, INT(request_timeout, 1, 3600), .cmds = CLI_S, .arg = "S",
	 .range = "1 to 3600 seconds", .help = "time to send a request line and headers, and its "
	 "body\n(default 10; slower clients get 408)", .sec = CLI_SEC_SERVER},
	{"max-connections", 0, INT(max_connections, 1, 4096), .cmds = CLI_S, .arg = "N",
	 .range = "1 to 4096", .help = "open connections at once (default 128)",
	 .sec = CLI_SEC_SERVER},
	{"max-per-client", 0, INT(max_per_client, 1, 4096), .cmds = CLI_S, .arg = "N",
	 .range = "1 to 4096", .help = "open connections from one address (default 64); over a\n"
	 "limit the oldest idle one is closed, or 503 when none is", .sec = CLI_SEC_SERVER},
	/* What is captured, and how */
	{"type", 't', CUSTOM(parse_type), .cmds = CLI_R, .arg = "TYPE", .range = "a profile type",
	 .help = "profile type: cpu (default), heap, mutex (lock\n"
	 "contention), offcpu or block (time off the CPU),\n"
	 "wall or cpu,offcpu (on- and off-CPU time in one profile),\n"
	 "threadcreate (the stacks that create threads),\n"
	 "threads or goroutine (a snapshot of every thread now:\n"
	 "returns at once, no -d)", .sec = CLI_SEC_CAPTURE},
	{"duration", 'd', SECONDS(duration, 0.001, MAX_DURATION), .cmds = CLI_R | CLI_A | CLI_W,
	 .arg = "SECONDS", .what = "duration", .range = "0.001 to 31536000 seconds (a year)",
	 .help = "stop after SECONDS (default: until Ctrl-C or SIGTERM, or\n"
	 "until the target exits)", .query = "seconds", .sec = CLI_SEC_CAPTURE},
	{"freq", 'F', INT(freq, 1, 10000), .cmds = CLI_R | CLI_S, .arg = "HZ", .what = "frequency",
	 .range = "1 to 10000 Hz", .help = "cpu samples per second per CPU, 1-10000 (default 99)",
	 .query = "hz", .sec = CLI_SEC_CAPTURE,
	 .why = "the agent's -F is the rate of its always-on windows, at most 1000 Hz"},
	{"freq", 'F', INT(freq, 1, 1000), .cmds = CLI_A, .arg = "HZ", .what = "frequency",
	 .range = "1 to 1000 Hz", .help = "samples per second per CPU, 1-1000 (default 19)",
	 .sec = CLI_SEC_CAPTURE,
	 .why = "the agent samples every CPU all the time, so its windows stay at 1000 Hz or "
	 "less; a trigger's capture of one process takes --trigger-freq, up to 10000 Hz"},
	{"interval", 'i', SECONDS(interval, 0.1, 86400), .cmds = CLI_A, .arg = "SECONDS",
	 .range = "0.1 to 86400 seconds", .help = "window length (default 10)",
	 .sec = CLI_SEC_CAPTURE},
	{"output", 'o', .kind = CLI_STRING, FIELD(output), .cmds = CLI_R, .arg = "FILE",
	 .help = "output file; - for stdout (default: TYPE.pb.gz for pprof,\n"
	 "stdout for folded and top). A regular file is replaced\n"
	 "at the end; a device or FIFO is written in place; a\n"
	 "symlink is followed", .sec = CLI_SEC_CAPTURE,
	 .why = "agent and watch write many profiles: their -o is --out-dir, a directory"},
	{"format", 'f', CUSTOM(parse_format), .cmds = CLI_R, .arg = "FMT",
	 .help = "pprof (default), folded (flame graph input), top (table);\n"
	 "threads: text (a block per thread, as Go's goroutine\n"
	 "dump) or grouped (identical stacks counted)", .sec = CLI_SEC_CAPTURE},
	{"top", 0, INT(top_rows, 0, 1000000), .cmds = CLI_R, .arg = "N",
	 .range = "0 (all) to 1000000 rows", .help = "rows of --format top (default 20; 0 = all)",
	 .sec = CLI_SEC_CAPTURE},
	{"label", 'l', CUSTOM(parse_label), .cmds = CLI_A | CLI_W, .arg = "KEY=VALUE",
	 .range = "KEY=VALUE", .help = "add a label to every sample and push (up to 6)",
	 .sec = CLI_SEC_CAPTURE, .why = "serve's -l is --listen"},
	{"host", 0, .kind = CLI_STRING, FIELD(host), .cmds = CLI_A | CLI_W, .arg = "NAME",
	 .help = "host label (default: the host name)", .sec = CLI_SEC_CAPTURE},
	{"max-stacks", 0, INT(max_keys, 64, 1048576), .cmds = CLI_R | CLI_S | CLI_A, .arg = "N",
	 .range = "64 to 1048576", .help = "distinct stacks kept in BPF per capture (or window),\n"
	 "64-1048576 (default 16384)", .sec = CLI_SEC_CAPTURE},
	{"no-kernel", 0, .kind = CLI_FLAG, FIELD(no_kernel), .cmds = ALL,
	 .help = "user stacks only",
	 .sec = CLI_SEC_CAPTURE},
	{"heap-sample-bytes", 0, INT(heap_sample_bytes, 1, 1l << 40), .cmds = CLI_R | CLI_S,
	 .arg = "N",
	 .range = "1 to 1099511627776 (1 TiB)", .type = "heap",
	 .help = "heap: sample one allocation per N bytes on average\n"
	 "(default 524288, as Go; 1 = every allocation)", .sec = CLI_SEC_CAPTURE},
	{"heap-max-live", 0, INT(heap_max_live, 64, 16777216), .cmds = CLI_R | CLI_S, .arg = "N",
	 .range = "64 to 16777216", .type = "heap",
	 .help = "heap: sampled blocks tracked until freed (default 262144)",
	 .sec = CLI_SEC_CAPTURE},
	{"heap-alloc-only", 0, .kind = CLI_FLAG, FIELD(heap_alloc_only), .cmds = CLI_R,
	 .type = "heap",
	 .help = "heap: allocations only (alloc_*; no free probes, no inuse_*)",
	 .sec = CLI_SEC_CAPTURE},
	{"min-wait", 0, INT(min_wait_us, 0, MAX_MIN_WAIT_US), .cmds = CLI_R | CLI_S, .arg = "USEC",
	 .range = "0 to 3600000000 microseconds", .type = "mutex",
	 .help = "mutex: count only waits of at least USEC microseconds", .sec = CLI_SEC_CAPTURE},
	{"min-block", 0, INT(min_block_us, 0, MAX_MIN_WAIT_US), .cmds = CLI_R | CLI_S,
	 .arg = "USEC",
	 .range = "0 to 3600000000 microseconds", .type = "offcpu",
	 .help = "offcpu (block): count only off-CPU intervals of at least USEC",
	 .sec = CLI_SEC_CAPTURE},
	{"mutex-fraction", 0, INT(mutex_fraction, 1, CLI_MAX_MUTEX_FRACTION), .cmds = CLI_R | CLI_S,
	 .arg = "N", .range = "1 to 1000000000 (1 in N lock waits)", .type = "mutex",
	 .help = "mutex: keep about 1 lock wait in N, values scaled by N", .query = "fraction",
	 .sec = CLI_SEC_CAPTURE},
	{"block-rate", 0, INT(block_rate_ns, 1, CLI_MAX_BLOCK_RATE), .cmds = CLI_R | CLI_S,
	 .arg = "NS",
	 .range = "1 to 3600000000000 nanoseconds", .type = "offcpu",
	 .help = "offcpu (block): keep an interval of d ns with probability\n"
	 "min(1, d/NS), values scaled (Go's block profile rate)", .query = "rate",
	 .sec = CLI_SEC_CAPTURE},
	{"demangle", 0, CUSTOM(parse_demangle), .cmds = ALL, .arg = "MODE",
	 .range = "full or none", .help = "full (default) or none", .sec = CLI_SEC_CAPTURE},
	{"debug-dir", 0, CUSTOM(parse_debug_dir), .cmds = ALL, .arg = "DIR",
	 .range = "an absolute path",
	 .help = "root of separate debug files (default /usr/lib/debug)", .sec = CLI_SEC_CAPTURE},
	{"unwind", 0, CUSTOM(parse_unwind), .cmds = CLI_R | CLI_S | CLI_A, .arg = "MODE",
	 .range = "auto, fp or dwarf", .help = "user stacks: auto (default: .eh_frame tables,\n"
	 "frame pointers where none), fp (frame pointers), dwarf\n(tables only)",
	 .sec = CLI_SEC_CAPTURE},
	{"unwind-mem", 0, SIZE(unwind_mem, 1 << 20, 64 << 10, 64ull << 30), .cmds = ALL,
	 .arg = "SIZE",
	 .range = "64K to 64G (plain numbers are MiB)",
	 .help = "memory for unwind tables: 64K-64G, plain numbers are MiB\n"
	 "(default 128M, per capture); executables beyond it use\nframe pointers",
	 .sec = CLI_SEC_CAPTURE},
	{"unwind-cpu", 0, SECONDS(unwind_cpu, 0, 100), .cmds = CLI_A, .arg = "PCT",
	 .range = "0 to 100 (percent of one core)",
	 .help = "CPU for building tables, percent of one core (default 1;\n"
	 "0 = no limit); what waits is walked with frame pointers", .sec = CLI_SEC_CAPTURE},
	{"unwind-cache", 0, CUSTOM(parse_unwind_cache), .cmds = ALL, .arg = "DIR",
	 .range = "an absolute path, or off",
	 .help = "keep compiled unwind tables there across runs (default\n"
	 "/var/cache/cprof-bpf/unwind; off: never)", .sec = CLI_SEC_CAPTURE},
	{"unwind-cache-size", 0, SIZE(unwind_cache_size, 1 << 20, 1 << 20, 1ull << 40), .cmds = ALL,
	 .arg = "SIZE", .range = "1M to 1T (plain numbers are MiB)",
	 .help = "bytes of --unwind-cache at most, the least recently\nused out (default 256M)",
	 .sec = CLI_SEC_CAPTURE},
	/* The agent's local store */
	{"out-dir", 'o', .kind = CLI_STRING, FIELD(out_dir), .cmds = CLI_A | CLI_W, .arg = "DIR",
	 .help = "where profiles go (default: agent /var/lib/cprof-bpf,\nwatch .)",
	 .sec = CLI_SEC_STORE, .why = "record writes one profile: its -o is --output, a file"},
	{"no-store", 0, .kind = CLI_FLAG, FIELD(no_store), .cmds = CLI_A | CLI_W,
	 .help = "do not keep profiles locally (push only)", .sec = CLI_SEC_STORE},
	{"max-age", 0, .kind = CLI_AGE, FIELD(max_age), .min = 0, .max = MAX_DURATION,
	 .cmds = CLI_A | CLI_W, .arg = "AGE", .range = "a duration like 3600, 90m, 24h, 7d",
	 .help = "delete profiles older than AGE (default 24h; 0 = never)", .sec = CLI_SEC_STORE},
	{"max-size", 0, SIZE(max_size, 1, 0, 1e18), .cmds = CLI_A | CLI_W, .arg = "SIZE",
	 .range = "bytes like 1048576, 512M, 2G",
	 .help = "keep at most SIZE bytes of profiles (default 1G)", .sec = CLI_SEC_STORE},
	{"min-free", 0, CUSTOM(parse_min_free), .cmds = CLI_A | CLI_W, .arg = "SIZE|PCT",
	 .range = "bytes (512M) or a percentage (5%)",
	 .help = "never let the file system go below this free (default 5%)",
	 .sec = CLI_SEC_STORE},
	/* Push to Pyroscope */
	{"push", 0, CUSTOM(parse_push), .cmds = CLI_A | CLI_W, .arg = "URL",
	 .range = "an http:// or https:// URL",
	 .help = "Pyroscope server, e.g. http://pyroscope:4040", .sec = CLI_SEC_PUSH},
	{"app-name", 0, .kind = CLI_STRING, FIELD(app_name), .cmds = CLI_A | CLI_W, .arg = "NAME",
	 .help = "service name of every push (default: the service_name\n"
	 "label, else each process's executable name)", .sec = CLI_SEC_PUSH},
	{"tenant", 0, .kind = CLI_STRING, FIELD(tenant), .cmds = CLI_A | CLI_W, .arg = "ID",
	 .help = "X-Scope-OrgID header (multi-tenant servers)", .sec = CLI_SEC_PUSH},
	{"basic-auth-file", 0, CUSTOM(parse_basic_auth), .cmds = CLI_A | CLI_W, .arg = "F",
	 .range = "a file holding USER:PASSWORD", .help = "a file holding USER:PASSWORD",
	 .sec = CLI_SEC_PUSH},
	{"bearer-token-file", 0, CUSTOM(parse_bearer), .cmds = CLI_A | CLI_W, .arg = "F",
	 .range = "a file holding a token", .help = "a file holding a bearer token",
	 .sec = CLI_SEC_PUSH},
	{"push-timeout", 0, SECONDS(push_timeout, 0.1, 600), .cmds = CLI_A | CLI_W, .arg = "S",
	 .range = "0.1 to 600 seconds", .help = "per request (default 10)", .sec = CLI_SEC_PUSH},
	{"queue-max-size", 0, SIZE(queue_max_size, 1, 4096, 1e18), .cmds = CLI_A | CLI_W,
	 .arg = "SIZE",
	 .range = "bytes, at least 4096",
	 .help = "pushes kept on disk while the server is away (default\n256M)",
	 .sec = CLI_SEC_PUSH},
	{"retry-max", 0, SECONDS(retry_max, 0.1, 86400), .cmds = CLI_A | CLI_W, .arg = "S",
	 .range = "0.1 to 86400 seconds", .help = "longest wait between retries (default 60)",
	 .sec = CLI_SEC_PUSH},
	/* Triggers */
	{"trigger", 0, CUSTOM(parse_trigger), .cmds = CLI_A | CLI_W, .arg = "RULE",
	 .range = "cpu>PCT, rss>SIZE, threads>N, or METRIC>FACTORx",
	 .help = "cpu>80 (percent of a core), rss>512M, threads>200, or a\n"
	 "spike against the moving average: cpu>3x, rss>2x, threads>2x",
	 .sec = CLI_SEC_TRIGGER},
	{"trigger-pid", 0, CUSTOM(parse_pids), .cmds = CLI_A | CLI_W, .min = 1, .max = MAX_PID,
	 .arg = "PID[,PID...]", .what = "pid", .range = "1 to 4194304",
	 .help = "watch only these processes (default: all), as -p", .sec = CLI_SEC_TRIGGER},
	{"trigger-duration", 0, SECONDS(trigger_duration, 0.1, 3600), .cmds = CLI_A | CLI_W,
	 .arg = "S",
	 .range = "0.1 to 3600 seconds", .help = "full-rate capture length (default 10)",
	 .sec = CLI_SEC_TRIGGER},
	{"trigger-freq", 0, INT(trigger_freq, 1, 10000), .cmds = CLI_A | CLI_W, .arg = "HZ",
	 .range = "1 to 10000 Hz", .help = "rate of the capture, 1-10000 (default 99)",
	 .sec = CLI_SEC_TRIGGER},
	{"trigger-cooldown", 0, SECONDS(trigger_cooldown, 0, 86400), .cmds = CLI_A | CLI_W,
	 .arg = "S",
	 .range = "0 to 86400 seconds",
	 .help = "the same rule fires again for a process after S (default\n300)",
	 .sec = CLI_SEC_TRIGGER},
	{"trigger-warmup", 0, INT(trigger_warmup, 1, 100000), .cmds = CLI_A | CLI_W, .arg = "N",
	 .range = "1 to 100000 checks",
	 .help = "checks before a spike rule may fire (default 10)", .sec = CLI_SEC_TRIGGER},
	{"trigger-check", 0, SECONDS(trigger_check, 0.1, 3600), .cmds = CLI_A | CLI_W, .arg = "S",
	 .range = "0.1 to 3600 seconds", .help = "seconds between checks (default 2)",
	 .sec = CLI_SEC_TRIGGER},
	/* The agent's operations */
	{"listen", 0, CUSTOM(parse_metrics_listen), .cmds = CLI_A | CLI_W, .arg = "ADDR:PORT",
	 .range = "ADDR:PORT", .help = "serve /metrics and /healthz over HTTP (port 0: any free)",
	 .sec = CLI_SEC_OPS, .why = "serve's --listen is the profiling server's address; "
	 "here -l is --label"},
	{"listen-token-file", 0, .kind = CLI_STRING, FIELD(listen_token), .cmds = CLI_A | CLI_W,
	 .arg = "F", .help = "/metrics needs the token in F (Bearer); /healthz is open",
	 .sec = CLI_SEC_OPS},
	{"max-rss", 0, SIZE(max_rss, 1, 16 << 20, 1e18), .cmds = CLI_A, .arg = "SIZE",
	 .range = "bytes, at least 16M",
	 .help = "drop the symbol caches above this RSS (default 200M)", .sec = CLI_SEC_OPS},
	/* Every command */
	{"verbose", 'v', CUSTOM(parse_verbose), .cmds = ALL,
	 .help = "more messages (-vv: debug, libbpf too)", .sec = CLI_SEC_GENERAL},
	{"quiet", 'q', CUSTOM(parse_quiet), .cmds = ALL, .help = "errors only",
	 .sec = CLI_SEC_GENERAL},
	{"help", 'h', .kind = CLI_HELP, .cmds = ALL, .help = "this help", .sec = CLI_SEC_GENERAL},
	{"version", 'V', .kind = CLI_VERSION, .cmds = CLI_R | CLI_S, .help = "the version",
	 .sec = CLI_SEC_GENERAL},
};
/* clang-format on */

const size_t cli__noptions = sizeof(cli__options) / sizeof(cli__options[0]);
_Static_assert(sizeof(cli__options) / sizeof(cli__options[0]) <= CLI_MAX_OPTIONS,
	       "CLI_MAX_OPTIONS is the size of struct cli_opts' given[]");
