/* Each command's --help text around the table's rows, its defaults and its checks across
 * options. */
#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "cli/internal.h"
#include "collect/collector.h"
#include "unwind/unwinder.h"
#include "util/log.h"

#define SERVE_MAX_SECONDS                                                                          \
	3600.0		     /* an hour: no HTTP client waits longer; a typo cannot pin a
				  * BPF attachment for days */
#define SERVE_MAX_CAPTURES 4 /* captures of one type and options share BPF programs */

/* Where compiled unwind tables are kept across runs (unwind/cache.h), and its bound. */
#define UNWIND_CACHE_DIR  "/var/cache/cprof-bpf/unwind"
#define UNWIND_CACHE_SIZE (256ull << 20)

static void record_defaults(struct cli_opts *o)
{
	o->type = "cpu";
	o->freq = 99;
	o->top_rows = 20;
	o->demangle = true;
	o->unwind = CPROF_UNWIND_AUTO;
	o->unwind_cache = UNWIND_CACHE_DIR;
	o->unwind_cache_size = UNWIND_CACHE_SIZE;
	o->min_wait_us = -1;
	o->min_block_us = -1;
}

static void serve_defaults(struct cli_opts *o)
{
	record_defaults(o);
	o->listen = "127.0.0.1:6060";
	o->max_captures = SERVE_MAX_CAPTURES;
	o->max_seconds = SERVE_MAX_SECONDS;
}

static void agent_defaults(struct cli_opts *o)
{
	o->interval = 10;
	o->freq = 19;
	o->out_dir = "/var/lib/cprof-bpf";
	o->max_age = 86400;
	o->max_size = 1ull << 30;
	o->min_free = 5 | (1ull << 63);
	o->push_timeout = 10;
	o->queue_max_size = 256ull << 20;
	o->retry_max = 60;
	o->trigger_duration = 10;
	o->trigger_cooldown = 300;
	o->trigger_warmup = 10;
	o->trigger_check = 2;
	o->trigger_freq = 99;
	o->max_rss = 200ull << 20;
	/* Complete stacks of binaries built without frame pointers (most distribution packages):
	 * tables, but only for executables that are sampled, once per file, within --unwind-cpu
	 * and --unwind-mem. */
	o->unwind = CPROF_UNWIND_AUTO;
	o->unwind_cpu = UNWINDER_DEFAULT_CPU_PCT;
	o->unwind_cache = UNWIND_CACHE_DIR;
	o->unwind_cache_size = UNWIND_CACHE_SIZE;
	o->demangle = true;
	o->min_wait_us = -1;
	o->min_block_us = -1;
}

static void watch_defaults(struct cli_opts *o)
{
	agent_defaults(o);
	o->watch = true;
	o->out_dir = ".";
}

uint64_t cli__min_wait_ns(const struct cli_opts *o, const char *type)
{
	const struct collector_ops *ops = collector__find(type);
	long us = -1;

	if (ops && ops == collector__find("mutex"))
		us = o->min_wait_us;
	else if (ops && ops == collector__find("offcpu"))
		us = o->min_block_us;
	return us > 0 ? (uint64_t)us * 1000 : 0;
}

/* A per-type option (the table's type) given with another -t. */
static int check_types(const struct cli_opts *o)
{
	const struct collector_ops *type = collector__find(o->type);

	for (size_t i = 0; i < cli__noptions; i++) {
		const struct cli_option *opt = &cli__options[i];

		if (o->given[i] && opt->type && collector__find(opt->type) != type) {
			pr_err("--%s applies to -t %s\n", opt->name, opt->type);
			return -EINVAL;
		}
	}
	return 0;
}

static int record_check(struct cli_opts *o, int argc, char **argv)
{
	bool threads = collector__find(o->type) == collector__find("threads");
	int ntargets;

	if (optind < argc) {
		if (strcmp(argv[optind - 1], "--") != 0) {
			pr_err("unexpected argument '%s' (a command goes after --)\n",
			       argv[optind]);
			return -EINVAL;
		}
		o->cmd = &argv[optind];
	}
	if ((o->format == FORMAT_TEXT || o->format == FORMAT_GROUPED) && !threads) {
		pr_err("--format text and grouped apply to -t threads\n");
		return -EINVAL;
	}
	if (threads && (o->cmd || o->duration > 0)) {
		pr_err("-t threads is a snapshot of running processes: -p or -a, no -d or CMD\n");
		return -EINVAL;
	}
	if (check_types(o))
		return -EINVAL;
	if (o->heap_alloc_only && o->heap_max_live) {
		pr_err("--heap-max-live has no use with --heap-alloc-only (no block is tracked "
		       "until freed)\n");
		return -EINVAL;
	}
	ntargets = (o->npids > 0) + o->all + (o->cmd != NULL);
	if (ntargets != 1) {
		pr_err(ntargets ? "choose one target: -p, -a or -- CMD\n"
				: "no target: give -p PID, -a or -- CMD (see --help)\n");
		return -EINVAL;
	}
	return 0;
}

static int serve_check(struct cli_opts *o, int argc, char **argv)
{
	if (optind < argc) {
		pr_err("unexpected argument '%s'; see serve --help\n", argv[optind]);
		return -EINVAL;
	}
	if (!o->tls_cert != !o->tls_key) {
		pr_err("--tls-cert and --tls-key go together\n");
		return -EINVAL;
	}
	return 0;
}

static int agent_check(struct cli_opts *o, int argc, char **argv)
{
	if (optind < argc) {
		pr_err("unexpected argument '%s'; see --help\n", argv[optind]);
		return -EINVAL;
	}
	if (o->watch && (!o->npids || !o->nrules)) {
		pr_err("watch needs -p PID and at least one --trigger RULE (see --help)\n");
		return -EINVAL;
	}
	if (o->no_store && !o->push_url && !o->watch) {
		pr_err("--no-store without --push keeps nothing\n");
		return -EINVAL;
	}
	if ((o->basic_auth || o->bearer_token || o->tenant || o->app_name) && !o->push_url) {
		pr_err("push options need --push URL\n");
		return -EINVAL;
	}
	if (o->basic_auth && o->bearer_token) {
		pr_err("choose one of --basic-auth-file and --bearer-token-file\n");
		return -EINVAL;
	}
	return 0;
}

static const char record_usage[] =
	"Usage: cprof-bpf [record] (-p PID[,PID...] | -a | -- CMD [ARGS...]) [options]\n"
	"       cprof-bpf serve [--listen HOST:PORT] [...]   (see serve --help)\n"
	"       cprof-bpf agent [...], cprof-bpf watch -p PID --trigger RULE [...]\n"
	"       cprof-bpf --help | --version\n"
	"\n"
	"Profiles running processes with eBPF and writes a pprof profile (go tool pprof).\n";

static const char record_footer[] =
	"\n"
	"Examples:\n"
	"  sudo cprof-bpf -p 1234 -d 30 -o cpu.pb.gz && go tool pprof -top cpu.pb.gz\n"
	"  sudo cprof-bpf -a -d 10 --format top\n"
	"  sudo cprof-bpf -t heap -p 1234 -d 30 -o heap.pb.gz\n"
	"  sudo cprof-bpf -F 999 -o - -- ./my-benchmark --iterations 100 > cpu.pb.gz\n"
	"  sudo cprof-bpf -p 1234 -d 5 --format folded | flamegraph.pl > cpu.svg\n"
	"  sudo cprof-bpf -t mutex -p 1234 -d 30 -o mutex.pb.gz\n"
	"  sudo cprof-bpf -t offcpu -a -d 10 --min-block 1000 --format top\n"
	"  sudo cprof-bpf -t mutex --mutex-fraction 100 -p 1234 -d 30 -o mutex.pb.gz\n"
	"  sudo cprof-bpf -t threadcreate -p 1234 -d 10 --format top\n"
	"\n"
	"Exit status: 0 ok, 1 runtime failure, 2 usage error; 127 (CMD not found) or 126 (CMD\n"
	"not executable) when -- CMD cannot be run, as a shell says.\n";

static const char serve_usage[] =
	"Usage: cprof-bpf serve [--listen HOST:PORT] [--token-file F] [--tls-cert F --tls-key F]\n"
	"                       [options]\n"
	"\n"
	"Serves net/http/pprof's URLs for every process on this machine, and a flame graph page.\n"
	"The capture options are the defaults of every request; those with a query parameter\n"
	"(\"a request: NAME=\") may be set per request.\n"
	"\n";

static const char serve_footer[] =
	"\n"
	"Routes: /debug/pprof/ (index), "
	"/debug/pprof/{profile,heap,allocs,mutex,block}?pid=N&seconds=S,\n"
	"/debug/pprof/flamegraph?pid=N&seconds=S&type=T, /debug/pprof/symbol, "
	"/debug/pprof/cmdline,\n"
	"/metrics, /healthz.\n"
	"\n"
	"Examples:\n"
	"  sudo cprof-bpf serve --listen 127.0.0.1:6060\n"
	"  go tool pprof 'http://127.0.0.1:6060/debug/pprof/profile?pid=1234&seconds=10'\n"
	"  xdg-open 'http://127.0.0.1:6060/debug/pprof/flamegraph?pid=1234&seconds=10'\n";

static const char agent_usage[] =
	"Usage: cprof-bpf agent [options]\n"
	"\n"
	"Profiles the whole system continuously at a low rate, one pprof profile per window,\n"
	"stored in --out-dir and/or pushed to Pyroscope; rules (--trigger) start full-rate\n"
	"captures of a process that spikes. SIGTERM writes the current window and exits.\n"
	"\n";

static const char agent_footer[] =
	"\n"
	"Examples:\n"
	"  sudo cprof-bpf agent --out-dir /var/lib/cprof-bpf\n"
	"  sudo cprof-bpf agent --push http://pyroscope:4040 --label env=prod\n"
	"  sudo cprof-bpf agent --trigger 'cpu>90' --trigger 'rss>3x' --listen 127.0.0.1:6061\n"
	"\n"
	"Exit status: 0 ok, 1 runtime failure, 2 usage error.\n";

static const char watch_usage[] =
	"Usage: cprof-bpf watch -p PID[,PID...] --trigger RULE [--trigger RULE...] [options]\n"
	"\n"
	"Runs only the triggers of `cprof-bpf agent`, for the given processes: when a rule\n"
	"fires, a full-rate CPU profile of that process is captured and stored in --out-dir\n"
	"and/or pushed.\n"
	"\n";

static const char watch_footer[] =
	"\n"
	"Example:\n"
	"  sudo cprof-bpf watch -p 1234 --trigger 'cpu>2x' --trigger 'rss>1G' -o /tmp/prof\n"
	"\n"
	"Exit status: 0 ok, 1 runtime failure, 2 usage error.\n";

const struct cli_command cli__commands[CLI_NCMDS] = {
	[CLI_RECORD] = {"record",
			"--help",
			true,
			record_usage,
			record_footer,
			{{CLI_SEC_TARGET, "\nTargets:"},
			 {CLI_SEC_CAPTURE, "\nOptions:"},
			 {CLI_SEC_GENERAL, NULL}},
			3,
			record_defaults,
			record_check},
	[CLI_SERVE] = {"serve",
		       "serve --help",
		       false,
		       serve_usage,
		       serve_footer,
		       {{CLI_SEC_SERVER, NULL},
			{CLI_SEC_CAPTURE, "Capture options:"},
			{CLI_SEC_GENERAL, NULL}},
		       3,
		       serve_defaults,
		       serve_check},
	[CLI_AGENT] = {"agent",
		       "--help",
		       false,
		       agent_usage,
		       agent_footer,
		       {{CLI_SEC_CAPTURE, "Windows:"},
			{CLI_SEC_STORE, "Store:"},
			{CLI_SEC_PUSH, "Push (Pyroscope):"},
			{CLI_SEC_TRIGGER, "Triggers:"},
			{CLI_SEC_TARGET, NULL},
			{CLI_SEC_OPS, "Operations:"},
			{CLI_SEC_GENERAL, NULL}},
		       7,
		       agent_defaults,
		       agent_check},
	[CLI_WATCH] = {"watch",
		       "--help",
		       false,
		       watch_usage,
		       watch_footer,
		       {{CLI_SEC_TARGET, NULL},
			{CLI_SEC_TRIGGER, "Triggers:"},
			{CLI_SEC_CAPTURE, "Captures:"},
			{CLI_SEC_STORE, "Store:"},
			{CLI_SEC_PUSH, "Push (Pyroscope):"},
			{CLI_SEC_OPS, "Operations:"},
			{CLI_SEC_GENERAL, NULL}},
		       7,
		       watch_defaults,
		       agent_check},
};
