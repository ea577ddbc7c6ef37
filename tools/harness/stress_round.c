/* Randomized rounds that hunt for lost updates and broken exclusion. */
#include "stress_round.h"
#include "clock.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

/* What each worker reports; private to it until it has finished. */
struct slot {
	uint64_t sum; /* of the deltas it added, mod 2^64 */
	uint64_t adds;
	int error;
	int cut; /* stopped at the deadline, before r->ops */
};

/* The round's shared area (crew_shared). */
struct shared {
	/* The critical-section probe: the workers inside a section that
	 * tally_add_cs() runs, counted in on entry and out on exit.  Under a
	 * lock that excludes nobody finds anyone inside; each time somebody
	 * does counts in overlaps.  A count, not a flag: one overlap's exit
	 * must not clear the mark of a worker still inside.  Relaxed: the
	 * lock orders the sections, and these are atomic only so that a
	 * broken lock's overlap is a finding rather than a race of the
	 * harness's own.  A line of their own: written at every section,
	 * they would otherwise evict what every worker reads at every
	 * operation. */
	_Alignas(CREW_LINE) _Atomic unsigned occupied;
	_Alignas(8) _Atomic uint64_t overlaps;
	/* What ThreadSanitizer checks: a plain word, written only inside the
	 * critical section.  Under a lock that excludes, and that releases
	 * after the section's writes, every write happens after the one
	 * before it; under one that does not, TSan reports a data race on
	 * it, in the stack of the backend's add.  (The probe above and the
	 * counter are atomic, so TSan alone would never see a broken lock.)
	 * Nothing reads it: the count and the probe do the checking. */
	uint64_t shadow;
	/* Read-only once the workers start. */
	_Alignas(CREW_LINE) tally *t;
	struct stress_round r;
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

void stress_draw(uint64_t seed, uint64_t number, unsigned cap, int mode,
		 int pshared, struct stress_round *r)
{
	static const unsigned yields[] = {0, 4, 32, 255};
	static const unsigned sleeps[] = {0, 0, 1, 8};
	uint64_t s = stream(seed, number, 0);

	memset(r, 0, sizeof(*r));
	r->number = number;
	r->seed = seed;
	r->cap = cap < 1		    ? 1
		 : cap > STRESS_MAX_WORKERS ? STRESS_MAX_WORKERS
					    : cap;
	r->workers = 1 + (unsigned)(rnd(&s) % r->cap);
	uint64_t draw_mode = rnd(&s) % 2,
		 log2 = rnd(&s) % (STRESS_OPS_LOG2 + 1);
	r->ops = 1 + rnd(&s) % (1u << log2);
	r->initial = draw_initial(&s);
	r->yield_rate = yields[rnd(&s) % 4];
	r->sleep_rate = sleeps[rnd(&s) % 4];
	r->max_sleep_us = 1 + (unsigned)(rnd(&s) % 200);
	if (mode != STRESS_MODE_MIXED)
		r->mode = (enum crew_mode)mode;
	else
		r->mode = draw_mode && pshared ? CREW_PROCESSES : CREW_THREADS;
}

static void pause_maybe(const struct stress_round *r, uint64_t x)
{
	if ((x & 255) < r->yield_rate) {
		sched_yield();
	} else if ((x >> 8 & 255) < r->sleep_rate) {
		harness_sleep_ns((1 + (x >> 16) % r->max_sleep_us) * 1000);
	}
}

/* Add d, and account for it only if it went in. */
static int add(tally *t, struct slot *sl, int64_t d)
{
	int rc = tally_add(t, d);

	if (rc < 0)
		return rc;
	sl->sum += (uint64_t)d;
	sl->adds++;
	return 0;
}

struct inside {
	struct shared *sh;
	uint64_t x;
	int64_t d;
};

static void pause_inside(void *arg)
{
	const struct inside *in = arg;

	if (atomic_fetch_add_explicit(&in->sh->occupied, 1,
				      memory_order_relaxed))
		atomic_fetch_add_explicit(&in->sh->overlaps, 1,
					  memory_order_relaxed);
	in->sh->shadow += (uint64_t)in->d;
	pause_maybe(&in->sh->r, in->x);
	atomic_fetch_sub_explicit(&in->sh->occupied, 1, memory_order_relaxed);
}

/* Add d with a pause inside the backend's critical section, stretching it
 * so that a broken lock would let another worker in; backends without a
 * lock (TALLY_EUNSUPPORTED) add plainly. */
static int add_stretched(struct shared *sh, struct slot *sl, int64_t d,
			 uint64_t x)
{
	struct inside in = {.sh = sh, .x = x, .d = d};
	int rc = tally_add_cs(sh->t, d, pause_inside, &in);

	if (rc == TALLY_EUNSUPPORTED)
		return add(sh->t, sl, d);
	if (rc < 0)
		return rc;
	sl->sum += (uint64_t)d;
	sl->adds++;
	return 0;
}

/* One random operation; 0 or a TALLY_E* code. */
static int one_op(struct shared *sh, struct slot *sl, uint64_t *s)
{
	const struct stress_round *r = &sh->r;
	uint64_t x = rnd(s);
	int64_t d = draw_delta(s), v;
	int rc;

	pause_maybe(r, x);
	switch (x >> 32 & 3) {
	case 1: /* the window of a read-modify-write done without a lock */
		if ((rc = tally_get(sh->t, &v)) < 0)
			return rc;
		pause_maybe(r, rnd(s));
		return add(sh->t, sl, d);
	case 2: /* a transient value that the other workers add onto */
		if ((rc = add(sh->t, sl, d)) < 0)
			return rc;
		pause_maybe(r, rnd(s));
		return add(sh->t, sl, (int64_t)(0 - (uint64_t)d));
	case 3: /* a longer critical section */
		return add_stretched(sh, sl, d, rnd(s));
	default:
		return add(sh->t, sl, d);
	}
}

static void work(struct crew *c, unsigned k, void *arg)
{
	struct shared *sh = crew_shared(c);
	const struct stress_round *r = &sh->r;
	struct slot *sl = crew_slot(c, k);
	uint64_t s = stream(r->seed, r->number, k + 1);

	(void)arg;
	for (uint64_t i = 0; i < r->ops; i++) {
		/* The clock is a vDSO call; every 64 operations is cheap. */
		if (i % 64 == 63 && r->deadline &&
		    harness_now_ns() >= r->deadline) {
			sl->cut = 1;
			break;
		}
		int rc = one_op(sh, sl, &s);
		if (rc < 0) {
			sl->error = rc;
			break;
		}
	}
}

/* The workers have all ended: how did they do? */
static enum harness_verdict check(struct crew *c, struct stress_outcome *out)
{
	struct shared *sh = crew_shared(c);
	const struct stress_round *r = &sh->r;
	uint64_t sum = (uint64_t)r->initial;
	int rc;

	for (unsigned k = 0; k < r->workers; k++) {
		struct crew_outcome w = crew_outcome(c, k);

		if (r->mode == CREW_PROCESSES && w.end != CREW_DONE)
			return harness_say(
				out->reason, HARNESS_FAULT,
				"worker %u (a process) died: %s", k,
				w.status == CREW_STATUS_UNKNOWN
					? "status unknown"
				: WIFSIGNALED(w.status)
					? strsignal(WTERMSIG(w.status))
					: "nonzero exit");
	}
	for (unsigned k = 0; k < r->workers; k++) {
		const struct slot *sl = crew_slot(c, k);

		sum += sl->sum;
		out->adds += sl->adds;
		out->cut |= sl->cut;
		if (sl->error)
			return harness_say(out->reason, HARNESS_FAULT,
					   "worker %u: an add failed: %s", k,
					   tally_strerror(sl->error));
	}
	out->expected = (int64_t)sum;
	out->overlaps = atomic_load(&sh->overlaps);
	if (out->overlaps != 0)
		return harness_say(
			out->reason, HARNESS_OVERLAP,
			"%" PRIu64
			" times a worker found the critical section occupied",
			out->overlaps);
	if ((rc = tally_get(sh->t, &out->actual)) < 0)
		return harness_say(out->reason, HARNESS_FAULT,
				   "cannot read the counter: %s",
				   tally_strerror(rc));
	if ((uint64_t)out->actual != sum)
		return harness_say(out->reason, HARNESS_LOST,
				   "expected %" PRId64 ", actual %" PRId64,
				   out->expected, out->actual);
	return harness_say(out->reason, HARNESS_EXACT,
			   "exact: %" PRIu64 " adds, final value %" PRId64,
			   out->adds, out->actual);
}

enum harness_verdict stress_run(tally *t, const struct stress_round *r,
				struct stress_outcome *out)
{
	struct crew_config cc = {
		.mode = r->mode,
		.workers = r->workers,
		.shared_size = sizeof(struct shared),
		.slot_size = sizeof(struct slot),
		/* Processes ignore Ctrl-C: the coordinator decides. */
		.flags = CREW_IGNORE_SIGINT | CREW_DIE_WITH_PARENT,
		.work = work,
	};
	struct crew *c;
	struct shared *sh;

	memset(out, 0, sizeof(*out));
	if (r->workers > STRESS_MAX_WORKERS || crew_create(&c, &cc) != 0)
		return out->verdict = harness_say(
			       out->reason, HARNESS_ERROR,
			       "cannot set up %u workers: %s", r->workers,
			       r->workers > STRESS_MAX_WORKERS
				       ? strerror(EINVAL)
				       : strerror(errno));
	sh = crew_shared(c);
	sh->t = t;
	sh->r = *r;
	if (crew_start(c) != 0) {
		char why[256];

		out->verdict = harness_say(
			out->reason, HARNESS_ERROR,
			"cannot start worker %u: %s", crew_started(c),
			crew_start_error(r->mode, errno, why, sizeof(why)));
	} else {
		crew_go(c);
		crew_finish(c, 0);
		out->verdict = check(c, out);
	}
	crew_destroy(c);
	return out->verdict;
}
