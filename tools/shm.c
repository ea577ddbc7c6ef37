/* `tally shm`: named counters in POSIX shared memory that separate programs
 * and shells share, like the lesson's multiprocessing.Value outliving one
 * program. */
#include "cli.h"
#include "commands.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tally shm create NAME [--backend B] [--initial V]\n"
		"       tally shm add NAME DELTA [--timeout S]\n"
		"       tally shm get NAME [--timeout S]\n"
		"       tally shm rm NAME\n"
		"       tally shm list\n\n"
		"Named counters in POSIX shared memory (/dev/shm/tally.NAME, mode\n"
		"0600) that separate programs and shells share; concurrent adds\n"
		"lose nothing.  NAME: 1 to 200 of A-Z a-z 0-9 . _ - (not starting\n"
		"with '.').\n\n"
		"  create  make a new counter (fails if NAME exists); --backend is\n"
		"          any backend with the 'named' capability (default: $%s,\n"
		"          else %s), --initial its start value (default 0)\n"
		"  add     add DELTA (may be negative); prints nothing\n"
		"  get     print the value\n"
		"  rm      remove the name; programs that have it open keep it\n"
		"  list    the named counters on this machine, with backend and value\n\n"
		"  --           ends the options: a NAME may then begin with '-'\n"
		"  --timeout S  add waits at most S seconds for the lock (0.1 to 3600,\n"
		"               default 5); then it adds nothing, exits 3, and says\n"
		"               whether the holder is alive or not known.  A lock whose\n"
		"               holder died is taken over and the add is done, or, when\n"
		"               it cannot be, the add fails at once saying so (exit 3).\n"
		"               get never waits for a lock: it accepts --timeout,\n"
		"               as it did before, and needs none\n\n"
		"exit status: 0 done, 2 bad input (also: NAME missing, or exists\n"
		"on create, or is not a tally counter), 3 runtime failure (also:\n"
		"the lock was not taken in time, or cannot be recovered)\n",
		TALLY_ENV_BACKEND, TALLY_DEFAULT_BACKEND);
}

/* Refusals about what the user named are bad input; the rest is runtime. */
static int exit_for(int err)
{
	switch (err) {
	case TALLY_EINVAL:
	case TALLY_ENOBACKEND:
	case TALLY_ENOTBUILT:
	case TALLY_EOPTION:
	case TALLY_EUNSUPPORTED:
	case TALLY_ENOTFOUND:
	case TALLY_EEXIST:
	case TALLY_EBADOBJECT:
	case TALLY_EUNTRUSTED:
	case TALLY_EMISMATCH:
	case TALLY_EUNFINISHED:
		return EXIT_USAGE;
	default:
		return EXIT_RUNTIME;
	}
}

static int fail(const char *name, int err)
{
	if (err == TALLY_EINVAL)
		cli_error(
			"shm",
			"invalid counter name '%s' (allowed: 1 to 200 of A-Z a-z 0-9 . _ -, not starting with '.')",
			name);
	else if (err == TALLY_EUNFINISHED)
		cli_error(
			"shm",
			"%s: unfinished: its creator is gone; remove it with 'tally shm rm %s%s'",
			name, name[0] == '-' ? "-- " : "", name);
	else
		cli_error("shm", "%s: %s", name, tally_explain(err));
	return exit_for(err);
}

/*
 * Add, waiting at most `seconds` for the lock (tally_add_wait: on timeout
 * nothing is added, and tally_explain() says how long it waited and what is
 * known of the holder; a holder known to have died is taken over, or
 * reported as such).  Ctrl-C, SIGTERM, SIGHUP and SIGQUIT wait until the add
 * is done (it takes microseconds unless the lock is held, and then the wait
 * bound ends it): a process that died inside the lock, or in a FIFO lock's
 * queue, would leave the others to find out.  They stay blocked until the
 * process exits, so that the exit status always tells what happened to the
 * add: one that came during the add, or after it, is reported and then
 * discarded by the exit (dying of it after the add would tell a script that
 * retries on failure to add twice).  Only SIGKILL can end the add unreported.
 */
static int add_with_deadline(tally *t, const char *name, double seconds,
			     int64_t delta)
{
	static const int held[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
	sigset_t block, pending;

	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++)
		sigaddset(&block, held[i]);
	sigprocmask(SIG_BLOCK, &block, NULL);
	/* Rounded: 1.001 * 1000 is 1000.9999999999999 in binary. */
	int rc = tally_add_wait(t, delta, (int64_t)(seconds * 1000 + 0.5));
	sigpending(&pending);
	int interrupted = 0;
	for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++)
		interrupted |= sigismember(&pending, held[i]);
	if (interrupted) {
		fprintf(stderr,
			"tally shm: %s: interrupted during the add, which %s\n",
			name,
			rc >= 0 ? "was done first (it counts)" : "had failed");
	}
	return rc;
}

static int report_op(const char *name, int rc)
{
	if (rc == TALLY_RECOVERED)
		fprintf(stderr,
			"tally shm: %s: recovered the lock from a process that died holding it\n",
			name);
	return rc < 0 ? fail(name, rc) : EXIT_EXACT;
}

static int do_create(const char *name, const char *backend, int64_t initial)
{
	tally_backend_info info;
	tally *t;

	backend = cli_resolve_backend(backend);
	if (cli_check_backend(
		    "shm", backend, TALLY_CAP_NAMED,
		    "for a named counter: its lock cannot live at a different address in each process",
		    &info) != 0)
		return EXIT_USAGE;
	int rc = tally_open(&t, name, backend, initial,
			    TALLY_CREATE | TALLY_EXCL);
	if (rc != 0)
		return fail(name, rc);
	tally_destroy(t);
	return EXIT_EXACT;
}

static int do_list(void)
{
	static const char *const head[] = {"name", "backend", "value"};
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	struct table tb;

	if (d == NULL) {
		cli_error("shm", "cannot read /dev/shm: %s", strerror(errno));
		return EXIT_RUNTIME;
	}
	table_init(&tb, 3, head, "llr");
	while ((e = readdir(d)) != NULL) {
		tally *t;
		int64_t v;
		char buf[32];

		char shown[4 * 256 + 1];

		if (strncmp(e->d_name, "tally.", 6) != 0)
			continue;
		/* Anyone may name a file here: print names escaped, so that
		 * a newline cannot forge a row nor an escape reach the
		 * terminal. */
		const char *name = e->d_name + 6;
		cli_escape(shown, sizeof(shown), name);
		int orc = tally_open(&t, name, NULL, 0, 0);
		if (orc != 0) {
			table_row(&tb, shown, "?",
				  orc == TALLY_EUNTRUSTED
					  ? "(another user's: not opened)"
				  : orc == TALLY_EUNFINISHED
					  ? "(unfinished: creator gone)"
					  : "(not a tally counter)");
			continue;
		}
		/* tally_get() never waits for a lock, not even one that a
		 * dead process holds. */
		int rc = tally_get(t, &v);
		const char *value =
			rc < 0 ? tally_strerror(rc) : fmt_i64(buf, 32, v);
		tally_handle_info about;
		(void)tally_describe(t,
				     &about); /* t is a handle: cannot fail */
		table_row(&tb, shown, about.backend, value);
		tally_destroy(t);
	}
	closedir(d);
	table_print(&tb, stdout);
	table_free(&tb);
	return EXIT_EXACT;
}

enum { O_BACKEND = 256, O_INITIAL, O_TIMEOUT };

/* What cmd_shm() is given, before any of it is checked. */
struct given {
	const char *backend, *initial, *timeout;
	const char *pos[4]; /* OPERATION NAME DELTA */
	int npos;
};

static int take(void *ctx, int code, char *arg)
{
	struct given *g = ctx;

	switch (code) {
	case CLI_OPERAND:
		g->pos[g->npos++] = arg;
		break;
	case O_BACKEND:
		g->backend = arg;
		break;
	case O_INITIAL:
		g->initial = arg;
		break;
	case O_TIMEOUT:
		g->timeout = arg;
		break;
	}
	return 0;
}

/* The operations, in usage()'s order. */
enum { OP_CREATE, OP_ADD, OP_GET, OP_RM, OP_LIST, OP_COUNT };
static const struct operation {
	const char *name;
	int operands;	/* after the operation: NAME, NAME DELTA, none */
	int backend_ok; /* takes --backend and --initial */
	int timeout_ok; /* takes --timeout */
} operations[OP_COUNT] = {
	[OP_CREATE] = {"create", 1, 1, 0}, [OP_ADD] = {"add", 2, 0, 1},
	[OP_GET] = {"get", 1, 0, 1},	   [OP_RM] = {"rm", 1, 0, 0},
	[OP_LIST] = {"list", 0, 0, 0},
};

/* What cmd_shm() was given, checked. */
struct request {
	int op; /* OP_* */
	const char *name;
	int64_t initial, delta;
	double timeout;
};

/* The operation that the first operand names, or -1 after saying why. */
static int find_op(const struct given *g)
{
	for (int i = 0; g->npos > 0 && i < OP_COUNT; i++)
		if (strcmp(g->pos[0], operations[i].name) == 0)
			return i;
	cli_error("shm", "%s '%s' (allowed: create, add, get, rm, list)",
		  g->npos ? "unknown operation" : "missing operation",
		  g->npos ? g->pos[0] : "");
	return -1;
}

/* Refuse operands or options that operation op does not take. */
static int check_fit(const struct given *g, int op)
{
	const struct operation *o = &operations[op];

	if (g->npos - 1 != o->operands) {
		cli_error("shm", "'shm %s' takes %s (see 'tally shm --help')",
			  o->name,
			  o->operands == 0   ? "no operands"
			  : o->operands == 1 ? "one operand: NAME"
					     : "two operands: NAME DELTA");
		return EXIT_USAGE;
	}
	if (((g->backend || g->initial) && !o->backend_ok) ||
	    (g->timeout && !o->timeout_ok)) {
		cli_error("shm", "'shm %s' does not take %s", o->name,
			  g->timeout && !o->timeout_ok ? "--timeout"
			  : g->backend		       ? "--backend"
						       : "--initial");
		return EXIT_USAGE;
	}
	return 0;
}

/* Check what was given, and parse its numbers, into *r. */
static int parse_request(const struct given *g, struct request *r)
{
	*r = (struct request){.op = find_op(g), .timeout = 5};
	if (r->op < 0 || check_fit(g, r->op) != 0)
		return EXIT_USAGE;
	r->name = g->pos[1];
	if ((g->initial && cli_parse_i64("shm", "--initial", g->initial,
					 INT64_MIN, INT64_MAX, &r->initial)) ||
	    (g->timeout && cli_parse_seconds("shm", "--timeout", g->timeout,
					     0.1, 3600, &r->timeout)) ||
	    (r->op == OP_ADD && cli_parse_i64("shm", "DELTA", g->pos[2],
					      INT64_MIN, INT64_MAX, &r->delta)))
		return EXIT_USAGE;
	return 0;
}

static int do_add(const char *name, double timeout, int64_t delta)
{
	tally *t;
	int rc = tally_open(&t, name, NULL, 0, 0);

	if (rc != 0)
		return fail(name, rc);
	rc = report_op(name, add_with_deadline(t, name, timeout, delta));
	tally_destroy(t);
	return rc;
}

static int do_get(const char *name)
{
	tally *t;
	int64_t v;
	int rc = tally_open(&t, name, NULL, 0, 0);

	if (rc != 0)
		return fail(name, rc);
	rc = tally_get(t, &v);
	if (rc == 0)
		printf("%lld\n", (long long)v);
	rc = report_op(name, rc);
	tally_destroy(t);
	return rc;
}

int cmd_shm(int argc, char **argv)
{
	static const struct option opts[] = {
		{"backend", required_argument, NULL, O_BACKEND},
		{"initial", required_argument, NULL, O_INITIAL},
		{"timeout", required_argument, NULL, O_TIMEOUT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	/* "-5" as DELTA is an operand; a NAME that begins with '-' goes
	 * after "--". */
	static const struct cli_command cmd = {
		.name = "shm",
		.opts = opts,
		.usage = usage,
		.take = take,
		.operand = "NAME",
		.max_operands = 4,
	};
	struct given g = {0};
	struct request r;
	uint64_t seen;
	int rc = cli_options(&cmd, argc, argv, &g, &seen);

	if (rc != CLI_GO)
		return rc;
	if ((rc = parse_request(&g, &r)) != 0)
		return rc;
	switch (r.op) {
	case OP_CREATE:
		return do_create(r.name, g.backend, r.initial);
	case OP_ADD:
		return do_add(r.name, r.timeout, r.delta);
	case OP_GET:
		return do_get(r.name);
	case OP_RM:
		rc = tally_unlink(r.name);
		return rc ? fail(r.name, rc) : EXIT_EXACT;
	default:
		return do_list();
	}
}
