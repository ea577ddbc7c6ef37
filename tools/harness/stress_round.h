/*
 * The rounds of `tally stress`: a random schedule, drawn from (seed, round
 * number) alone, run by a crew on one counter, then checked: every worker's
 * error, the critical-section probe, and the counter against the initial
 * value plus what the workers added.
 */
#ifndef TALLY_HARNESS_STRESS_ROUND_H
#define TALLY_HARNESS_STRESS_ROUND_H

#include "crew.h"
#include "verdict.h"
#include "tally.h"

#include <stddef.h>
#include <stdint.h>

#define STRESS_MAX_WORKERS 64u
#define STRESS_OPS_LOG2	   13 /* at most 8192 operations per worker */
#define STRESS_MODE_MIXED  2  /* beside CREW_THREADS and CREW_PROCESSES */

struct stress_round {
	uint64_t number, seed;
	enum crew_mode mode;
	unsigned workers, cap; /* cap: the most workers it could draw */
	uint64_t ops;	       /* per worker */
	int64_t initial;
	unsigned yield_rate, sleep_rate; /* out of 256, per pause point */
	unsigned max_sleep_us;
	uint64_t deadline; /* monotonic ns: workers stop there */
};

/*
 * Draw round `number` of `seed`: 1 to cap (at most STRESS_MAX_WORKERS)
 * workers, in mode CREW_THREADS, CREW_PROCESSES or STRESS_MODE_MIXED (each
 * round picks; processes only when pshared).  Every value is drawn whatever
 * the options, so that a round is the same when it is reproduced with
 * another mode or cap.  The deadline is left 0 (none).
 */
void stress_draw(uint64_t seed, uint64_t number, unsigned cap, int mode,
		 int pshared, struct stress_round *r);

struct stress_outcome {
	/* HARNESS_EXACT (the count is exact, nobody met in a section),
	 * _LOST, _OVERLAP, _FAULT (a worker died, an add failed, the counter
	 * could not be read) or _ERROR (the round could not start). */
	enum harness_verdict verdict;
	uint64_t adds;	   /* adds that went in */
	int cut;	   /* a worker stopped at the deadline */
	uint64_t overlaps; /* times a section was found occupied */
	int64_t expected, actual;
	char reason[HARNESS_REASON_SIZE];
};

/*
 * Run round r on t, the caller's (created with r->initial, and TALLY_PSHARED
 * for processes).  Returns the verdict, also in out->verdict
 * (tools/harness/verdict.h).
 */
enum harness_verdict stress_run(tally *t, const struct stress_round *r,
				struct stress_outcome *out);

#endif /* TALLY_HARNESS_STRESS_ROUND_H */
