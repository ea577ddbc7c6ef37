/*
 * The one contract of the harness's three doors, wl_run() (the lesson's
 * workloads), stress_run() (a stress round) and bench_run_once() (a
 * measured run):
 *
 *  - the caller makes the counter and passes it in; the harness never
 *    creates or destroys one;
 *  - each returns a verdict, also kept in its result beside a reason, a
 *    whole sentence for a message; the command only prints them;
 *  - a run that could not start is HARNESS_ERROR with the reason (no errno,
 *    no TALLY_E* code to decode).
 */
#ifndef TALLY_HARNESS_VERDICT_H
#define TALLY_HARNESS_VERDICT_H

#include <stdarg.h>
#include <stdio.h>

enum harness_verdict {
	HARNESS_EXACT,	 /* every add that completed is in the count */
	HARNESS_LOST,	 /* the count is not what the completed adds sum to */
	HARNESS_OVERLAP, /* two workers were inside one critical section */
	HARNESS_FAULT,	 /* it ran, but not as asked (a worker killed, died,
			  * stuck or failing, an add refused, interrupted,
			  * adds of unknown outcome): the result says which */
	HARNESS_ERROR,	 /* it could not run: nothing was measured */
};

#define HARNESS_REASON_SIZE 384

/* "exact", "lost", "overlap", "fault", "error". */
const char *harness_verdict_name(enum harness_verdict v);

/* Write the reason (printf-style) into reason[HARNESS_REASON_SIZE] and
 * return v: `return harness_say(res->reason, HARNESS_ERROR, "...")`. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
enum harness_verdict
harness_say(char *reason, enum harness_verdict v, const char *fmt, ...);

#endif /* TALLY_HARNESS_VERDICT_H */
