/* `tally demo`: the Python lock lesson, retold on every built-in backend. */
#include "cli.h"
#include "commands.h"
#include "run_core.h"
#include "workload.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Each run's time limit.  Idle, the slowest run takes about 1 s; a FIFO
 * spinning lock on a busy machine can take minutes for the same work. */
#define DEMO_RUN_LIMIT_S 5.0

/*
 * The lesson's window, in microseconds: how long CPython's `total.value += 5`
 * on a multiprocessing.Value takes right after a 10 ms sleep (a locked read,
 * interpreter work, a locked write), measured by bench/python_rmw.py on the
 * 2-CPU machine of bench/results/lesson.md (medians 30 to 38 us).  The
 * racy backend runs addsub with this window between its load and its store,
 * so that its two workers, waking at the same 10 ms ticks, collide as the
 * lesson's Python processes did.
 */
#define DEMO_LESSON_WINDOW_US 30

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tally demo [--format table|json|csv]\n\n"
		"Retell the lesson tally grew from, on every built-in backend:\n"
		"  addsub  500, +5 and -5 a hundred times each with 10 ms sleeps: 500\n"
		"  inc     two workers, a million adds each, +1 and +2: 3000000\n"
		"in threads, and in forked processes sharing the counter (the\n"
		"lesson's multiprocessing.Value) for backends that can be shared.\n"
		"'none' has no lock and shows lost updates; in addsub it runs with\n"
		"the lesson's window, none:window_us=%d (what CPython's\n"
		"read-modify-write of a Value takes).  Every other backend must be\n"
		"exact.  Takes about 20 s on an idle machine; a run that takes over\n"
		"%g s (a spinning lock on a busy or oversubscribed machine) is\n"
		"stopped there, its counts still checked, and marked.\n\n"
		"exit status: 0 when every synchronized backend was exact, 1 when\n"
		"one lost updates, 3 on a runtime failure or Ctrl-C\n",
		DEMO_LESSON_WINDOW_US, DEMO_RUN_LIMIT_S);
}

struct row {
	tally_backend_info b;
	char spec[64];	    /* what the run was given: b.name[:options] */
	unsigned window_us; /* the racy addsub rows: the lesson's window */
	struct wl_config cfg;
	struct wl_result res;
	unsigned tries; /* runs it took (the racy inc row may need more) */
};

/*
 * 'none' in inc loses updates only when its two workers overlap in time.
 * Each runs for a few milliseconds, and on a busy machine the scheduler can
 * run one after the other; then the run is exact by luck.  Such a run is
 * repeated, up to this many tries, and the table says how many it took.
 */
#define DEMO_RACY_TRIES 5u

/* One row per (workload, mode, backend) in a stable order. */
static size_t plan(struct row *rows, size_t cap)
{
	size_t n = 0;

	for (int kind = WL_ADDSUB; kind <= WL_INC; kind++)
		for (int mode = CREW_THREADS; mode <= CREW_PROCESSES; mode++)
			for (size_t i = 0; i < tally_backend_count(); i++) {
				tally_backend_info b;

				tally_backend_at(i, &b);
				if (!b.built_in || n == cap ||
				    (b.caps & TALLY_CAP_REMOTE) ||
				    (mode == CREW_PROCESSES &&
				     !(b.caps & TALLY_CAP_PSHARED)))
					continue;
				rows[n].b = b;
				/* A racy backend retells addsub with the
				 * lesson's window (see above). */
				if ((b.caps & TALLY_CAP_RACY) &&
				    kind == WL_ADDSUB)
					rows[n].window_us =
						DEMO_LESSON_WINDOW_US;
				if (rows[n].window_us)
					snprintf(rows[n].spec,
						 sizeof(rows[n].spec),
						 "%s:window_us=%u", b.name,
						 rows[n].window_us);
				else
					snprintf(rows[n].spec,
						 sizeof(rows[n].spec), "%s",
						 b.name);
				wl_defaults((enum wl_kind)kind, &rows[n].cfg);
				rows[n].cfg.mode = (enum crew_mode)mode;
				n++;
			}
	return n;
}

static double ns_per_op(const struct row *r)
{
	return r->res.total_ops
		       ? r->res.seconds * 1e9 / (double)r->res.total_ops
		       : 0.0;
}

/* Why a run ended early, for the table's last column; "" when it did not. */
static const char *note(const struct row *r)
{
	static char buf[64];

	if (r->res.interrupted)
		return "interrupted (Ctrl-C)";
	if (r->res.timed_out)
		return "stopped at the time limit";
	if (r->tries > 1 && r->res.lost != 0)
		snprintf(buf, sizeof(buf), "lost on try %u of %u", r->tries,
			 DEMO_RACY_TRIES);
	else if (r->tries > 1)
		snprintf(buf, sizeof(buf),
			 "exact in %u tries: workers never overlapped",
			 r->tries);
	else
		return "";
	return buf;
}

static void print_rows(enum cli_format format, const struct row *rows, size_t n)
{
	static const char *const head[] = {"workload", "mode",	 "backend",
					   "expected", "actual", "lost",
					   "seconds",  "ns/op",	 "note"};
	struct table t;
	char b[6][32];

	if (format == FORMAT_JSON) {
		printf("[");
		for (size_t i = 0; i < n; i++) {
			const struct row *r = &rows[i];
			printf("%s\n  {\"workload\": \"%s\", \"mode\": \"%s\", \"backend\": \"%s\", \"window_us\": %u, \"workers\": %u, \"iters\": %llu, \"expected\": %lld, \"actual\": %lld, \"lost\": %lld, \"seconds\": %.6f, \"ns_per_op\": %.2f, \"total_ops\": %llu, \"tries\": %u, \"stopped\": %s, \"interrupted\": %s}",
			       i ? "," : "", wl_kind_name(r->cfg.kind),
			       crew_mode_name(r->cfg.mode), r->b.name,
			       r->window_us, r->cfg.workers,
			       (unsigned long long)r->cfg.iters,
			       (long long)r->res.expected,
			       (long long)r->res.actual, (long long)r->res.lost,
			       r->res.seconds, ns_per_op(r),
			       (unsigned long long)r->res.total_ops, r->tries,
			       r->res.timed_out ? "true" : "false",
			       r->res.interrupted ? "true" : "false");
		}
		printf("\n]\n");
		return;
	}
	table_init(&t, 9, head, "lllrrrrrl");
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		table_row(&t, wl_kind_name(r->cfg.kind),
			  crew_mode_name(r->cfg.mode), r->spec,
			  fmt_i64(b[0], 32, r->res.expected),
			  fmt_i64(b[1], 32, r->res.actual),
			  fmt_i64(b[2], 32, r->res.lost),
			  fmt_f(b[3], 32, 3, r->res.seconds),
			  fmt_f(b[4], 32, 1, ns_per_op(r)), note(r));
	}
	table_emit(&t, format, stdout);
	table_free(&t);
}

/* What the closing lines say, counted over the table's rows. */
struct lesson {
	int racy_inc, racy_inc_lost;	   /* 'none' inc rows, and lossy ones */
	int racy_addsub, racy_addsub_lost; /* 'none' addsub rows, likewise */
	int sync_wrong;		 /* synchronized rows that lost updates */
	int retried;		 /* rows that took more than one try */
	int stopped;		 /* rows stopped at the time limit ... */
	char stopped_names[256]; /* ... and which, "inc threads ticket, ..." */
	/* The cheapest and the dearest synchronized inc in threads. */
	const struct row *fast, *slow;
};

static void count_lesson(const struct row *rows, size_t n, struct lesson *s)
{
	*s = (struct lesson){0};
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		int racy = (r->b.caps & TALLY_CAP_RACY) != 0;

		if (racy)
			*(r->cfg.kind == WL_INC ? &s->racy_inc
						: &s->racy_addsub) += 1;
		if (racy && r->res.lost != 0)
			*(r->cfg.kind == WL_INC ? &s->racy_inc_lost
						: &s->racy_addsub_lost) += 1;
		if (r->tries > 1)
			s->retried++;
		if (!racy && r->res.lost != 0)
			s->sync_wrong++;
		if (r->res.timed_out) {
			size_t used = strlen(s->stopped_names);
			snprintf(s->stopped_names + used,
				 sizeof(s->stopped_names) - used, "%s%s %s %s",
				 s->stopped++ ? ", " : "",
				 wl_kind_name(r->cfg.kind),
				 crew_mode_name(r->cfg.mode), r->spec);
		}
		if (!racy && r->cfg.kind == WL_INC &&
		    r->cfg.mode == CREW_THREADS && r->res.total_ops) {
			if (!s->fast || ns_per_op(r) < ns_per_op(s->fast))
				s->fast = r;
			if (!s->slow || ns_per_op(r) > ns_per_op(s->slow))
				s->slow = r;
		}
	}
}

/* The racy backend: lost updates in inc, and in addsub with the window. */
static void explain_racy(const struct lesson *s)
{
	printf("- 'none' adds with a plain load and store.  In 'inc', which never\n"
	       "  sleeps, two workers overwrite each other's stores: it lost updates in %d of\n  its %d inc runs.\n",
	       s->racy_inc_lost, s->racy_inc);
	printf("- In 'addsub' it ran as 'none:window_us=%d', the lesson's window: CPython's\n  'total.value += 5' is a locked read, about %d us of interpreter work just\n  after a 10 ms sleep (bench/python_rmw.py), then a locked write.  The window\n  busy-waits that long between the load and the store.  Both workers wake at\n  the same 10 ms ticks, so one's store often erases the other's: it drifted in\n  %d of its %d addsub runs, as the lesson drifted to 555, 615 and 455.  Without\n  the window the add takes a nanosecond and collides only when a worker is\n  preempted between its load and its store ('tally run --backend none\n  --workload addsub'); a race that seldom shows is still a race:\n  ThreadSanitizer flags it every time.\n",
	       DEMO_LESSON_WINDOW_US, DEMO_LESSON_WINDOW_US,
	       s->racy_addsub_lost, s->racy_addsub);
	if (s->retried)
		printf("  Each inc worker runs for milliseconds, and a busy machine may run the two\n  one after the other: then nothing can collide.  Such a run was repeated\n  (up to %u tries; the note column says how many it took).\n",
		       DEMO_RACY_TRIES);
}

/* The synchronized backends: exact, and what that cost per add. */
static void explain_synchronized(const struct lesson *s)
{
	const struct row *fast = s->fast, *slow = s->slow;

	if (s->sync_wrong == 0)
		printf("- Every synchronized backend was exact, in threads and in processes that\n  share the counter (the lesson's multiprocessing.Value).\n");
	else
		printf("- %d synchronized run%s LOST UPDATES: that is a bug in tally or the machine.\n",
		       s->sync_wrong, s->sync_wrong == 1 ? "" : "s");
	if (fast && slow && fast != slow)
		printf("- What synchronization costs: per contended add in threads, '%s' took\n  %.1f ns and '%s' %.1f ns (%.1fx).  'tally bench' measures this properly:\n  throughput, fairness, latency, oversubscription.\n",
		       fast->b.name, ns_per_op(fast), slow->b.name,
		       ns_per_op(slow), ns_per_op(slow) / ns_per_op(fast));
}

/* Runs stopped at the time limit, and why a busy machine does that. */
static void explain_stopped(const struct lesson *s)
{
	int stopped = s->stopped;
	double load = -1;

	getloadavg(&load, 1);
	printf("- %d run%s took longer than %g s and %s stopped there (%s); the\n  adds %s made were still counted exactly.  With the load average at %.2f on\n  %u CPUs, a worker is often descheduled; a spinning lock that hands itself\n  to the next waiter in line (ticket, mcs, clh) then waits for the scheduler\n  to run that waiter.  Run the demo on an idle machine to see the usual times.\n",
	       stopped, stopped == 1 ? "" : "s", DEMO_RUN_LIMIT_S,
	       stopped == 1 ? "was" : "were", s->stopped_names,
	       stopped == 1 ? "it" : "they", load, cli_online_cpus());
}

/* The lesson's third way, a Manager: the redis backend, if built in. */
static void explain_manager(void)
{
	tally_backend_info remote;

	if (tally_backend_find("redis", &remote) == 0 && remote.built_in)
		printf("- The lesson's Manager (a server process, shareable across machines) is\n  the 'redis' backend: run 'tally run --workload inc --iters 10000 --participants 2\n  --backend redis:url=redis://HOST:6379,key=NAME' on two machines: one joint verdict.\n  A counter too hot for one server spreads over a Redis Cluster's primaries\n  (redis:cluster=HOST:PORT;HOST:PORT,key=NAME,shards=3, quoted for the shell),\n  and durability=replicas:1 keeps every acknowledged add through a failover.\n");
	else
		printf("- The lesson's Manager (a server process, shareable across machines) is\n  the 'redis' backend, not built into this tally (hiredis was missing).\n");
}

/* The closing lines: what the table showed, from the numbers in it. */
static void explain(const struct row *rows, size_t n)
{
	struct lesson s;

	count_lesson(rows, n, &s);
	printf("\nWhat you just saw:\n");
	explain_racy(&s);
	explain_synchronized(&s);
	if (s.stopped)
		explain_stopped(&s);
	explain_manager();
}

/* Run row r, the i-th of n, with a progress line on stderr when tty.  The
 * racy inc row is run again while its workers happen not to overlap.
 * Returns run_one()'s answer. */
static int run_row(struct row *r, size_t i, size_t n, int tty)
{
	char label[96]; /* outlives the run, as run_hooks() needs */

	snprintf(label, sizeof(label), "demo %zu/%zu: %s %s %s", i + 1, n,
		 wl_kind_name(r->cfg.kind), crew_mode_name(r->cfg.mode),
		 r->spec);
	run_hooks(&r->cfg, label, tty);
	r->cfg.time_limit_s = DEMO_RUN_LIMIT_S;
	int racy_inc = (r->b.caps & TALLY_CAP_RACY) && r->cfg.kind == WL_INC;
	int rc;
	do {
		r->tries++;
		rc = run_one("demo", r->spec, &r->cfg, &r->res);
	} while (rc == RUN_RAN && racy_inc && r->res.lost == 0 &&
		 !r->res.interrupted && !r->res.timed_out &&
		 r->tries < DEMO_RACY_TRIES && !cli_interrupted());
	return rc;
}

/* The exit code a row that ran asks for. */
static int row_status(const struct row *r)
{
	int rc = run_verdict(&r->res);

	if (rc == EXIT_LOST && (r->b.caps & TALLY_CAP_RACY))
		/* losing is what 'none' is for */
		rc = r->res.interrupted ? EXIT_RUNTIME : EXIT_EXACT;
	return rc;
}

/* Ctrl-C: say where it came, under the table of the n runs that ended. */
static void say_interrupted(const struct row *rows, size_t n)
{
	if (n == 0) {
		cli_error("demo", "interrupted before the first run ended");
		return;
	}
	const struct row *last = &rows[n - 1];
	cli_error(
		"demo",
		"interrupted %s run %zu (%s %s %s): the table shows the runs so far%s",
		last->res.interrupted ? "during" : "after", n,
		wl_kind_name(last->cfg.kind), crew_mode_name(last->cfg.mode),
		last->spec,
		last->res.interrupted ? "; the last one stopped early" : "");
}

/* --format, its only option. */
static int take(void *format, int code, char *arg)
{
	(void)code;
	return cli_parse_format("demo", arg, format);
}

int cmd_demo(int argc, char **argv)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const struct cli_command cmd = {
		.name = "demo",
		.opts = opts,
		.usage = usage,
		.take = take,
	};
	enum cli_format format = FORMAT_TABLE;
	uint64_t seen;
	int status = cli_options(&cmd, argc, argv, &format, &seen);

	if (status != CLI_GO)
		return status;
	status = EXIT_EXACT;

	size_t cap = 4 * tally_backend_count();
	struct row *rows = calloc(cap, sizeof(*rows));
	if (rows == NULL)
		return EXIT_RUNTIME;
	size_t n = plan(rows, cap);
	int tty = isatty(STDERR_FILENO);

	size_t ran = 0;
	cli_install_sigint();
	for (size_t i = 0; i < n && !cli_interrupted(); i++) {
		int rc = run_row(&rows[i], i, n, tty);
		if (rc != RUN_RAN) {
			free(rows);
			return rc;
		}
		ran = i + 1;
		rc = row_status(&rows[i]);
		if (rc > status)
			status = rc;
	}
	/* Ctrl-C may also come between runs, when no run sees it: the table
	 * then ends with the last run that finished. */
	if (cli_interrupted()) {
		n = ran;
		if (status < EXIT_RUNTIME)
			status = EXIT_RUNTIME;
	}
	print_rows(format, rows, n);
	if (cli_interrupted())
		say_interrupted(rows, n);
	else if (format == FORMAT_TABLE)
		explain(rows, n);
	free(rows);
	return status;
}
