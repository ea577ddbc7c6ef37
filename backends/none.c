/* none: a plain load, add and store with no synchronization at all. */
#include "backend.h"

#include <string.h>
#include <time.h>

/*
 * Deliberately racy, to show what a lock buys.  `volatile` makes every add a
 * real load and a real store in the generated code, so the compiler can
 * neither keep the value in a register across iterations nor merge many adds
 * into one; two threads on two cores then overwrite each other's stores and
 * lose updates.  (It is still a data race in the C11 sense: that is the point,
 * and ThreadSanitizer must report it.)
 *
 * Option window_us=N (0 to 1000000, default 0): busy-wait N microseconds
 * between the load and the store.  CPython's `total.value += 5` on a
 * multiprocessing.Value is a locked read, some microseconds of interpreter
 * work, then a locked write; the window stands in for that work, so that
 * `tally demo` can retell the lesson's drift (bench/python_rmw.py measures
 * the statement).  It busy-waits rather than sleeps because the interpreter
 * is running, not sleeping, and a sleep would add the kernel's timer slack.
 * The window lives in the state, so every process sharing the counter (a
 * forked child, a program that opens it by name) uses the creator's.
 */
struct none_state {
	volatile uint64_t value;
	uint64_t window_ns; /* written once by init, read-only afterwards */
};

#define NONE_WINDOW_MAX_US 1000000u

static int parse_options(struct none_state *s, const char *opt)
{
	static const char key[] = "window_us=";
	size_t klen = sizeof(key) - 1, digits;
	uint64_t us = 0;

	if (opt == NULL || *opt == '\0')
		return 0;
	if (strncmp(opt, key, klen) != 0)
		return TALLY_EOPTION;
	opt += klen;
	digits = strspn(opt, "0123456789");
	if (digits == 0 || digits > 7 || opt[digits] != '\0')
		return TALLY_EOPTION;
	for (size_t i = 0; i < digits; i++)
		us = us * 10 + (uint64_t)(opt[i] - '0');
	if (us > NONE_WINDOW_MAX_US)
		return TALLY_EOPTION;
	s->window_ns = us * 1000u;
	return 0;
}

static int none_init(void *state, int64_t initial, unsigned flags,
		     const char *options)
{
	struct none_state *s = state;
	int rc;

	(void)flags;
	s->window_ns = 0;
	rc = parse_options(s, options);
	if (rc != 0)
		return rc;
	s->value = (uint64_t)initial;
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int none_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	(void)k; /* no lock to wait for */
	struct none_state *s = state;
	uint64_t v = s->value; /* another worker may store here ... */

	if (s->window_ns != 0) {
		uint64_t end = now_ns() + s->window_ns;
		while (now_ns() < end)
			; /* the interpreter's work between read and write */
	}
	s->value = v + (uint64_t)delta; /* ... and this store erases it */
	return 0;
}

static int none_get(void *state, int64_t *value)
{
	*value = (int64_t)((struct none_state *)state)->value;
	return 0;
}

const struct tally_backend tally_backend_none = {
	.name = "none",
	.summary = "plain load, add, store; no synchronization (loses updates)",
	.caps = TALLY_CAP_RACY | TALLY_CAP_PSHARED | TALLY_CAP_NAMED,
	.state_size = sizeof(struct none_state),
	.state_align = _Alignof(struct none_state),
	.takes_options = 1,
	.init = none_init,
	.add = none_add,
	.get = none_get,
};
