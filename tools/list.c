/* `tally list`: every known backend, its capabilities, and whether it is
 * built into this tally. */
#include "cli.h"
#include "commands.h"

#include <string.h>

/* In bit order, from the one list in tally.h (STYLE 16). */
static const struct {
	unsigned bit;
	const char *name;
} cap_names[] = {
#define CAP_NAME(name, bit, str, meaning) {TALLY_CAP_##name, str},
	TALLY_CAPS_MAP(CAP_NAME)
#undef CAP_NAME
};

#define N_CAPS (sizeof(cap_names) / sizeof(cap_names[0]))

static void caps_text(unsigned caps, char *buf, size_t size, char sep)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < N_CAPS; i++) {
		if (!(caps & cap_names[i].bit))
			continue;
		int n = snprintf(buf + used, size - used, "%s%s",
				 used ? (char[]){sep, '\0'} : "",
				 cap_names[i].name);
		if (n > 0 && (size_t)n < size - used)
			used += (size_t)n;
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tally list [--format table|json|csv]\n\n"
		"List every backend tally knows, with a one-line summary, its capabilities,\nand whether it was built in (a backend whose library was missing at build\ntime is listed but not usable).  The default backend is '%s'; $%s\noverrides it for programs that pass no name.\n",
		TALLY_DEFAULT_BACKEND, TALLY_ENV_BACKEND);
}

static void print_json(void)
{
	printf("[");
	for (size_t i = 0; i < tally_backend_count(); i++) {
		tally_backend_info b;

		tally_backend_at(i, &b);
		printf("%s\n  {\"name\": ", i ? "," : "");
		json_string(stdout, b.name);
		printf(", \"summary\": ");
		json_string(stdout, b.summary);
		printf(", \"built_in\": %s, \"default\": %s, \"caps\": [",
		       b.built_in ? "true" : "false",
		       strcmp(b.name, TALLY_DEFAULT_BACKEND) ? "false"
							     : "true");
		for (size_t c = 0, n = 0; c < N_CAPS; c++)
			if (b.caps & cap_names[c].bit)
				printf("%s\"%s\"", n++ ? ", " : "",
				       cap_names[c].name);
		printf("]}");
	}
	printf("\n]\n");
}

/* --format, its only option. */
static int take(void *format, int code, char *arg)
{
	(void)code;
	return cli_parse_format("list", arg, format);
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const struct cli_command cmd = {
		.name = "list",
		.opts = opts,
		.usage = usage,
		.take = take,
	};
	enum cli_format format = FORMAT_TABLE;
	uint64_t seen;
	int rc = cli_options(&cmd, argc, argv, &format, &seen);

	if (rc != CLI_GO)
		return rc;
	if (format == FORMAT_JSON) {
		print_json();
		return EXIT_EXACT;
	}

	static const char *const head[] = {"backend", "built", "capabilities",
					   "summary"};
	struct table t;
	table_init(&t, 4, head, "llll");
	for (size_t i = 0; i < tally_backend_count(); i++) {
		tally_backend_info b;
		char caps[256], name[64];

		tally_backend_at(i, &b);
		caps_text(b.caps, caps, sizeof(caps),
			  format == FORMAT_CSV ? ' ' : ',');
		snprintf(name, sizeof(name), "%s%s", b.name,
			 strcmp(b.name, TALLY_DEFAULT_BACKEND) ||
					 format == FORMAT_CSV
				 ? ""
				 : " (default)");
		table_row(&t, name, b.built_in ? "yes" : "no", caps, b.summary);
	}
	table_emit(&t, format, stdout);
	table_free(&t);
	return EXIT_EXACT;
}
