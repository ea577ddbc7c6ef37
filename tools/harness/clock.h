/* The harness's clock: monotonic nanoseconds, a vDSO call on Linux. */
#ifndef TALLY_HARNESS_CLOCK_H
#define TALLY_HARNESS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t harness_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleep about ns nanoseconds.  A signal may cut it short: every caller
 * looks again at what it waits for. */
static inline void harness_sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
			      .tv_nsec = (long)(ns % 1000000000u)};

	nanosleep(&ts, NULL);
}

#endif /* TALLY_HARNESS_CLOCK_H */
