/* The measuring engine of `tally bench`: one time-bounded run of one backend
 * with N workers (threads or forked processes), warm-up first, per-worker
 * counts on their own cache lines, sampled latency, CPU time. */
#ifndef TALLY_BENCH_ENGINE_H
#define TALLY_BENCH_ENGINE_H

#include "crew.h"
#include "verdict.h"
#include "tally.h"

#include <stdint.h>

/*
 * Latency histogram: exact below 16 ns, then 16 linear sub-buckets per power
 * of two (relative error under 6.25%), up to 2^64 ns.  Counts are per worker
 * and merged afterwards, so workers never share a histogram line.
 */
#define BENCH_HIST_SUB	   16u
#define BENCH_HIST_BUCKETS (64u * BENCH_HIST_SUB)

struct bench_hist {
	uint64_t n;   /* samples */
	uint64_t max; /* exact largest sample, ns */
	uint64_t b[BENCH_HIST_BUCKETS];
};

/* Sample one operation in K, K chosen per worker from its warm-up rate so
 * that samples are about BENCH_SAMPLE_SPACING_NS apart. */
#define BENCH_SAMPLE_AUTO	UINT64_MAX
#define BENCH_SAMPLE_SPACING_NS 10000u
#define BENCH_SAMPLE_MAX	(1u << 20)

struct bench_config {
	enum crew_mode mode;
	unsigned workers;
	double warmup_s;
	double duration_s;
	uint64_t think_loops;  /* calibrated busy work before each add */
	uint64_t cs_loops;     /* and inside the lock (tally_add_cs) */
	uint64_t sample_every; /* 0 off, a power of two, or _AUTO */
	const int *pin_cpus;   /* NULL, or the CPU of each worker */
	double stop_limit_s;   /* workers not stopped this long after the stop
				  flag: give up (processes are killed) */
};

struct bench_run {
	/* HARNESS_EXACT (final == total_ops), _LOST, _FAULT (a worker died,
	 * never got ready or never stopped, an add failed) or _ERROR (the
	 * workers could not start), with the reason in one sentence. */
	enum harness_verdict verdict;
	char reason[HARNESS_REASON_SIZE];
	unsigned workers;
	uint64_t *ops;	       /* measured adds per worker [workers] */
	uint64_t total_ops;    /* every add, warm-up and drain included */
	int64_t final;	       /* the counter afterwards (initial 0, +1 each) */
	int correct;	       /* final == total_ops */
	double wall_s;	       /* first worker's start of measurement to the
				  last one's stop */
	double cpu_s;	       /* CPU time of all workers while measured */
	double stop_lag_s;     /* stop flag to the last worker stopped */
	uint64_t sample_every; /* largest K a worker used */
	struct bench_hist hist; /* merged */
	int stalled;		/* a worker never stopped (or died) */
	int died;		/* a worker process ended before its work */
	int unready;		/* a worker never reached the start gate */
	int add_error;		/* first negative tally_add() result */
	const char *path;	/* tally_backend_path(), or NULL */
};

/* Busy-work loop iterations per nanosecond, measured once. */
double bench_calibrate_loops_per_ns(void);
/* Cost of one clock read (min of many), in ns: part of every sample. */
double bench_timer_overhead_ns(void);

/*
 * One run on t, the caller's (created with 0, and TALLY_PSHARED for
 * processes): warm up, measure, stop, check.  Returns the verdict, also in
 * run->verdict (tools/harness/verdict.h).  When it ran, run->ops is
 * allocated: free it with bench_run_free().  A run that stalled in threads
 * (run->stalled) leaves them spinning on t: then t must not be destroyed.
 */
enum harness_verdict bench_run_once(tally *t, const struct bench_config *cfg,
				    struct bench_run *run);
void bench_run_free(struct bench_run *run);

/* Latency percentile q in [0, 1] from a merged histogram (0 when empty): the
 * upper edge of the bucket that holds it, never above the exact max. */
uint64_t bench_hist_quantile(const struct bench_hist *h, double q);

#endif /* TALLY_BENCH_ENGINE_H */
