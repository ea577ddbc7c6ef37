/* Strict input parsing, backend checks and output helpers for `tally`. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void vreport(const char *kind, const char *cmd, const char *fmt,
		    va_list ap) __attribute__((format(printf, 3, 0)));

static void vreport(const char *kind, const char *cmd, const char *fmt,
		    va_list ap)
{
	fprintf(stderr, "tally%s%s: %s", cmd ? " " : "", cmd ? cmd : "", kind);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void cli_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport("", cmd, fmt, ap);
	va_end(ap);
}

void cli_warn(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport("warning: ", cmd, fmt, ap);
	va_end(ap);
}

/* The entry of opts whose val is code, or -1 (the caller's own codes). */
static int option_at(const struct option *opts, int code)
{
	for (int i = 0; i < 64 && opts[i].name != NULL; i++)
		if (opts[i].flag == NULL && opts[i].val == code)
			return i;
	return -1;
}

static uint64_t option_bit(const struct option *opts, int code)
{
	int i = option_at(opts, code);

	return i < 0 ? 0 : UINT64_C(1) << i;
}

int cli_once(const char *cmd, const struct option *opts, int code,
	     uint64_t *seen)
{
	uint64_t bit = option_bit(opts, code);

	if (*seen & bit) {
		cli_error(cmd, "--%s given twice",
			  opts[option_at(opts, code)].name);
		return -1;
	}
	*seen |= bit;
	return 0;
}

int cli_given(const struct option *opts, uint64_t seen, int code)
{
	return (seen & option_bit(opts, code)) != 0;
}

int cli_conflict(const char *cmd, const struct option *opts, uint64_t seen,
		 int a, int b)
{
	if (!cli_given(opts, seen, a) || !cli_given(opts, seen, b))
		return 0;
	cli_error(cmd, "--%s and --%s contradict each other: give one of them",
		  opts[option_at(opts, a)].name, opts[option_at(opts, b)].name);
	return -1;
}

int cli_needs(const char *cmd, const struct option *opts, uint64_t seen, int a,
	      int b)
{
	if (!cli_given(opts, seen, a) || cli_given(opts, seen, b))
		return 0;
	cli_error(cmd, "--%s has no effect without --%s",
		  opts[option_at(opts, a)].name, opts[option_at(opts, b)].name);
	return -1;
}

/* Whether a is an option (else an operand): "-" alone is an operand, as
 * getopt_long() has it, and so is a negative number where operands go. */
static int is_option(const struct cli_command *cmd, const char *a)
{
	if (a[0] != '-' || a[1] == '\0')
		return 0;
	return cmd->operand == NULL || !isdigit((unsigned char)a[1]);
}

static int bad_option(const struct cli_command *cmd, const char *a)
{
	char hint[96] = "";

	if (cmd->operand != NULL)
		snprintf(hint, sizeof(hint),
			 "a %s that begins with '-' goes after '--'; ",
			 cmd->operand);
	cli_error(cmd->name,
		  "unknown or incomplete option '%s' (%ssee 'tally %s --help')",
		  a, hint, cmd->name);
	return EXIT_USAGE;
}

static int bad_operand(const struct cli_command *cmd, const char *a)
{
	cli_error(cmd->name,
		  "unexpected argument '%s' (%ssee 'tally %s --help')", a,
		  cmd->operand ? "" : "it takes options only; ", cmd->name);
	return EXIT_USAGE;
}

int cli_options(const struct cli_command *cmd, int argc, char **argv, void *ctx,
		uint64_t *seen)
{
	unsigned operands = 0;
	int operands_only = 0;

	*seen = 0;
	opterr = 0; /* its messages are ours */
	optind = 1;
	while (optind < argc) {
		char *a = argv[optind];

		if (!operands_only && strcmp(a, "--") == 0) {
			operands_only = 1;
			optind++;
			continue;
		}
		if (operands_only || !is_option(cmd, a)) {
			if (operands++ == cmd->max_operands)
				return bad_operand(cmd, a);
			optind++;
			if (cmd->take(ctx, CLI_OPERAND, a) != 0)
				return EXIT_USAGE;
			continue;
		}
		/* One argument at a time ("+": no reordering), so that
		 * options and operands may mix. */
		int code = getopt_long(argc, argv, "+h", cmd->opts, NULL);
		if (code == 'h') {
			cmd->usage(stdout);
			return EXIT_EXACT;
		}
		/* '?': unknown, or its argument missing.  Named as given: in
		 * "-xy", argv[optind - 1] would still be the one before. */
		if (option_at(cmd->opts, code) < 0)
			return bad_option(cmd, a);
		if ((code != cmd->repeats &&
		     cli_once(cmd->name, cmd->opts, code, seen) != 0) ||
		    cmd->take(ctx, code, optarg) != 0)
			return EXIT_USAGE;
	}
	return CLI_GO;
}

/* Digits only (after an optional leading '-' when allow_minus). */
static int all_digits(const char *s, int allow_minus)
{
	if (allow_minus && *s == '-')
		s++;
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

int cli_parse_u64(const char *cmd, const char *what, const char *s,
		  uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;

	if (s == NULL || !all_digits(s, 0)) {
		cli_error(
			cmd,
			"%s must be a whole number from %llu to %llu, not '%s'",
			what, (unsigned long long)min, (unsigned long long)max,
			s ? s : "");
		return -1;
	}
	errno = 0;
	v = strtoull(s, NULL, 10);
	if (errno == ERANGE || v < min || v > max) {
		cli_error(cmd,
			  "%s is out of range: '%s' (allowed: %llu to %llu)",
			  what, s, (unsigned long long)min,
			  (unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_parse_i64(const char *cmd, const char *what, const char *s, int64_t min,
		  int64_t max, int64_t *out)
{
	long long v;

	if (s == NULL || !all_digits(s, 1)) {
		cli_error(
			cmd,
			"%s must be a whole number from %lld to %lld, not '%s'",
			what, (long long)min, (long long)max, s ? s : "");
		return -1;
	}
	errno = 0;
	v = strtoll(s, NULL, 10);
	if (errno == ERANGE || v < min || v > max) {
		cli_error(cmd,
			  "%s is out of range: '%s' (allowed: %lld to %lld)",
			  what, s, (long long)min, (long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_parse_seconds(const char *cmd, const char *what, const char *s,
		      double min, double max, double *out)
{
	char *end;
	double v;

	/* Decimal only: no sign, no hex, no "inf"/"nan", no exponent. */
	if (s == NULL || *s == '\0' || strspn(s, "0123456789.") != strlen(s)) {
		cli_error(
			cmd,
			"%s must be a number of seconds from %g to %g, not '%s'",
			what, min, max, s ? s : "");
		return -1;
	}
	errno = 0;
	v = strtod(s, &end);
	if (*end != '\0' || errno == ERANGE || !isfinite(v) || v < min ||
	    v > max) {
		cli_error(
			cmd,
			"%s is out of range: '%s' (allowed: %g to %g seconds)",
			what, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_parse_format(const char *cmd, const char *s, enum cli_format *out)
{
	static const char *const names[] = {"table", "json", "csv"};

	for (int i = 0; i < 3; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum cli_format)i;
			return 0;
		}
	}
	cli_error(cmd, "unknown format '%s' (allowed: table, json, csv)", s);
	return -1;
}

const char *cli_shown(const char *spec)
{
	static struct shown {
		struct shown *next;
		const char *spec;
		char text[];
	} * list;
	struct shown *s;

	if (spec == NULL || strstr(spec, "://") == NULL)
		return spec;
	for (s = list; s != NULL; s = s->next)
		if (s->spec == spec)
			return s->text;
	/* Each password becomes three characters: room for any. */
	size_t size = 2 * strlen(spec) + 4;
	s = malloc(sizeof(*s) + size);
	if (s == NULL)
		return "(a backend spec: out of memory)";
	tally_backend_redact(spec, s->text, size);
	s->spec = spec;
	s->next = list;
	list = s;
	return s->text;
}

/* The spec that cli_resolve_backend() took from the environment, or NULL. */
static const char *backend_from_env;

const char *cli_resolve_backend(const char *given)
{
	const char *env = getenv(TALLY_ENV_BACKEND);

	backend_from_env = NULL;
	if (given != NULL)
		return given;
	if (env != NULL && *env != '\0')
		return backend_from_env = env;
	return TALLY_DEFAULT_BACKEND;
}

void cli_backend_names(char *buf, size_t size, int built_in_only,
		       unsigned need_caps)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < tally_backend_count(); i++) {
		tally_backend_info info;

		tally_backend_at(i, &info);
		if ((built_in_only && !info.built_in) ||
		    (info.caps & need_caps) != need_caps)
			continue;
		int n = snprintf(buf + used, size - used, "%s%s",
				 used ? ", " : "", info.name);
		if (n < 0 || (size_t)n >= size - used)
			break;
		used += (size_t)n;
	}
}

int cli_check_backend(const char *cmd, const char *spec, unsigned need_caps,
		      const char *why_caps, tally_backend_info *info)
{
	char names[512];
	char name[64];
	size_t len = strcspn(spec, ":"); /* the name before any options */
	const char *from = spec == backend_from_env
				   ? " (from $" TALLY_ENV_BACKEND ")"
				   : "";
	int fits = len > 0 && len < sizeof(name);

	if (fits) {
		memcpy(name, spec, len);
		name[len] = '\0';
	}
	if (!fits || tally_backend_find(name, info) != 0) {
		cli_backend_names(names, sizeof(names), 0, 0);
		cli_error(cmd, "unknown backend '%s'%s (known: %s)",
			  fits ? name : cli_shown(spec), from, names);
		return -1;
	}
	if (!info->built_in) {
		cli_backend_names(names, sizeof(names), 1, 0);
		cli_error(
			cmd,
			"backend '%s'%s is known but was not built into this tally: its library was missing at build time (built in: %s)",
			info->name, from, names);
		return -1;
	}
	if ((info->caps & need_caps) != need_caps) {
		cli_backend_names(names, sizeof(names), 1, need_caps);
		cli_error(cmd, "backend '%s'%s cannot be used %s (allowed: %s)",
			  info->name, from, why_caps, names);
		return -1;
	}
	/* Its options too, before any work starts (no server is reached). */
	int rc = tally_backend_check(spec, 0);
	if (rc != 0) {
		cli_error(cmd, "backend '%s'%s: %s: '%s' (see tally(1))",
			  info->name, from, tally_explain(rc), cli_shown(spec));
		return -1;
	}
	return 0;
}

unsigned cli_online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

void cli_install_sigint(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
}

int cli_interrupted(void)
{
	return interrupted;
}

int cli_split_list(const char *cmd, const char *what, char *s, char **items,
		   unsigned max, unsigned *n)
{
	*n = 0;
	for (char *p = s;; p++) {
		char *end = strchr(p, ',');
		if (end)
			*end = '\0';
		if (*p == '\0' || *n == max) {
			cli_error(
				cmd,
				"%s must be a comma-separated list of 1 to %u non-empty items",
				what, max);
			return -1;
		}
		items[(*n)++] = p;
		if (!end)
			return 0;
		p = end;
	}
}

const char *cli_escape(char *buf, size_t size, const char *s)
{
	size_t n = 0;

	for (; *s && n + 5 <= size; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\\')
			n += (size_t)snprintf(buf + n, size - n, "\\\\");
		else if (c >= 0x20 && c < 0x7f)
			buf[n++] = (char)c;
		else
			n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
	}
	buf[n] = '\0';
	return buf;
}

void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void table_init(struct table *t, unsigned cols, const char *const *headers,
		const char *align)
{
	memset(t, 0, sizeof(*t));
	t->cols = cols;
	for (unsigned c = 0; c < cols && c < sizeof(t->right); c++)
		t->right[c] = align[c] == 'r';
	t->cap = 16;
	t->cells = calloc((size_t)t->cap * cols, sizeof(char *));
	if (t->cells == NULL)
		abort();
	for (unsigned c = 0; c < cols; c++)
		t->cells[c] = strdup(headers[c]);
	t->rows = 1;
}

void table_row(struct table *t, ...)
{
	va_list ap;

	if (t->rows == t->cap) {
		t->cap *= 2;
		t->cells = realloc(t->cells,
				   (size_t)t->cap * t->cols * sizeof(char *));
		if (t->cells == NULL)
			abort();
	}
	va_start(ap, t);
	for (unsigned c = 0; c < t->cols; c++)
		t->cells[t->rows * t->cols + c] =
			strdup(va_arg(ap, const char *));
	va_end(ap);
	t->rows++;
}

void table_print(const struct table *t, FILE *f)
{
	size_t width[32] = {0};

	for (unsigned r = 0; r < t->rows; r++)
		for (unsigned c = 0; c < t->cols && c < 32; c++) {
			size_t n = strlen(t->cells[r * t->cols + c]);
			if (n > width[c])
				width[c] = n;
		}
	for (unsigned r = 0; r < t->rows; r++) {
		char *const *row = &t->cells[r * t->cols];
		unsigned end = t->cols; /* no trailing blanks for empty cells */

		while (end > 1 && row[end - 1][0] == '\0')
			end--;
		for (unsigned c = 0; c < end; c++) {
			int w = (int)width[c];

			if (t->right[c])
				fprintf(f, "%*s", w, row[c]);
			else
				fprintf(f, "%-*s", c + 1 == end ? 0 : w,
					row[c]);
			fputs(c + 1 == end ? "\n" : "  ", f);
		}
	}
}

static void csv_cell(const char *s, FILE *f)
{
	if (strpbrk(s, ",\"\n") == NULL) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

void table_emit(const struct table *t, enum cli_format format, FILE *f)
{
	if (format != FORMAT_CSV) {
		table_print(t, f);
		return;
	}
	for (unsigned r = 0; r < t->rows; r++)
		for (unsigned c = 0; c < t->cols; c++) {
			csv_cell(t->cells[r * t->cols + c], f);
			fputc(c + 1 == t->cols ? '\n' : ',', f);
		}
}

void table_free(struct table *t)
{
	for (unsigned i = 0; i < t->rows * t->cols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
}

const char *fmt_i64(char *buf, size_t size, int64_t v)
{
	snprintf(buf, size, "%lld", (long long)v);
	return buf;
}

const char *fmt_u64(char *buf, size_t size, uint64_t v)
{
	snprintf(buf, size, "%llu", (unsigned long long)v);
	return buf;
}

const char *fmt_f(char *buf, size_t size, int decimals, double v)
{
	snprintf(buf, size, "%.*f", decimals, v);
	return buf;
}
