/* `tally run --participants N`: several runs that join one remote counter
 * for one verdict. */
#include "participants.h"
#include "cli.h"
#include "clock.h"
#include "run_core.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * --participants N: several runs, on any machines, on one remote counter.
 *
 * Everything they share lives in counters on the same server, beside the
 * counter itself, all joined with `keep` so that no run ever resets what
 * another uses.  One, KEY.tally-run.epoch, numbers the joint runs on the
 * key; joint run E keeps its own counters, KEY.tally-run.E.NAME, so that
 * nothing a participant of one run leaves half-done (it died, it timed
 * out) is seen by the next:
 *   joined    a ticket for each run that tries to join; the first records N
 *   n         the number of participants, as the first recorded it
 *   arrived   participant i (from 1) is the i-th to add to it, up to n; a
 *             run that finds it full waits for E to end
 *   ready     the second barrier: between the two, every participant reads
 *             the starting value (nobody adds before all have read it)
 *   beat      every participant adds to it four times a second: a run that
 *             waits for E to end closes it when it stops moving (the lease)
 *   sum       what each participant's acknowledged adds sum to
 *   unknown, unknown_lo, unknown_hi
 *             adds of unknown outcome, and what the applied ones among them
 *             can sum to, at least and at most
 *   unjudged  participants whose count cannot be judged (a final flush
 *             failed, so an unknown part of their adds was never sent)
 *   faulted   participants with a worker killed, dead or stalled: an add
 *             it had in flight is in the count but in no sum
 *   finished  participants done adding (after adding to the above)
 *   mask      bit i for participant i+1 finished: who never did
 *   read      participants done reading the verdict; the last closes E
 *   closed    the first to add to it moves the epoch on (E is over)
 * The verdict: the counter went from its starting value to actual; the
 * participants' adds sum to `sum`; lost = start + sum - actual, less what
 * the adds of unknown outcome account for.  One joint run per key at a
 * time: the next begins when one is closed.  Each joint run leaves its
 * counters on the server (fifteen small keys), as a log of who took part.
 */
enum {
	R_JOINED,
	R_N,
	R_ARRIVED,
	R_READY,
	R_BEAT,
	R_SUM,
	R_UNK,
	R_UNKLO,
	R_UNKHI,
	R_UNJUDGED,
	R_FAULTED,
	R_FIN,
	R_MASK,
	R_READ,
	R_CLOSED,
	R_COUNT
};
static const char *const run_names[R_COUNT] = {
	"joined",  "n",	       "arrived",    "ready",	   "beat",
	"sum",	   "unknown",  "unknown_lo", "unknown_hi", "unjudged",
	"faulted", "finished", "mask",	     "read",	   "closed"};

/* How often a participant shows it lives, and how long a run that waits
 * for a joint run lets it go without a sign before closing it (a window
 * that starts again whenever the server itself is slow to answer: a
 * stalled server stalls the beats too).  A read slower than SLOW_MS is
 * such a stall. */
enum { BEAT_MS = 250, LEASE_MS = 5000, SLOW_MS = 1000 };

struct joint {
	const char *backend;
	unsigned n, index; /* index from 0 */
	double timeout_s;
	uint64_t run; /* E: which joint run on this key */
	char *main_spec, *epoch_spec;
	tally *main, *epoch;
	tally *c[R_COUNT]; /* joint run E's counters */
	char *spec[R_COUNT];
	int64_t start; /* the counter's value between the barriers */
	pthread_t beater;
	int beating;
	_Atomic int stop_beat;
	/* E was closed while this participant took part (another took it for
	 * dead): the beat saw it, the workers stop. */
	_Atomic int evicted;
};

/* Whether the option at p (len bytes) is one a bookkeeping counter drops:
 * mode= and flush_ms= make adds return before they are applied, and the
 * barriers and sums must be applied when their add returns (sync, the
 * default); shards= would split one into keys whose sum no fetch-and-add
 * reads atomically (a participant's number is one); reset contradicts the
 * keep they are made with. */
static int later_option(const char *p, size_t len)
{
	return (len > 5 && strncmp(p, "mode=", 5) == 0) ||
	       (len > 9 && strncmp(p, "flush_ms=", 9) == 0) ||
	       (len > 7 && strncmp(p, "shards=", 7) == 0) ||
	       (len == 5 && strncmp(p, "reset", 5) == 0);
}

/*
 * spec joined with "keep", its key replaced by KEY (the user's, or "tally")
 * followed by suffix: the user's options without their own key= and keep,
 * which the library would refuse given twice, then keep and the key.  A
 * bookkeeping counter (suffix not "") is also made sync.
 */
static char *derived(const char *spec, const char *suffix)
{
	const char *opt = strchr(spec, ':');
	const char *key = "tally";
	size_t klen = 5, used;
	size_t size = 2 * strlen(spec) + 64 + strlen(suffix);
	char *out = malloc(size);

	if (out == NULL)
		return NULL;
	used = (size_t)snprintf(
		out, size,
		"%.*s:", (int)(opt ? (size_t)(opt - spec) : strlen(spec)),
		spec);
	for (const char *p = opt; p != NULL && p[1] != '\0';
	     p = strchr(p + 1, ',')) {
		size_t len = strcspn(p + 1, ",");
		if (strncmp(p + 1, "key=", 4) == 0) {
			key = p + 5;
			klen = len - 4;
		} else if (!(len == 4 && strncmp(p + 1, "keep", 4) == 0) &&
			   !(suffix[0] != '\0' && later_option(p + 1, len))) {
			used += (size_t)snprintf(out + used, size - used,
						 "%.*s,", (int)len, p + 1);
		}
	}
	snprintf(out + used, size - used, "keep,key=%.*s%s", (int)klen, key,
		 suffix);
	return out;
}

/* Create the counter spec names (joined, so initial only if it is new). */
static int open_one(tally **t, const char *spec, int64_t initial)
{
	int rc;

	if (spec == NULL)
		return TALLY_ENOMEM;
	rc = tally_create(t, spec, initial, 0);
	if (rc != 0)
		cli_error("run", "cannot create the '%s' counter: %s",
			  cli_shown(spec), tally_explain(rc));
	return rc;
}

static void close_run(struct joint *j)
{
	for (int i = 0; i < R_COUNT; i++) {
		tally_destroy(j->c[i]);
		free(j->spec[i]);
		j->c[i] = NULL;
		j->spec[i] = NULL;
	}
}

/* Joint run E's counters. */
static int open_run(struct joint *j, uint64_t run)
{
	close_run(j);
	j->run = run;
	for (int i = 0; i < R_COUNT; i++) {
		char suffix[64];

		snprintf(suffix, sizeof(suffix), ".tally-run.%llu.%s",
			 (unsigned long long)run, run_names[i]);
		j->spec[i] = derived(j->backend, suffix);
		int rc = open_one(&j->c[i], j->spec[i], 0);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int64_t value(struct joint *j, int i, int *failed)
{
	int64_t v = 0;
	int rc = tally_get(j->c[i], &v);

	if (rc < 0 && !*failed) {
		cli_error("run", "cannot read the '%s' counter: %s",
			  cli_shown(j->spec[i]), tally_explain(rc));
		*failed = 1;
	}
	return v;
}

static int add(struct joint *j, int i, int64_t delta)
{
	int rc = tally_add(j->c[i], delta);

	if (rc < 0)
		cli_error("run", "cannot add to the '%s' counter: %s",
			  cli_shown(j->spec[i]), tally_explain(rc));
	return rc < 0 ? -1 : 0;
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000};

	nanosleep(&ts, NULL);
}

/* Close joint run E: the first to do so moves the epoch on, so that the
 * next run on the key starts a new one. */
static void close_joint(struct joint *j)
{
	int64_t closed;

	if (tally_add_fetch(j->c[R_CLOSED], 1, &closed) == 0 && closed == 1)
		tally_add(j->epoch, 1);
}

static void *beat(void *arg)
{
	struct joint *j = arg;

	while (!atomic_load(&j->stop_beat)) {
		int64_t closed = 0;
		tally_add(j->c[R_BEAT], 1);
		if (tally_get(j->c[R_CLOSED], &closed) == 0 && closed != 0)
			atomic_store(&j->evicted, 1);
		pause_ms(BEAT_MS);
	}
	return NULL;
}

/* 0, or -1 (said): without its beat, the others would take this
 * participant for dead. */
static int start_beat(struct joint *j)
{
	int rc = pthread_create(&j->beater, NULL, beat, j);

	j->beating = rc == 0;
	if (rc != 0)
		cli_error(
			"run",
			"cannot start the thread that shows this participant lives: %s",
			strerror(rc));
	return rc == 0 ? 0 : -1;
}

static void stop_beat(struct joint *j)
{
	if (!j->beating)
		return;
	atomic_store(&j->stop_beat, 1);
	pthread_join(j->beater, NULL);
	j->beating = 0;
	atomic_store(&j->stop_beat, 0);
}

/* How a wait on joint run E ended. */
enum wait_end { W_REACHED, W_CLOSED, W_TIMEOUT, W_FAILED };

/* Wait until counter i of E reaches at least `until`, E is closed, or
 * `seconds` pass; *seen is i's last value. */
static enum wait_end wait_within(struct joint *j, int i, int64_t until,
				 int64_t *seen, double seconds)
{
	uint64_t end = harness_now_ns() + (uint64_t)(seconds * 1e9);
	int failed = 0;

	for (;;) {
		*seen = value(j, i, &failed);
		if (failed)
			return W_FAILED;
		if (*seen >= until)
			return W_REACHED;
		if (value(j, R_CLOSED, &failed) != 0)
			return failed ? W_FAILED : W_CLOSED;
		if (harness_now_ns() >= end || cli_interrupted())
			return W_TIMEOUT;
		pause_ms(10);
	}
}

static enum wait_end wait_for(struct joint *j, int i, int64_t until,
			      int64_t *seen)
{
	return wait_within(j, i, until, seen, j->timeout_s);
}

/* A lease on joint run E, as a run outside it sees it: its beat and
 * arrivals, and when they last moved (or the server last stalled). */
struct lease {
	int64_t beat, arrived;
	uint64_t since;
};

static void lease_start(struct joint *j, struct lease *l, int *failed)
{
	l->beat = value(j, R_BEAT, failed);
	l->arrived = value(j, R_ARRIVED, failed);
	l->since = harness_now_ns();
}

/* Read E's signs of life again: whether LEASE_MS passed without one. */
static int lease_expired(struct joint *j, struct lease *l, int *failed)
{
	uint64_t t0 = harness_now_ns();
	int64_t b = value(j, R_BEAT, failed);
	int64_t a = value(j, R_ARRIVED, failed);
	uint64_t now = harness_now_ns();

	if (b != l->beat || a != l->arrived ||
	    now - t0 >= (uint64_t)SLOW_MS * 1000000) {
		l->beat = b;
		l->arrived = a;
		l->since = now;
	}
	return !*failed && now - l->since >= (uint64_t)LEASE_MS * 1000000;
}

/*
 * Wait for joint run E, which this run cannot join, to end: until it is
 * closed, or until its participants show no sign of life for LEASE_MS
 * (then close it).  0 when it is over, -1 at `end` or on an error.
 */
static int wait_out(struct joint *j, int64_t n, uint64_t end)
{
	int failed = 0;
	struct lease l;

	lease_start(j, &l, &failed);
	fprintf(stderr,
		"tally run: joint run %llu on this key (%lld participants) is under way; waiting for it to end (at most %g s)\n",
		(unsigned long long)j->run, (long long)n, j->timeout_s);
	while (!failed) {
		if (value(j, R_CLOSED, &failed) != 0)
			return failed ? -1 : 0;
		int expired = lease_expired(j, &l, &failed);
		uint64_t now = harness_now_ns();
		if (expired) {
			fprintf(stderr,
				"tally run: joint run %llu showed no sign of life for %g s: its participants are gone; closing it\n",
				(unsigned long long)j->run, LEASE_MS / 1e3);
			close_joint(j);
			return 0;
		}
		if (now >= end || cli_interrupted()) {
			cli_error(
				"run",
				"joint run %llu on this key was still under way after %g s; try again when it ends, or give a longer --join-timeout",
				(unsigned long long)j->run, j->timeout_s);
			return -1;
		}
		pause_ms(50);
	}
	return -1;
}

/*
 * Whether joint run E, forming with n participants, has live ones: those
 * that arrived beat, and one that has taken a ticket arrives within
 * moments, so a sign of life comes within BEAT_MS or so.  One without a
 * sign for LEASE_MS is closed (its participants died at the barrier) and
 * 0 returned; 0 too when it is closed meanwhile.  Full: 1 (join() sees).
 */
static int forming_alive(struct joint *j, int64_t n, int *failed)
{
	struct lease l;

	lease_start(j, &l, failed);
	if (*failed || l.arrived >= n)
		return 1;
	int64_t first = l.beat, arrived = l.arrived;
	while (!cli_interrupted()) {
		int expired = lease_expired(j, &l, failed);
		if (*failed || l.beat != first || l.arrived != arrived)
			return 1;
		if (value(j, R_CLOSED, failed) != 0)
			return 0; /* closed meanwhile: on to the next */
		if (expired)
			break;
		pause_ms(20);
	}
	if (cli_interrupted())
		return 1;
	fprintf(stderr,
		"tally run: joint run %llu had %lld of %lld participants, none of them alive for %g s; closing it\n",
		(unsigned long long)j->run, (long long)arrived, (long long)n,
		LEASE_MS / 1e3);
	close_joint(j);
	return 0;
}

/* Wait until E's first joiner has recorded N (at most LEASE_MS: it may
 * have died between its ticket and N); 0 with *n, or with 0 when E is
 * closed (by this run, when nobody recorded N); -1 on an error. */
static int recorded_n(struct joint *j, int64_t *n)
{
	switch (wait_within(j, R_N, 1, n, LEASE_MS / 1e3)) {
	case W_REACHED:
		return 0;
	case W_TIMEOUT:
		if (cli_interrupted())
			return -1;
		fprintf(stderr,
			"tally run: joint run %llu's first participant never said how many take part (within %g s); closing it\n",
			(unsigned long long)j->run, LEASE_MS / 1e3);
		close_joint(j);
		__attribute__((fallthrough)); /* on to the next */
	case W_CLOSED:
		*n = 0;
		return 0;
	default:
		return -1;
	}
}

/* try_join()'s answer when joint run E is over (or ends): try E + 1. */
enum { NEXT = -2 };

/* One try at joining joint run E (j->run): 0 when joined, NEXT, or the
 * exit code. */
static int try_join(struct joint *j, uint64_t end)
{
	int64_t ticket, n, place;
	int failed = 0;

	if (value(j, R_CLOSED, &failed) != 0)
		return failed ? EXIT_RUNTIME : NEXT;
	if (tally_add_fetch(j->c[R_JOINED], 1, &ticket) < 0 ||
	    (ticket == 1 && add(j, R_N, j->n) != 0) || recorded_n(j, &n) != 0)
		return EXIT_RUNTIME;
	if (n == 0)
		return NEXT; /* closed meanwhile */
	/* The first joiner recorded N and arrives at once; any other checks
	 * that the run it joins lives (a dead one is closed: the next). */
	if (ticket != 1 && !forming_alive(j, n, &failed))
		return failed ? EXIT_RUNTIME : NEXT;
	if (n != (int64_t)j->n) {
		if (value(j, R_ARRIVED, &failed) >= n)
			return failed		     ? EXIT_RUNTIME
			       : wait_out(j, n, end) ? EXIT_RUNTIME
						     : NEXT;
		if (failed)
			return EXIT_RUNTIME;
		cli_error(
			"run",
			"joint run %llu on this key is forming with %lld participants, and this run asked for %u: give every participant the same --participants",
			(unsigned long long)j->run, (long long)n, j->n);
		return EXIT_USAGE;
	}
	if (tally_add_fetch(j->c[R_ARRIVED], 1, &place) < 0)
		return EXIT_RUNTIME;
	if (place <= n) {
		j->index = (unsigned)(place - 1);
		return 0;
	}
	return wait_out(j, n, end) ? EXIT_RUNTIME : NEXT;
}

/*
 * Join the joint run now forming on the key, as one of its N participants:
 * after a run under way ends, or a dead one is closed, until `end`.  The
 * epoch counter is a hint (its closer may have died before moving it): the
 * run to join is the first from there that is not closed.  0, or the exit
 * code: EXIT_USAGE when the run forming wants another N.
 */
static int join(struct joint *j, uint64_t end)
{
	int64_t hint;
	int rc = tally_get(j->epoch, &hint);

	if (rc < 0) {
		cli_error("run", "cannot read the '%s' counter: %s",
			  cli_shown(j->epoch_spec), tally_explain(rc));
		return EXIT_RUNTIME;
	}
	for (uint64_t e = (uint64_t)hint;; e++) {
		if (open_run(j, e) != 0)
			return EXIT_RUNTIME;
		rc = try_join(j, end);
		if (rc != NEXT)
			return rc;
		if (harness_now_ns() >= end || cli_interrupted()) {
			cli_error("run",
				  "could not join a joint run within %g s",
				  j->timeout_s);
			return EXIT_RUNTIME;
		}
	}
}

/* Why a barrier wait ended without everyone, said; E closed. */
static int barrier_failed(struct joint *j, enum wait_end how, const char *what)
{
	if (how == W_CLOSED)
		cli_error(
			"run",
			"joint run %llu was closed by another participant while this one waited for %s",
			(unsigned long long)j->run, what);
	else if (how == W_TIMEOUT && cli_interrupted())
		cli_error("run", "interrupted while waiting for %s", what);
	else if (how == W_TIMEOUT)
		cli_error("run", "%s did not happen within %g s", what,
			  j->timeout_s);
	if (how != W_FAILED)
		close_joint(j);
	return -1;
}

/* Both barriers: everyone arrived, then everyone read the start.  0; 1
 * when E was closed before everyone arrived (nothing was done: join the
 * next); -1 when it failed, said. */
static int arrive(struct joint *j)
{
	int64_t seen;
	int failed = 0;
	enum wait_end how;

	fprintf(stderr, "tally run: participant %u of %u (joint run %llu)%s\n",
		j->index + 1, j->n, (unsigned long long)j->run,
		j->n > 1 ? "; waiting for the others" : "");
	how = wait_for(j, R_ARRIVED, j->n, &seen);
	if (how == W_CLOSED)
		return 1; /* closed before it began: join the next */
	if (how == W_TIMEOUT && !cli_interrupted()) {
		cli_error(
			"run",
			"participants %lld to %u of %u never arrived within %g s (%lld arrived)",
			(long long)seen + 1, j->n, j->n, j->timeout_s,
			(long long)seen);
		close_joint(j);
		return -1;
	}
	if (how != W_REACHED)
		return barrier_failed(j, how, "the others to arrive");
	if (tally_get(j->main, &j->start) < 0) {
		cli_error("run", "cannot read the '%s' counter",
			  cli_shown(j->main_spec));
		failed = 1;
	}
	/* Nobody adds until everyone has read the starting value. */
	if (failed || add(j, R_READY, 1) != 0)
		return barrier_failed(j, W_FAILED, "");
	how = wait_for(j, R_READY, j->n, &seen);
	/* Closed before anyone added (a joiner took it for dead): nothing
	 * was done, join the next. */
	if (how == W_CLOSED ||
	    (how == W_REACHED && value(j, R_CLOSED, &failed) != 0 && !failed))
		return 1;
	if (how != W_REACHED)
		return barrier_failed(j, how, "every participant to get ready");
	return 0;
}

/* What this participant's adds can be, for the others. */
struct own {
	int64_t sum;			/* of the acknowledged adds */
	int64_t unknown_lo, unknown_hi; /* of the unknown ones, if applied */
	uint64_t ops, unknown;
	int unjudged; /* a final flush failed, or the final read */
	int faulted;  /* a worker killed, dead or stalled */
};

static struct own own_adds(const struct wl_result *res)
{
	struct own o = {
		.sum = (int64_t)((uint64_t)res->expected -
				 (uint64_t)res->start),
		.ops = res->total_ops,
		.unknown = res->unknown,
		.unjudged = res->flush_failed || res->unread,
		.faulted = res->killed_worker >= 0 || res->died_worker >= 0 ||
			   res->stalled,
		.unknown_lo = res->unknown_lo,
		.unknown_hi = res->unknown_hi,
	};

	return o;
}

/* What this participant did, for the others; then wait for all of them.
 * -1 with *missing the participants (bits) that never finished. */
static int finish(struct joint *j, const struct own *o, int64_t *missing)
{
	int64_t seen, mask;
	int failed = 0;

	if (add(j, R_SUM, o->sum) != 0 ||
	    add(j, R_UNK, (int64_t)o->unknown) != 0 ||
	    add(j, R_UNKLO, o->unknown_lo) != 0 ||
	    add(j, R_UNKHI, o->unknown_hi) != 0 ||
	    add(j, R_UNJUDGED, o->unjudged) != 0 ||
	    add(j, R_FAULTED, o->faulted) != 0 ||
	    add(j, R_MASK, (int64_t)(1ull << j->index)) != 0 ||
	    add(j, R_FIN, 1) != 0) {
		cli_error("run", "cannot record what this participant added");
		close_joint(j);
		return -1;
	}
	enum wait_end how = wait_for(j, R_FIN, j->n, &seen);
	if (how == W_REACHED)
		return 0;
	mask = value(j, R_MASK, &failed);
	*missing = failed ? 0 : ~mask & (int64_t)((1ull << j->n) - 1);
	if (how == W_CLOSED)
		cli_error(
			"run",
			"joint run %llu was closed by another participant before every participant finished",
			(unsigned long long)j->run);
	else if (how == W_TIMEOUT && cli_interrupted())
		cli_error(
			"run",
			"interrupted while waiting for the others to finish:");
	else
		cli_error(
			"run",
			"not every participant finished within %g s of this one:",
			j->timeout_s);
	if (how != W_FAILED)
		close_joint(j);
	return -1;
}

/* A participant left without a joint verdict still says what it did. */
static void say_own(const struct joint *j, const struct own *o)
{
	fprintf(stderr,
		"tally run: this participant (%u of %u, joint run %llu) made %" PRIu64
		" adds, summing to %" PRId64 ": %s, %" PRIu64
		" of unknown outcome\n",
		j->index + 1, j->n, (unsigned long long)j->run, o->ops, o->sum,
		o->unjudged ? "not all applied (its final flush failed)"
			    : "each acknowledged",
		o->unknown);
}

static void print_joint(const struct joint *j, const struct wl_config *cfg,
			const struct own *o, double seconds,
			enum cli_format format, int64_t sum, int64_t actual,
			int64_t lost, int64_t unknown, int64_t unjudged)
{
	int64_t expected = (int64_t)((uint64_t)j->start + (uint64_t)sum);

	if (format == FORMAT_JSON) {
		printf("{\"backend\": ");
		json_string(stdout, cli_shown(j->backend));
		printf(", \"workload\": \"%s\", \"mode\": \"%s\", \"workers\": %u, \"iters\": %" PRIu64
		       ", \"initial\": %" PRId64
		       ", \"participants\": %u, \"participant\": %u, \"joint_run\": %" PRIu64
		       ", \"own_sum\": %" PRId64 ", \"own_ops\": %" PRIu64
		       ", \"expected\": %" PRId64 ", \"actual\": %" PRId64
		       ", \"lost\": %" PRId64 ", \"unknown\": %" PRId64
		       ", \"unjudged\": %" PRId64
		       ", \"seconds\": %.6f, \"ns_per_op\": %.2f, \"exact\": %s}\n",
		       wl_kind_name(cfg->kind), crew_mode_name(cfg->mode),
		       cfg->workers, cfg->iters, j->start, j->n, j->index + 1,
		       j->run, o->sum, o->ops, expected, actual, lost, unknown,
		       unjudged, seconds,
		       o->ops ? seconds * 1e9 / (double)o->ops : 0.0,
		       lost == 0 && unknown == 0 && unjudged == 0 ? "true"
								  : "false");
		return;
	}
	static const char *const head[] = {
		"backend", "participants", "start",    "expected",   "actual",
		"lost",	   "unknown",	   "own adds", "own seconds"};
	char b[8][32];
	struct table t;

	table_init(&t, 9, head, "lrrrrrrrr");
	table_row(&t, cli_shown(j->backend), fmt_u64(b[0], 32, j->n),
		  fmt_i64(b[1], 32, j->start), fmt_i64(b[2], 32, expected),
		  fmt_i64(b[3], 32, actual), fmt_i64(b[4], 32, lost),
		  fmt_i64(b[7], 32, unknown), fmt_u64(b[5], 32, o->ops),
		  fmt_f(b[6], 32, 3, seconds));
	table_emit(&t, format, stdout);
	table_free(&t);
}

/* The joint verdict over all participants, printed by each. */
static int verdict(struct joint *j, const struct wl_config *cfg,
		   const struct own *o, const struct wl_result *res,
		   enum cli_format format)
{
	int failed = 0;
	int64_t sum = value(j, R_SUM, &failed);
	int64_t unknown = value(j, R_UNK, &failed);
	int64_t lo = value(j, R_UNKLO, &failed);
	int64_t hi = value(j, R_UNKHI, &failed);
	int64_t unjudged = value(j, R_UNJUDGED, &failed);
	int64_t faulted = value(j, R_FAULTED, &failed);
	int64_t actual = 0;

	if (tally_get(j->main, &actual) < 0 || failed) {
		cli_error("run", "cannot read the joint result");
		say_own(j, o);
		return EXIT_RUNTIME;
	}
	/* Closed before its verdict: another run took a participant for dead
	 * and may be adding to the key already. */
	if (value(j, R_CLOSED, &failed) != 0 || failed) {
		cli_error(
			"run",
			"joint run %llu was closed by another run before its verdict (a participant showed no sign of life for %g s): no joint verdict",
			(unsigned long long)j->run, LEASE_MS / 1e3);
		say_own(j, o);
		return EXIT_RUNTIME;
	}
	int64_t expected = (int64_t)((uint64_t)j->start + (uint64_t)sum);
	int64_t moved = (int64_t)((uint64_t)actual - (uint64_t)expected);
	/* What the unknown adds account for is no loss. */
	int64_t lost = wl_lost(moved, lo, hi);
	print_joint(j, cfg, o, res->seconds, format, sum, actual, lost, unknown,
		    unjudged);
	fprintf(stderr,
		"tally run: joint verdict over %u participant%s: adds sum to %" PRId64
		", the counter went from %" PRId64 " to %" PRId64 ": %s\n",
		j->n, j->n == 1 ? "" : "s", sum, j->start, actual,
		unjudged		    ? "not judged"
		: lost == 0 && unknown == 0 ? "exact"
		: lost == 0		    ? "the unknown adds account for it"
					    : "they differ");
	if (unjudged) {
		fprintf(stderr,
			"tally run: %lld participant%s could not say what it added: a final flush failed (its message says how much it left unsent), or the final read\n",
			(long long)unjudged, unjudged == 1 ? "" : "s");
		return EXIT_RUNTIME;
	}
	if (lost != 0 && faulted != 0) {
		fprintf(stderr,
			"tally run: %lld participant%s had a worker killed, dead or stalled, whose add in flight is in the count but in no sum: the difference may be that\n",
			(long long)faulted, faulted == 1 ? "" : "s");
		return EXIT_RUNTIME;
	}
	if (lost != 0)
		return EXIT_LOST;
	if (unknown != 0) {
		fprintf(stderr,
			"tally run: %lld add%s of unknown outcome among the participants, whose applied part sums to between %lld and %lld: neither done nor lost\n",
			(long long)unknown, unknown == 1 ? "" : "s",
			(long long)lo, (long long)hi);
		return EXIT_RUNTIME;
	}
	/* This participant's own failures; its own "lost" is meaningless,
	 * as the counter holds the others' adds too. */
	return wl_faulted(res) ? EXIT_RUNTIME : EXIT_EXACT;
}

static int open_joint(struct joint *j, int64_t initial)
{
	j->main_spec = derived(j->backend, "");
	j->epoch_spec = derived(j->backend, ".tally-run.epoch");
	int rc = open_one(&j->main, j->main_spec, initial);
	if (rc == 0)
		rc = open_one(&j->epoch, j->epoch_spec, 0);
	return rc;
}

static void close_joint_handles(struct joint *j)
{
	stop_beat(j);
	close_run(j);
	tally_destroy(j->main);
	tally_destroy(j->epoch);
	free(j->main_spec);
	free(j->epoch_spec);
}

/* The joint run this process takes part in, for stop_joint(). */
static struct joint *current;

/* The workload's stop hook: Ctrl-C, or the joint run closed under it. */
static int stop_joint(void *arg)
{
	(void)arg;
	return cli_interrupted() ||
	       (current != NULL && atomic_load(&current->evicted));
}

/* take_part()'s answer when the joint run closed before it began. */
enum { RETRY = -1 };

/* After join(): the barriers, the workload, the verdict.  An exit code, or
 * RETRY. */
static int take_part(struct joint *j, struct wl_config *cfg,
		     struct wl_result *res, enum cli_format format)
{
	int64_t missing = 0;
	int rc = arrive(j);

	if (rc != 0)
		return rc > 0 ? RETRY : EXIT_RUNTIME;
	/* Each participant's own count starts from the joint start; it
	 * stops when Ctrl-C says so or E is closed under it. */
	cfg->initial = j->start;
	cfg->stop = stop_joint;
	current = j;
	int one = run_one("run", j->main_spec, cfg, res);
	if (atomic_load(&j->evicted)) {
		struct own o = own_adds(res);
		cli_error(
			"run",
			"joint run %llu was closed by another run while this one took part (it saw no sign of life from this participant for %g s): its workers stopped, and what they added before may be counted in the next joint run",
			(unsigned long long)j->run, LEASE_MS / 1e3);
		say_own(j, &o);
		return EXIT_RUNTIME;
	}
	if (one != RUN_RAN) {
		/* Could not run: still finish, adding nothing, so that the
		 * others are not kept waiting. */
		memset(res, 0, sizeof(*res));
		res->expected = res->start = cfg->initial;
		res->add_error = TALLY_EREMOTE;
	}
	struct own o = own_adds(res);
	if (finish(j, &o, &missing) != 0) {
		for (unsigned i = 0; i < j->n; i++)
			if (missing & (int64_t)(1ull << i))
				fprintf(stderr,
					"tally run: participant %u of %u never finished\n",
					i + 1, j->n);
		say_own(j, &o);
		return EXIT_RUNTIME;
	}
	rc = verdict(j, cfg, &o, res, format);
	int64_t readers;
	/* The last to have read the verdict closes the joint run. */
	if (tally_add_fetch(j->c[R_READ], 1, &readers) == 0 &&
	    readers == (int64_t)j->n)
		close_joint(j);
	return one != RUN_RAN && rc == EXIT_EXACT ? one : rc;
}

int run_participants(const char *backend, const struct wl_config *given,
		     unsigned n, double timeout_s, enum cli_format format)
{
	struct joint j = {.backend = backend, .n = n, .timeout_s = timeout_s};
	struct wl_config cfg = *given;
	int rc = EXIT_RUNTIME;

	struct wl_result *res = calloc(1, sizeof(*res));
	if (res == NULL)
		return EXIT_RUNTIME;
	int err = open_joint(&j, cfg.initial);
	if (err != 0) {
		rc = err == TALLY_EOPTION || err == TALLY_EWRONGTYPE
			     ? EXIT_USAGE
			     : EXIT_RUNTIME;
		goto out;
	}
	uint64_t end = harness_now_ns() + (uint64_t)(timeout_s * 1e9);
	do {
		rc = join(&j, end);
		if (rc == 0) {
			start_beat(&j);
			rc = take_part(&j, &cfg, res, format);
			stop_beat(&j);
		}
	} while (rc == RETRY);
out:
	close_joint_handles(&j);
	free(res);
	return rc;
}
