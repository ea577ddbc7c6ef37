/* `tally`: the command line; dispatches to one file per subcommand. */
#include "cli.h"
#include "commands.h"

#include <string.h>

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{"list", cmd_list, "list the backends, their capabilities and build"},
	{"run", cmd_run, "run one workload on one backend and check the count"},
	{"demo", cmd_demo, "the lock lesson, end to end, on every backend"},
	{"stress", cmd_stress, "random rounds hunting races and lost updates"},
	{"bench", cmd_bench, "throughput, fairness and latency, with plots"},
	{"shm", cmd_shm, "named counters in shared memory that programs share"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tally COMMAND [OPTIONS]\n"
		"       tally --help | --version\n\n"
		"One shared-counter interface in front of many locks; runs the same workloads\nover all of them and checks every count.\n\ncommands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name,
			commands[i].summary);
	fprintf(f,
		"\n'tally COMMAND --help' describes one command.\n"
		"exit status: 0 exact count, 1 lost updates, 2 bad input, 3 runtime failure\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	int help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
	if (help || strcmp(argv[1], "--version") == 0) {
		if (argc > 2) {
			cli_error(NULL, "unexpected argument '%s' after %s",
				  argv[2], argv[1]);
			return EXIT_USAGE;
		}
		if (help)
			usage(stdout);
		else
			printf("tally %s\n", tally_version());
		return EXIT_EXACT;
	}
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);

	char names[256] = "";
	for (size_t i = 0; i < N_COMMANDS; i++) {
		strcat(names, i ? ", " : "");
		strcat(names, commands[i].name);
	}
	cli_error(NULL,
		  "unknown command '%s' (commands: %s; see 'tally --help')",
		  argv[1], names);
	return EXIT_USAGE;
}
