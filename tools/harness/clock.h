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

#endif /* TALLY_HARNESS_CLOCK_H */
