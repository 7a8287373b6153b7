#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/options.h"
#include "cli.h"
#include <linux/types.h>

#include "cprof.h"
#include "unwind.h"
#include "util/log.h"
#include "unwind/unwinder.h"

#define MAX_SECONDS 31536000.0 /* one year */

static const char agent_usage[] =
	"Usage: cprof-bpf agent [options]\n"
	"\n"
	"Profiles the whole system continuously at a low rate, one pprof profile per window,\n"
	"stored in --out-dir and/or pushed to Pyroscope; rules (--trigger) start full-rate\n"
	"captures of a process that spikes. SIGTERM writes the current window and exits.\n"
	"\n"
	"Windows:\n"
	"  -i, --interval SECONDS   window length (default 10)\n"
	"  -F, --freq HZ            samples per second per CPU, 1-1000 (default 19)\n"
	"  -l, --label KEY=VALUE    add a label to every sample and push (up to 6)\n"
	"      --host NAME          host label (default: the host name)\n"
	"  -d, --duration SECONDS   stop after SECONDS (default: until SIGTERM)\n"
	"      --max-stacks N       distinct stacks kept in BPF per window (default 16384)\n"
	"      --no-kernel          user stacks only\n"
	"      --unwind MODE        user stacks of the windows: auto (default: .eh_frame tables\n"
	"                           where built, frame pointers elsewhere), fp or dwarf\n"
	"      --unwind-mem SIZE    memory for unwind tables, 64K-64G (plain numbers: MiB)\n"
	"      --unwind-cpu PCT     CPU for building tables, percent of one core (default 1;\n"
	"                           0 = no limit); what waits is walked with frame pointers\n"
	"Store:\n"
	"  -o, --out-dir DIR        where windows go (default /var/lib/cprof-bpf)\n"
	"      --no-store           do not keep windows locally (push only)\n"
	"      --max-age AGE        delete windows older than AGE (default 24h; 0 = never)\n"
	"      --max-size SIZE      keep at most SIZE bytes of windows (default 1G)\n"
	"      --min-free SIZE|PCT  never let the file system go below this free (default 5%)\n"
	"Push (Pyroscope):\n"
	"      --push URL           Pyroscope server, e.g. http://pyroscope:4040\n"
	"      --app-name NAME      service name of every push (default: the service_name\n"
	"                           label, else each process's executable name)\n"
	"      --tenant ID          X-Scope-OrgID header (multi-tenant servers)\n"
	"      --basic-auth-file F  a file holding USER:PASSWORD\n"
	"      --bearer-token-file F a file holding a bearer token\n"
	"      --push-timeout S     per request (default 10)\n"
	"      --queue-max-size SIZE pushes kept on disk while the server is away (default 256M)\n"
	"      --retry-max S        longest wait between retries (default 60)\n"
	"Triggers:\n"
	"      --trigger RULE       cpu>80 (percent of a core), rss>512M, threads>200, or a spike\n"
	"                           against the moving average: cpu>3x, rss>2x, threads>2x\n"
	"      --trigger-pid PID[,PID...]  watch only these processes (default: all)\n"
	"      --trigger-duration S full-rate capture length (default 10)\n"
	"      --trigger-freq HZ    rate of the capture (default 99)\n"
	"      --trigger-cooldown S the same rule fires again for a process after S (default 300)\n"
	"      --trigger-warmup N   checks before a spike rule may fire (default 10)\n"
	"      --trigger-check S    seconds between checks (default 2)\n"
	"Operations:\n"
	"      --listen ADDR:PORT   serve /metrics and /healthz over HTTP (port 0: any free)\n"
	"      --listen-token-file F /metrics needs the token in F (Bearer); /healthz is open\n"
	"      --max-rss SIZE       drop the symbol caches above this RSS (default 200M)\n"
	"  -v, --verbose            more messages (-vv: debug)\n"
	"  -q, --quiet              errors only\n"
	"  -h, --help               this help\n"
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
	"Runs only the triggers, for the given processes: when a rule fires, a full-rate CPU\n"
	"profile of that process is captured and stored in --out-dir (default .) and/or pushed.\n"
	"Takes the store, push and trigger options of `cprof-bpf agent` (see agent --help).\n"
	"\n"
	"Example:\n"
	"  sudo cprof-bpf watch -p 1234 --trigger 'cpu>2x' --trigger 'rss>1G' -o /tmp/prof\n";

enum {
	OPT_HOST = 0x100,
	OPT_MAX_STACKS,
	OPT_NO_KERNEL,
	OPT_UNWIND,
	OPT_UNWIND_MEM,
	OPT_UNWIND_CPU,
	OPT_NO_STORE,
	OPT_MAX_AGE,
	OPT_MAX_SIZE,
	OPT_MIN_FREE,
	OPT_PUSH,
	OPT_APP,
	OPT_TENANT,
	OPT_BASIC,
	OPT_BEARER,
	OPT_PUSH_TIMEOUT,
	OPT_QUEUE_MAX,
	OPT_RETRY_MAX,
	OPT_TRIGGER,
	OPT_TRIGGER_PID,
	OPT_TRIGGER_DURATION,
	OPT_TRIGGER_FREQ,
	OPT_TRIGGER_COOLDOWN,
	OPT_TRIGGER_WARMUP,
	OPT_TRIGGER_CHECK,
	OPT_LISTEN,
	OPT_LISTEN_TOKEN,
	OPT_MAX_RSS,
};

static const struct option long_opts[] = {
	{"interval", required_argument, NULL, 'i'},
	{"freq", required_argument, NULL, 'F'},
	{"label", required_argument, NULL, 'l'},
	{"host", required_argument, NULL, OPT_HOST},
	{"duration", required_argument, NULL, 'd'},
	{"max-stacks", required_argument, NULL, OPT_MAX_STACKS},
	{"no-kernel", no_argument, NULL, OPT_NO_KERNEL},
	{"unwind", required_argument, NULL, OPT_UNWIND},
	{"unwind-mem", required_argument, NULL, OPT_UNWIND_MEM},
	{"unwind-cpu", required_argument, NULL, OPT_UNWIND_CPU},
	{"out-dir", required_argument, NULL, 'o'},
	{"no-store", no_argument, NULL, OPT_NO_STORE},
	{"max-age", required_argument, NULL, OPT_MAX_AGE},
	{"max-size", required_argument, NULL, OPT_MAX_SIZE},
	{"min-free", required_argument, NULL, OPT_MIN_FREE},
	{"push", required_argument, NULL, OPT_PUSH},
	{"app-name", required_argument, NULL, OPT_APP},
	{"tenant", required_argument, NULL, OPT_TENANT},
	{"basic-auth-file", required_argument, NULL, OPT_BASIC},
	{"bearer-token-file", required_argument, NULL, OPT_BEARER},
	{"push-timeout", required_argument, NULL, OPT_PUSH_TIMEOUT},
	{"queue-max-size", required_argument, NULL, OPT_QUEUE_MAX},
	{"retry-max", required_argument, NULL, OPT_RETRY_MAX},
	{"trigger", required_argument, NULL, OPT_TRIGGER},
	{"trigger-pid", required_argument, NULL, OPT_TRIGGER_PID},
	{"pid", required_argument, NULL, 'p'},
	{"trigger-duration", required_argument, NULL, OPT_TRIGGER_DURATION},
	{"trigger-freq", required_argument, NULL, OPT_TRIGGER_FREQ},
	{"trigger-cooldown", required_argument, NULL, OPT_TRIGGER_COOLDOWN},
	{"trigger-warmup", required_argument, NULL, OPT_TRIGGER_WARMUP},
	{"trigger-check", required_argument, NULL, OPT_TRIGGER_CHECK},
	{"listen", required_argument, NULL, OPT_LISTEN},
	{"listen-token-file", required_argument, NULL, OPT_LISTEN_TOKEN},
	{"max-rss", required_argument, NULL, OPT_MAX_RSS},
	{"verbose", no_argument, NULL, 'v'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{},
};

int agent_opts__parse_duration(const char *s, double *out)
{
	char *end;
	double v, mul = 1;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
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
	if (v * mul > MAX_SECONDS)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

/* Reads a secret from a file (first line), so it is not in the command line for all to see. */
static int read_secret(const char *path, char **out)
{
	char buf[4096];
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f) {
		pr_err("cannot read %s: %s\n", path, strerror(errno));
		return -EINVAL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	if (!buf[0]) {
		pr_err("%s is empty\n", path);
		return -EINVAL;
	}
	free(*out);
	*out = strdup(buf);
	return *out ? 0 : -ENOMEM;
}

static int parse_label(const char *arg, struct agent_opts *o)
{
	const char *eq = strchr(arg, '=');
	size_t klen = eq ? (size_t)(eq - arg) : 0;

	if (!eq || !klen || !eq[1]) {
		pr_err("invalid --label '%s': expected KEY=VALUE\n", arg);
		return -EINVAL;
	}
	for (size_t i = 0; i < klen; i++) {
		char c = arg[i];

		if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (i && c >= '0' && c <= '9'))) {
			pr_err("invalid --label key '%.*s': letters, digits and _ only\n",
			       (int)klen, arg);
			return -EINVAL;
		}
	}
	if (o->nlabels >= AGENT_MAX_LABELS) {
		pr_err("too many --label (at most %d)\n", AGENT_MAX_LABELS);
		return -EINVAL;
	}
	o->labels[o->nlabels].key = strndup(arg, klen);
	o->labels[o->nlabels].value = strdup(eq + 1);
	if (!o->labels[o->nlabels].key || !o->labels[o->nlabels].value)
		return -ENOMEM;
	o->nlabels++;
	return 0;
}

static int bad(const char *what, const char *arg, const char *expected)
{
	pr_err("invalid %s '%s': expected %s\n", what, arg, expected);
	return -EINVAL;
}

static int parse_min_free(const char *arg, struct agent_opts *o)
{
	size_t n = strlen(arg);
	long pct;
	char buf[16];

	if (n && arg[n - 1] == '%') {
		if (n >= sizeof(buf))
			return bad("--min-free", arg, "bytes or a percentage");
		memcpy(buf, arg, n - 1);
		buf[n - 1] = 0;
		if (cli__parse_long(buf, 0, 99, &pct))
			return bad("--min-free", arg, "0% to 99%");
		o->min_free = (uint64_t)pct | (1ull << 63); /* resolved against the fs later */
		return 0;
	}
	if (cli__parse_size(arg, 1, &o->min_free) || (o->min_free >> 63))
		return bad("--min-free", arg, "bytes (512M) or a percentage (5%)");
	return 0;
}

static int parse_one(int opt, const char *arg, void *ctx)
{
	struct agent_opts *o = ctx;
	uint64_t size;
	long v;

	switch (opt) {
	case 'i':
		if (cli__parse_seconds(arg, 0.1, 86400, &o->interval))
			return bad("--interval", arg, "seconds from 0.1 to 86400");
		return 0;
	case 'F':
		if (cli__parse_long(arg, 1, 1000, &v))
			return bad("--freq", arg, "1 to 1000 Hz");
		o->freq = (int)v;
		return 0;
	case 'l':
		return parse_label(arg, o);
	case OPT_HOST:
		o->host = arg;
		return 0;
	case 'd':
		if (cli__parse_seconds(arg, 0.001, MAX_SECONDS, &o->duration))
			return bad("--duration", arg, "seconds, more than 0");
		return 0;
	case OPT_MAX_STACKS:
		if (cli__parse_long(arg, 64, 1048576, &v))
			return bad("--max-stacks", arg, "64 to 1048576");
		o->max_keys = (uint32_t)v;
		return 0;
	case OPT_NO_KERNEL:
		o->no_kernel = true;
		return 0;
	case OPT_UNWIND:
		if (!strcmp(arg, "auto"))
			o->unwind = CPROF_UNWIND_AUTO;
		else if (!strcmp(arg, "fp"))
			o->unwind = CPROF_UNWIND_FP;
		else if (!strcmp(arg, "dwarf"))
			o->unwind = CPROF_UNWIND_DWARF;
		else
			return bad("--unwind", arg, "auto, fp or dwarf");
		return 0;
	case OPT_UNWIND_MEM: {
		size_t n = strlen(arg);
		bool plain = n && arg[n - 1] >= '0' && arg[n - 1] <= '9';

		if (cli__parse_size(arg, 1, &size))
			return bad("--unwind-mem", arg, "64K to 64G");
		if (plain)
			size <<= 20;
		if (size < (64ull << 10) || size > (64ull << 30))
			return bad("--unwind-mem", arg, "64K to 64G");
		o->unwind_mem = size;
		return 0;
	}
	case OPT_UNWIND_CPU:
		if (cli__parse_seconds(arg, 0, 100, &o->unwind_cpu))
			return bad("--unwind-cpu", arg, "a percentage of one core, 0 to 100");
		return 0;
	case 'o':
		o->out_dir = arg;
		return 0;
	case OPT_NO_STORE:
		o->no_store = true;
		return 0;
	case OPT_MAX_AGE:
		if (agent_opts__parse_duration(arg, &o->max_age))
			return bad("--max-age", arg, "a duration like 3600, 90m, 24h, 7d");
		return 0;
	case OPT_MAX_SIZE:
		if (cli__parse_size(arg, 1, &o->max_size))
			return bad("--max-size", arg, "bytes like 1048576, 512M, 2G");
		return 0;
	case OPT_MIN_FREE:
		return parse_min_free(arg, o);
	case OPT_PUSH:
		if (strncmp(arg, "http://", 7) && strncmp(arg, "https://", 8))
			return bad("--push", arg, "an http:// or https:// URL");
		o->push_url = arg;
		return 0;
	case OPT_APP:
		o->app_name = arg;
		return 0;
	case OPT_TENANT:
		o->tenant = arg;
		return 0;
	case OPT_BASIC:
		if (read_secret(arg, &o->basic_auth))
			return -EINVAL;
		if (!strchr(o->basic_auth, ':'))
			return bad("--basic-auth-file", arg, "a file holding USER:PASSWORD");
		return 0;
	case OPT_BEARER:
		return read_secret(arg, &o->bearer_token) ? -EINVAL : 0;
	case OPT_PUSH_TIMEOUT:
		if (cli__parse_seconds(arg, 0.1, 600, &o->push_timeout))
			return bad("--push-timeout", arg, "seconds from 0.1 to 600");
		return 0;
	case OPT_QUEUE_MAX:
		if (cli__parse_size(arg, 1, &size) || size < 4096)
			return bad("--queue-max-size", arg, "bytes, at least 4096");
		o->queue_max_size = size;
		return 0;
	case OPT_RETRY_MAX:
		if (cli__parse_seconds(arg, 0.1, 86400, &o->retry_max))
			return bad("--retry-max", arg, "seconds from 0.1 to 86400");
		return 0;
	case OPT_TRIGGER:
		if (o->nrules >= TRIGGER_MAX_RULES) {
			pr_err("too many --trigger (at most %d)\n", TRIGGER_MAX_RULES);
			return -EINVAL;
		}
		if (trigger_rule__parse(arg, &o->rules[o->nrules]))
			return bad("--trigger", arg,
				   "cpu>PCT, rss>SIZE, threads>N, or METRIC>FACTORx");
		o->nrules++;
		return 0;
	case 'p':
	case OPT_TRIGGER_PID:
		return cli__parse_pids(arg, SIZE_MAX, &o->pids, &o->npids);
	case OPT_TRIGGER_DURATION:
		if (cli__parse_seconds(arg, 0.1, 3600, &o->trigger_duration))
			return bad("--trigger-duration", arg, "seconds from 0.1 to 3600");
		return 0;
	case OPT_TRIGGER_FREQ:
		if (cli__parse_long(arg, 1, 10000, &v))
			return bad("--trigger-freq", arg, "1 to 10000 Hz");
		o->trigger_freq = (int)v;
		return 0;
	case OPT_TRIGGER_COOLDOWN:
		if (cli__parse_seconds(arg, 0, 86400, &o->trigger_cooldown))
			return bad("--trigger-cooldown", arg, "seconds from 0 to 86400");
		return 0;
	case OPT_TRIGGER_WARMUP:
		if (cli__parse_long(arg, 1, 100000, &v))
			return bad("--trigger-warmup", arg, "1 to 100000 checks");
		o->trigger_warmup = (int)v;
		return 0;
	case OPT_TRIGGER_CHECK:
		if (cli__parse_seconds(arg, 0.1, 3600, &o->trigger_check))
			return bad("--trigger-check", arg, "seconds from 0.1 to 3600");
		return 0;
	case OPT_LISTEN:
		if (!strrchr(arg, ':'))
			return bad("--listen", arg, "ADDR:PORT");
		o->listen = arg;
		return 0;
	case OPT_LISTEN_TOKEN:
		o->listen_token = arg;
		return 0;
	case OPT_MAX_RSS:
		if (cli__parse_size(arg, 1, &o->max_rss) || o->max_rss < (16 << 20))
			return bad("--max-rss", arg, "bytes, at least 16M");
		return 0;
	case 'v':
		log_verbosity++;
		return 0;
	case 'q':
		log_verbosity = LOG_ERROR;
		return 0;
	default:
		return -EINVAL;
	}
}

int agent_opts__parse(int argc, char **argv, bool watch, struct agent_opts *o)
{
	int err;

	memset(o, 0, sizeof(*o));
	o->watch = watch;
	o->interval = 10;
	o->freq = 19;
	o->out_dir = watch ? "." : "/var/lib/cprof-bpf";
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
	err = cli__getopt(argc, argv, "i:F:l:d:o:p:vqh", long_opts,
			  watch ? watch_usage : agent_usage, "--help", parse_one, o);
	if (err)
		return err;
	if (optind < argc) {
		pr_err("unexpected argument '%s'; see --help\n", argv[optind]);
		return -EINVAL;
	}
	if (watch && (!o->npids || !o->nrules)) {
		pr_err("watch needs -p PID and at least one --trigger RULE (see --help)\n");
		return -EINVAL;
	}
	if (o->no_store && !o->push_url && !watch) {
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

void agent_opts__free(struct agent_opts *o)
{
	for (int i = 0; i < o->nlabels; i++) {
		free(o->labels[i].key);
		free(o->labels[i].value);
	}
	o->nlabels = 0;
	free(o->pids);
	o->pids = NULL;
	free(o->basic_auth);
	free(o->bearer_token);
	o->basic_auth = o->bearer_token = NULL;
}
