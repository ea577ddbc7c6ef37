/* The reports of `tally bench`: table, JSON with the machine context, CSV,
 * and the gnuplot plot. */
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TALLY_BENCH_BUILD_TYPE
#define TALLY_BENCH_BUILD_TYPE "unknown"
#endif
#ifndef TALLY_BENCH_C_FLAGS
#define TALLY_BENCH_C_FLAGS "unknown"
#endif
#ifdef __clang__
#define BENCH_COMPILER "clang " __clang_version__
#else
#define BENCH_COMPILER "gcc " __VERSION__
#endif

double bench_jain(const uint64_t *x, unsigned n, double *min_share,
		  double *max_share)
{
	double sum = 0, sq = 0, lo = 0, hi = 0;

	for (unsigned k = 0; k < n; k++) {
		sum += (double)x[k];
		sq += (double)x[k] * (double)x[k];
	}
	if (sum > 0) {
		lo = hi = (double)x[0] / sum;
		for (unsigned k = 1; k < n; k++) {
			double s = (double)x[k] / sum;
			lo = s < lo ? s : lo;
			hi = s > hi ? s : hi;
		}
	}
	*min_share = lo;
	*max_share = hi;
	/* No add at all is no evidence of unfairness; call it 0 (worst). */
	return sq > 0 ? sum * sum / ((double)n * sq) : 0;
}

/* The machine and build a result came from. */
struct context {
	char cpu_model[128];
	char kernel[256];
	char date[32];
	char *command; /* shell-quoted, owned */
};

static void read_cpu_model(char *buf, size_t size)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(buf, size, "unknown");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');
		if (colon && (strncmp(line, "model name", 10) == 0 ||
			      strncmp(line, "Model", 5) == 0)) {
			colon += 1 + strspn(colon + 1, " \t");
			colon[strcspn(colon, "\n")] = '\0';
			snprintf(buf, size, "%s", colon);
			break;
		}
	}
	fclose(f);
}

/* argv as a shell would need it: words quoted where they need it, and
 * passwords written as "***" (cli_shown()). */
static char *quote_command(int argc, char **argv)
{
	size_t size = 16;
	char *s, *p;

	for (int i = 0; i < argc; i++)
		size += 4 * strlen(cli_shown(argv[i])) + 3;
	s = p = malloc(size);
	if (s == NULL)
		abort();
	p += sprintf(p, "tally");
	for (int i = 0; i < argc; i++) {
		const char *a = cli_shown(argv[i]);
		int plain =
			*a &&
			strspn(a,
			       "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.,/=:+") ==
				strlen(a);
		*p++ = ' ';
		if (plain) {
			p += sprintf(p, "%s", a);
			continue;
		}
		*p++ = '\'';
		for (; *a; a++)
			p += *a == '\'' ? sprintf(p, "'\\''")
					: sprintf(p, "%c", *a);
		*p++ = '\'';
		*p = '\0';
	}
	return s;
}

static void get_context(const struct bench_opts *o, struct context *c)
{
	struct utsname u;
	time_t now = time(NULL);
	struct tm tm;

	read_cpu_model(c->cpu_model, sizeof(c->cpu_model));
	if (uname(&u) == 0)
		snprintf(c->kernel, sizeof(c->kernel), "%s %s %s", u.sysname,
			 u.release, u.machine);
	else
		snprintf(c->kernel, sizeof(c->kernel), "unknown");
	gmtime_r(&now, &tm);
	strftime(c->date, sizeof(c->date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	c->command = quote_command(o->argc, o->argv);
}

static void json_kv_s(FILE *f, const char *k, const char *v, const char *end)
{
	fprintf(f, "\"%s\": ", k);
	json_string(f, v);
	fputs(end, f);
}

static void print_context_json(FILE *f, const struct bench_opts *o,
			       const struct context *c)
{
	fputs("  \"context\": {\n    ", f);
	json_kv_s(f, "cpu_model", c->cpu_model, ",\n    ");
	fprintf(f, "\"online_cpus\": %u,\n    ", o->online_cpus);
	json_kv_s(f, "kernel", c->kernel, ",\n    ");
	json_kv_s(f, "compiler", BENCH_COMPILER, ",\n    ");
	json_kv_s(f, "c_flags", TALLY_BENCH_C_FLAGS, ",\n    ");
	json_kv_s(f, "build_type", TALLY_BENCH_BUILD_TYPE, ",\n    ");
	json_kv_s(f, "tally_version", tally_version(), ",\n    ");
	json_kv_s(f, "date", c->date, ",\n    ");
	json_kv_s(f, "command_line", c->command, ",\n    ");
	fprintf(f,
		"\"duration_s\": %g,\n    \"warmup_s\": %g,\n    \"repeat\": %u,\n    \"think_ns\": %llu,\n    \"cs_ns\": %llu,\n    \"pin\": %s,\n    ",
		o->duration_s, o->warmup_s, o->repeat,
		(unsigned long long)o->think_ns, (unsigned long long)o->cs_ns,
		o->pin ? "true" : "false");
	if (o->sample_every == BENCH_SAMPLE_AUTO)
		fputs("\"sample_every\": \"auto\",\n    ", f);
	else
		fprintf(f, "\"sample_every\": %llu,\n    ",
			(unsigned long long)o->sample_every);
	fprintf(f, "\"loadavg_before\": %.2f,\n    ", o->loadavg_before);
	fprintf(f, "\"interrupted\": %s,\n    ",
		o->interrupted ? "true" : "false");
	fprintf(f,
		"\"timer_overhead_ns\": %.0f,\n    \"busy_loops_per_ns\": %.3f,\n    \"repeats_interleaved\": true\n  },\n",
		o->timer_overhead_ns, o->loops_per_ns);
}

static void print_u64_array(FILE *f, const uint64_t *x, unsigned n,
			    const char *sep)
{
	for (unsigned k = 0; k < n; k++)
		fprintf(f, "%s%llu", k ? sep : "", (unsigned long long)x[k]);
}

static void print_pinned(FILE *f, const struct bench_opts *o, unsigned n)
{
	if (!o->pin) {
		fputs("null", f);
		return;
	}
	fputc('[', f);
	for (unsigned k = 0; k < n; k++)
		fprintf(f, "%s%d", k ? ", " : "", o->pin_cpus[k]);
	fputc(']', f);
}

static void print_result_json(FILE *f, const struct bench_opts *o,
			      const struct bench_result *r)
{
	const struct bench_run *u = &r->run;
	double lo = 0, hi = 0, jain = 0;

	if (r->have_run)
		jain = bench_jain(u->ops, u->workers, &lo, &hi);
	fputs("    {", f);
	json_kv_s(f, "backend", cli_shown(r->backend), ", ");
	json_kv_s(f, "mode", crew_mode_name(r->mode), ", ");
	fprintf(f,
		"\"workers\": %u, \"oversubscribed\": %s, \"repeats\": %u,\n"
		"     \"ops_per_sec\": %.0f, \"ops_per_sec_min\": %.0f, \"ops_per_sec_max\": %.0f, \"ns_per_op\": %.3f,\n"
		"     \"per_worker_ops\": [",
		r->workers, r->oversubscribed ? "true" : "false", r->done,
		r->median, r->min, r->max, r->median > 0 ? 1e9 / r->median : 0);
	if (r->have_run)
		print_u64_array(f, u->ops, u->workers, ", ");
	fprintf(f,
		"], \"fairness\": %.4f, \"min_share\": %.4f, \"max_share\": %.4f,\n     \"latency_ns\": {\"p50\": %llu, \"p99\": %llu, \"p999\": %llu, \"max\": %llu, \"samples\": %llu, \"sample_every\": %llu},\n",
		jain, lo, hi,
		(unsigned long long)bench_hist_quantile(&u->hist, 0.50),
		(unsigned long long)bench_hist_quantile(&u->hist, 0.99),
		(unsigned long long)bench_hist_quantile(&u->hist, 0.999),
		(unsigned long long)u->hist.max, (unsigned long long)u->hist.n,
		(unsigned long long)u->sample_every);
	fprintf(f,
		"     \"wall_s\": %.6f, \"cpu_s\": %.6f, \"cpu_per_wall\": %.3f, \"stop_lag_ms_max\": %.3f, \"run_s_max\": %.3f, \"pinned_cpus\": ",
		u->wall_s, u->cpu_s, u->wall_s > 0 ? u->cpu_s / u->wall_s : 0,
		r->stop_lag_max * 1e3, r->run_s_max);
	print_pinned(f, o, r->workers);
	fprintf(f,
		",\n     \"final\": %lld, \"total_ops\": %llu, \"racy\": %s, \"correct\": %s",
		(long long)u->final, (unsigned long long)u->total_ops,
		(r->caps & TALLY_CAP_RACY) ? "true" : "false",
		r->have_run && r->all_correct && !u->add_error ? "true"
							       : "false");
	if (r->have_run && u->path)
		fprintf(f, ", \"path\": \"%s\"", u->path);
	if (r->error || r->stalled)
		fprintf(f, ", \"error\": \"%s\"",
			r->stalled		     ? "workers did not stop"
			: r->error != BENCH_ENOSTART ? tally_errname(r->error)
						     : "cannot start workers");
	fputs("}", f);
}

static void print_json(FILE *f, const struct bench_opts *o,
		       const struct bench_result *r, unsigned n)
{
	struct context c;

	get_context(o, &c);
	fputs("{\n", f);
	print_context_json(f, o, &c);
	fputs("  \"results\": [\n", f);
	for (unsigned i = 0; i < n; i++) {
		print_result_json(f, o, &r[i]);
		fputs(i + 1 < n ? ",\n" : "\n", f);
	}
	fputs("  ]\n}\n", f);
	free(c.command);
}

/* 171234567 -> "171.2M": rates span seven orders of magnitude. */
static const char *fmt_rate(char *buf, size_t size, double v)
{
	static const char suffix[] = " kMG";
	int i = 0;

	while (v >= 999.95 && i < 3) {
		v /= 1000;
		i++;
	}
	if (i == 0)
		snprintf(buf, size, "%.0f", v);
	else
		snprintf(buf, size, "%.1f%c", v, suffix[i]);
	return buf;
}

static const char *fmt_ns(char *buf, size_t size, uint64_t ns)
{
	if (ns < 10000)
		snprintf(buf, size, "%llu ns", (unsigned long long)ns);
	else if (ns < 10000000)
		snprintf(buf, size, "%.1f us", (double)ns / 1e3);
	else
		snprintf(buf, size, "%.1f ms", (double)ns / 1e6);
	return buf;
}

static const char *verdict_cell(const struct bench_result *r)
{
	if (r->error || r->stalled)
		return "FAILED";
	if (r->all_correct && !r->run.add_error)
		return "yes";
	return (r->caps & TALLY_CAP_RACY) ? "no (racy)" : "NO";
}

static void table_add(struct table *t, const struct bench_result *r)
{
	char b[16][32], range[80];
	const struct bench_run *u = &r->run;
	double lo = 0, hi = 0, jain = 0;

	if (r->have_run)
		jain = bench_jain(u->ops, u->workers, &lo, &hi);
	snprintf(range, sizeof(range), "%s..%s", fmt_rate(b[14], 32, r->min),
		 fmt_rate(b[15], 32, r->max));
	snprintf(b[1], 32, "%.1f%%..%.1f%%", 100 * lo, 100 * hi);
	table_row(t, cli_shown(r->backend), crew_mode_name(r->mode),
		  fmt_u64(b[2], 32, r->workers), fmt_rate(b[3], 32, r->median),
		  range,
		  fmt_f(b[4], 32, 1, r->median != 0 ? 1e9 / r->median : 0),
		  fmt_f(b[5], 32, 3, jain), b[1],
		  fmt_ns(b[6], 32, bench_hist_quantile(&u->hist, 0.5)),
		  fmt_ns(b[7], 32, bench_hist_quantile(&u->hist, 0.99)),
		  fmt_ns(b[8], 32, bench_hist_quantile(&u->hist, 0.999)),
		  fmt_ns(b[9], 32, u->hist.max),
		  fmt_f(b[10], 32, 2, u->wall_s > 0 ? u->cpu_s / u->wall_s : 0),
		  verdict_cell(r), r->oversubscribed ? "oversubscribed" : "");
}

static void print_table(FILE *f, const struct bench_opts *o,
			const struct bench_result *r, unsigned n)
{
	static const char *const head[] = {
		"backend", "mode",     "workers",  "ops/s",   "min..max",
		"ns/op",   "fairness", "shares",   "p50",     "p99",
		"p99.9",   "max",      "cpu/wall", "correct", "note"};
	struct context c;
	struct table t;
	int over = 0;

	get_context(o, &c);
	fprintf(f,
		"%s, %u online CPUs, %s; tally %s, %s build; load average %.2f before\n"
		"%g s measured after %g s warm-up, %u repeat%s (median and min..max), latency from one add in K (timer ~%.0f ns)\n",
		c.cpu_model, o->online_cpus, c.kernel, tally_version(),
		TALLY_BENCH_BUILD_TYPE, o->loadavg_before, o->duration_s,
		o->warmup_s, o->repeat, o->repeat == 1 ? "" : "s",
		o->timer_overhead_ns);
	if (o->pin) {
		fputs("workers pinned round-robin: worker k on CPU", f);
		for (unsigned k = 0; k < o->max_workers && k < 16; k++)
			fprintf(f, "%s%d", k ? "," : " ", o->pin_cpus[k]);
		fputs(o->max_workers > 16 ? ",...\n" : "\n", f);
	}
	fputc('\n', f);
	table_init(&t, 15, head, "llrrrrrrrrrrrll");
	for (unsigned i = 0; i < n; i++) {
		table_add(&t, &r[i]);
		over |= r[i].oversubscribed;
	}
	table_print(&t, f);
	table_free(&t);
	fprintf(f,
		"\nns/op: wall time per add of all workers together; fairness: Jain's index\nover per-worker adds (shares: the smallest and largest); cpu/wall: CPUs kept\nbusy (spinning locks near the worker count, sleeping ones lower).\n");
	if (over)
		fprintf(f,
			"oversubscribed: more workers than the %u online CPUs; spinning locks waste\ntheir time slices there.\n",
			o->online_cpus);
	free(c.command);
}

/* One row of machine-readable numbers; per-worker adds joined by ';'. */
static void csv_add(struct table *t, const struct bench_result *r)
{
	const struct bench_run *u = &r->run;
	char b[14][32], *ops = calloc((size_t)r->workers + 1, 24);
	double lo = 0, hi = 0, jain = 0;

	if (ops == NULL)
		abort();
	for (unsigned k = 0; r->have_run && k < u->workers; k++)
		sprintf(ops + strlen(ops), "%s%llu", k ? ";" : "",
			(unsigned long long)u->ops[k]);
	if (r->have_run)
		jain = bench_jain(u->ops, u->workers, &lo, &hi);
	table_row(t, cli_shown(r->backend), crew_mode_name(r->mode),
		  fmt_u64(b[0], 32, r->workers),
		  r->oversubscribed ? "true" : "false",
		  fmt_f(b[1], 32, 0, r->median), fmt_f(b[2], 32, 0, r->min),
		  fmt_f(b[3], 32, 0, r->max),
		  fmt_f(b[4], 32, 3, r->median > 0 ? 1e9 / r->median : 0),
		  fmt_f(b[5], 32, 4, jain), fmt_f(b[6], 32, 4, lo),
		  fmt_f(b[7], 32, 4, hi),
		  fmt_u64(b[8], 32, bench_hist_quantile(&u->hist, 0.5)),
		  fmt_u64(b[9], 32, bench_hist_quantile(&u->hist, 0.99)),
		  fmt_u64(b[10], 32, bench_hist_quantile(&u->hist, 0.999)),
		  fmt_u64(b[11], 32, u->hist.max),
		  fmt_f(b[12], 32, 3, u->wall_s > 0 ? u->cpu_s / u->wall_s : 0),
		  r->have_run && r->all_correct && !u->add_error ? "true"
								 : "false",
		  (r->caps & TALLY_CAP_RACY) ? "true" : "false", ops);
	free(ops);
}

static void print_csv(FILE *f, const struct bench_result *r, unsigned n)
{
	static const char *const head[] = {
		"backend",	   "mode",	  "workers",
		"oversubscribed",  "ops_per_sec", "ops_per_sec_min",
		"ops_per_sec_max", "ns_per_op",	  "fairness",
		"min_share",	   "max_share",	  "p50_ns",
		"p99_ns",	   "p999_ns",	  "max_ns",
		"cpu_per_wall",	   "correct",	  "racy",
		"per_worker_ops"};
	struct table t;

	table_init(&t, 19, head, "lllllllllllllllllll");
	for (unsigned i = 0; i < n; i++)
		csv_add(&t, &r[i]);
	table_emit(&t, FORMAT_CSV, f);
	table_free(&t);
}

void bench_report(FILE *f, const struct bench_opts *o,
		  const struct bench_result *r, unsigned n)
{
	if (o->format == FORMAT_JSON)
		print_json(f, o, r, n);
	else if (o->format == FORMAT_CSV)
		print_csv(f, r, n);
	else
		print_table(f, o, r, n);
	fflush(f);
}

/*
 * The gnuplot script: $TALLY_PLOT_SCRIPT; else the one in the source tree
 * this was built from (TALLY_PLOT_SCRIPT, set by CMake); else an installed
 * one, BINDIR/../share/tally/tally-plot.gp relative to this executable.
 */
static const char *plot_script(void)
{
	static char installed[4096];
	const char *s = getenv("TALLY_PLOT_SCRIPT");
	char exe[4000];
	ssize_t n;

	if (s && *s)
		return s;
#ifdef TALLY_PLOT_SCRIPT
	if (access(TALLY_PLOT_SCRIPT, R_OK) == 0)
		return TALLY_PLOT_SCRIPT;
#endif
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = '\0';
		snprintf(installed, sizeof(installed),
			 "%s/../share/tally/tally-plot.gp", exe);
		return installed;
	}
	return "tally-plot.gp";
}

static int in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[4096];

	while (path && *path) {
		size_t len = strcspn(path, ":");
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, path, prog);
		if (len && access(buf, X_OK) == 0)
			return 1;
		path += len + (path[len] == ':');
	}
	return 0;
}

int bench_plot_check(const char *cmd, const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');

	if (!in_path("gnuplot")) {
		cli_error(
			cmd,
			"--plot needs gnuplot, which is not in PATH (install gnuplot-nox, or leave out --plot)");
		return -1;
	}
	if (access(plot_script(), R_OK) != 0) {
		cli_error(
			cmd,
			"--plot: cannot read the plot script '%s' (set TALLY_PLOT_SCRIPT to tools/tally-plot.gp)",
			plot_script());
		return -1;
	}
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) + 1 : 1,
		 slash ? path : ".");
	if (access(dir, W_OK) != 0) {
		cli_error(cmd, "--plot: cannot write into '%s'", dir);
		return -1;
	}
	return 0;
}

/* Whether results hold a measured (backend, mode) series. */
static int has_series(const struct bench_result *r, unsigned n,
		      const char *backend, enum crew_mode mode)
{
	for (unsigned i = 0; i < n; i++)
		if (r[i].backend == backend && r[i].mode == mode &&
		    r[i].have_run)
			return 1;
	return 0;
}

/* What the plot script needs to know about the data file's blocks. */
struct plot_layout {
	int series;	 /* blocks in the file */
	int per_mode[2]; /* blocks of the first and second mode */
	char colors[BENCH_MAX_LIST * 2 * 4]; /* line type of each block: the
						backend's, in every panel */
};

/* One block per (mode, backend): first mode's blocks, then the second's. */
static void write_plot_data(FILE *f, const struct bench_opts *o,
			    const struct bench_result *r, unsigned n,
			    struct plot_layout *pl)
{
	memset(pl, 0, sizeof(*pl));
	for (unsigned m = 0; m < o->n_modes; m++)
		for (unsigned b = 0; b < o->n_backends; b++) {
			const char *name = o->backends[b];
			if (!has_series(r, n, name, o->modes[m]))
				continue;
			fprintf(f, "%s\"%s\" w med min max fair p50 p99\n",
				pl->series++ ? "\n\n" : "", name);
			pl->per_mode[m]++;
			snprintf(pl->colors + strlen(pl->colors),
				 sizeof(pl->colors) - strlen(pl->colors),
				 "%s%u", pl->series > 1 ? " " : "", b + 1);
			for (unsigned i = 0; i < n; i++) {
				const struct bench_result *x = &r[i];
				double lo, hi;
				if (x->mode != o->modes[m] ||
				    x->backend != name || !x->have_run)
					continue;
				fprintf(f, "%u %.6g %.6g %.6g %.4f %llu %llu\n",
					x->workers, x->median, x->min, x->max,
					bench_jain(x->run.ops, x->workers, &lo,
						   &hi),
					(unsigned long long)bench_hist_quantile(
						&x->run.hist, 0.50),
					(unsigned long long)bench_hist_quantile(
						&x->run.hist, 0.99));
			}
		}
}

int bench_plot(const char *cmd, const struct bench_opts *o,
	       const struct bench_result *r, unsigned n)
{
	char data[] = "/tmp/tally-bench-XXXXXX", expr[8192], cpu[128];
	int fd = mkstemp(data), status = -1;
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	struct plot_layout pl;

	if (f == NULL) {
		cli_error(cmd, "--plot: cannot write a temporary file: %s",
			  strerror(errno));
		return -1;
	}
	write_plot_data(f, o, r, n, &pl);
	fclose(f);
	if (pl.series == 0) {
		unlink(data);
		cli_error(cmd, "--plot: no result to plot");
		return -1;
	}
	read_cpu_model(cpu, sizeof(cpu));
	for (char *p = cpu; *p; p++)
		if (*p == '\'' || *p == '"' || *p == '\\')
			*p = ' ';
	snprintf(
		expr, sizeof(expr),
		"datafile='%s'; outfile='%s'; nseries=%d; cpus=%u; colors='%s'; mode1='%s'; n1=%d; mode2='%s'; subtitle='%s, %u CPUs, %g s x %u, load %.1f before'",
		data, o->plot_path, pl.series, o->online_cpus, pl.colors,
		crew_mode_name(o->modes[0]), pl.per_mode[0],
		o->n_modes > 1 && pl.per_mode[1] ? crew_mode_name(o->modes[1])
						 : "",
		cpu, o->online_cpus, o->duration_s, o->repeat,
		o->loadavg_before);
	pid_t pid = fork();
	if (pid == 0) {
		execlp("gnuplot", "gnuplot", "-e", expr, plot_script(),
		       (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	unlink(data);
	if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		cli_error(cmd, "--plot: gnuplot failed to write '%s'",
			  o->plot_path);
		return -1;
	}
	return 0;
}
