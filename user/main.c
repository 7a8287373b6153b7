/* cprof-bpf: subcommand dispatch. `record` is the default: `cprof-bpf -p PID` records. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cli.h"
#include "record.h"
#include "unwind/table.h"
#include "serve.h"
#include "symbolize.h"

static int cmd_record(int argc, char **argv)
{
	struct record_opts o;
	int err, ret;

	err = cli__parse_record(argc, argv, &o);
	if (err) {
		cli__free_record(&o);
		return err > 0 ? 0 : 2;
	}
	ret = record__run(&o);
	cli__free_record(&o);
	return ret;
}

static int cmd_serve(int argc, char **argv)
{
	struct serve_opts o;
	int err = cli__parse_serve(argc, argv, &o);

	if (err)
		return err > 0 ? 0 : 2;
	return serve__run(&o);
}

int main(int argc, char **argv)
{
	setvbuf(stderr, NULL, _IOLBF, 0);
	if (argc > 1 && strcmp(argv[1], "check") == 0)
		return check__run(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "symbolize") == 0)
		return symbolize__run(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "unwind-table") == 0)
		return unwind_table__main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "record") == 0)
		return cmd_record(argc - 1, argv + 1);
	return cmd_record(argc, argv);
}
