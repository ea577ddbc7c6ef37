/* `tally stress`: randomized schedules that hunt for lost updates and, in a
 * ThreadSanitizer build of tally, for data races inside a backend. */
#include "cli.h"
#include "commands.h"
#include "workload.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
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

#define MAX_WORKERS	64u
#define DEFAULT_WORKERS 16u
#define MAX_BACKENDS	32u
#define OPS_LOG2	13  /* at most 8192 operations per worker */
#define ROUND_LIMIT_S	300 /* a round still running then is stuck */
/* Workers stop a round after this long: a spinning lock on a busy machine
 * (more runnable threads than CPUs, whoever they belong to) hands over once
 * per time slice, and would otherwise make one round take minutes. */
#define ROUND_BUDGET_NS	   2000000000u
#define DEFAULT_DURATION_S 10.0
#define MODE_MIXED	   2 /* beside WL_THREADS and WL_PROCESSES */

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
		1u << OPS_LOG2, TALLY_ENV_BACKEND, TALLY_DEFAULT_BACKEND,
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
	int mode; /* WL_THREADS, WL_PROCESSES or MODE_MIXED */
	unsigned max_workers;
	int oversubscribe;
	enum cli_format format;
};

/* One round, drawn from (seed, number) alone. */
struct round {
	uint64_t number, seed;
	size_t backend; /* index into params */
	enum wl_mode mode;
	unsigned workers, cap;
	uint64_t ops;
	int64_t initial;
	unsigned yield_rate, sleep_rate; /* out of 256, per pause point */
	unsigned max_sleep_us;
	uint64_t deadline; /* monotonic ns: workers stop there */
};

/* What each worker reports; private to it until it has finished. */
struct slot {
	_Alignas(128) uint64_t sum; /* of the deltas it added, mod 2^64 */
	uint64_t adds;
	int error;
	int cut; /* stopped at the deadline, before r->ops */
};

/* In an anonymous shared mapping, so that forked workers see it too. */
struct gate {
	_Atomic int go; /* 1: start; -1: setup failed, leave at once */
	/* The critical-section probe: the workers inside a section that
	 * tally_add_cs() runs, counted in on entry and out on exit.  Under a
	 * lock that excludes nobody finds anyone inside; each time somebody
	 * does counts in overlaps.  A count, not a flag: one overlap's exit
	 * must not clear the mark of a worker still inside.  Relaxed: the
	 * lock orders the sections, and these are atomic only so that a
	 * broken lock's overlap is a finding rather than a race of stress's
	 * own. */
	_Atomic unsigned occupied;
	_Atomic uint64_t overlaps;
	struct slot slot[];
};

struct worker {
	tally *t;
	const struct round *r;
	struct gate *g;
	unsigned k;
};

/* splitmix64: small, fast, and every seed is a good one. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* A worker's own stream, different for every (round, worker). */
static uint64_t stream(uint64_t seed, uint64_t a, uint64_t b)
{
	uint64_t s =
		seed ^ (a * 0xd1b54a32d192ed03u) ^ (b * 0x8cb92ba72f3d8dd7u);

	return rnd(&s);
}

static int64_t draw_delta(uint64_t *s)
{
	static const int64_t edge[] = {INT64_MIN, INT64_MAX, -1, 1};
	uint64_t kind = rnd(s), v = rnd(s);

	switch (kind % 8) {
	case 0:
		return (int64_t)v; /* anything: the total wraps */
	case 1:
		return edge[v % 4];
	case 2:
	case 3:
		return (int64_t)(v % (2u << 20)) - (1 << 20);
	default:
		return (int64_t)(v % 17) - 8;
	}
}

static int64_t draw_initial(uint64_t *s)
{
	uint64_t kind = rnd(s), v = rnd(s);

	switch (kind % 4) {
	case 0:
		return 0;
	case 1:
		return (int64_t)(v % 2001) - 1000;
	case 2: /* next to the wrap-around point */
		return (int64_t)(v % 64) +
		       (v & 64 ? INT64_MIN : INT64_MAX - 63);
	default:
		return (int64_t)v;
	}
}

static void draw_round(const struct params *p, uint64_t number, struct round *r)
{
	static const unsigned yields[] = {0, 4, 32, 255};
	static const unsigned sleeps[] = {0, 0, 1, 8};
	uint64_t s = stream(p->seed, number, 0);
	const tally_backend_info *b;

	r->number = number;
	r->seed = p->seed;
	r->backend = (size_t)((number - 1) % p->n);
	b = &p->b[r->backend];
	r->cap = p->max_workers;
	if ((b->caps & TALLY_CAP_SPINNING) && !p->oversubscribe &&
	    r->cap > cli_online_cpus())
		r->cap = cli_online_cpus();
	/* Every value is drawn whatever the options, so that a round is the
	 * same when it is reproduced with --mode and --max-workers. */
	r->workers = 1 + (unsigned)(rnd(&s) % r->cap);
	uint64_t mode = rnd(&s) % 2, log2 = rnd(&s) % (OPS_LOG2 + 1);
	r->ops = 1 + rnd(&s) % (1u << log2);
	r->initial = draw_initial(&s);
	r->yield_rate = yields[rnd(&s) % 4];
	r->sleep_rate = sleeps[rnd(&s) % 4];
	r->max_sleep_us = 1 + (unsigned)(rnd(&s) % 200);
	if (p->mode != MODE_MIXED)
		r->mode = (enum wl_mode)p->mode;
	else
		r->mode = mode && (b->caps & TALLY_CAP_PSHARED) ? WL_PROCESSES
								: WL_THREADS;
}

static void pause_maybe(const struct round *r, uint64_t x)
{
	if ((x & 255) < r->yield_rate) {
		sched_yield();
	} else if ((x >> 8 & 255) < r->sleep_rate) {
		uint64_t us = 1 + (x >> 16) % r->max_sleep_us;
		struct timespec ts = {.tv_nsec = (long)us * 1000};

		nanosleep(&ts, NULL);
	}
}

/* Add d, and account for it only if it went in. */
static int add(struct worker *w, struct slot *sl, int64_t d)
{
	int rc = tally_add(w->t, d);

	if (rc < 0)
		return rc;
	sl->sum += (uint64_t)d;
	sl->adds++;
	return 0;
}

struct inside {
	const struct round *r;
	struct gate *g;
	uint64_t x;
};

static void pause_inside(void *arg)
{
	const struct inside *in = arg;

	if (atomic_fetch_add_explicit(&in->g->occupied, 1,
				      memory_order_relaxed))
		atomic_fetch_add_explicit(&in->g->overlaps, 1,
					  memory_order_relaxed);
	pause_maybe(in->r, in->x);
	atomic_fetch_sub_explicit(&in->g->occupied, 1, memory_order_relaxed);
}

/* Add d with a pause inside the backend's critical section, stretching it
 * so that a broken lock would let another worker in; backends without a
 * lock (TALLY_EUNSUPPORTED) add plainly. */
static int add_stretched(struct worker *w, struct slot *sl, int64_t d,
			 uint64_t x)
{
	struct inside in = {.r = w->r, .g = w->g, .x = x};
	int rc = tally_add_cs(w->t, d, pause_inside, &in);

	if (rc == TALLY_EUNSUPPORTED)
		return add(w, sl, d);
	if (rc < 0)
		return rc;
	sl->sum += (uint64_t)d;
	sl->adds++;
	return 0;
}

/* One random operation; 0 or a TALLY_E* code. */
static int one_op(struct worker *w, struct slot *sl, uint64_t *s)
{
	uint64_t x = rnd(s);
	int64_t d = draw_delta(s), v;
	int rc;

	pause_maybe(w->r, x);
	switch (x >> 32 & 3) {
	case 1: /* the window of a read-modify-write done without a lock */
		if ((rc = tally_get(w->t, &v)) < 0)
			return rc;
		pause_maybe(w->r, rnd(s));
		return add(w, sl, d);
	case 2: /* a transient value that the other workers add onto */
		if ((rc = add(w, sl, d)) < 0)
			return rc;
		pause_maybe(w->r, rnd(s));
		return add(w, sl, (int64_t)(0 - (uint64_t)d));
	case 3: /* a longer critical section */
		return add_stretched(w, sl, d, rnd(s));
	default:
		return add(w, sl, d);
	}
}

static void work(struct worker *w)
{
	struct slot *sl = &w->g->slot[w->k];
	uint64_t s = stream(w->r->seed, w->r->number, w->k + 1);
	int go;

	while ((go = atomic_load_explicit(&w->g->go, memory_order_acquire)) ==
	       0)
		sched_yield();
	for (uint64_t i = 0; go > 0 && i < w->r->ops; i++) {
		/* The clock is a vDSO call; every 64 operations is cheap. */
		if (i % 64 == 63 && cli_now_ns() >= w->r->deadline) {
			sl->cut = 1;
			break;
		}
		int rc = one_op(w, sl, &s);
		if (rc < 0) {
			sl->error = rc;
			break;
		}
	}
}

static void *thread_main(void *arg)
{
	work(arg);
	return NULL;
}

/* For the watchdog: what to say and whom to kill when a round is stuck. */
static char stuck_msg[640];
static pid_t stuck_pids[MAX_WORKERS];

static void on_alarm(int sig)
{
	(void)sig;
	for (unsigned k = 0; k < MAX_WORKERS; k++)
		if (stuck_pids[k] > 0)
			kill(stuck_pids[k], SIGKILL);
	if (write(STDERR_FILENO, stuck_msg, strlen(stuck_msg)) < 0)
		_exit(EXIT_RUNTIME);
	_exit(EXIT_RUNTIME);
}

/* Start r->workers workers, open the gate, wait for all of them.
 * Returns 0, or -1 with a message printed. */
static int run_workers(const struct round *r, struct worker *ws)
{
	pthread_t th[MAX_WORKERS];
	unsigned started = 0, k;
	int rc = 0;

	for (; started < r->workers; started++) {
		/* Processes ignore Ctrl-C: the coordinator decides. */
		if (wl_spawn(r->mode, thread_main, &ws[started],
			     WL_SPAWN_IGNORE_SIGINT, &th[started],
			     &stuck_pids[started]) != 0)
			break;
	}
	if (started < r->workers) {
		cli_error("stress", "cannot start worker %u: %s", started,
			  strerror(errno));
		rc = -1;
	}
	atomic_store_explicit(&ws[0].g->go, rc ? -1 : 1, memory_order_release);
	for (k = 0; k < started; k++) {
		int status = 0;

		if (r->mode == WL_THREADS) {
			pthread_join(th[k], NULL);
			continue;
		}
		while (waitpid(stuck_pids[k], &status, 0) < 0 && errno == EINTR)
			;
		stuck_pids[k] = 0;
		if (rc == 0 && (!WIFEXITED(status) || WEXITSTATUS(status))) {
			cli_error("stress", "worker %u (a process) died: %s", k,
				  WIFSIGNALED(status)
					  ? strsignal(WTERMSIG(status))
					  : "nonzero exit");
			rc = -1;
		}
	}
	return rc;
}

/* The command that runs this round again. */
static void repro(const struct params *p, const struct round *r, char *buf,
		  size_t size)
{
	snprintf(buf, size,
		 "tally stress --backend %s --seed %llu --round %llu --mode %s "
		 "--max-workers %u%s",
		 p->spec[r->backend], (unsigned long long)r->seed,
		 (unsigned long long)r->number, wl_mode_name(r->mode), r->cap,
		 p->oversubscribe ? " --oversubscribe" : "");
}

static void describe(const struct params *p, const struct round *r, char *buf,
		     size_t size)
{
	snprintf(buf, size,
		 "round %llu on '%s': %s, %u workers, %llu operations each, "
		 "initial %lld, yield %u/256, sleep %u/256 (1 to %u us)",
		 (unsigned long long)r->number, p->b[r->backend].name,
		 wl_mode_name(r->mode), r->workers, (unsigned long long)r->ops,
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

/*
 * The verdict on a round whose workers have all finished: every worker's
 * error, the critical-section probe, then the counter against initial +
 * what the workers added.  Returns EXIT_EXACT, EXIT_LOST or EXIT_RUNTIME
 * (with the reason printed).
 */
static int check_round(const struct round *r, struct gate *g, tally *t,
		       const char *what, struct stats *st)
{
	uint64_t sum = (uint64_t)r->initial;
	int64_t actual;
	int cut = 0, rc;

	for (unsigned k = 0; k < r->workers; k++) {
		const struct slot *sl = &g->slot[k];

		sum += sl->sum;
		st->adds += sl->adds;
		cut |= sl->cut;
		if (sl->error) {
			cli_error("stress", "worker %u: an add failed: %s", k,
				  tally_strerror(sl->error));
			return EXIT_RUNTIME;
		}
	}
	st->cut += (uint64_t)cut;
	uint64_t overlaps = atomic_load(&g->overlaps);
	if (overlaps != 0) {
		cli_error("stress",
			  "EXCLUSION BROKEN in %s: %llu times a worker found "
			  "the critical section occupied",
			  what, (unsigned long long)overlaps);
		return EXIT_LOST;
	}
	if ((rc = tally_get(t, &actual)) < 0) {
		cli_error("stress", "cannot read the counter: %s",
			  tally_strerror(rc));
		return EXIT_RUNTIME;
	}
	if ((uint64_t)actual == sum)
		return EXIT_EXACT;
	cli_error("stress",
		  "LOST UPDATES in %s%s: expected %lld, actual %lld (lost "
		  "%lld)",
		  what, cut ? " (stopped at its time limit)" : "",
		  (long long)sum, (long long)actual,
		  (long long)(sum - (uint64_t)actual));
	return EXIT_LOST;
}

/* Run one round.  Returns EXIT_EXACT, EXIT_LOST or EXIT_RUNTIME. */
static int run_round(const struct params *p, const struct round *r,
		     struct stats *st)
{
	size_t size = sizeof(struct gate) + r->workers * sizeof(struct slot);
	struct worker ws[MAX_WORKERS];
	char what[256], again[256];
	uint64_t t0 = cli_now_ns();
	tally *t = NULL;
	int rc;

	describe(p, r, what, sizeof(what));
	repro(p, r, again, sizeof(again));
	snprintf(stuck_msg, sizeof(stuck_msg),
		 "tally stress: %s did not finish in %d s: a worker is stuck "
		 "(a lock never released?)\ntally stress: reproduce: %s\n",
		 what, ROUND_LIMIT_S, again);
	struct gate *g = mmap(NULL, size, PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g == MAP_FAILED) {
		cli_error("stress", "cannot map memory: %s", strerror(errno));
		return EXIT_RUNTIME;
	}
	rc = tally_create(&t, p->spec[r->backend], r->initial,
			  r->mode == WL_PROCESSES ? TALLY_PSHARED : 0);
	if (rc != 0) {
		cli_error("stress", "cannot create a '%s' counter: %s",
			  p->spec[r->backend], tally_explain(rc));
		munmap(g, size);
		st->failed_round = r->number;
		st->failure = EXIT_RUNTIME;
		return EXIT_RUNTIME;
	}
	for (unsigned k = 0; k < r->workers; k++)
		ws[k] = (struct worker){.t = t, .r = r, .g = g, .k = k};
	alarm(ROUND_LIMIT_S);
	rc = run_workers(r, ws) ? EXIT_RUNTIME : check_round(r, g, t, what, st);
	alarm(0);
	if (rc != EXIT_EXACT) {
		if (rc == EXIT_RUNTIME)
			cli_error("stress", "in %s", what);
		cli_error("stress", "seed %llu; reproduce: %s",
			  (unsigned long long)r->seed, again);
		st->failed_round = r->number;
		st->failure = rc;
	}
	st->rounds++;
	st->by_mode[r->mode]++;
	st->seconds += (double)(cli_now_ns() - t0) / 1e9;
	if (r->workers > st->max_workers)
		st->max_workers = r->workers;
	tally_destroy(t);
	munmap(g, size);
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
			printf(", \"rounds\": %llu, \"threads_rounds\": %llu, "
			       "\"processes_rounds\": %llu, \"max_workers\": "
			       "%u, \"adds\": %llu, \"seconds\": %.6f, "
			       "\"rounds_cut\": %llu, \"failed_round\": %llu, "
			       "\"verdict\": \"%s\"}",
			       (unsigned long long)st[i].rounds,
			       (unsigned long long)st[i].by_mode[WL_THREADS],
			       (unsigned long long)st[i].by_mode[WL_PROCESSES],
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
			  fmt_u64(b[1], 32, st[i].by_mode[WL_THREADS]),
			  fmt_u64(b[2], 32, st[i].by_mode[WL_PROCESSES]),
			  fmt_u64(b[3], 32, st[i].max_workers),
			  fmt_u64(b[4], 32, st[i].adds),
			  fmt_f(b[5], 32, "%.3f", st[i].seconds),
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
	uint64_t t0 = cli_now_ns(), shown = t0;
	uint64_t end = t0 + (uint64_t)(p->duration * 1e9);
	int rc = EXIT_EXACT, tty = isatty(STDERR_FILENO);
	struct round r;

	memset(st, 0, sizeof(st));
	signal(SIGALRM, on_alarm);
	wl_install_sigint();
	for (uint64_t n = first; n <= last && rc == EXIT_EXACT; n++) {
		uint64_t now = cli_now_ns();

		if (wl_sigint) {
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
		draw_round(p, n, &r);
		r.deadline = now + ROUND_BUDGET_NS;
		if (p->duration > 0 && end < r.deadline)
			r.deadline = end;
		rc = run_round(p, &r, &st[r.backend]);
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

/* Check everything before any work; -1 after printing why. */
static int parse_values(const char **v, struct params *p)
{
	uint64_t u = DEFAULT_WORKERS;
	int given = !!v[O_DURATION - O_BACKEND] + !!v[O_ROUNDS - O_BACKEND] +
		    !!v[O_ROUND - O_BACKEND];
#define V(o) v[(o)-O_BACKEND]
	if (given > 1) {
		cli_error("stress", "give at most one of --duration, --rounds "
				    "and --round");
		return -1;
	}
	p->duration = given ? 0 : DEFAULT_DURATION_S;
	p->seed = cli_now_ns() ^ ((uint64_t)getpid() << 32);
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
	unsigned need = p->mode == WL_PROCESSES ? TALLY_CAP_PSHARED : 0;
	if (strcmp(spec, "all") == 0)
		return add_all(p, need);
	p->spec[0] = spec;
	p->n = 1;
	return cli_check_backend("stress", spec, need,
				 "with --mode processes: it cannot live in "
				 "memory shared between processes",
				 &p->b[0]);
#undef V
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
	const char *val[O_FORMAT - O_BACKEND + 1] = {0};
	struct params *p = calloc(1, sizeof(*p));
	int c, rc = EXIT_USAGE;

	if (p == NULL)
		return EXIT_RUNTIME;
	p->mode = MODE_MIXED;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			rc = EXIT_EXACT;
			goto out;
		}
		if (c < O_BACKEND || c > O_FORMAT) {
			cli_error("stress",
				  "unknown or incomplete option '%s' (see "
				  "'tally stress --help')",
				  argv[optind - 1]);
			goto out;
		}
		if (c == O_OVER)
			p->oversubscribe = 1;
		val[c - O_BACKEND] = optarg;
	}
	if (optind < argc) {
		cli_error("stress",
			  "unexpected argument '%s' (it takes options "
			  "only; see 'tally stress --help')",
			  argv[optind]);
		goto out;
	}
	if (parse_values(val, p) != 0)
		goto out;
#ifdef STRESS_TSAN
	if (p->mode != WL_THREADS)
		cli_warn("stress", "ThreadSanitizer does not see races between "
				   "processes: processes rounds only check the "
				   "total");
#endif
	rc = stress(p);
out:
	free(p);
	return rc;
}
