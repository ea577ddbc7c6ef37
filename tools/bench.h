/* `tally bench`: the sweep's settings and results, shared by the command
 * (bench.c) and its reports (bench_report.c). */
#ifndef TALLY_BENCH_H
#define TALLY_BENCH_H

#include "bench_engine.h"
#include "cli.h"

#include <stdio.h>

#define BENCH_MAX_LIST 64 /* entries in --backend, --workers, --mode lists */

struct bench_opts {
	const char *backends[BENCH_MAX_LIST]; /* into backend_list, or static */
	char *backend_list;		      /* owned copy of --backend */
	unsigned backend_caps[BENCH_MAX_LIST];
	unsigned n_backends;
	unsigned workers[BENCH_MAX_LIST];
	unsigned n_workers;
	enum crew_mode modes[2];
	unsigned n_modes;
	double duration_s, warmup_s;
	unsigned repeat;
	uint64_t cs_ns, think_ns;
	uint64_t sample_every; /* BENCH_SAMPLE_AUTO, 0 or a power of two */
	int pin;
	int *pin_cpus; /* CPU of worker k, when pinning: k-th allowed CPU
			  round-robin */
	unsigned max_workers;
	enum cli_format format;
	const char *out_path, *plot_path;
	int argc; /* the command line, for the context block */
	char **argv;
	/* Measured once, before the sweep. */
	unsigned online_cpus;
	double loops_per_ns, timer_overhead_ns;
	double loadavg_before; /* 1-minute load average: other work running */
	int interrupted;       /* Ctrl-C cut the sweep short */
};

/* One configuration (backend, mode, workers) over every repeat. */
struct bench_result {
	const char *backend;
	unsigned caps;
	enum crew_mode mode;
	unsigned workers;
	unsigned done; /* repeats completed */
	double *rates; /* ops/s of each repeat [repeat] */
	double median, min, max;
	struct bench_run run; /* the repeat whose rate is nearest the median */
	int have_run;
	int all_correct;     /* every repeat's count was right */
	double run_s_max;    /* longest repeat, warm-up to last worker out */
	double stop_lag_max; /* longest stop flag to last worker out */
	int stalled;
	int error; /* TALLY_E* from tally_create(), or BENCH_ENOSTART */
	int oversubscribed;
	struct bench_config cfg; /* what each repeat runs, made once */
};

/* bench_result.error: the harness could not start the workers (a positive
 * code, so that it cannot be mistaken for a TALLY_E* one). */
#define BENCH_ENOSTART 1

/* bench_report.c */
void bench_report(FILE *f, const struct bench_opts *o,
		  const struct bench_result *r, unsigned n);
/* Check that gnuplot and the plot script can be found; say why not. */
int bench_plot_check(const char *cmd, const char *path);
/* Render throughput, fairness and latency against workers into
 * o->plot_path. */
int bench_plot(const char *cmd, const struct bench_opts *o,
	       const struct bench_result *r, unsigned n);
/* Jain's fairness index of n counts, and the smallest/largest share. */
double bench_jain(const uint64_t *x, unsigned n, double *min_share,
		  double *max_share);

#endif /* TALLY_BENCH_H */
