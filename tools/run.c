/* `tally run`: one workload on one backend, in threads or processes, with
 * the final count checked. */
#include "cli.h"
#include "commands.h"
#include "participants.h"
#include "run_core.h"
#include "workload.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tally run --workload addsub|inc [--backend B]\n"
		"                 [--workers N] [--iters N] [--mode threads|processes]\n"
		"                 [--delta D] [--initial V] [--sleep-us U]\n"
		"                 [--kill-after-ms MS] [--stall-timeout S]\n"
		"                 [--participants N [--join-timeout S]]\n"
		"                 [--format table|json|csv]\n\n"
		"Run one of the lesson's workloads and check the final count.\n\n"
		"  addsub  start at --initial (500); even workers add --delta (5),\n"
		"          odd ones subtract it, --iters (100) times each, sleeping\n"
		"          --sleep-us (10000) before each step: exact answer 500\n"
		"  inc     --workers (2) workers, --iters (1000000) each; worker k\n"
		"          adds (k+1) x --delta (1): exact answer 3000000\n\n"
		"  --backend B        a name from 'tally list' (default: $%s, else %s)\n"
		"  --mode M           threads (default) or processes (forked workers\n"
		"                     sharing the counter in shared memory)\n"
		"  --workers N        1 to %u\n"
		"  --kill-after-ms MS processes only: SIGKILL worker 0 (or the first\n"
		"                     still running) after MS ms, to see whether the\n"
		"                     lock survives a holder that dies\n"
		"  --stall-timeout S  give up when no add completes for S seconds\n"
		"                     (default 10)\n"
		"  --participants N   1 to 62 runs, on any machines, on one remote\n"
		"                     counter: they meet at a barrier on the server,\n"
		"                     start together, and each prints the joint verdict\n"
		"  --join-timeout S   how long to wait for the others at each barrier\n"
		"                     (default 60)\n"
		"  --format F         table (default), json or csv\n\n"
		"exit status: 0 exact, 1 lost updates, 2 bad input, 3 runtime failure\n"
		"(a worker killed or died, no progress, interrupted by Ctrl-C)\n",
		TALLY_ENV_BACKEND, TALLY_DEFAULT_BACKEND, WL_MAX_WORKERS);
}

/* A worker process that finished its adds, then exited badly. */
static void explain_failed_worker(const struct wl_result *res)
{
	int st = res->failed_status;

	if (WIFSIGNALED(st))
		fprintf(stderr,
			"tally run: worker %d finished its adds, then died of %s\n",
			res->failed_worker, strsignal(WTERMSIG(st)));
	else
		fprintf(stderr,
			"tally run: worker %d finished its adds, then exited with status %d (a memory checker's report?)\n",
			res->failed_worker, WEXITSTATUS(st));
}

/* The worker that was killed or died (victim, or -1), and what became of the
 * lock it may have held; or why --kill-after-ms killed nobody. */
static void explain_victim(const struct wl_config *cfg,
			   const struct wl_result *res, const char *backend,
			   int victim)
{
	if (victim >= 0) {
		fprintf(stderr,
			"tally run: worker %d %s after %llu of %llu adds\n",
			victim,
			res->killed_worker >= 0
				? "was killed (SIGKILL, --kill-after-ms)"
				: "died",
			(unsigned long long)res->done[victim],
			(unsigned long long)cfg->iters);
		if (res->recovered)
			fprintf(stderr,
				"tally run: it died holding the lock; a surviving worker recovered it (%s) and carried on\n",
				strncasecmp(backend, "mutex", 5) == 0 &&
						(backend[5] == '\0' ||
						 backend[5] == ':')
					? "EOWNERDEAD, robust mutex"
					: "the kernel said its process was gone");
		else if (!res->stalled)
			fprintf(stderr,
				"tally run: the lock was not held when it died, or needed no recovery\n");
	} else if (cfg->kill_after_ms && res->killed_worker < 0 &&
		   !res->interrupted && !res->stalled)
		fprintf(stderr,
			"tally run: no worker was killed: every worker had finished before --kill-after-ms %llu (the run took %.3f s); use more --iters or a smaller --kill-after-ms\n",
			(unsigned long long)cfg->kill_after_ms, res->seconds);
}

/* No add completed for --stall-timeout: who is most likely to blame. */
static void explain_stall(const struct wl_config *cfg, const char *backend,
			  int victim)
{
	fprintf(stderr, "tally run: no add completed for %g s; ",
		cfg->stall_timeout_s);
	if (victim >= 0)
		fprintf(stderr,
			"worker %d most likely died holding the '%s' lock in the instant after it took it, before it recorded itself as the holder, so nobody could take it over: the counter is unusable; create a new one, or use the robust 'mutex' backend\n",
			victim, backend);
	else
		fprintf(stderr,
			"the workers are stuck (a lock that is never released?)\n");
}

/* With a victim: does the count agree with the adds that completed, give or
 * take the one it had in flight? */
static void explain_accounting(const struct wl_config *cfg,
			       const struct wl_result *res, int victim)
{
	int64_t d = wl_worker_delta(cfg, (unsigned)victim);
	uint64_t mag = d < 0 ? -(uint64_t)d : (uint64_t)d;
	uint64_t off =
		res->lost < 0 ? -(uint64_t)res->lost : (uint64_t)res->lost;
	fprintf(stderr,
		"tally run: accounting: final value %lld, completed adds sum to %lld: %s\n",
		(long long)res->actual, (long long)res->expected,
		off == 0 ? "they agree"
		: off <= mag
			? "they differ by the one add that was in flight"
			: "they differ by more than the add in flight (lost updates)");
}

/* A joined run (`keep`): what it can say of its own adds, and of the
 * others' (how far the key moved beyond its own). */
static void explain_others(const struct wl_result *res)
{
	int64_t own = (int64_t)((uint64_t)res->expected - (uint64_t)res->start);

	fprintf(stderr,
		"tally run: this run joined the key at %" PRId64
		" and judges only its own %" PRIu64 " adds, summing to %" PRId64
		": %s\n",
		res->start, res->total_ops, own,
		res->verdict == HARNESS_EXACT
			? "every one acknowledged, so applied once"
			: "not every one was acknowledged (above)");
	if (res->others == 0)
		fprintf(stderr,
			"tally run: the key moved by exactly this run's adds, to %" PRId64
			"\n",
			res->actual);
	else
		fprintf(stderr,
			"tally run: the key also moved by %" PRId64
			" beyond this run's adds, to %" PRId64
			": other writers%s\n",
			res->others, res->actual,
			res->others < 0 ? " subtracting, or adds lost elsewhere"
					: "");
}

/* Everything that went wrong with a run, on stderr, after its table. */
static void explain_faults(const struct wl_config *cfg,
			   const struct wl_result *res, const char *backend)
{
	int victim =
		res->killed_worker >= 0 ? res->killed_worker : res->died_worker;

	if (res->interrupted)
		fprintf(stderr,
			"tally run: interrupted; the counts above are what the workers completed before they stopped\n");
	if (res->add_error)
		fprintf(stderr, "tally run: an add failed: %s\n",
			res->add_error_why[0] ? res->add_error_why
					      : tally_strerror(res->add_error));
	if (res->unknown)
		run_explain_unknown(res->unknown, res->unknown_sum,
				    res->unread ? NULL : &res->actual,
				    res->expected, res->unknown_why);
	if (res->failed_worker >= 0)
		explain_failed_worker(res);
	explain_victim(cfg, res, backend, victim);
	if (res->stalled)
		explain_stall(cfg, backend, victim);
	if (victim >= 0 && !res->unread && !res->joined)
		explain_accounting(cfg, res, victim);
	if (res->joined && !res->unread)
		explain_others(res);
}

/* The result as JSON: one object (DESIGN.md's fields and more). */
static void print_json(const char *backend, const struct wl_config *cfg,
		       const struct wl_result *res, const char *actual,
		       const char *lost)
{
	double ns = res->total_ops ? res->seconds * 1e9 / (double)res->total_ops
				   : 0.0;
	char others[32] = "null";

	if (res->joined && !res->unread)
		fmt_i64(others, sizeof(others), res->others);
	printf("{\"backend\": ");
	json_string(stdout, backend);
	printf(", \"workload\": \"%s\", \"mode\": \"%s\", \"workers\": %u, \"iters\": %llu, \"delta\": %lld, \"initial\": %lld, \"start\": %lld, \"sleep_us\": %llu, \"expected\": %lld, \"actual\": %s, \"lost\": %s, \"joined\": %s, \"others\": %s, \"seconds\": %.6f, \"ns_per_op\": %.2f, \"total_ops\": %llu, \"per_worker_ops\": [",
	       wl_kind_name(cfg->kind), crew_mode_name(cfg->mode), cfg->workers,
	       (unsigned long long)cfg->iters, (long long)cfg->delta,
	       (long long)cfg->initial, (long long)res->start,
	       (unsigned long long)cfg->sleep_us, (long long)res->expected,
	       actual, lost, res->joined ? "true" : "false", others,
	       res->seconds, ns, (unsigned long long)res->total_ops);
	for (unsigned k = 0; k < cfg->workers; k++)
		printf("%s%llu", k ? ", " : "",
		       (unsigned long long)res->done[k]);
	printf("], \"online_cpus\": %u, \"oversubscribed\": %s, \"interrupted\": %s, \"killed_worker\": %d, \"died_worker\": %d, \"failed_worker\": %d, \"recovered\": %u, \"stalled\": %s, \"unknown\": %llu, \"unknown_sum\": %lld, \"exact\": %s, \"path\": %s%s%s}\n",
	       cli_online_cpus(),
	       cfg->workers > cli_online_cpus() ? "true" : "false",
	       res->interrupted ? "true" : "false", res->killed_worker,
	       res->died_worker, res->failed_worker, res->recovered,
	       res->stalled ? "true" : "false",
	       (unsigned long long)res->unknown, (long long)res->unknown_sum,
	       (res->joined ? res->verdict == HARNESS_EXACT
			    : !res->unread && res->lost == 0 && !res->unknown &&
				      !res->flush_failed)
		       ? "true"
		       : "false",
	       res->path ? "\"" : "", res->path ? res->path : "null",
	       res->path ? "\"" : "");
}

/*
 * The result: a table, CSV or JSON on stdout.  A remote counter's table has
 * an `unknown` column (adds of unknown outcome, never counted as lost); a
 * joined run's `lost` is "-": it cannot tell, and says so on stderr.
 */
static void print_result(enum cli_format format, const char *backend,
			 unsigned caps, const struct wl_config *cfg,
			 const struct wl_result *res)
{
	double ns = res->total_ops ? res->seconds * 1e9 / (double)res->total_ops
				   : 0.0;
	char actual[32], lost[32]; /* "null" / "?" when unread, "-": joined */
	const char *none = format == FORMAT_JSON ? "null" : "?";

	fmt_i64(actual, 32, res->actual);
	fmt_i64(lost, 32, res->lost);
	if (res->unread) {
		strcpy(actual, none);
		strcpy(lost, none);
	} else if (res->joined) {
		strcpy(lost, format == FORMAT_JSON ? "null" : "-");
	}
	if (format == FORMAT_JSON) {
		print_json(backend, cfg, res, actual, lost);
		return;
	}

	char b[10][32];
	static const char *const head[] = {"backend", "workload", "mode",
					   "workers", "iters",	  "expected",
					   "actual",  "lost",	  "seconds",
					   "ns/op",   "unknown"};
	struct table t;
	int remote = (caps & TALLY_CAP_REMOTE) != 0;

	table_init(&t, remote ? 11 : 10, head, "lllrrrrrrrr");
	fmt_u64(b[0], 32, cfg->workers);
	fmt_u64(b[1], 32, cfg->iters);
	fmt_i64(b[2], 32, res->expected);
	fmt_f(b[5], 32, 3, res->seconds);
	fmt_f(b[6], 32, 1, ns);
	fmt_u64(b[7], 32, res->unknown);
	if (remote)
		table_row(&t, backend, wl_kind_name(cfg->kind),
			  crew_mode_name(cfg->mode), b[0], b[1], b[2], actual,
			  lost, b[5], b[6], b[7]);
	else
		table_row(&t, backend, wl_kind_name(cfg->kind),
			  crew_mode_name(cfg->mode), b[0], b[1], b[2], actual,
			  lost, b[5], b[6]);
	table_emit(&t, format, stdout);
	table_free(&t);
}

enum {
	O_BACKEND = 256,
	O_WORKLOAD,
	O_WORKERS,
	O_ITERS,
	O_MODE,
	O_DELTA,
	O_INITIAL,
	O_SLEEP,
	O_KILL,
	O_STALL,
	O_PARTICIPANTS,
	O_JOIN_TIMEOUT,
	O_FORMAT
};

/* What the command line asked for, checked. */
struct params {
	const char *backend; /* NAME or NAME:OPTIONS */
	tally_backend_info info;
	struct wl_config cfg;
	enum cli_format format;
	uint64_t participants; /* 0: a run of its own */
	double join_timeout;
};

/* The option v[O_X - O_BACKEND] (NULL when it was not given). */
#define V(o) v[(o)-O_BACKEND]

/* The numbers and the format, over the workload's defaults in *cfg.
 * 0, or -1 after printing why. */
static int parse_numbers(const char **v, struct wl_config *cfg,
			 enum cli_format *format)
{
	uint64_t u;

	if ((V(O_WORKERS) && cli_parse_u64("run", "--workers", V(O_WORKERS), 1,
					   WL_MAX_WORKERS, &u)))
		return -1;
	if (V(O_WORKERS))
		cfg->workers = (unsigned)u;
	if ((V(O_ITERS) && cli_parse_u64("run", "--iters", V(O_ITERS), 1,
					 UINT64_MAX / 2, &cfg->iters)) ||
	    (V(O_DELTA) && cli_parse_i64("run", "--delta", V(O_DELTA),
					 INT64_MIN, INT64_MAX, &cfg->delta)) ||
	    (V(O_INITIAL) &&
	     cli_parse_i64("run", "--initial", V(O_INITIAL), INT64_MIN,
			   INT64_MAX, &cfg->initial)) ||
	    (V(O_SLEEP) && cli_parse_u64("run", "--sleep-us", V(O_SLEEP), 0,
					 10000000, &cfg->sleep_us)) ||
	    (V(O_KILL) && cli_parse_u64("run", "--kill-after-ms", V(O_KILL), 1,
					3600000, &cfg->kill_after_ms)) ||
	    (V(O_STALL) &&
	     cli_parse_seconds("run", "--stall-timeout", V(O_STALL), 0.1, 3600,
			       &cfg->stall_timeout_s)) ||
	    (V(O_FORMAT) && cli_parse_format("run", V(O_FORMAT), format)))
		return -1;
	return 0;
}

/* The workload and everything it is run with.  0, or -1 after printing
 * why. */
static int parse_workload(const char **v, struct wl_config *cfg,
			  enum cli_format *format)
{
	enum wl_kind kind;

	if (V(O_WORKLOAD) == NULL) {
		cli_error("run", "--workload is required (addsub or inc)");
		return -1;
	}
	if (wl_parse_kind(V(O_WORKLOAD), &kind) != 0) {
		cli_error("run", "unknown workload '%s' (allowed: addsub, inc)",
			  V(O_WORKLOAD));
		return -1;
	}
	wl_defaults(kind, cfg);
	if (V(O_MODE) && strcmp(V(O_MODE), "threads") == 0)
		cfg->mode = CREW_THREADS;
	else if (V(O_MODE) && strcmp(V(O_MODE), "processes") == 0)
		cfg->mode = CREW_PROCESSES;
	else if (V(O_MODE)) {
		cli_error("run",
			  "unknown mode '%s' (allowed: threads, processes)",
			  V(O_MODE));
		return -1;
	}
	if (parse_numbers(v, cfg, format) != 0)
		return -1;
	if (cfg->kill_after_ms && cfg->mode != CREW_PROCESSES) {
		cli_error(
			"run",
			"--kill-after-ms needs --mode processes (a thread cannot be killed alone)");
		return -1;
	}
	if (cfg->kill_after_ms && cfg->workers < 2) {
		cli_error(
			"run",
			"--kill-after-ms needs at least 2 workers (one to die, one to find the lock)");
		return -1;
	}
	char msg[256];
	if (wl_check(cfg, msg, sizeof(msg)) != 0) {
		cli_error("run", "%s", msg);
		return -1;
	}
	return 0;
}

/* The backend and, for a joint run, the other participants.  0, or -1
 * after printing why. */
static int parse_target(const char **v, struct params *p)
{
	const struct wl_config *cfg = &p->cfg;

	p->backend = cli_resolve_backend(V(O_BACKEND));
	if (cli_check_backend(
		    "run", p->backend,
		    cfg->mode == CREW_PROCESSES ? TALLY_CAP_PSHARED : 0,
		    "with --mode processes: it cannot live in memory shared between processes",
		    &p->info) != 0)
		return -1;
	p->join_timeout = 60;
	if ((V(O_PARTICIPANTS) &&
	     cli_parse_u64("run", "--participants", V(O_PARTICIPANTS), 1, 62,
			   &p->participants)) ||
	    (V(O_JOIN_TIMEOUT) &&
	     cli_parse_seconds("run", "--join-timeout", V(O_JOIN_TIMEOUT), 0.1,
			       86400, &p->join_timeout)))
		return -1;
	if (p->participants && !(p->info.caps & TALLY_CAP_REMOTE)) {
		cli_error(
			"run",
			"--participants needs a backend that other runs reach ('remote' in 'tally list'), not '%s'",
			p->info.name);
		return -1;
	}
	return 0;
}

#undef V

/* Check everything before any work: the options (v[O_X - O_BACKEND], NULL
 * when not given) applied over the workload's defaults, so that their
 * order does not matter.  Returns 0, or -1 after printing why. */
static int parse_values(const char **v, struct params *p)
{
	if (parse_workload(v, &p->cfg, &p->format) != 0 ||
	    parse_target(v, p) != 0)
		return -1;
	return 0;
}

/* The run the parameters describe: its result printed, its exit status
 * returned. */
static int run(struct params *p)
{
	struct wl_config *cfg = &p->cfg;

	run_warn_oversubscribed("run", &p->info, cfg->workers);
	run_hooks(cfg, p->info.name, isatty(STDERR_FILENO));
	cli_install_sigint();

	if (p->participants)
		return run_participants(p->backend, cfg,
					(unsigned)p->participants,
					p->join_timeout, p->format);
	struct wl_result *res = malloc(sizeof(*res));
	if (res == NULL)
		return EXIT_RUNTIME;
	int rc = run_one("run", p->backend, cfg, res);
	if (rc == RUN_RAN) {
		print_result(p->format, p->info.name, p->info.caps, cfg, res);
		explain_faults(cfg, res, p->info.name);
		rc = run_verdict(res);
		if (res->stalled && cfg->mode == CREW_THREADS) {
			fflush(NULL);
			_exit(rc); /* threads are stuck on the lock */
		}
	}
	free(res);
	return rc;
}

/* Options are collected first (val[O_X - O_BACKEND]) and applied over the
 * workload's defaults, so that their order does not matter. */
static int take(void *val, int code, char *arg)
{
	((const char **)val)[code - O_BACKEND] = arg;
	return 0;
}

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{"backend", required_argument, NULL, O_BACKEND},
		{"workload", required_argument, NULL, O_WORKLOAD},
		{"workers", required_argument, NULL, O_WORKERS},
		{"iters", required_argument, NULL, O_ITERS},
		{"mode", required_argument, NULL, O_MODE},
		{"delta", required_argument, NULL, O_DELTA},
		{"initial", required_argument, NULL, O_INITIAL},
		{"sleep-us", required_argument, NULL, O_SLEEP},
		{"kill-after-ms", required_argument, NULL, O_KILL},
		{"stall-timeout", required_argument, NULL, O_STALL},
		{"participants", required_argument, NULL, O_PARTICIPANTS},
		{"join-timeout", required_argument, NULL, O_JOIN_TIMEOUT},
		{"format", required_argument, NULL, O_FORMAT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const struct cli_command cmd = {
		.name = "run",
		.opts = opts,
		.usage = usage,
		.take = take,
	};
	const char *val[O_FORMAT - O_BACKEND + 1] = {0};
	struct params p = {.format = FORMAT_TABLE};
	uint64_t seen;
	int rc = cli_options(&cmd, argc, argv, val, &seen);

	if (rc != CLI_GO)
		return rc;
	if (cli_needs("run", opts, seen, O_JOIN_TIMEOUT, O_PARTICIPANTS) != 0 ||
	    parse_values(val, &p) != 0)
		return EXIT_USAGE;
	return run(&p);
}
