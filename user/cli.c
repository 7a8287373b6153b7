#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "collect/collector.h"
#include "util/log.h"

#define MAX_FREQ     10000	/* Hz; more costs more than it tells */
#define MAX_DURATION 31536000.0 /* one year, in seconds */
/* serve: the longest capture a request may ask for unless --max-seconds says otherwise. An hour
 * is longer than anyone waits on an HTTP request, short enough that a typo cannot pin a BPF
 * attachment for days. */
#define SERVE_MAX_SECONDS  3600.0
#define SERVE_MAX_CAPTURES 4 /* captures of one type and options share BPF programs */

static const char usage[] =
	"Usage: cprof-bpf [record] (-p PID[,PID...] | -a | -- CMD [ARGS...]) [options]\n"
	"       cprof-bpf serve [--listen HOST:PORT] [...]   (see serve --help)\n"
	"       cprof-bpf --help | --version\n"
	"\n"
	"Profiles running processes with eBPF and writes a pprof profile (go tool pprof).\n"
	"\n"
	"Targets:\n"
	"  -p, --pid PID[,PID...]   profile these processes (all their threads)\n"
	"  -a, --all                profile the whole system (idle excluded)\n"
	"  -- CMD [ARGS...]         run CMD and profile it (and its children) until it exits\n"
	"\n"
	"Options:\n"
	"  -t, --type TYPE          profile type: cpu (default), heap, mutex (lock\n"
	"                           contention), offcpu or block (time off the CPU),\n"
	"                           wall or cpu,offcpu (on- and off-CPU time in one profile),\n"
	"                           threadcreate (the stacks that create threads),\n"
	"                           threads or goroutine (a snapshot of every thread now:\n"
	"                           returns at once, no -d)\n"
	"  -d, --duration SECONDS   stop after SECONDS (default: until Ctrl-C or the target "
	"exits)\n"
	"  -F, --freq HZ            cpu samples per second per CPU, 1-10000 (default 99)\n"
	"  -o, --output FILE        output file; - for stdout (default: TYPE.pb.gz for pprof,\n"
	"                           stdout for folded and top). A regular file is replaced\n"
	"                           at the end; a device or FIFO is written in place; a\n"
	"                           symlink is followed\n"
	"  -f, --format FMT         pprof (default), folded (flame graph input), top (table);\n"
	"                           threads: text (a block per thread, as Go's goroutine\n"
	"                           dump) or grouped (identical stacks counted)\n"
	"      --top N              rows of --format top (default 20; 0 = all)\n"
	"      --max-stacks N       distinct stacks kept in BPF, 64-1048576 (default 16384)\n"
	"      --no-kernel          user stacks only\n"
	"      --heap-sample-bytes N  heap: sample one allocation per N bytes on average\n"
	"                           (default 524288, as Go; 1 = every allocation)\n"
	"      --heap-max-live N    heap: sampled blocks tracked until freed (default 262144)\n"
	"      --heap-alloc-only    heap: allocations only (alloc_*; no free probes, no inuse_*)\n"
	"      --min-wait USEC      mutex: count only waits of at least USEC microseconds\n"
	"      --min-block USEC     offcpu: count only off-CPU intervals of at least USEC\n"
	"      --mutex-fraction N   mutex: keep about 1 lock wait in N, values scaled by N\n"
	"      --block-rate NS      offcpu: keep an interval of d ns with probability\n"
	"                           min(1, d/NS), values scaled (Go's block profile rate)\n"
	"      --demangle MODE      full (default) or none\n"
	"      --debug-dir DIR      root of separate debug files (default /usr/lib/debug)\n"
	"      --unwind MODE        user stacks: auto (default: .eh_frame tables, frame\n"
	"                           pointers where none), fp (frame pointers), dwarf (tables "
	"only)\n"
	"      --unwind-mem SIZE    memory for unwind tables: 64K-64G, plain numbers are MiB\n"
	"                           (default 128M); executables beyond it use frame pointers\n"
	"  -v, --verbose            more messages (-vv: debug, libbpf too)\n"
	"  -q, --quiet              errors only\n"
	"  -h, --help               this help\n"
	"  -V, --version            the version\n"
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

int cli__parse_size(const char *s, uint64_t plain_unit, uint64_t *out)
{
	char *end;
	double v;
	double mul = (double)plain_unit;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
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

/* "invalid WHAT 'ARG': out of range|not a number, expected RANGE" on one line. */
static int bad_value(const char *what, const char *arg, int err, const char *range, const char *nan)
{
	pr_err("invalid %s '%s': %s, expected %s\n", what, arg,
	       err == -ERANGE ? "out of range" : nan, range);
	return -EINVAL;
}

static int bad_number(const char *what, const char *arg, int err, const char *range)
{
	return bad_value(what, arg, err, range, "not a number");
}

static int bad_integer(const char *what, const char *arg, int err, const char *range)
{
	return bad_value(what, arg, err, range, "not an integer");
}

int cli__parse_pids(const char *arg, size_t max, pid_t **out, size_t *n)
{
	char *copy = strdup(arg), *tok, *save = NULL;
	pid_t *pids;
	long v;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if ((err = cli__parse_long(tok, 1, 4194304, &v))) {
			bad_integer("pid", tok, err, "1 to 4194304");
			err = -EINVAL;
			break;
		}
		if (*n >= max) {
			pr_err("too many pids (at most %zu)\n", max);
			err = -EINVAL;
			break;
		}
		pids = realloc(*out, (*n + 1) * sizeof(*pids));
		if (!pids) {
			err = -ENOMEM;
			break;
		}
		*out = pids;
		pids[(*n)++] = (pid_t)v;
	}
	free(copy);
	if (!err && *n == 0) {
		pr_err("-p needs at least one pid\n");
		err = -EINVAL;
	}
	return err;
}

enum {
	OPT_TOP = 0x100,
	OPT_MAX_STACKS,
	OPT_NO_KERNEL,
	OPT_DEMANGLE,
	OPT_HEAP_SAMPLE_BYTES,
	OPT_HEAP_MAX_LIVE,
	OPT_HEAP_ALLOC_ONLY,
	OPT_DEBUG_DIR,
	OPT_UNWIND,
	OPT_UNWIND_MEM,
	OPT_MIN_WAIT,
	OPT_MIN_BLOCK,
	OPT_MUTEX_FRACTION,
	OPT_BLOCK_RATE,
};

#define MAX_MIN_WAIT_US 3600000000l /* an hour */

static const struct option long_opts[] = {
	{"pid", required_argument, NULL, 'p'},
	{"all", no_argument, NULL, 'a'},
	{"type", required_argument, NULL, 't'},
	{"duration", required_argument, NULL, 'd'},
	{"freq", required_argument, NULL, 'F'},
	{"output", required_argument, NULL, 'o'},
	{"format", required_argument, NULL, 'f'},
	{"top", required_argument, NULL, OPT_TOP},
	{"max-stacks", required_argument, NULL, OPT_MAX_STACKS},
	{"no-kernel", no_argument, NULL, OPT_NO_KERNEL},
	{"demangle", required_argument, NULL, OPT_DEMANGLE},
	{"heap-sample-bytes", required_argument, NULL, OPT_HEAP_SAMPLE_BYTES},
	{"heap-max-live", required_argument, NULL, OPT_HEAP_MAX_LIVE},
	{"heap-alloc-only", no_argument, NULL, OPT_HEAP_ALLOC_ONLY},
	{"debug-dir", required_argument, NULL, OPT_DEBUG_DIR},
	{"unwind", required_argument, NULL, OPT_UNWIND},
	{"unwind-mem", required_argument, NULL, OPT_UNWIND_MEM},
	{"min-wait", required_argument, NULL, OPT_MIN_WAIT},
	{"min-block", required_argument, NULL, OPT_MIN_BLOCK},
	{"mutex-fraction", required_argument, NULL, OPT_MUTEX_FRACTION},
	{"block-rate", required_argument, NULL, OPT_BLOCK_RATE},
	{"verbose", no_argument, NULL, 'v'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{},
};

int cli__getopt(int argc, char **argv, const char *shortopts, const struct option *longopts,
		const char *usage_text, const char *help, int (*one)(int, const char *, void *),
		void *ctx)
{
	int opt, err;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(usage_text, stdout);
			return 1;
		case 'V':
			printf("cprof-bpf %s\n", CPROF_VERSION);
			return 1;
		case '?':
			if (optopt)
				pr_err("option -%c needs a value or is unknown; see %s\n", optopt,
				       help);
			else
				pr_err("unknown option '%s'; see %s\n", argv[optind - 1], help);
			return -EINVAL;
		}
		err = one(opt, optarg, ctx);
		if (err)
			return err;
	}
	return 0;
}

int cli__parse_mutex_fraction(const char *s, uint32_t *out)
{
	long v;
	int err = cli__parse_long(s, 1, CLI_MAX_MUTEX_FRACTION, &v);

	if (!err)
		*out = (uint32_t)v;
	return err;
}

int cli__parse_block_rate(const char *s, uint64_t *out)
{
	long v;
	int err = cli__parse_long(s, 1, CLI_MAX_BLOCK_RATE, &v);

	if (!err)
		*out = (uint64_t)v;
	return err;
}

static int parse_one(int opt, const char *arg, void *ctx)
{
	struct record_opts *o = ctx;
	long v;
	int err;

	switch (opt) {
	case 'p':
		return cli__parse_pids(arg, CPROF_MAX_TARGETS, &o->pids, &o->npids);
	case 'a':
		o->all = true;
		return 0;
	case 't':
		if (!collector__find(arg)) {
			pr_err("unknown profile type '%s' (known: %s)\n", arg, collector__names());
			return -EINVAL;
		}
		o->type = arg;
		return 0;
	case 'd':
		if ((err = cli__parse_seconds(arg, 0.001, MAX_DURATION, &o->duration)))
			return bad_number("duration", arg, err,
					  "0.001 to 31536000 seconds (a year)");
		return 0;
	case 'F':
		if ((err = cli__parse_long(arg, 1, MAX_FREQ, &v)))
			return bad_integer("frequency", arg, err, "1 to 10000 Hz");
		o->freq = (int)v;
		return 0;
	case 'o':
		o->output = arg;
		return 0;
	case 'f':
		if (strcmp(arg, "pprof") == 0)
			o->format = FORMAT_PPROF;
		else if (strcmp(arg, "folded") == 0)
			o->format = FORMAT_FOLDED;
		else if (strcmp(arg, "top") == 0)
			o->format = FORMAT_TOP;
		else if (strcmp(arg, "text") == 0)
			o->format = FORMAT_TEXT;
		else if (strcmp(arg, "grouped") == 0)
			o->format = FORMAT_GROUPED;
		else {
			pr_err("unknown format '%s' (known: pprof,folded,top,text,grouped)\n", arg);
			return -EINVAL;
		}
		return 0;
	case OPT_TOP:
		if ((err = cli__parse_long(arg, 0, 1000000, &v)))
			return bad_integer("--top", arg, err, "0 (all) to 1000000 rows");
		o->top_rows = (int)v;
		return 0;
	case OPT_MAX_STACKS:
		if ((err = cli__parse_long(arg, 64, 1048576, &v)))
			return bad_integer("--max-stacks", arg, err, "64 to 1048576");
		o->max_keys = (uint32_t)v;
		return 0;
	case OPT_NO_KERNEL:
		o->no_kernel = true;
		return 0;
	case OPT_DEMANGLE:
		if (strcmp(arg, "full") && strcmp(arg, "none")) {
			pr_err("invalid --demangle '%s' (full or none)\n", arg);
			return -EINVAL;
		}
		o->demangle = strcmp(arg, "full") == 0;
		return 0;
	case OPT_HEAP_SAMPLE_BYTES:
		if ((err = cli__parse_long(arg, 1, 1l << 40, &v)))
			return bad_integer("--heap-sample-bytes", arg, err,
					   "1 to 1099511627776 (1 TiB)");
		o->heap_sample_bytes = (uint64_t)v;
		return 0;
	case OPT_HEAP_MAX_LIVE:
		if ((err = cli__parse_long(arg, 64, 16777216, &v)))
			return bad_integer("--heap-max-live", arg, err, "64 to 16777216");
		o->heap_max_live = (uint32_t)v;
		return 0;
	case OPT_HEAP_ALLOC_ONLY:
		o->heap_alloc_only = true;
		return 0;
	case OPT_DEBUG_DIR:
		if (arg[0] != '/') {
			pr_err("invalid --debug-dir '%s': expected an absolute path\n", arg);
			return -EINVAL;
		}
		o->debug_dir = arg;
		return 0;
	case OPT_UNWIND:
		if (strcmp(arg, "auto") == 0)
			o->unwind = CPROF_UNWIND_AUTO;
		else if (strcmp(arg, "fp") == 0)
			o->unwind = CPROF_UNWIND_FP;
		else if (strcmp(arg, "dwarf") == 0)
			o->unwind = CPROF_UNWIND_DWARF;
		else {
			pr_err("invalid --unwind '%s' (auto, fp or dwarf)\n", arg);
			return -EINVAL;
		}
		return 0;
	case OPT_UNWIND_MEM:
		err = cli__parse_size(arg, 1 << 20, &o->unwind_mem);
		if (!err && (o->unwind_mem < (64ull << 10) || o->unwind_mem > (64ull << 30)))
			err = -ERANGE;
		if (err)
			return bad_number("--unwind-mem", arg, err,
					  "64K to 64G (plain numbers are MiB)");
		return 0;
	case OPT_MIN_WAIT:
	case OPT_MIN_BLOCK:
		if ((err = cli__parse_long(arg, 0, MAX_MIN_WAIT_US, &v))) {
			char range[64];

			snprintf(range, sizeof(range), "0 to %ld microseconds", MAX_MIN_WAIT_US);
			return bad_integer(opt == OPT_MIN_WAIT ? "--min-wait" : "--min-block", arg,
					   err, range);
		}
		*(opt == OPT_MIN_WAIT ? &o->min_wait_us : &o->min_block_us) = v;
		return 0;
	case OPT_MUTEX_FRACTION:
		if ((err = cli__parse_mutex_fraction(arg, &o->mutex_fraction))) {
			char range[64];

			snprintf(range, sizeof(range), "1 to %ld (1 in N lock waits)",
				 CLI_MAX_MUTEX_FRACTION);
			return bad_integer("--mutex-fraction", arg, err, range);
		}
		return 0;
	case OPT_BLOCK_RATE:
		if ((err = cli__parse_block_rate(arg, &o->block_rate_ns))) {
			char range[64];

			snprintf(range, sizeof(range), "1 to %ld nanoseconds", CLI_MAX_BLOCK_RATE);
			return bad_integer("--block-rate", arg, err, range);
		}
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

int cli__parse_record(int argc, char **argv, struct record_opts *o)
{
	int err, ntargets;

	memset(o, 0, sizeof(*o));
	o->type = "cpu";
	o->freq = 99;
	o->top_rows = 20;
	o->demangle = true;
	o->unwind = CPROF_UNWIND_AUTO;
	o->min_wait_us = -1;
	o->min_block_us = -1;
	/* '+': stop at the first non-option, so `-- CMD -x` keeps CMD's own flags. */
	err = cli__getopt(argc, argv, "+p:at:d:F:o:f:vqhV", long_opts, usage, "--help", parse_one,
			  o);
	if (err)
		return err;
	if (optind < argc) {
		if (strcmp(argv[optind - 1], "--") != 0) {
			pr_err("unexpected argument '%s' (a command goes after --)\n",
			       argv[optind]);
			return -EINVAL;
		}
		o->cmd = &argv[optind];
	}
	if ((o->format == FORMAT_TEXT || o->format == FORMAT_GROUPED) &&
	    collector__find(o->type) != collector__find("threads")) {
		pr_err("--format text and grouped apply to -t threads\n");
		return -EINVAL;
	}
	if (collector__find(o->type) == collector__find("threads") && (o->cmd || o->duration > 0)) {
		pr_err("-t threads is a snapshot of running processes: -p or -a, no -d or CMD\n");
		return -EINVAL;
	}
	if (o->min_wait_us >= 0 && collector__find(o->type) != collector__find("mutex")) {
		pr_err("--min-wait applies to -t mutex\n");
		return -EINVAL;
	}
	if (o->min_block_us >= 0 && collector__find(o->type) != collector__find("offcpu")) {
		pr_err("--min-block applies to -t offcpu\n");
		return -EINVAL;
	}
	if (o->mutex_fraction && collector__find(o->type) != collector__find("mutex")) {
		pr_err("--mutex-fraction applies to -t mutex\n");
		return -EINVAL;
	}
	if (o->block_rate_ns && collector__find(o->type) != collector__find("offcpu")) {
		pr_err("--block-rate applies to -t offcpu (block)\n");
		return -EINVAL;
	}
	if (o->heap_alloc_only && collector__find(o->type) != collector__find("heap")) {
		pr_err("--heap-alloc-only applies to -t heap\n");
		return -EINVAL;
	}
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

void cli__free_record(struct record_opts *o)
{
	free(o->pids);
	o->pids = NULL;
}

static const char serve_usage[] =
	"Usage: cprof-bpf serve [--listen HOST:PORT] [--token-file F] [--tls-cert F --tls-key F]\n"
	"                       [options]\n"
	"\n"
	"Serves net/http/pprof's URLs for every process on this machine, and a flame graph page.\n"
	"\n"
	"  -l, --listen HOST:PORT   address to listen on (default 127.0.0.1:6060; :PORT = all\n"
	"                           interfaces; port 0 picks a free one)\n"
	"      --token-file FILE    require the token in FILE (first line): as a Bearer header or\n"
	"                           as the basic-auth password (http://x:TOKEN@host:port/...)\n"
	"      --tls-cert FILE      serve HTTPS with this PEM certificate ...\n"
	"      --tls-key FILE       ... and this PEM private key\n"
	"      --max-captures N     captures running at once, 1-64 (default 4); more get 503\n"
	"      --max-seconds S      longest capture a request may ask for (default 3600)\n"
	"      --idle-timeout S     close connections idle this long (default 30; a running\n"
	"                           capture is never idle)\n"
	"      --request-timeout S  time to send a request line and headers, and its body\n"
	"                           (default 10; slower clients get 408)\n"
	"      --max-connections N  open connections at once (default 128)\n"
	"      --max-per-client N   open connections from one address (default 64); over a\n"
	"                           limit the oldest idle one is closed, or 503 when none is\n"
	"  -F, --freq HZ            cpu samples per second per CPU, 1-10000 (default 99)\n"
	"      --max-stacks N       distinct stacks kept in BPF per collector (default 16384)\n"
	"      --no-kernel          user stacks only\n"
	"      --demangle MODE      full (default) or none\n"
	"      --heap-sample-bytes N  heap, allocs: sample one allocation per N bytes on\n"
	"                           average (default 524288; 1 = every allocation)\n"
	"      --heap-max-live N    heap, allocs: sampled blocks tracked until freed\n"
	"      --min-wait USEC      mutex: count only waits of at least USEC microseconds\n"
	"      --min-block USEC     block: count only off-CPU intervals of at least USEC\n"
	"      --mutex-fraction N   mutex: keep about 1 lock wait in N (a request: fraction=)\n"
	"      --block-rate NS      block: Go's block profile rate (a request: rate=)\n"
	"      --debug-dir DIR      root of separate debug files (default /usr/lib/debug)\n"
	"      --unwind MODE        user stacks: auto (default), fp or dwarf\n"
	"      --unwind-mem SIZE    memory for unwind tables, per loaded collector (default 128M)\n"
	"  -v, --verbose            more messages (one line per request at -v)\n"
	"  -q, --quiet              errors only\n"
	"  -h, --help               this help\n"
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

enum {
	OPT_LISTEN = 0x200,
	OPT_TOKEN_FILE,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_MAX_CAPTURES,
	OPT_MAX_SECONDS,
	OPT_IDLE_TIMEOUT,
	OPT_REQUEST_TIMEOUT,
	OPT_MAX_CONNECTIONS,
	OPT_MAX_PER_CLIENT,
};

static const struct option serve_long_opts[] = {
	{"listen", required_argument, NULL, 'l'},
	{"token-file", required_argument, NULL, OPT_TOKEN_FILE},
	{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
	{"tls-key", required_argument, NULL, OPT_TLS_KEY},
	{"max-captures", required_argument, NULL, OPT_MAX_CAPTURES},
	{"max-seconds", required_argument, NULL, OPT_MAX_SECONDS},
	{"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
	{"request-timeout", required_argument, NULL, OPT_REQUEST_TIMEOUT},
	{"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
	{"max-per-client", required_argument, NULL, OPT_MAX_PER_CLIENT},
	{"freq", required_argument, NULL, 'F'},
	{"max-stacks", required_argument, NULL, OPT_MAX_STACKS},
	{"no-kernel", no_argument, NULL, OPT_NO_KERNEL},
	{"demangle", required_argument, NULL, OPT_DEMANGLE},
	{"heap-sample-bytes", required_argument, NULL, OPT_HEAP_SAMPLE_BYTES},
	{"heap-max-live", required_argument, NULL, OPT_HEAP_MAX_LIVE},
	{"min-wait", required_argument, NULL, OPT_MIN_WAIT},
	{"min-block", required_argument, NULL, OPT_MIN_BLOCK},
	{"mutex-fraction", required_argument, NULL, OPT_MUTEX_FRACTION},
	{"block-rate", required_argument, NULL, OPT_BLOCK_RATE},
	{"debug-dir", required_argument, NULL, OPT_DEBUG_DIR},
	{"unwind", required_argument, NULL, OPT_UNWIND},
	{"unwind-mem", required_argument, NULL, OPT_UNWIND_MEM},
	{"verbose", no_argument, NULL, 'v'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{},
};

/* The options serve shares with record go through record's parser, so they mean the same and
 * are checked the same way. */
static int parse_serve_as_record(int opt, const char *arg, struct serve_opts *o)
{
	struct record_opts r = {
		.freq = o->freq,
		.max_keys = o->max_keys,
		.demangle = o->demangle,
		.heap_sample_bytes = o->heap_sample_bytes,
		.heap_max_live = o->heap_max_live,
		.min_wait_us = o->min_wait_us,
		.min_block_us = o->min_block_us,
		.mutex_fraction = o->mutex_fraction,
		.block_rate_ns = o->block_rate_ns,
		.debug_dir = o->debug_dir,
		.unwind = o->unwind,
		.unwind_mem = o->unwind_mem,
	};
	int err = parse_one(opt, arg, &r);

	o->freq = r.freq;
	o->max_keys = r.max_keys;
	o->demangle = r.demangle;
	o->heap_sample_bytes = r.heap_sample_bytes;
	o->heap_max_live = r.heap_max_live;
	o->min_wait_us = r.min_wait_us;
	o->min_block_us = r.min_block_us;
	o->mutex_fraction = r.mutex_fraction;
	o->block_rate_ns = r.block_rate_ns;
	o->debug_dir = r.debug_dir;
	o->unwind = r.unwind;
	o->unwind_mem = r.unwind_mem;
	return err;
}

static int parse_serve_one(int opt, const char *arg, void *ctx)
{
	struct serve_opts *o = ctx;
	long v;
	int err;

	switch (opt) {
	case 'l':
		o->listen = arg;
		return 0;
	case OPT_TOKEN_FILE:
		o->token_file = arg;
		return 0;
	case OPT_TLS_CERT:
		o->tls_cert = arg;
		return 0;
	case OPT_TLS_KEY:
		o->tls_key = arg;
		return 0;
	case OPT_MAX_CAPTURES:
		if ((err = cli__parse_long(arg, 1, 64, &v)))
			return bad_integer("--max-captures", arg, err, "1 to 64");
		o->max_captures = (int)v;
		return 0;
	case OPT_MAX_SECONDS:
		if ((err = cli__parse_seconds(arg, 0.001, MAX_DURATION, &o->max_seconds)))
			return bad_number("--max-seconds", arg, err,
					  "0.001 to 31536000 seconds (a year)");
		return 0;
	case OPT_IDLE_TIMEOUT:
		if ((err = cli__parse_long(arg, 1, 86400, &v)))
			return bad_integer("--idle-timeout", arg, err, "1 to 86400 seconds");
		o->idle_timeout = (unsigned)v;
		return 0;
	case OPT_REQUEST_TIMEOUT:
		if ((err = cli__parse_long(arg, 1, 3600, &v)))
			return bad_integer("--request-timeout", arg, err, "1 to 3600 seconds");
		o->request_timeout = (unsigned)v;
		return 0;
	case OPT_MAX_CONNECTIONS:
		if ((err = cli__parse_long(arg, 1, 4096, &v)))
			return bad_integer("--max-connections", arg, err, "1 to 4096");
		o->max_connections = (unsigned)v;
		return 0;
	case OPT_MAX_PER_CLIENT:
		if ((err = cli__parse_long(arg, 1, 4096, &v)))
			return bad_integer("--max-per-client", arg, err, "1 to 4096");
		o->max_per_client = (unsigned)v;
		return 0;
	case OPT_NO_KERNEL:
		o->no_kernel = true;
		return 0;
	case 'F':
	case OPT_MAX_STACKS:
	case OPT_DEMANGLE:
	case OPT_HEAP_SAMPLE_BYTES:
	case OPT_HEAP_MAX_LIVE:
	case OPT_MIN_WAIT:
	case OPT_MIN_BLOCK:
	case OPT_MUTEX_FRACTION:
	case OPT_BLOCK_RATE:
	case OPT_DEBUG_DIR:
	case OPT_UNWIND:
	case OPT_UNWIND_MEM:
	case 'v':
	case 'q':
		return parse_serve_as_record(opt, arg, o);
	default:
		return -EINVAL;
	}
}

int cli__parse_serve(int argc, char **argv, struct serve_opts *o)
{
	int err;

	memset(o, 0, sizeof(*o));
	o->listen = "127.0.0.1:6060";
	o->max_captures = SERVE_MAX_CAPTURES;
	o->max_seconds = SERVE_MAX_SECONDS;
	o->freq = 99;
	o->demangle = true;
	o->unwind = CPROF_UNWIND_AUTO;
	o->min_wait_us = -1;
	o->min_block_us = -1;
	err = cli__getopt(argc, argv, "l:F:vqhV", serve_long_opts, serve_usage, "serve --help",
			  parse_serve_one, o);
	if (err)
		return err;
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
