/* The lesson's workloads, in threads or in forked processes. */
#include "workload.h"
#include "clock.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

void wl_defaults(enum wl_kind kind, struct wl_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->kind = kind;
	cfg->mode = CREW_THREADS;
	cfg->workers = 2;
	cfg->stall_timeout_s = 10.0;
	if (kind == WL_ADDSUB) {
		/* The lesson: 500, +5 and -5 a hundred times, 10 ms steps. */
		cfg->initial = 500;
		cfg->iters = 100;
		cfg->delta = 5;
		cfg->sleep_us = 10000;
	} else {
		/* The lesson: a million iterations, worker 1 adds 1, worker
		 * 2 adds 2. */
		cfg->initial = 0;
		cfg->iters = 1000000;
		cfg->delta = 1;
		cfg->sleep_us = 0;
	}
}

int wl_parse_kind(const char *s, enum wl_kind *kind)
{
	if (strcmp(s, "addsub") == 0)
		*kind = WL_ADDSUB;
	else if (strcmp(s, "inc") == 0)
		*kind = WL_INC;
	else
		return -1;
	return 0;
}

const char *wl_kind_name(enum wl_kind kind)
{
	return kind == WL_ADDSUB ? "addsub" : "inc";
}

/*
 * Worker k's delta, exactly: 0 when it fits in an int64_t, else -1.  The
 * checks use overflow-checking builtins, not a wider type, so that they work
 * the same on hosts without a 128-bit integer (i386, 32-bit Arm).
 */
static int exact_delta(const struct wl_config *cfg, unsigned k, int64_t *d)
{
	if (cfg->kind == WL_ADDSUB) {
		if (k % 2 == 0) {
			*d = cfg->delta;
			return 0;
		}
		return __builtin_sub_overflow((int64_t)0, cfg->delta, d) ? -1
									 : 0;
	}
	return __builtin_mul_overflow(cfg->delta, (int64_t)k + 1, d) ? -1 : 0;
}

int64_t wl_worker_delta(const struct wl_config *cfg, unsigned k)
{
	int64_t d = 0;

	(void)exact_delta(cfg, k, &d); /* wl_check() proved it fits */
	return d;
}

int wl_check(const struct wl_config *cfg, char *msg, size_t size)
{
	/* The counter's highest and lowest reachable values, built one
	 * worker at a time: each partial sum moves one way only, so one
	 * that overflows means the whole does. */
	int64_t hi = cfg->initial, lo = cfg->initial;
	int hi_ok = 1, lo_ok = 1;
	double up = 0, down = 0; /* for the message only */

	for (unsigned k = 0; k < cfg->workers; k++) {
		int64_t d, c;

		if (exact_delta(cfg, k, &d) != 0) {
			if (cfg->kind == WL_ADDSUB)
				snprintf(
					msg, size,
					"worker %u would subtract --delta, and -(%lld) does not fit in a signed 64-bit integer",
					k, (long long)cfg->delta);
			else
				snprintf(
					msg, size,
					"worker %u would add --delta * %u, which does not fit in a signed 64-bit integer",
					k, k + 1);
			return -1;
		}
		if (__builtin_mul_overflow(d, cfg->iters, &c)) {
			snprintf(
				msg, size,
				"worker %u's total (iters x delta) does not fit in a signed 64-bit integer",
				k);
			return -1;
		}
		if (c > 0) {
			up += (double)c;
			hi_ok = hi_ok && !__builtin_add_overflow(hi, c, &hi);
		} else {
			down += (double)c;
			lo_ok = lo_ok && !__builtin_add_overflow(lo, c, &lo);
		}
	}
	/* Whatever the interleaving, the counter stays within
	 * [initial + all negative work, initial + all positive work]. */
	if (!hi_ok || !lo_ok) {
		snprintf(
			msg, size,
			"the counter could pass through a value outside the signed 64-bit range (from %lld, workers could add up to the equivalent of %s%.3g); lower --iters, --delta or --initial",
			(long long)cfg->initial, hi_ok ? "" : "+",
			hi_ok ? down : up);
		return -1;
	}
	return 0;
}

/*
 * One worker's slot (on cache lines of its own: crew.h): the worker writes
 * `done` after every add, and a neighbour's slot on the same line would turn
 * that store into cache-line ping-pong that the measurement would include.
 */
struct slot {
	_Alignas(8) _Atomic uint64_t done;
	_Alignas(8) _Atomic uint64_t end_ns;
	_Atomic unsigned recovered;
	_Atomic int error;
	_Atomic int flush_error; /* the final tally_flush()'s, or 0 */
	/* Adds of unknown outcome (remote). */
	_Alignas(8) _Atomic uint64_t unknown;
	/* tally_explain() of the add that stopped this worker (an error or an
	 * unknown outcome), read in the worker that got it: the library keeps
	 * it per thread.  Written before error or unknown is, once. */
	char why[256];
};

/* A ThreadSanitizer build (see wl_add()). */
#if defined(__SANITIZE_THREAD__)
#define WL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WL_TSAN 1
#endif
#endif

/* The run's shared area (crew_shared).  The workers read the counter and
 * the configuration here, not from the caller: threads abandoned by a
 * stalled run may still read them after wl_run() returns. */
struct shared {
	_Atomic int stop;
	/* The common start: the sleeps' ticks count from here; written before
	 * the gate opens. */
	_Alignas(8) _Atomic uint64_t t0_ns;
	tally *t;
	struct wl_config cfg;
#ifdef WL_TSAN
	uint64_t shadow; /* plain: see wl_add() */
#endif
};

/*
 * In a ThreadSanitizer build, every add of a backend with a lock also adds
 * to a plain (non-atomic) shadow inside the lock, through tally_add_cs():
 * the counter's own word is atomic, so without it TSan would never see a
 * lock that lets two holders in, or that releases before the section's
 * writes (src/tsan.h says which locks TSan checks).  Other builds add
 * plainly: the shadow would cost the measurement a callback.
 */
#ifdef WL_TSAN
struct shadow_add {
	struct shared *sh;
	int64_t d;
};

static void shadow_inside(void *arg)
{
	const struct shadow_add *a = arg;

	a->sh->shadow += (uint64_t)a->d;
}

static int wl_add(struct shared *sh, int64_t d)
{
	struct shadow_add a = {.sh = sh, .d = d};
	int rc = tally_add_cs(sh->t, d, shadow_inside, &a);

	return rc == TALLY_EUNSUPPORTED ? tally_add(sh->t, d) : rc;
}
#else
static int wl_add(struct shared *sh, int64_t d)
{
	return tally_add(sh->t, d);
}
#endif

/*
 * Sleep until tick i + 1 of `us` microseconds after the common start t0.
 * Absolute ticks, not `us` from now: every worker wakes at the same moments,
 * as the lesson's Python processes did (equal sleeps, started together, and
 * microseconds of work per step), so their adds meet in time.  Relative
 * sleeps would let each worker's wake-up latency pile up step after step
 * until their adds no longer met.  A worker that is late (descheduled for
 * longer than a tick) adds at once and catches up.
 */
static void sleep_tick(uint64_t t0_ns, uint64_t us, uint64_t i)
{
	uint64_t at = t0_ns + (i + 1) * us * 1000u;
	struct timespec ts = {.tv_sec = (time_t)(at / 1000000000u),
			      .tv_nsec = (long)(at % 1000000000u)};

	/* An interrupted sleep is simply shorter; the stop flag decides. */
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

static void work(struct crew *c, unsigned k, void *arg)
{
	struct shared *sh = crew_shared(c);
	struct slot *s = crew_slot(c, k);
	int64_t d = wl_worker_delta(&sh->cfg, k);
	uint64_t iters = sh->cfg.iters, us = sh->cfg.sleep_us, i;
	/* Relaxed: the gate's release published it. */
	uint64_t t0 = atomic_load_explicit(&sh->t0_ns, memory_order_relaxed);

	(void)arg;
	for (i = 0; i < iters; i++) {
		/* Relaxed: the flag carries no data; seeing it one add late
		 * is harmless. */
		if (atomic_load_explicit(&sh->stop, memory_order_relaxed))
			break;
		if (us)
			sleep_tick(t0, us, i);
		int rc = wl_add(sh, d);
		if (rc < 0)
			snprintf(s->why, sizeof(s->why), "%s",
				 tally_explain(rc));
		if (rc == TALLY_EUNKNOWN) {
			/* Neither done nor lost: the server may have it.
			 * The next add would wait out a deadline too. */
			atomic_fetch_add(&s->unknown, 1);
			break;
		}
		if (rc < 0) {
			atomic_store(&s->error, rc);
			break;
		}
		if (rc == TALLY_RECOVERED)
			atomic_fetch_add(&s->recovered, 1);
		/* Published after the add: a worker killed between the two
		 * has one add in the counter that `done` does not show. */
		atomic_store_explicit(&s->done, i + 1, memory_order_release);
	}
	/* A backend that sends its adds later (redis async, write-behind):
	 * the worker's adds are done once they are applied. */
	int rc = tally_flush(sh->t);
	if (rc < 0 && atomic_load(&s->error) == 0 &&
	    atomic_load(&s->unknown) == 0) {
		snprintf(s->why, sizeof(s->why), "%s", tally_explain(rc));
		atomic_store(&s->flush_error, rc);
	}
	atomic_store(&s->end_ns, harness_now_ns());
}

/* State of the coordinator while the workers run. */
struct run {
	const struct wl_config *cfg;
	struct crew *crew;
	struct shared *sh;
	uint64_t t0;
};

static struct slot *slot_of(const struct run *r, unsigned k)
{
	return crew_slot(r->crew, k);
}

static uint64_t sum_done(const struct run *r)
{
	uint64_t n = 0;

	for (unsigned k = 0; k < r->cfg->workers; k++)
		n += atomic_load_explicit(&slot_of(r, k)->done,
					  memory_order_acquire);
	return n;
}

static void report_progress(const struct run *r, uint64_t now, int final)
{
	struct wl_progress p = {
		.done = sum_done(r),
		.total = r->cfg->iters * r->cfg->workers,
		.seconds = (double)(now - r->t0) / 1e9,
		.final = final,
	};

	r->cfg->progress(r->cfg->hook_arg, &p);
}

/* Fault injection: SIGKILL the first worker still running (worker 0 unless
 * it has already finished). */
static void kill_one(struct run *r, struct wl_result *res)
{
	for (unsigned k = 0; k < r->cfg->workers; k++)
		if (!crew_finished(r->crew, k) && crew_kill(r->crew, k) == 0) {
			res->killed_worker = (int)k;
			return;
		}
}

/*
 * The coordinator: watch the workers until all are done, with the caller's
 * stop and progress hooks, fault injection and the no-progress watchdog.
 * Never spins: it sleeps 5 ms between looks, so it does not steal a core
 * from the workers.
 */
static void supervise(struct run *r, struct wl_result *res)
{
	const struct wl_config *cfg = r->cfg;
	uint64_t last_ops = 0, last_change = r->t0, last_shown = r->t0;

	for (;;) {
		harness_sleep_ns(5000000);
		uint64_t now = harness_now_ns();

		crew_reap(r->crew, 0);
		if (crew_count_done(r->crew) == cfg->workers)
			break;
		if (cfg->stop && !res->interrupted &&
		    cfg->stop(cfg->hook_arg)) {
			res->interrupted = 1;
			atomic_store(&r->sh->stop, 1);
		}
		/* Stopped like Ctrl-C: the counts of what was done are
		 * still checked exactly. */
		if (cfg->time_limit_s > 0 && !res->timed_out &&
		    (double)(now - r->t0) / 1e9 >= cfg->time_limit_s) {
			res->timed_out = 1;
			atomic_store(&r->sh->stop, 1);
		}
		if (cfg->kill_after_ms && res->killed_worker < 0 &&
		    now - r->t0 >= cfg->kill_after_ms * 1000000u)
			kill_one(r, res);
		uint64_t ops = sum_done(r);
		if (ops != last_ops) {
			last_ops = ops;
			last_change = now;
		} else if ((double)(now - last_change) / 1e9 >=
			   cfg->stall_timeout_s) {
			res->stalled = 1;
			atomic_store(&r->sh->stop, 1);
			break;
		}
		if (cfg->progress && now - last_shown >= 200000000u) {
			report_progress(r, now, 0);
			last_shown = now;
		}
	}
	if (cfg->progress && last_shown != r->t0)
		report_progress(r, harness_now_ns(), 1);
}

/* Processes that ended unplanned: before their adds were done (died), or
 * after them but with a bad exit (failed: a memory checker's error exit).
 * Those the run killed itself (fault injection, a stall) are neither. */
static void note_deaths(const struct run *r, struct wl_result *res)
{
	for (unsigned k = 0; k < r->cfg->workers; k++) {
		struct crew_outcome w = crew_outcome(r->crew, k);

		if (w.end == CREW_DIED && res->died_worker < 0)
			res->died_worker = (int)k;
		if (w.end == CREW_FAILED && res->failed_worker < 0) {
			res->failed_worker = (int)k;
			res->failed_status = w.status;
		}
	}
}

/*
 * lost and others from expected and actual.  Adds of unknown outcome were
 * each applied once or not at all, so the applied ones sum to something in
 * [unknown_lo, unknown_hi]: a difference in that range is theirs, not a
 * loss.  (wl_check()
 * proved that every such sum fits, so the arithmetic modulo 2^64 is exact.)
 */
int64_t wl_lost(int64_t moved, int64_t lo, int64_t hi)
{
	if (moved < lo)
		return (int64_t)((uint64_t)lo - (uint64_t)moved);
	if (moved > hi)
		return (int64_t)((uint64_t)hi - (uint64_t)moved);
	return 0;
}

static void account(const struct wl_config *cfg, struct wl_result *res)
{
	int64_t moved =
		(int64_t)((uint64_t)res->actual - (uint64_t)res->expected);

	res->lost = res->others = 0;
	if (res->unread)
		return;
	if (cfg->joined)
		res->others = moved;
	else
		res->lost = wl_lost(moved, res->unknown_lo, res->unknown_hi);
}

/* A worker's u adds of unknown outcome, each of delta d: into the count,
 * the sum, and what the applied ones among them can sum to, at least and
 * at most (the negative deltas, the positive ones), modulo 2^64. */
static void add_unknown(struct wl_result *res, uint64_t u, int64_t d)
{
	uint64_t sum = u * (uint64_t)d;
	int64_t *side = d < 0 ? &res->unknown_lo : &res->unknown_hi;

	res->unknown += u;
	res->unknown_sum = (int64_t)((uint64_t)res->unknown_sum + sum);
	*side = (int64_t)((uint64_t)*side + sum);
}

static void collect(struct run *r, tally *t, struct wl_result *res)
{
	const struct wl_config *cfg = r->cfg;
	uint64_t end = r->t0;
	int64_t expected = res->start;

	for (unsigned k = 0; k < cfg->workers; k++) {
		struct slot *s = slot_of(r, k);
		uint64_t n = atomic_load(&s->done);

		res->done[k] = n;
		res->total_ops += n;
		res->recovered += atomic_load(&s->recovered);
		uint64_t u = atomic_load(&s->unknown);
		add_unknown(res, u, wl_worker_delta(cfg, k));
		int error = atomic_load(&s->error);
		if (!error && (error = atomic_load(&s->flush_error)) != 0)
			res->flush_failed = 1;
		if (error && !res->add_error) {
			res->add_error = error;
			snprintf(res->add_error_why, sizeof(res->add_error_why),
				 "%s", s->why);
		}
		if (u && res->unknown_why[0] == '\0')
			snprintf(res->unknown_why, sizeof(res->unknown_why),
				 "%s", s->why);
		if (atomic_load(&s->end_ns) > end)
			end = atomic_load(&s->end_ns);
		/* n <= iters, so wl_check() proved the exact sum fits, and
		 * the sum modulo 2^64 is it. */
		expected = (int64_t)((uint64_t)expected +
				     n * (uint64_t)wl_worker_delta(cfg, k));
	}
	if (res->stalled || end == r->t0)
		end = harness_now_ns();
	res->seconds = (double)(end - r->t0) / 1e9;
	res->expected = expected;
	/* tally_get() never waits for a lock, so this answers even when a
	 * dead worker holds it (a stalled run). */
	int rc = tally_get(t, &res->actual);
	if (rc < 0) {
		res->unread = 1;
		res->actual = expected; /* not shown: see unread */
		if (!res->add_error) {
			res->add_error = rc;
			snprintf(res->add_error_why, sizeof(res->add_error_why),
				 "%s", tally_explain(rc));
		}
	}
	account(cfg, res);
}

int wl_faulted(const struct wl_result *res)
{
	return res->killed_worker >= 0 || res->died_worker >= 0 ||
	       res->stalled || res->interrupted || res->add_error ||
	       res->failed_worker >= 0 || res->unknown;
}

/* The verdict, with its reason: the first thing that went wrong.  A count
 * that is off when a worker was killed or died, the run stalled or adds
 * are of unknown outcome is explained by that, not lost. */
static enum harness_verdict judge(const struct wl_config *cfg,
				  struct wl_result *res)
{
	char *why = res->reason;
	int victim =
		res->killed_worker >= 0 ? res->killed_worker : res->died_worker;

	/* Adds that returned before they were sent, whose flush failed: the
	 * count cannot be judged (the flush said how much it left). */
	if (res->flush_failed)
		return harness_say(why, HARNESS_FAULT,
				   "the final flush failed: %s",
				   tally_strerror(res->add_error));
	if (!res->unread && res->lost != 0 && victim < 0 && !res->stalled)
		return harness_say(
			why, HARNESS_LOST,
			"lost updates: the completed adds sum to %" PRId64
			", the counter holds %" PRId64,
			res->expected, res->actual);
	if (res->stalled)
		return harness_say(why, HARNESS_FAULT,
				   "no add completed for %g s",
				   cfg->stall_timeout_s);
	if (victim >= 0)
		return harness_say(
			why, HARNESS_FAULT,
			"worker %d %s after %" PRIu64 " adds", victim,
			res->killed_worker >= 0 ? "was killed" : "died",
			res->done[victim]);
	if (res->failed_worker >= 0)
		return harness_say(why, HARNESS_FAULT,
				   "worker %d finished its adds, then failed",
				   res->failed_worker);
	if (res->add_error)
		return harness_say(why, HARNESS_FAULT, "an add failed: %s",
				   tally_strerror(res->add_error));
	if (res->unknown)
		return harness_say(why, HARNESS_FAULT,
				   "%" PRIu64 " adds of unknown outcome",
				   res->unknown);
	if (res->interrupted)
		return harness_say(why, HARNESS_FAULT,
				   "interrupted after %" PRIu64 " adds",
				   res->total_ops);
	if (cfg->joined)
		return harness_say(why, HARNESS_EXACT,
				   "every add acknowledged: %" PRIu64
				   " adds, final value %" PRId64
				   " (the key moved by %" PRId64
				   " beyond them)",
				   res->total_ops, res->actual, res->others);
	return harness_say(why, HARNESS_EXACT,
			   "exact: %" PRIu64 " adds, final value %" PRId64,
			   res->total_ops, res->actual);
}

/* The value the run starts from, read before any worker exists (for a
 * joined run: whatever moves the key from here on is this run's adds or
 * the others').  0, or -1 with the reason in res. */
static int read_start(tally *t, const struct wl_config *cfg,
		      struct wl_result *res)
{
	res->start = cfg->initial;
	res->joined = cfg->joined;
	int rc = cfg->joined ? tally_get(t, &res->start) : 0;
	if (rc < 0)
		harness_say(res->reason, HARNESS_ERROR,
			    "cannot read the counter's starting value: %s",
			    tally_explain(rc));
	return rc < 0 ? -1 : 0;
}

enum harness_verdict wl_run(tally *t, const struct wl_config *cfg,
			    struct wl_result *res)
{
	struct crew_config cc = {
		.mode = cfg->mode,
		.workers = cfg->workers,
		.shared_size = sizeof(struct shared),
		.slot_size = sizeof(struct slot),
		/* The coordinator asks cfg->stop and tells the workers
		 * through the stop flag; Ctrl-C at the terminal is the
		 * caller's to handle, not each worker's. */
		.flags = CREW_IGNORE_SIGINT | CREW_DIE_WITH_PARENT,
		.work = work,
	};
	struct run r = {.cfg = cfg};

	memset(res, 0, sizeof(*res));
	res->killed_worker = res->died_worker = res->failed_worker = -1;
	tally_handle_info d;
	res->path = tally_describe(t, &d) == 0 ? d.path : NULL;
	if (read_start(t, cfg, res) != 0)
		return res->verdict = HARNESS_ERROR;
	if (cfg->workers > WL_MAX_WORKERS || crew_create(&r.crew, &cc) != 0)
		return res->verdict = harness_say(
			       res->reason, HARNESS_ERROR,
			       "cannot set up %u workers: %s", cfg->workers,
			       cfg->workers > WL_MAX_WORKERS ? strerror(EINVAL)
							     : strerror(errno));
	r.sh = crew_shared(r.crew);
	r.sh->t = t;
	r.sh->cfg = *cfg;
	r.cfg = &r.sh->cfg; /* one configuration, the workers' */
	if (crew_start(r.crew) != 0) {
		char why[256];

		harness_say(
			res->reason, HARNESS_ERROR,
			"cannot start the workers: %s",
			crew_start_error(cfg->mode, errno, why, sizeof(why)));
		crew_destroy(r.crew);
		return res->verdict = HARNESS_ERROR;
	}
	/* A process that dies before it is ready (out of memory, say) is
	 * done in crew_count_done(): go without it, and the run says so. */
	crew_wait_ready(r.crew, 0);
	r.t0 = harness_now_ns();
	/* Relaxed: crew_go() publishes it. */
	atomic_store_explicit(&r.sh->t0_ns, r.t0, memory_order_relaxed);
	crew_go(r.crew);
	supervise(&r, res);
	/* Workers that cannot make progress (spinning on a lock whose holder
	 * died) never see the stop flag: processes are killed, threads
	 * abandoned (crew_destroy() then keeps the crew they use). */
	crew_finish(r.crew, res->stalled);
	note_deaths(&r, res);
	collect(&r, t, res);
	crew_destroy(r.crew);
	return res->verdict = judge(cfg, res);
}
