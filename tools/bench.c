/* `tally bench`: time-bounded throughput, fairness and latency of backends
 * over a sweep of worker counts, in threads or processes. */
#include "bench.h"
#include "clock.h"
#include "commands.h"
#include "workload.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Over 60 lines, unsplit: one whole text, so that grep finds its lines. */
static void usage(FILE *f)
{
	fprintf(f,
		"usage: tally bench [--backend all|B,B...]... [--workers N,N...]\n"
		"                   [--mode threads|processes|threads,processes]\n"
		"                   [--duration S] [--warmup S] [--repeat R]\n"
		"                   [--think-ns N] [--cs-ns N] [--sample-every K|auto|off]\n"
		"                   [--pin] [--format table|json|csv] [--out FILE]\n"
		"                   [--plot FILE.png|FILE.svg]\n\n"
		"Every worker adds 1 to one shared counter until a stop flag; runs are\nbounded by time, all workers start together, and every run checks\nthe final count against the adds the workers made.\n\n"
		"  --backend    'all' (default: every built-in backend that needs no\n"
		"               server) or a comma-separated list from 'tally list';\n"
		"               one with options (redis:url=U,key=K) takes the rest of\n"
		"               its argument; repeat --backend for more\n"
		"  --workers    comma-separated worker counts, 1 to %u (default 1,2,4,8)\n"
		"  --mode       threads (default), processes, or both\n"
		"  --duration   measured seconds per run, 0.01 to 3600 (default 1)\n"
		"  --warmup     unmeasured seconds before it, 0.01 to 60 (default 0.1)\n"
		"  --repeat     runs per configuration, 1 to 1000 (default 5): median,\n"
		"               min and max; repeats are interleaved across configurations\n"
		"  --think-ns   calibrated busy work before each add, 0 to 10000000 ns\n"
		"  --cs-ns      calibrated busy work inside the critical section (tally_add_cs),\n"
		"               0 to 10000000 ns; only backends with the 'locked' capability\n"
		"  --sample-every  time one add in K for latency percentiles: auto (K\n"
		"               from the warm-up rate, ~10 us apart), off, or a power of\n"
		"               two up to %u\n"
		"  --pin        pin worker k to the k-th allowed CPU, round-robin\n"
		"  --format     table (default), json or csv; --out FILE writes it there\n"
		"  --plot       throughput, fairness and latency (p50, p99) against workers,\n               with gnuplot\n\n"
		"More workers than online CPUs is labelled 'oversubscribed': spinning\nlocks collapse there, and the runs still end on time.  The racy 'none'\nbackend is measured but its lost updates do not set exit status 1.\n\n"
		"exit status: 0 every count right, 1 a count was wrong, 2 bad input,\n3 runtime failure (a counter could not be created, workers never\nstopped, gnuplot failed)\n",
		WL_MAX_WORKERS, BENCH_SAMPLE_MAX);
}

/* Split a copy of arg (*copy, for the caller to free) into items. */
static int split_copy(const char *what, const char *arg, char **copy,
		      char **items, unsigned *n)
{
	*copy = strdup(arg);
	if (*copy == NULL) {
		cli_error("bench", "out of memory");
		return -1;
	}
	return cli_split_list("bench", what, *copy, items, BENCH_MAX_LIST, n);
}

static int workers_from(struct bench_opts *o, char **items, unsigned n)
{
	o->n_workers = n;
	o->max_workers = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t v;
		if (cli_parse_u64("bench", "each --workers entry", items[i], 1,
				  WL_MAX_WORKERS, &v) != 0)
			return -1;
		for (unsigned j = 0; j < i; j++)
			if (o->workers[j] == v) {
				cli_error("bench", "--workers lists %u twice",
					  (unsigned)v);
				return -1;
			}
		o->workers[i] = (unsigned)v;
		if (v > o->max_workers)
			o->max_workers = (unsigned)v;
	}
	return 0;
}

static int modes_from(struct bench_opts *o, char **items, unsigned n)
{
	o->n_modes = 0;
	for (unsigned i = 0; i < n; i++) {
		enum crew_mode m;
		if (strcmp(items[i], "threads") == 0)
			m = CREW_THREADS;
		else if (strcmp(items[i], "processes") == 0)
			m = CREW_PROCESSES;
		else {
			cli_error(
				"bench",
				"unknown mode '%s' (allowed: threads, processes, or both separated by a comma)",
				items[i]);
			return -1;
		}
		if (o->n_modes == 2 || (o->n_modes && o->modes[0] == m)) {
			cli_error("bench", "--mode lists '%s' twice", items[i]);
			return -1;
		}
		o->modes[o->n_modes++] = m;
	}
	return 0;
}

/* Split a copy of a list option and hand the items to `from`. */
static int parse_list(struct bench_opts *o, const char *what, const char *arg,
		      int (*from)(struct bench_opts *, char **, unsigned))
{
	char *copy, *items[BENCH_MAX_LIST];
	unsigned n;
	int rc = split_copy(what, arg, &copy, items, &n);

	if (rc == 0)
		rc = from(o, items, n);
	free(copy);
	return rc;
}

static int wants_processes(const struct bench_opts *o)
{
	for (unsigned i = 0; i < o->n_modes; i++)
		if (o->modes[i] == CREW_PROCESSES)
			return 1;
	return 0;
}

/*
 * 'all': every built-in backend except those that need a server
 * (TALLY_CAP_REMOTE, which also need options).  The racy 'none' is in: it is
 * the no-synchronization baseline; its lost updates are reported, not failed.
 * With --cs-ns, only backends that have a critical section (TALLY_CAP_LOCKED).
 * A backend without TALLY_CAP_PSHARED is measured in threads only (plan()).
 */
static void all_backends(struct bench_opts *o)
{
	o->n_backends = 0;
	for (size_t i = 0; i < tally_backend_count(); i++) {
		tally_backend_info info;

		tally_backend_at(i, &info);
		if (!info.built_in || (info.caps & TALLY_CAP_REMOTE) ||
		    (o->cs_ns && !(info.caps & TALLY_CAP_LOCKED)) ||
		    o->n_backends == BENCH_MAX_LIST)
			continue;
		o->backend_caps[o->n_backends] = info.caps;
		o->backends[o->n_backends++] = info.name;
	}
}

/*
 * Split one --backend argument in place into *n more items: commas separate
 * backends, but one with options (NAME:OPTIONS, whose options may hold
 * commas) takes the rest of the argument.  So "atomic,redis:url=U,key=K" is
 * two backends; a second backend with options needs its own --backend.
 */
static int split_backends(char *s, char **items, unsigned *n)
{
	for (char *p = s;;) {
		size_t name = strcspn(p, ",:");
		if (name == 0 || *n == BENCH_MAX_LIST) {
			cli_error(
				"bench",
				"--backend must list 1 to %u non-empty backends",
				BENCH_MAX_LIST);
			return -1;
		}
		items[(*n)++] = p;
		if (p[name] != ',')
			return 0; /* the end, or options up to it */
		p[name] = '\0';
		p += name + 1;
	}
}

/* The names point into o->backend_list, freed with the options. */
static int parse_backends(struct bench_opts *o, char **args, unsigned nargs)
{
	char *items[BENCH_MAX_LIST];
	unsigned n = 0;
	size_t size = 0;

	if (nargs == 0 || (nargs == 1 && strcmp(args[0], "all") == 0)) {
		all_backends(o);
		return 0;
	}
	for (unsigned i = 0; i < nargs; i++)
		size += strlen(args[i]) + 1;
	o->backend_list = malloc(size);
	if (o->backend_list == NULL) {
		cli_error("bench", "out of memory");
		return -1;
	}
	for (char *p = o->backend_list; nargs > 0; nargs--, args++) {
		size = strlen(*args) + 1;
		memcpy(p, *args, size);
		if (split_backends(p, items, &n) != 0)
			return -1;
		p += size;
	}
	for (unsigned i = 0; i < n; i++) {
		tally_backend_info info;
		if (cli_check_backend(
			    "bench", items[i],
			    wants_processes(o) ? TALLY_CAP_PSHARED : 0,
			    "with --mode processes: it cannot live in memory shared between processes",
			    &info) != 0)
			return -1;
		if (o->cs_ns && !(info.caps & TALLY_CAP_LOCKED)) {
			cli_error(
				"bench",
				"backend '%s' has no lock to hold work in: --cs-ns needs a backend with the 'locked' capability (see 'tally list'); use --think-ns for work outside the add",
				info.name);
			return -1;
		}
		o->backends[i] = items[i];
		o->backend_caps[i] = info.caps;
	}
	o->n_backends = n;
	return 0;
}

static int parse_sample(struct bench_opts *o, const char *arg)
{
	uint64_t v;

	if (strcmp(arg, "auto") == 0) {
		o->sample_every = BENCH_SAMPLE_AUTO;
		return 0;
	}
	if (strcmp(arg, "off") == 0) {
		o->sample_every = 0;
		return 0;
	}
	if (cli_parse_u64("bench", "--sample-every", arg, 0, BENCH_SAMPLE_MAX,
			  &v) != 0)
		return -1;
	if (v & (v - 1)) {
		cli_error(
			"bench",
			"--sample-every must be auto, off, 0 or a power of two (1, 2, 4, ... %u), not '%s'",
			BENCH_SAMPLE_MAX, arg);
		return -1;
	}
	o->sample_every = v;
	return 0;
}

static int parse_plot(const char *arg)
{
	size_t len = strlen(arg);

	if (len < 5 || (strcmp(arg + len - 4, ".png") != 0 &&
			strcmp(arg + len - 4, ".svg") != 0)) {
		cli_error(
			"bench",
			"--plot needs a file name ending in .png or .svg, not '%s'",
			arg);
		return -1;
	}
	if (strpbrk(arg, "'\"\n\\")) {
		cli_error(
			"bench",
			"--plot: the file name may not contain quotes, backslashes or newlines");
		return -1;
	}
	return 0;
}

/* Worker k runs on the k-th CPU this process may use, round-robin. */
static int plan_pinning(struct bench_opts *o)
{
	cpu_set_t set;
	int cpus[CPU_SETSIZE], n = 0;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return -1;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET((size_t)c, &set))
			cpus[n++] = c;
	o->pin_cpus = calloc(o->max_workers, sizeof(int));
	if (n == 0 || o->pin_cpus == NULL)
		return -1;
	for (unsigned k = 0; k < o->max_workers; k++)
		o->pin_cpus[k] = cpus[k % (unsigned)n];
	return 0;
}

enum {
	O_BACKEND = 256,
	O_WORKERS,
	O_MODE,
	O_DURATION,
	O_WARMUP,
	O_REPEAT,
	O_THINK,
	O_CS,
	O_SAMPLE,
	O_FORMAT,
	O_OUT,
	O_PLOT,
	O_PIN,
};

/* Apply one option's value; -1 after printing why it is wrong. */
static int apply(struct bench_opts *o, int opt, const char *v)
{
	uint64_t u;

	switch (opt) {
	case O_WORKERS:
		return parse_list(o, "--workers", v, workers_from);
	case O_MODE:
		return parse_list(o, "--mode", v, modes_from);
	case O_DURATION:
		return cli_parse_seconds("bench", "--duration", v, 0.01, 3600,
					 &o->duration_s);
	case O_WARMUP:
		return cli_parse_seconds("bench", "--warmup", v, 0.01, 60,
					 &o->warmup_s);
	case O_REPEAT:
		if (cli_parse_u64("bench", "--repeat", v, 1, 1000, &u) != 0)
			return -1;
		o->repeat = (unsigned)u;
		return 0;
	case O_THINK:
		return cli_parse_u64("bench", "--think-ns", v, 0, 10000000,
				     &o->think_ns);
	case O_CS:
		return cli_parse_u64("bench", "--cs-ns", v, 0, 10000000,
				     &o->cs_ns);
	case O_SAMPLE:
		return parse_sample(o, v);
	case O_FORMAT:
		return cli_parse_format("bench", v, &o->format);
	case O_OUT:
		o->out_path = v;
		return 0;
	case O_PLOT:
		o->plot_path = v;
		return parse_plot(v);
	case O_PIN:
		o->pin = 1;
		return 0;
	}
	return -1;
}

/* What parse() gathers: the options into bench_opts, and the --backend
 * lists, checked once the modes are known. */
struct gathered {
	struct bench_opts *o;
	char *backend[BENCH_MAX_LIST];
	unsigned n_backend;
};

static int take(void *ctx, int code, char *arg)
{
	struct gathered *g = ctx;

	if (code != O_BACKEND)
		return apply(g->o, code, arg);
	if (g->n_backend == BENCH_MAX_LIST) {
		cli_error("bench", "more than %u --backend", BENCH_MAX_LIST);
		return -1;
	}
	g->backend[g->n_backend++] = arg;
	return 0;
}

/* CLI_GO, or the exit code to return (0 after --help). */
static int parse(struct bench_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{"backend", required_argument, NULL, O_BACKEND},
		{"workers", required_argument, NULL, O_WORKERS},
		{"mode", required_argument, NULL, O_MODE},
		{"duration", required_argument, NULL, O_DURATION},
		{"warmup", required_argument, NULL, O_WARMUP},
		{"repeat", required_argument, NULL, O_REPEAT},
		{"think-ns", required_argument, NULL, O_THINK},
		{"cs-ns", required_argument, NULL, O_CS},
		{"sample-every", required_argument, NULL, O_SAMPLE},
		{"format", required_argument, NULL, O_FORMAT},
		{"out", required_argument, NULL, O_OUT},
		{"plot", required_argument, NULL, O_PLOT},
		{"pin", no_argument, NULL, O_PIN},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const struct cli_command cmd = {
		.name = "bench",
		.opts = opts,
		.usage = usage,
		.take = take,
		.repeats = O_BACKEND, /* its lists add up */
	};
	struct gathered g = {.o = o};
	uint64_t seen;
	int rc = cli_options(&cmd, argc, argv, &g, &seen);

	if (rc != CLI_GO)
		return rc;
	if (parse_backends(o, g.backend, g.n_backend) != 0)
		return EXIT_USAGE;
	if (o->n_backends == 0) {
		cli_error("bench", "no backend to measure");
		return EXIT_USAGE;
	}
	return CLI_GO;
}

static void defaults(struct bench_opts *o, int argc, char **argv)
{
	static const unsigned workers[] = {1, 2, 4, 8};

	memset(o, 0, sizeof(*o));
	for (unsigned i = 0; i < 4; i++)
		o->workers[i] = workers[i];
	o->n_workers = 4;
	o->max_workers = 8;
	o->modes[0] = CREW_THREADS;
	o->n_modes = 1;
	o->duration_s = 1.0;
	o->warmup_s = 0.1;
	o->repeat = 5;
	o->sample_every = BENCH_SAMPLE_AUTO;
	o->format = FORMAT_TABLE;
	o->argc = argc;
	o->argv = argv;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median, min and max of the rates; keep the run nearest the median. */
static void summarize(struct bench_result *r, struct bench_run *runs)
{
	double *s = malloc(r->done * sizeof(double));
	unsigned best = 0;

	if (s == NULL)
		abort();
	memcpy(s, r->rates, r->done * sizeof(double));
	qsort(s, r->done, sizeof(double), cmp_double);
	r->min = s[0];
	r->max = s[r->done - 1];
	r->median = r->done % 2 ? s[r->done / 2]
				: (s[r->done / 2 - 1] + s[r->done / 2]) / 2;
	free(s);
	for (unsigned i = 1; i < r->done; i++)
		if (fabs(r->rates[i] - r->median) <
		    fabs(r->rates[best] - r->median))
			best = i;
	r->run = runs[best];
	r->have_run = 1;
	for (unsigned i = 0; i < r->done; i++)
		if (i != best)
			bench_run_free(&runs[i]);
}

static void progress(const struct bench_opts *o, const struct bench_result *r,
		     unsigned idx, unsigned n, unsigned rep)
{
	fprintf(stderr, "\r\033[K[%u/%u] %s, %s, %u worker%s%s, repeat %u/%u",
		rep * n + idx + 1, n * o->repeat, r->backend,
		crew_mode_name(r->mode), r->workers, r->workers == 1 ? "" : "s",
		r->oversubscribed ? " (oversubscribed)" : "", rep + 1,
		o->repeat);
	fflush(stderr);
}

/* What every repeat of configuration r runs: made once, before the sweep. */
static void configure(const struct bench_opts *o, struct bench_result *r)
{
	r->cfg = (struct bench_config){
		.mode = r->mode,
		.workers = r->workers,
		.warmup_s = o->warmup_s,
		.duration_s = o->duration_s,
		.think_loops =
			(uint64_t)((double)o->think_ns * o->loops_per_ns),
		.cs_loops = (uint64_t)((double)o->cs_ns * o->loops_per_ns),
		.sample_every = o->sample_every,
		.pin_cpus = o->pin ? o->pin_cpus : NULL,
		.stop_limit_s = 10.0 + o->duration_s,
	};
}

/* One repeat of one configuration, on a counter of its own.  Returns -1
 * when the sweep must stop (threads that never stopped are still spinning
 * on the counter, which is kept for them). */
static int measure(struct bench_result *r, struct bench_run *run)
{
	tally *t;
	int rc = tally_create(&t, r->backend, 0,
			      r->mode == CREW_PROCESSES ? TALLY_PSHARED : 0);

	if (rc != 0) {
		r->error = rc;
		cli_error("bench", "%s, %s, %u workers: %s",
			  cli_shown(r->backend), crew_mode_name(r->mode),
			  r->workers, tally_explain(rc));
		return 0;
	}
	uint64_t t0 = harness_now_ns();
	enum harness_verdict v = bench_run_once(t, &r->cfg, run);
	double took = (double)(harness_now_ns() - t0) / 1e9;

	if (v == HARNESS_ERROR || run->stalled) {
		cli_error("bench", "%s, %s, %u workers: %s",
			  cli_shown(r->backend), crew_mode_name(r->mode),
			  r->workers, run->reason);
		if (v == HARNESS_ERROR)
			r->error = BENCH_ENOSTART;
		else
			r->stalled = 1;
		if (run->stalled && r->mode == CREW_THREADS)
			return -1; /* its threads still use the counter */
		bench_run_free(run);
		tally_destroy(t);
		return 0;
	}
	tally_destroy(t);
	if (took > r->run_s_max)
		r->run_s_max = took;
	if (run->stop_lag_s > r->stop_lag_max)
		r->stop_lag_max = run->stop_lag_s;
	uint64_t sum = 0;
	for (unsigned k = 0; k < run->workers; k++)
		sum += run->ops[k];
	r->rates[r->done++] = run->wall_s > 0 ? (double)sum / run->wall_s : 0;
	if (v != HARNESS_EXACT)
		r->all_correct = 0;
	return 0;
}

/* Every configuration, repeats interleaved: repeat 1 of all, then 2, ...
 * so that slow drift (thermal, noisy neighbours) spreads over all of them
 * instead of landing on one. */
static int sweep(struct bench_opts *o, struct bench_result *res, unsigned n,
		 struct bench_run *runs)
{
	int tty = isatty(STDERR_FILENO);

	for (unsigned rep = 0; rep < o->repeat && !o->interrupted; rep++)
		for (unsigned i = 0; i < n; i++) {
			struct bench_result *r = &res[i];
			/* Ctrl-C: the run under way ends at its time; then
			 * report what was measured. */
			if (cli_interrupted()) {
				o->interrupted = 1;
				break;
			}
			if (r->error || r->stalled)
				continue;
			if (tty)
				progress(o, r, i, n, rep);
			if (measure(r, &runs[i * o->repeat + r->done]) < 0)
				return -1;
		}
	if (tty)
		fprintf(stderr, "\r\033[K");
	for (unsigned i = 0; i < n; i++)
		if (res[i].done)
			summarize(&res[i], &runs[i * o->repeat]);
	return 0;
}

/* Processes need a counter that can live in shared memory: by the bit. */
static int can_run(unsigned caps, enum crew_mode mode)
{
	return mode == CREW_THREADS ||
	       ((caps & TALLY_CAP_PSHARED) && !(caps & TALLY_CAP_THREADS_ONLY));
}

static struct bench_result *plan(const struct bench_opts *o, unsigned *n)
{
	struct bench_result *res =
		calloc((size_t)o->n_modes * o->n_backends * o->n_workers,
		       sizeof(*res));

	*n = 0;
	if (res == NULL)
		return NULL;
	for (unsigned m = 0; m < o->n_modes; m++)
		for (unsigned b = 0; b < o->n_backends; b++)
			for (unsigned w = 0; w < o->n_workers; w++) {
				struct bench_result *r = &res[*n];
				if (!can_run(o->backend_caps[b], o->modes[m]))
					continue;
				r->backend = o->backends[b];
				r->caps = o->backend_caps[b];
				r->mode = o->modes[m];
				r->workers = o->workers[w];
				r->oversubscribed = r->workers > o->online_cpus;
				r->all_correct = 1;
				configure(o, r);
				r->rates = calloc(o->repeat, sizeof(double));
				if (r->rates == NULL)
					return NULL;
				(*n)++;
			}
	return res;
}

static int verdict(const struct bench_opts *o, const struct bench_result *res,
		   unsigned n, int aborted)
{
	int wrong = 0, failed = aborted || o->interrupted;

	for (unsigned i = 0; i < n; i++) {
		if (!res[i].all_correct && !(res[i].caps & TALLY_CAP_RACY))
			wrong = 1;
		if (res[i].error || res[i].stalled || res[i].run.add_error)
			failed = 1;
	}
	return wrong ? EXIT_LOST : failed ? EXIT_RUNTIME : EXIT_EXACT;
}

static void free_all(struct bench_opts *o, struct bench_result *res, unsigned n,
		     struct bench_run *runs)
{
	for (unsigned i = 0; res && i < n; i++) {
		free(res[i].rates);
		bench_run_free(&res[i].run);
	}
	free(res);
	free(runs);
	free(o->pin_cpus);
	free(o->backend_list);
}

/* Validate everything before any work: exit 2 (or 0 for --help) or -1. */
static int prepare(struct bench_opts *o, FILE **out)
{
	int rc = parse(o, o->argc, o->argv);

	if (rc != CLI_GO)
		return rc;
	if (o->plot_path && bench_plot_check("bench", o->plot_path) != 0)
		return EXIT_USAGE;
	if (o->out_path) {
		FILE *f = fopen(o->out_path, "w");
		if (f == NULL) {
			cli_error("bench", "--out: cannot write '%s': %s",
				  o->out_path, strerror(errno));
			return EXIT_USAGE;
		}
		*out = f;
	}
	o->online_cpus = cli_online_cpus();
	if (o->pin && plan_pinning(o) != 0) {
		cli_error("bench", "--pin: cannot read this process's CPUs");
		return EXIT_RUNTIME;
	}
	return -1;
}

int cmd_bench(int argc, char **argv)
{
	struct bench_opts o;
	FILE *out = stdout;
	unsigned n = 0;

	defaults(&o, argc, argv);
	int early = prepare(&o, &out);
	if (early >= 0) {
		if (out != stdout)
			fclose(out);
		free_all(&o, NULL, 0, NULL);
		return early;
	}
	o.loops_per_ns = bench_calibrate_loops_per_ns();
	o.timer_overhead_ns = bench_timer_overhead_ns();
	getloadavg(&o.loadavg_before, 1);
	if (o.loadavg_before >= 0.5 * o.online_cpus)
		cli_warn(
			"bench",
			"load average %.2f on %u CPUs: other work is running and will share the CPUs with the workers; expect noisy numbers (it is recorded in the context)",
			o.loadavg_before, o.online_cpus);

	struct bench_result *res = plan(&o, &n);
	struct bench_run *runs = calloc((size_t)n * o.repeat, sizeof(*runs));
	if (res == NULL || runs == NULL) {
		cli_error("bench", "out of memory");
		free_all(&o, res, n, runs);
		return EXIT_RUNTIME;
	}
	cli_install_sigint();
	int aborted = sweep(&o, res, n, runs) != 0;
	if (o.interrupted) {
		unsigned done = 0, all = n * o.repeat;
		for (unsigned i = 0; i < n; i++)
			done += res[i].done;
		cli_error(
			"bench",
			"interrupted (Ctrl-C) after %u of %u runs: the results %s are cut short",
			done, all, out == stdout ? "below" : "written");
	}
	bench_report(out, &o, res, n);
	if (out != stdout && fclose(out) != 0) {
		cli_error("bench", "--out: cannot write '%s'", o.out_path);
		aborted = 1;
	}
	if (o.plot_path && bench_plot("bench", &o, res, n) != 0)
		aborted = 1;
	int rc = verdict(&o, res, n, aborted);
	if (aborted) {
		fflush(NULL);
		_exit(rc); /* threads may still spin on a lock */
	}
	free_all(&o, res, n, runs);
	return rc;
}
