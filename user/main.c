/* cprof-bpf: subcommand dispatch. `record` is the default: `cprof-bpf -p PID` records. */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "check.h"
#include "cli.h"
#include "record.h"
#include "unwind/table.h"
#include "serve.h"
#include "symbolize.h"

/* Parses argv as cmd's options and runs it: exit 2 for a usage error, 0 after --help. */
static int run(enum cli_cmd cmd, int argc, char **argv, int (*fn)(const struct cli_opts *))
{
	struct cli_opts o;
	int err, ret;

	err = cli__parse(cmd, argc, argv, &o);
	ret = err ? (err > 0 ? 0 : 2) : fn(&o);
	cli__free(&o);
	return ret;
}

int main(int argc, char **argv)
{
	setvbuf(stderr, NULL, _IOLBF, 0);
	if (argc > 1 && strcmp(argv[1], "check") == 0)
		return check__run(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "agent") == 0)
		return run(CLI_AGENT, argc - 1, argv + 1, agent__run);
	if (argc > 1 && strcmp(argv[1], "watch") == 0)
		return run(CLI_WATCH, argc - 1, argv + 1, agent__run);
	if (argc > 1 && strcmp(argv[1], "symbolize") == 0)
		return symbolize__run(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "unwind-table") == 0)
		return unwind_table__main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "serve") == 0)
		return run(CLI_SERVE, argc - 1, argv + 1, serve__run);
	if (argc > 1 && strcmp(argv[1], "record") == 0)
		return run(CLI_RECORD, argc - 1, argv + 1, record__run);
	return run(CLI_RECORD, argc, argv, record__run);
}
