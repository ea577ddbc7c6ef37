/* Shared pieces of the `tally` command: strict number parsing, backend
 * lookup with helpful errors, output formats. */
#ifndef TALLY_CLI_H
#define TALLY_CLI_H

#include "tally.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes: the contract of DESIGN.md. */
enum {
	EXIT_EXACT = 0,
	EXIT_LOST = 1,
	EXIT_USAGE = 2,
	EXIT_RUNTIME = 3,
};

enum cli_format { FORMAT_TABLE, FORMAT_JSON, FORMAT_CSV };

/* Print "tally CMD: MESSAGE" on stderr. */
void cli_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void cli_warn(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * One rule for options, in every command: each is given at most once.  The
 * options a command has seen are bits in a mask of its own (`seen`, zero at
 * first), one per entry of its getopt_long() table `opts` (at most 64), and
 * every message names the option as the table spells it.
 *
 * cli_once: call for each option that getopt_long() returns (code: its val);
 * marks it seen and returns 0, or, when it was seen before, says "--NAME
 * given twice" and returns -1.  An option that may repeat by design (bench
 * --backend) is simply not passed to it.
 * cli_given: whether the option whose val is code was seen.
 * cli_conflict: -1, naming both, when a and b were both given; else 0.
 * cli_needs: -1, naming b, when a was given without b, on which a depends;
 * else 0.
 */
int cli_once(const char *cmd, const struct option *opts, int code,
	     uint64_t *seen);
int cli_given(const struct option *opts, uint64_t seen, int code);
int cli_conflict(const char *cmd, const struct option *opts, uint64_t seen,
		 int a, int b);
int cli_needs(const char *cmd, const struct option *opts, uint64_t seen, int a,
	      int b);

/*
 * One parser for the arguments of every command.  cli_options() runs
 * getopt_long() over argv[1..argc-1] with the command's table, and is the one
 * place that refuses an unknown option, an option without its argument, one
 * given twice (cli_once) and an argument the command does not take, and that
 * answers --help (the table's entry with val 'h') with the usage on stdout.
 */
struct cli_command {
	const char *name;	   /* "run": names the command in messages */
	const struct option *opts; /* its getopt_long() table */
	void (*usage)(FILE *f);
	/*
	 * Called for each option but --help, in the order given, with its
	 * val and its argument (NULL for no_argument), and with CLI_OPERAND
	 * for each operand; returns 0, or -1 after saying what is wrong.
	 */
	int (*take)(void *ctx, int code, char *arg);
	int repeats; /* the val of one option that may repeat, or 0 */
	/*
	 * What an operand is called ("NAME") and how many the command takes
	 * at most; NULL for options only.  With operands, options may come
	 * before or after them, "--" ends the options, and '-' followed by a
	 * digit is an operand (a negative number), not an option.
	 */
	const char *operand;
	unsigned max_operands;
};

enum {
	CLI_OPERAND = 0, /* the code take() gets for an operand */
	CLI_GO = -1,	 /* cli_options(): every argument taken, go on */
};

/* CLI_GO, or the exit code to return at once: EXIT_EXACT after --help,
 * EXIT_USAGE after saying what is wrong.  *seen: the options given, for
 * cli_given(), cli_conflict() and cli_needs(). */
int cli_options(const struct cli_command *cmd, int argc, char **argv, void *ctx,
		uint64_t *seen);

/*
 * Strict parsers: the whole string must be a number in [min, max]; no sign
 * where none is allowed, no spaces, no trailing text, no overflow.  On
 * failure they print why (naming `what`) and return -1; *out is untouched.
 */
int cli_parse_u64(const char *cmd, const char *what, const char *s,
		  uint64_t min, uint64_t max, uint64_t *out);
int cli_parse_i64(const char *cmd, const char *what, const char *s, int64_t min,
		  int64_t max, int64_t *out);
int cli_parse_seconds(const char *cmd, const char *what, const char *s,
		      double min, double max, double *out);
int cli_parse_format(const char *cmd, const char *s, enum cli_format *out);

/*
 * Check a backend name (NAME or NAME:OPTIONS) as tally_create() would and
 * explain a refusal: unknown names list the valid ones, "not built in" says
 * which dependency was missing.  need_caps: bits the backend must have (e.g.
 * TALLY_CAP_PSHARED for --mode processes).  Returns 0 and fills info, or -1.
 */
int cli_check_backend(const char *cmd, const char *spec, unsigned need_caps,
		      const char *why_caps, tally_backend_info *info);
/* Comma-separated list of the names of every known backend; only those built
 * in when built_in_only, and only those with every bit of need_caps. */
void cli_backend_names(char *buf, size_t size, int built_in_only,
		       unsigned need_caps);
/*
 * The backend a command uses: `given` (its --backend), else $TALLY_BACKEND
 * when set and not empty, else the library's default.  cli_check_backend()
 * then names the environment variable when it refuses a name taken from it.
 */
const char *cli_resolve_backend(const char *given);

/* spec as the command shows it, in every message, table and JSON: with
 * each password in it written as "***" (tally_backend_redact()).  spec
 * itself when it holds none, else a copy that lives until exit.  For the
 * main thread. */
const char *cli_shown(const char *spec);

/* Online CPUs, at least 1. */
unsigned cli_online_cpus(void);

/*
 * Ctrl-C, the same in every command: after cli_install_sigint(), SIGINT no
 * longer ends tally but sets a flag that cli_interrupted() reads, and the
 * command stops at its next look (a workload's stop hook, the next round,
 * the next run) and reports what it did so far.
 */
void cli_install_sigint(void);
int cli_interrupted(void);

/* Split a comma list in place into at most max non-empty items; on failure
 * say why (naming `what`) and return -1. */
int cli_split_list(const char *cmd, const char *what, char *s, char **items,
		   unsigned max, unsigned *n);

/* Copy s into buf (of size bytes; 4 * strlen(s) + 1 always fits) with every
 * byte that is not printable ASCII, and the backslash, written as \xHH
 * (\\ for the backslash): for names that anyone could have chosen. */
const char *cli_escape(char *buf, size_t size, const char *s);

/* Write s as a JSON string literal (quotes included). */
void json_string(FILE *f, const char *s);

/*
 * A small table: add rows of cells (strings), then print with each column
 * as wide as its widest cell, numbers right-aligned.  Used for every
 * human-readable table so that they all look alike.
 */
struct table {
	unsigned cols, rows, cap;
	char **cells; /* rows x cols, owned */
	unsigned char right[32];
};
void table_init(struct table *t, unsigned cols, const char *const *headers,
		const char *align /* "lrr..." */);
void table_row(struct table *t, ...); /* exactly cols strings */
void table_print(const struct table *t, FILE *f);
/* CSV (RFC 4180 quoting) for FORMAT_CSV, else the aligned table. */
void table_emit(const struct table *t, enum cli_format format, FILE *f);
void table_free(struct table *t);

/* Format helpers into a caller buffer; return the buffer. */
const char *fmt_i64(char *buf, size_t size, int64_t v);
const char *fmt_u64(char *buf, size_t size, uint64_t v);
const char *fmt_f(char *buf, size_t size, int decimals, double v);

#endif /* TALLY_CLI_H */
