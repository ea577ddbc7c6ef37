/* `tally stress`: randomized schedules that hunt for lost updates and, in a
 * ThreadSanitizer build of tally, for data races inside a backend. */
#include "cli.h"
#include "commands.h"
#include "clock.h"
#include "stress_round.h"
#include "watchdog.h"
#include "workload.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define STRESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_TSAN 1
#endif
#endif

#define MAX_WORKERS	STRESS_MAX_WORKERS
#define DEFAULT_WORKERS 16u
#define MAX_BACKENDS	32u
#define ROUND_LIMIT_S	300 /* a round still running then is stuck */
/* Workers stop a round after this long: a spinning lock on a busy machine
 * (more runnable threads than CPUs, whoever they belong to) hands over once
 * per time slice, and would otherwise make one round take minutes. */
#define ROUND_BUDGET_NS	   2000000000u
#define DEFAULT_DURATION_S 10.0
#define MODE_MIXED	   STRESS_MODE_MIXED

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tally stress [--backend B|all] [--seed N]\n"
		"         [--duration S | --rounds N | --round K]\n"
		"         [--mode threads|processes|mixed] [--max-workers N]\n"
		"         [--oversubscribe] [--format table|json]\n"
		"\n"
		"Random rounds against a backend, the exact total checked\n"
		"after each.  In a ThreadSanitizer build of tally (cmake\n"
		"--preset tsan) they also find data races inside the backend.\n"
		"\n"
		"Each round draws the number of workers (1 to --max-workers),\n"
		"threads or forked processes, operations per worker (1 to\n"
		"%u), the initial value, and how often workers yield or\n"
		"sleep (1 to 200 us).  Each operation draws a delta (small,\n"
		"large, negative, INT64_MIN, INT64_MAX: the counter wraps\n"
		"modulo 2^64) and one of: add; get, pause, add; add, pause,\n"
		"add the opposite delta; add with a pause inside the lock's\n"
		"critical section (tally_add_cs, backends with the 'locked'\n"
		"capability).  Pauses also come before and between critical\n"
		"sections, and the pairs hold a value across two of them.\n"
		"A flag taken inside every critical section must never be\n"
		"found taken: two workers inside at once fail the round.\n"
		"A round stops after 2 s\n"
		"(a spinning lock on a busy machine can need minutes); the\n"
		"total is still exact, as each worker counts what it added.\n"
		"\n"
		"  --backend B      a name from 'tally list', or 'all': every\n"
		"                   built-in synchronized backend in turn\n"
		"                   (default: $%s, else %s)\n"
		"  --duration S     run for S seconds (default %g)\n"
		"  --rounds N       run rounds 1 to N\n"
		"  --round K        run round K alone, to reproduce a failure\n"
		"  --seed N         same seed, round and options: same round\n"
		"                   (not the same interleaving); default\n"
		"                   random, printed with the summary and on\n"
		"                   every failure\n"
		"  --mode M         threads, processes or mixed (default:\n"
		"                   each round picks; processes only for\n"
		"                   backends that can be shared).\n"
		"                   ThreadSanitizer sees no race between\n"
		"                   processes: under it, use threads\n"
		"  --max-workers N  1 to %u (default %u).  A spinning backend\n"
		"                   gets at most one per online CPU (%u\n"
		"                   here): more can make it thousands of\n"
		"                   times slower\n"
		"  --oversubscribe  lift that cap\n"
		"  --format F       table (default) or json\n"
		"\n"
		"exit status: 0 every round exact, 1 a round lost updates\n"
		"or let two workers into a critical section (its seed and\n"
		"configuration are printed), 2 bad input, 3 a runtime\n"
		"failure or Ctrl-C\n",
		1u << STRESS_OPS_LOG2, TALLY_ENV_BACKEND, TALLY_DEFAULT_BACKEND,
		DEFAULT_DURATION_S, MAX_WORKERS, DEFAULT_WORKERS,
		cli_online_cpus());
}

/* What the command line asked for. */
struct params {
	tally_backend_info b[MAX_BACKENDS];
	const char *spec[MAX_BACKENDS]; /* NAME or NAME:OPTIONS */
	size_t n;
	double duration;
	uint64_t rounds, only_round, seed;
	int mode; /* CREW_THREADS, CREW_PROCESSES or MODE_MIXED */
	unsigned max_workers;
	int oversubscribe;
	enum cli_format format;
};

/* Round `number`: its backend (index into params) and its schedule. */
static size_t draw_round(const struct params *p, uint64_t number,
			 struct stress_round *r)
{
	size_t backend = (size_t)((number - 1) % p->n);
	const tally_backend_info *b = &p->b[backend];
	unsigned cap = p->max_workers;

	if ((b->caps & TALLY_CAP_SPINNING) && !p->oversubscribe &&
	    cap > cli_online_cpus())
		cap = cli_online_cpus();
	stress_draw(p->seed, number, cap, p->mode,
		    (b->caps & TALLY_CAP_PSHARED) != 0, r);
	return backend;
}

/* The command that runs this round again. */
static void repro(const struct params *p, size_t backend,
		  const struct stress_round *r, char *buf, size_t size)
{
	snprintf(
		buf, size,
		"tally stress --backend %s --seed %llu --round %llu --mode %s --max-workers %u%s",
		p->spec[backend], (unsigned long long)r->seed,
		(unsigned long long)r->number, crew_mode_name(r->mode), r->cap,
		p->oversubscribe ? " --oversubscribe" : "");
}

static void describe(const struct params *p, size_t backend,
		     const struct stress_round *r, char *buf, size_t size)
{
	snprintf(
		buf, size,
		"round %llu on '%s': %s, %u workers, %llu operations each, initial %lld, yield %u/256, sleep %u/256 (1 to %u us)",
		(unsigned long long)r->number, p->b[backend].name,
		crew_mode_name(r->mode), r->workers, (unsigned long long)r->ops,
		(long long)r->initial, r->yield_rate, r->sleep_rate,
		r->max_sleep_us);
}

/* Totals per backend, for the summary. */
struct stats {
	uint64_t rounds, by_mode[2], adds, cut;
	unsigned max_workers;
	uint64_t failed_round; /* 0: none */
	int failure;	       /* EXIT_LOST or EXIT_RUNTIME for that round */
	double seconds;
};

/* A backend's line in the summary: what its rounds came to. */
static const char *verdict_of(const struct stats *st)
{
	if (st->failed_round)
		return st->failure == EXIT_LOST ? "FAILED" : "error";
	return st->rounds ? "exact" : "not run";
}

/* Say what the round came to; EXIT_EXACT, EXIT_LOST or EXIT_RUNTIME. */
static int report_round(const struct stress_outcome *o, const char *what)
{
	switch (o->verdict) {
	case HARNESS_EXACT:
		return EXIT_EXACT;
	case HARNESS_OVERLAP:
		cli_error(
			"stress",
			"EXCLUSION BROKEN in %s: %llu times a worker found the critical section occupied",
			what, (unsigned long long)o->overlaps);
		return EXIT_LOST;
	case HARNESS_LOST:
		cli_error(
			"stress",
			"LOST UPDATES in %s%s: expected %lld, actual %lld (lost %lld)",
			what, o->cut ? " (stopped at its time limit)" : "",
			(long long)o->expected, (long long)o->actual,
			(long long)((uint64_t)o->expected -
				    (uint64_t)o->actual));
		return EXIT_LOST;
	default:
		cli_error("stress", "%s", o->reason);
		cli_error("stress", "in %s", what);
		return EXIT_RUNTIME;
	}
}

/* Run one round.  Returns EXIT_EXACT, EXIT_LOST or EXIT_RUNTIME. */
static int run_round(const struct params *p, size_t backend,
		     const struct stress_round *r, struct stats *st)
{
	struct stress_outcome o;
	char what[256], again[256], stuck[640];
	uint64_t t0 = harness_now_ns();
	tally *t = NULL;
	int rc;

	describe(p, backend, r, what, sizeof(what));
	repro(p, backend, r, again, sizeof(again));
	/* What the watchdog says when the round is stuck.  Exiting is
	 * enough: worker processes die with their coordinator
	 * (CREW_DIE_WITH_PARENT). */
	snprintf(
		stuck, sizeof(stuck),
		"tally stress: %s did not finish in %d s: a worker is stuck (a lock never released?)\ntally stress: reproduce: %s\n",
		what, ROUND_LIMIT_S, again);
	rc = tally_create(&t, p->spec[backend], r->initial,
			  r->mode == CREW_PROCESSES ? TALLY_PSHARED : 0);
	if (rc != 0) {
		cli_error("stress", "cannot create a '%s' counter: %s",
			  cli_shown(p->spec[backend]), tally_explain(rc));
		st->failed_round = r->number;
		st->failure = EXIT_RUNTIME;
		return EXIT_RUNTIME;
	}
	watchdog_arm(ROUND_LIMIT_S, EXIT_RUNTIME, stuck);
	stress_run(t, r, &o);
	watchdog_disarm();
	st->adds += o.adds;
	if (o.verdict != HARNESS_ERROR)
		st->cut += (uint64_t)o.cut;
	rc = report_round(&o, what);
	if (rc != EXIT_EXACT) {
		cli_error("stress", "seed %llu; reproduce: %s",
			  (unsigned long long)r->seed, again);
		st->failed_round = r->number;
		st->failure = rc;
	}
	st->rounds++;
	st->by_mode[r->mode]++;
	st->seconds += (double)(harness_now_ns() - t0) / 1e9;
	if (r->workers > st->max_workers)
		st->max_workers = r->workers;
	tally_destroy(t);
	return rc;
}

static void print_summary(const struct params *p, const struct stats *st,
			  int verdict)
{
	char b[6][32];

	if (p->format == FORMAT_JSON) {
		printf("{\"seed\": %llu, \"exact\": %s, \"backends\": [",
		       (unsigned long long)p->seed,
		       verdict == EXIT_EXACT ? "true" : "false");
		for (size_t i = 0; i < p->n; i++) {
			printf("%s\n  {\"backend\": ", i ? "," : "");
			json_string(stdout, p->b[i].name);
			printf(", \"rounds\": %llu, \"threads_rounds\": %llu, \"processes_rounds\": %llu, \"max_workers\": %u, \"adds\": %llu, \"seconds\": %.6f, \"rounds_cut\": %llu, \"failed_round\": %llu, \"verdict\": \"%s\"}",
			       (unsigned long long)st[i].rounds,
			       (unsigned long long)st[i].by_mode[CREW_THREADS],
			       (unsigned long long)st[i]
				       .by_mode[CREW_PROCESSES],
			       st[i].max_workers,
			       (unsigned long long)st[i].adds, st[i].seconds,
			       (unsigned long long)st[i].cut,
			       (unsigned long long)st[i].failed_round,
			       verdict_of(&st[i]));
		}
		printf("\n]}\n");
		return;
	}
	static const char *const head[] = {
		"backend",     "rounds", "threads", "processes",
		"max workers", "adds",	 "seconds", "verdict"};
	struct table t;

	table_init(&t, 8, head, "lrrrrrrl");
	for (size_t i = 0; i < p->n; i++)
		table_row(&t, p->b[i].name, fmt_u64(b[0], 32, st[i].rounds),
			  fmt_u64(b[1], 32, st[i].by_mode[CREW_THREADS]),
			  fmt_u64(b[2], 32, st[i].by_mode[CREW_PROCESSES]),
			  fmt_u64(b[3], 32, st[i].max_workers),
			  fmt_u64(b[4], 32, st[i].adds),
			  fmt_f(b[5], 32, 3, st[i].seconds),
			  verdict_of(&st[i]));
	table_print(&t, stdout);
	table_free(&t);
	printf("seed %llu\n", (unsigned long long)p->seed);
}

static int stress(const struct params *p)
{
	struct stats st[MAX_BACKENDS];
	uint64_t first = p->only_round ? p->only_round : 1;
	uint64_t last = p->only_round ? p->only_round
			: p->rounds   ? p->rounds
				      : UINT64_MAX;
	uint64_t t0 = harness_now_ns(), shown = t0;
	uint64_t end = t0 + (uint64_t)(p->duration * 1e9);
	int rc = EXIT_EXACT, tty = isatty(STDERR_FILENO);
	struct stress_round r;

	memset(st, 0, sizeof(st));
	cli_install_sigint();
	for (uint64_t n = first; n <= last && rc == EXIT_EXACT; n++) {
		uint64_t now = harness_now_ns();

		if (cli_interrupted()) {
			cli_error("stress", "interrupted after %llu rounds",
				  (unsigned long long)(n - first));
			rc = EXIT_RUNTIME;
			break;
		}
		if (p->duration > 0 && (double)(now - t0) / 1e9 >= p->duration)
			break;
		if (tty && now - shown >= 500000000u) {
			fprintf(stderr, "\rstress: round %llu, %.0f s\033[K",
				(unsigned long long)n,
				(double)(now - t0) / 1e9);
			shown = now;
		}
		size_t b = draw_round(p, n, &r);
		r.deadline = now + ROUND_BUDGET_NS;
		if (p->duration > 0 && end < r.deadline)
			r.deadline = end;
		rc = run_round(p, b, &r, &st[b]);
	}
	if (tty && shown != t0)
		fprintf(stderr, "\r\033[K");
	print_summary(p, st, rc);
	return rc;
}

/* Every built-in backend that synchronizes and runs here, in registry
 * order. */
static int add_all(struct params *p, unsigned need)
{
	for (size_t i = 0; i < tally_backend_count() && p->n < MAX_BACKENDS;
	     i++) {
		tally_backend_info b;

		tally_backend_at(i, &b);
		if (!b.built_in || (b.caps & need) != need ||
		    (b.caps & (TALLY_CAP_RACY | TALLY_CAP_REMOTE)))
			continue;
		p->b[p->n] = b;
		p->spec[p->n++] = b.name;
	}
	if (p->n == 0) {
		cli_error("stress", "no built-in backend fits");
		return -1;
	}
	return 0;
}

static int parse_mode(const char *s, int *mode)
{
	static const char *const names[] = {"threads", "processes", "mixed"};

	for (int i = 0; i < 3; i++)
		if (strcmp(s, names[i]) == 0) {
			*mode = i;
			return 0;
		}
	cli_error("stress",
		  "unknown mode '%s' (allowed: threads, processes, mixed)", s);
	return -1;
}

enum {
	O_BACKEND = 256,
	O_DURATION,
	O_ROUNDS,
	O_ROUND,
	O_SEED,
	O_MODE,
	O_WORKERS,
	O_OVER,
	O_FORMAT,
};

/* Check everything before any work (at most one of --duration, --rounds
 * and --round was given); -1 after printing why. */
static int parse_values(const char **v, struct params *p)
{
	uint64_t u = DEFAULT_WORKERS;
	int given = !!v[O_DURATION - O_BACKEND] + !!v[O_ROUNDS - O_BACKEND] +
		    !!v[O_ROUND - O_BACKEND];
#define V(o) v[(o)-O_BACKEND]
	p->duration = given ? 0 : DEFAULT_DURATION_S;
	p->seed = harness_now_ns() ^ ((uint64_t)getpid() << 32);
	if ((V(O_DURATION) &&
	     cli_parse_seconds("stress", "--duration", V(O_DURATION), 0.001,
			       31536000, &p->duration)) ||
	    (V(O_ROUNDS) && cli_parse_u64("stress", "--rounds", V(O_ROUNDS), 1,
					  UINT64_MAX - 1, &p->rounds)) ||
	    (V(O_ROUND) && cli_parse_u64("stress", "--round", V(O_ROUND), 1,
					 UINT64_MAX - 1, &p->only_round)) ||
	    (V(O_SEED) && cli_parse_u64("stress", "--seed", V(O_SEED), 0,
					UINT64_MAX, &p->seed)) ||
	    (V(O_WORKERS) && cli_parse_u64("stress", "--max-workers",
					   V(O_WORKERS), 1, MAX_WORKERS, &u)) ||
	    (V(O_MODE) && parse_mode(V(O_MODE), &p->mode)) ||
	    (V(O_FORMAT) &&
	     cli_parse_format("stress", V(O_FORMAT), &p->format)))
		return -1;
	p->max_workers = (unsigned)u;
	if (p->format == FORMAT_CSV) {
		cli_error("stress", "--format is table or json");
		return -1;
	}
	const char *spec = cli_resolve_backend(V(O_BACKEND));
	unsigned need = p->mode == CREW_PROCESSES ? TALLY_CAP_PSHARED : 0;
	if (strcmp(spec, "all") == 0)
		return add_all(p, need);
	p->spec[0] = spec;
	p->n = 1;
	return cli_check_backend(
		"stress", spec, need,
		"with --mode processes: it cannot live in memory shared between processes",
		&p->b[0]);
#undef V
}

/* Options are collected first (val[O_X - O_BACKEND]) and checked together
 * once all are known. */
static int take(void *val, int code, char *arg)
{
	((const char **)val)[code - O_BACKEND] = arg;
	return 0;
}

int cmd_stress(int argc, char **argv)
{
	static const struct option opts[] = {
		{"backend", required_argument, NULL, O_BACKEND},
		{"duration", required_argument, NULL, O_DURATION},
		{"rounds", required_argument, NULL, O_ROUNDS},
		{"round", required_argument, NULL, O_ROUND},
		{"seed", required_argument, NULL, O_SEED},
		{"mode", required_argument, NULL, O_MODE},
		{"max-workers", required_argument, NULL, O_WORKERS},
		{"oversubscribe", no_argument, NULL, O_OVER},
		{"format", required_argument, NULL, O_FORMAT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const struct cli_command cmd = {
		.name = "stress",
		.opts = opts,
		.usage = usage,
		.take = take,
	};
	const char *val[O_FORMAT - O_BACKEND + 1] = {0};
	uint64_t seen;
	int rc = cli_options(&cmd, argc, argv, val, &seen);

	if (rc != CLI_GO)
		return rc;
	/* Each says how long to run: one of them, or the default. */
	if (cli_conflict("stress", opts, seen, O_DURATION, O_ROUNDS) != 0 ||
	    cli_conflict("stress", opts, seen, O_DURATION, O_ROUND) != 0 ||
	    cli_conflict("stress", opts, seen, O_ROUNDS, O_ROUND) != 0)
		return EXIT_USAGE;

	struct params *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return EXIT_RUNTIME;
	p->mode = MODE_MIXED;
	p->oversubscribe = cli_given(opts, seen, O_OVER);
	rc = EXIT_USAGE;
	if (parse_values(val, p) != 0)
		goto out;
#ifdef STRESS_TSAN
	if (p->mode != CREW_THREADS)
		cli_warn(
			"stress",
			"ThreadSanitizer does not see races between processes: processes rounds only check the total");
#endif
	rc = stress(p);
out:
	free(p);
	return rc;
}
