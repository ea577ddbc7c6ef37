/* Time-bounded benchmark runs: every worker adds until a shared stop flag,
 * after a warm-up, with sampled latency and CPU time. */
#include "bench_engine.h"
#include "clock.h"
#include "crew.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum phase { PH_WARMUP, PH_MEASURE, PH_STOP };

/*
 * One worker's results (on cache lines of its own: crew.h).  A worker writes
 * its slot only when it changes phase, never per add, so the slots add no
 * traffic to what is measured; the add count lives in a register meanwhile.
 */
struct slot {
	uint64_t measured;
	uint64_t total;
	uint64_t begin_ns, end_ns; /* monotonic: measuring started, stopped */
	uint64_t cpu_ns;	   /* thread CPU time while measuring */
	uint64_t sample_every;
	int error;
	struct bench_hist hist;
};

/*
 * The run's shared area (crew_shared): the phase, which every worker reads
 * before every add and the coordinator writes twice a run, so it stays
 * shared in every cache; beside it only what the workers read and nobody
 * writes once they start.  The counter and the configuration live here, not
 * in the caller's memory: threads abandoned by a stalled run still use them.
 */
struct shared {
	_Atomic int phase;
	tally *t;
	struct bench_config cfg;
};

static uint64_t cpu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Busy work the compiler cannot remove or fold: one empty asm a turn.  Never
 * inlined or specialized, so that the calibration below times the very
 * machine code that --cs-ns and --think-ns run: a copy with another loop shape
 * can run at half or twice the rate (a constant-count clone once made
 * --cs-ns 1000 spin for 520 ns).
 */
__attribute__((noinline)) static void spin_loops(uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		__asm__ __volatile__("" ::: "memory");
}

double bench_calibrate_loops_per_ns(void)
{
	double best = 0;

	/* Best of five 10 ms tries: the fastest is the one no interrupt or
	 * neighbour slowed down. */
	for (int i = 0; i < 5; i++) {
		/* Read through a volatile so that the compiler cannot make a
		 * constant-count copy of spin_loops just for this call. */
		volatile uint64_t count = 4000000;
		uint64_t n = count, t0 = harness_now_ns();
		spin_loops(n);
		double rate = (double)n / (double)(harness_now_ns() - t0 + 1);
		if (rate > best)
			best = rate;
	}
	return best;
}

double bench_timer_overhead_ns(void)
{
	uint64_t best = UINT64_MAX;

	for (int i = 0; i < 10000; i++) {
		uint64_t a = harness_now_ns(), b = harness_now_ns();
		if (b - a < best)
			best = b - a;
	}
	return (double)best;
}

static unsigned hist_bucket(uint64_t v)
{
	if (v < BENCH_HIST_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 4 */
	return (e - 3u) * BENCH_HIST_SUB +
	       (unsigned)((v >> (e - 4u)) & (BENCH_HIST_SUB - 1));
}

/* Largest value that falls in bucket b. */
static uint64_t hist_upper(unsigned b)
{
	if (b < BENCH_HIST_SUB)
		return b;
	unsigned e = b / BENCH_HIST_SUB + 3u, sub = b % BENCH_HIST_SUB;
	uint64_t lo = (uint64_t)(BENCH_HIST_SUB + sub) << (e - 4u);
	return lo + ((uint64_t)1 << (e - 4u)) - 1;
}

static void hist_add(struct bench_hist *h, uint64_t v)
{
	h->b[hist_bucket(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

static void hist_merge(struct bench_hist *into, const struct bench_hist *h)
{
	for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
		into->b[i] += h->b[i];
	into->n += h->n;
	if (h->max > into->max)
		into->max = h->max;
}

uint64_t bench_hist_quantile(const struct bench_hist *h, double q)
{
	uint64_t want, seen = 0;

	if (h->n == 0)
		return 0;
	want = (uint64_t)(q * (double)h->n);
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			uint64_t up = hist_upper(i);
			return up < h->max ? up : h->max;
		}
	}
	return h->max;
}

/* K for "sample one add in K": a power of two, so the test is a mask. */
static uint64_t auto_sample_every(uint64_t ops, uint64_t ns)
{
	double per =
		ns ? (double)ops * BENCH_SAMPLE_SPACING_NS / (double)ns : 1.0;
	uint64_t k = 1;

	while ((double)k < per && k < BENCH_SAMPLE_MAX)
		k <<= 1;
	return k;
}

/* Before the gate: pin worker k to its CPU, if asked. */
static void pin_self(struct crew *c, unsigned k, void *arg)
{
	const struct bench_config *cfg =
		&((const struct shared *)crew_shared(c))->cfg;
	cpu_set_t set;

	(void)arg;
	if (cfg->pin_cpus == NULL)
		return;
	CPU_ZERO(&set);
	CPU_SET((size_t)cfg->pin_cpus[k], &set);
	/* Threads and processes alike: 0 is the calling thread. */
	sched_setaffinity(0, sizeof(set), &set);
}

/* Entering the measured phase: note where it starts and pick K. */
static void begin_measuring(struct slot *s, const struct bench_config *cfg,
			    uint64_t n, uint64_t warm_t0, uint64_t *mask)
{
	uint64_t now = harness_now_ns();

	s->begin_ns = now;
	s->cpu_ns = cpu_now_ns();
	s->measured = n;
	s->sample_every = cfg->sample_every == BENCH_SAMPLE_AUTO
				  ? auto_sample_every(n, now - warm_t0)
				  : cfg->sample_every;
	*mask = s->sample_every ? s->sample_every - 1 : 0;
}

/* Work in the critical section: tally_add_cs() calls it under the lock. */
static void cs_work(void *loops)
{
	spin_loops(*(const uint64_t *)loops);
}

/* One add as configured: plain, or with work inside the lock. */
static inline int one_add(tally *t, const struct bench_config *cfg)
{
	if (cfg->cs_loops)
		return tally_add_cs(t, 1, cs_work, (void *)&cfg->cs_loops);
	return tally_add(t, 1);
}

static void work(struct crew *c, unsigned k, void *arg)
{
	struct shared *sh = crew_shared(c);
	const struct bench_config *cfg = &sh->cfg;
	struct slot *s = crew_slot(c, k);
	tally *t = sh->t;
	uint64_t think = cfg->think_loops, n = 0, mask = 0, warm_t0;
	int ph = PH_WARMUP, sampling = 0, rc = 0;

	(void)arg;
	warm_t0 = harness_now_ns();
	for (;;) {
		/* Relaxed: the flag carries no data; one add late is fine. */
		int p = atomic_load_explicit(&sh->phase, memory_order_relaxed);
		if (__builtin_expect(p != ph, 0)) {
			if (ph == PH_WARMUP)
				begin_measuring(s, cfg, n, warm_t0, &mask);
			sampling = s->sample_every != 0;
			ph = p;
			if (p == PH_STOP)
				break;
		}
		if (think)
			spin_loops(think);
		if (sampling && (n & mask) == 0) {
			uint64_t t0 = harness_now_ns();
			rc = one_add(t, cfg);
			hist_add(&s->hist, harness_now_ns() - t0);
		} else {
			rc = one_add(t, cfg);
		}
		if (__builtin_expect(rc < 0, 0))
			break;
		n++;
	}
	/* Adds that a backend sends later (redis async, write-behind) count
	 * once applied: the flush is inside the measured time. */
	if (rc >= 0)
		rc = tally_flush(t);
	s->end_ns = harness_now_ns();
	s->cpu_ns = cpu_now_ns() - s->cpu_ns;
	s->measured = n - s->measured;
	s->total = n;
	s->error = rc < 0 ? rc : 0;
}

/* Sleep until the monotonic time `until` (ns); signals do not shorten it. */
static void sleep_until(uint64_t until)
{
	struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
			      .tv_nsec = (long)(until % 1000000000u)};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

/* Wait until every worker has finished or `deadline` passes, looking every
 * millisecond (the coordinator sleeps, so it takes no CPU from workers). */
static int wait_finished(struct crew *c, unsigned n, uint64_t deadline)
{
	while (crew_count_done(c) < n) {
		if (harness_now_ns() >= deadline)
			return -1;
		sleep_until(harness_now_ns() + 1000000u);
		crew_reap(c, 0);
	}
	return 0;
}

/* After the workers are gone: their slots into *run, and the verdict.
 * run->ops is allocated only now, so that no forked worker holds a copy. */
static enum harness_verdict collect(struct crew *c, struct bench_run *run,
				    uint64_t stop)
{
	const struct shared *sh = crew_shared(c);
	uint64_t first = UINT64_MAX, last = 0;

	run->ops = calloc(run->workers, sizeof(*run->ops));
	if (run->ops == NULL)
		return harness_say(run->reason, HARNESS_ERROR,
				   "out of memory for %u workers' results",
				   run->workers);
	for (unsigned k = 0; k < run->workers; k++) {
		const struct slot *s = crew_slot(c, k);

		/* A process that died: its slot says nothing of its adds. */
		if (crew_outcome(c, k).end == CREW_DIED) {
			run->stalled = run->died = 1;
			continue;
		}
		run->ops[k] = s->measured;
		run->total_ops += s->total;
		run->cpu_s += (double)s->cpu_ns / 1e9;
		if (s->begin_ns < first)
			first = s->begin_ns;
		if (s->end_ns > last)
			last = s->end_ns;
		if (s->sample_every > run->sample_every)
			run->sample_every = s->sample_every;
		if (s->error && !run->add_error)
			run->add_error = s->error;
		hist_merge(&run->hist, &s->hist);
	}
	run->wall_s = last > first ? (double)(last - first) / 1e9 : 0;
	run->stop_lag_s = last > stop ? (double)(last - stop) / 1e9 : 0;
	if (run->died)
		return harness_say(
			run->reason, HARNESS_FAULT,
			"a worker process died before it finished; giving up");
	int rc = tally_get(sh->t, &run->final);
	if (rc < 0 && !run->add_error)
		run->add_error = rc;
	run->correct = rc == 0 && (uint64_t)run->final == run->total_ops;
	if (run->add_error)
		return harness_say(run->reason, HARNESS_FAULT,
				   "an add failed: %s",
				   tally_strerror(run->add_error));
	if (!run->correct)
		return harness_say(run->reason, HARNESS_LOST,
				   "the counter holds %" PRId64
				   " after %" PRIu64 " adds",
				   run->final, run->total_ops);
	return harness_say(run->reason, HARNESS_EXACT,
			   "exact: %" PRIu64 " adds", run->total_ops);
}

/* The workers are at the gate: run the phases, stop them, collect;
 * run->stalled when a worker never got ready or stopped. */
static enum harness_verdict drive(struct crew *c, struct bench_run *run)
{
	struct shared *sh = crew_shared(c);
	const struct bench_config *cfg = &sh->cfg;
	uint64_t limit = (uint64_t)(cfg->stop_limit_s * 1e9), t;

	/* A worker that never gets ready (a process killed before it could
	 * start, say) must not hang the sweep. */
	if (crew_wait_ready(c, harness_now_ns() + limit) != 0) {
		crew_cancel(c);
		run->stalled = run->unready = 1;
		crew_finish(c, 1);
		for (unsigned k = 0; k < cfg->workers; k++)
			run->died |= crew_outcome(c, k).end == CREW_DIED;
		if (run->died)
			return harness_say(
				run->reason, HARNESS_FAULT,
				"a worker process died before it finished; giving up");
		return harness_say(
			run->reason, HARNESS_FAULT,
			"not every worker was ready %.0f s after it was started; giving up",
			cfg->stop_limit_s);
	}
	t = harness_now_ns();
	/* Relaxed: crew_go() publishes it. */
	atomic_store_explicit(&sh->phase, PH_WARMUP, memory_order_relaxed);
	crew_go(c);
	t += (uint64_t)(cfg->warmup_s * 1e9);
	sleep_until(t);
	atomic_store_explicit(&sh->phase, PH_MEASURE, memory_order_relaxed);
	t += (uint64_t)(cfg->duration_s * 1e9);
	sleep_until(t);
	atomic_store_explicit(&sh->phase, PH_STOP, memory_order_relaxed);
	t = harness_now_ns();
	run->stalled = wait_finished(c, cfg->workers, t + limit) != 0;
	crew_finish(c, run->stalled);
	if (run->stalled) {
		run->stop_lag_s = (double)(harness_now_ns() - t) / 1e9;
		return harness_say(
			run->reason, HARNESS_FAULT,
			"workers still running %.0f s after the stop flag; giving up",
			cfg->stop_limit_s);
	}
	return collect(c, run, t);
}

enum harness_verdict bench_run_once(tally *t, const struct bench_config *cfg,
				    struct bench_run *run)
{
	struct crew_config cc = {
		.mode = cfg->mode,
		.workers = cfg->workers,
		.shared_size = sizeof(struct shared),
		.slot_size = sizeof(struct slot),
		/* Processes die with the coordinator (Ctrl-C, a crash): an
		 * orphan would spin until the stop flag that nobody is left
		 * to set. */
		.flags = CREW_DIE_WITH_PARENT | CREW_IGNORE_SIGINT,
		.prepare = pin_self,
		.work = work,
	};
	struct crew *c;
	struct shared *sh;

	memset(run, 0, sizeof(*run));
	run->workers = cfg->workers;
	tally_handle_info d;
	run->path = tally_describe(t, &d) == 0 ? d.path : NULL;
	if (crew_create(&c, &cc) != 0)
		return run->verdict =
			       harness_say(run->reason, HARNESS_ERROR,
					   "cannot set up %u workers: %s",
					   cfg->workers, strerror(errno));
	sh = crew_shared(c);
	sh->cfg = *cfg;
	sh->t = t;
	if (crew_start(c) != 0) {
		char why[256];

		harness_say(
			run->reason, HARNESS_ERROR,
			"cannot start the workers: %s",
			crew_start_error(cfg->mode, errno, why, sizeof(why)));
		crew_destroy(c);
		return run->verdict = HARNESS_ERROR;
	}
	run->verdict = drive(c, run);
	/* Abandoned threads still use the crew (and t: the caller keeps it,
	 * bench_run.stalled says so). */
	crew_destroy(c);
	return run->verdict;
}

void bench_run_free(struct bench_run *run)
{
	free(run->ops);
	run->ops = NULL;
}
