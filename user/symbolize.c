#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sym/symbolizer.h"
#include "symbolize.h"
#include "util/log.h"

static const char usage[] =
	"Usage: cprof-bpf symbolize -e FILE [--debug-dir DIR] [--demangle full|none] [ADDR...]\n"
	"\n"
	"Prints, for each link-time address of FILE (hex; read one per line from stdin when none\n"
	"is given), its frames innermost first as addr2line -i -f does: the function, then\n"
	"file:line, one pair per inlined frame.\n"
	"\n"
	"Example:\n"
	"  cprof-bpf symbolize -e /usr/bin/python3 0x4a1f20 0x52c3b1\n";

struct symbolize_opts {
	const char *file;
	struct symbolizer_opts so;
};

static int symbolize__parse(int argc, char **argv, struct symbolize_opts *o)
{
	static const struct option opts[] = {
		{"exe", required_argument, NULL, 'e'},
		{"debug-dir", required_argument, NULL, 'D'},
		{"demangle", required_argument, NULL, 'M'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+e:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'e':
			o->file = optarg;
			break;
		case 'D':
			o->so.debug_dir = optarg;
			break;
		case 'M':
			if (strcmp(optarg, "full") && strcmp(optarg, "none")) {
				pr_err("invalid --demangle '%s' (full or none)\n", optarg);
				return -EINVAL;
			}
			o->so.demangle =
				strcmp(optarg, "none") ? SYM_DEMANGLE_FULL : SYM_DEMANGLE_NONE;
			break;
		case 'h':
			fputs(usage, stdout);
			return 1;
		default:
			pr_err("unknown option '%s' (see cprof-bpf symbolize --help)\n",
			       argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (!o->file) {
		pr_err("symbolize needs -e FILE\n");
		return -EINVAL;
	}
	return 0;
}

static int symbolize__one(struct symbolizer *s, const char *file, const char *text, FILE *out)
{
	struct sym_result res;
	uint64_t addr;
	char *end;
	int err, i;

	errno = 0;
	addr = strtoull(text, &end, 16);
	if (errno || end == text || (*end && *end != '\n')) {
		pr_err("invalid address '%s': expected hex\n", text);
		return -EINVAL;
	}
	err = symbolizer__file(s, file, addr, &res);
	if (err) {
		pr_err("cannot read %s: %s\n", file, strerror(-err));
		return err;
	}
	for (i = 0; i < res.nframes; i++) {
		if (res.frames[i].file)
			fprintf(out, "%s\n%s:%" PRId64 "\n", res.frames[i].function,
				res.frames[i].file, res.frames[i].line);
		else
			fprintf(out, "%s\n??:0\n", res.frames[i].function);
	}
	return 0;
}

int symbolize__run(int argc, char **argv)
{
	struct symbolize_opts o = {};
	struct symbolizer *s;
	char *line = NULL;
	size_t len = 0;
	int err = 0, i;

	err = symbolize__parse(argc, argv, &o);
	if (err)
		return err > 0 ? 0 : 2;
	o.so.no_kernel = true;
	s = symbolizer__new(&o.so);
	if (!s) {
		pr_err("out of memory\n");
		return 1;
	}
	for (i = optind; i < argc && !err; i++)
		err = symbolize__one(s, o.file, argv[i], stdout);
	if (optind == argc) {
		while (!err && getline(&line, &len, stdin) > 0)
			err = symbolize__one(s, o.file, line, stdout);
	}
	free(line);
	symbolizer__free(s);
	if (fflush(stdout))
		err = -EIO;
	return err == -EINVAL ? 2 : err ? 1 : 0;
}
