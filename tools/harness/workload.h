/* The lesson's workloads (addsub, inc), run by a crew of threads or forked
 * processes over any backend.  Used by `tally run`, `tally demo` and the
 * tests. */
#ifndef TALLY_WORKLOAD_H
#define TALLY_WORKLOAD_H

#include "crew.h"
#include "verdict.h"
#include "tally.h"

#include <stdint.h>

enum wl_kind { WL_ADDSUB, WL_INC };

#define WL_MAX_WORKERS CREW_MAX_WORKERS

/* How far a run has come, for the caller's progress hook. */
struct wl_progress {
	uint64_t done;	/* adds completed so far, all workers together */
	uint64_t total; /* the adds the run would make: iters x workers */
	double seconds; /* since the common start, monotonic */
	int final;	/* the run is over: the last call */
};

struct wl_config {
	enum wl_kind kind;
	enum crew_mode mode;
	unsigned workers;
	uint64_t iters;
	int64_t delta;
	int64_t initial;
	uint64_t sleep_us;	/* before each add, outside the lock */
	uint64_t kill_after_ms; /* processes: SIGKILL worker 0 then; 0 = off */
	double stall_timeout_s; /* no progress for this long: give up */
	double time_limit_s;	/* stop the workers after this long; 0 = off */
	/*
	 * The counter is shared with writers outside this run (a remote
	 * counter joined with `keep`): the run reads its value as the
	 * workers start (res->start) and judges only its own adds, by their
	 * answers: every add acknowledged is exact, whatever the others did,
	 * and res->others says how far the key moved beyond this run's adds.
	 */
	int joined;

	/*
	 * The caller's hooks; either may be NULL.  The harness keeps no UI
	 * state of its own (no signal handlers, no output): the command
	 * decides what interrupts a run and how progress looks.  Both are
	 * called only by the coordinator, the thread that called wl_run(),
	 * with hook_arg, never from a worker or a signal handler.
	 *
	 * stop: polled every 5 ms while the workers run; non-zero stops them
	 * as Ctrl-C does (res->interrupted; what was done is still checked
	 * exactly).  Once it has answered non-zero it is not asked again.
	 * progress: called about every 200 ms while the workers run, then
	 * once more with p->final set when the run ends, if it was called
	 * at all (a run shorter than 200 ms reports nothing).
	 */
	int (*stop)(void *arg);
	void (*progress)(void *arg, const struct wl_progress *p);
	void *hook_arg;
};

struct wl_result {
	/* HARNESS_EXACT, _LOST (the count is not what the completed adds sum
	 * to, and no fault below explains it), _FAULT (a worker killed,
	 * died, stalled or failed, an add refused, interrupted by cfg->stop,
	 * adds of unknown outcome: see the fields) or _ERROR
	 * (the workers could not start), with the reason in one sentence. */
	enum harness_verdict verdict;
	char reason[HARNESS_REASON_SIZE];
	int64_t start;	  /* the value the run started from: cfg->initial,
			   * or (joined) the counter's as the workers started */
	int64_t expected; /* start + what the completed adds sum to */
	int64_t actual;	  /* the counter's final value */
	/* expected - actual (modulo 2^64), less what adds of unknown outcome
	 * account for: 0 when the difference is a sum some of them make (each
	 * was applied once or not at all), else how far beyond that it is.
	 * 0 for a joined run, which cannot tell: see others. */
	int64_t lost;
	int joined;	/* cfg->joined: lost is not known, others is */
	int64_t others; /* joined: actual - expected, the other writers' */
	uint64_t done[WL_MAX_WORKERS]; /* adds each worker completed */
	uint64_t total_ops;
	double seconds;	   /* first start to last finish, monotonic */
	int interrupted;   /* stopped early by cfg->stop */
	int timed_out;	   /* stopped early at cfg->time_limit_s */
	int killed_worker; /* -1, or the worker SIGKILLed on purpose */
	int died_worker;   /* -1, or a worker that died on its own */
	int failed_worker; /* -1, or a worker process that finished its adds
			    * but then exited badly (status in
			    * failed_status, as from waitpid): e.g. a
			    * memory checker's error exit */
	int failed_status;
	unsigned recovered; /* adds that returned TALLY_RECOVERED */
	int stalled;	    /* no progress for stall_timeout_s */
	int add_error;	    /* first negative tally_add() result, or 0 */
	/* add_error is a final tally_flush()'s: adds that had returned were
	 * not all applied, and the flush's message says how many */
	int flush_failed;
	/* What tally_explain() said of add_error, in the worker that got it
	 * (the server's own words: "redis server ...: NOPERM ..."), and of the
	 * first add of unknown outcome; "" for none. */
	char add_error_why[256];
	char unknown_why[256];
	int unread; /* the final tally_get() failed: actual and lost
		     * are unknown (add_error says why) */
	/* tally_backend_path(t): which way the adds went (percpu: "rseq" or
	 * "atomic", as the coordinating thread sees it), or NULL */
	const char *path;

	/* Adds that answered TALLY_EUNKNOWN (a remote backend's deadline
	 * passed): applied once or not at all, so neither in expected nor
	 * lost; and their deltas, summed modulo 2^64. */
	uint64_t unknown;
	int64_t unknown_sum;
	/* What the applied ones among them can sum to, at least and at most:
	 * their negative deltas, their positive ones. */
	int64_t unknown_lo, unknown_hi;
};

/* The lesson's defaults for a workload. */
void wl_defaults(enum wl_kind kind, struct wl_config *cfg);
/* "addsub" / "inc" -> kind; -1 when neither. */
int wl_parse_kind(const char *s, enum wl_kind *kind);
const char *wl_kind_name(enum wl_kind kind);

/* What worker k adds each iteration. */
int64_t wl_worker_delta(const struct wl_config *cfg, unsigned k);

/*
 * Check that the expected final value and every value the counter can pass
 * through on the way (whatever the interleaving) fit in int64, and that each
 * worker's own delta does.  Returns 0, or -1 with a reason in msg.
 */
int wl_check(const struct wl_config *cfg, char *msg, size_t size);

/*
 * Run the workload on t, the caller's (created with cfg->initial, and
 * TALLY_PSHARED for processes).  All workers start together; each runs in
 * its own thread or process, even when there is one.  Returns the verdict,
 * also in res->verdict (tools/harness/verdict.h).  A run that stalled in
 * threads leaves them spinning on t: then t must not be destroyed.
 */
enum harness_verdict wl_run(tally *t, const struct wl_config *cfg,
			    struct wl_result *res);

/* How far a count that moved by `moved` beyond the sure adds is from what
 * adds of unknown outcome, whose applied part sums to somewhere in
 * [lo, hi], can account for: 0 inside, else the signed distance (expected
 * less actual, as res->lost). */
int64_t wl_lost(int64_t moved, int64_t lo, int64_t hi);

/* Whether anything but the count went wrong: what makes a run FAULT when
 * its count is exact (a joint run judges its count on its own). */
int wl_faulted(const struct wl_result *res);

#endif /* TALLY_WORKLOAD_H */
