/* busted: a test-only backend that claims TALLY_CAP_LOCKED but takes no
 * lock, as the Linux kernel's locktorture has lock_busted.  Built only into
 * the test copy of the library (tests/unit.cmake), never into libtally or
 * `tally list`: the exclusion tests are run on it and must fail, which
 * proves that they can catch a lock that does not exclude. */
#include "backend.h"

#include <sched.h>
#include <stdint.h>

/* A page, the widest state_align the core promises (src/backend.h), so
 * that the core's honouring of it (src/place.c, src/named.c) is tested too:
 * init refuses a state placed anywhere else, and every test on this backend
 * then fails to create it rather than failing where it should. */
#define BUSTED_ALIGN 4096

struct busted_state {
	_Alignas(BUSTED_ALIGN) tally__word value;
};

static int busted_init(void *state, int64_t initial, unsigned flags,
		       const char *options)
{
	(void)flags;
	(void)options;
	if ((uintptr_t)state % BUSTED_ALIGN != 0)
		return TALLY_EINVAL;
	tally__word_init(&((struct busted_state *)state)->value, initial);
	return 0;
}

/* The "lock" it claims is not there: a load and a store that another
 * worker's can interleave with (updates are lost). */
static int busted_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	(void)k;
	tally__word_add(&((struct busted_state *)state)->value, delta);
	return 0;
}

/* The critical section, with nothing around it: two workers run inside()
 * at once. */
static int busted_add_cs(void *state, int64_t delta,
			 const struct tally__knobs *k, void (*inside)(void *),
			 void *arg)
{
	busted_add(state, delta, k);
	inside(arg);
	return 0;
}

static int busted_get(void *state, int64_t *value)
{
	return tally__word_get(&((struct busted_state *)state)->value, value);
}

const struct tally_backend tally_backend_busted = {
	.name = "busted",
	.summary = "test only: claims a lock, takes none (must fail)",
	.caps = TALLY_CAP_LOCKED | TALLY_CAP_PSHARED,
	.state_size = sizeof(struct busted_state),
	.state_align = _Alignof(struct busted_state),
	.init = busted_init,
	.add = busted_add,
	.get = busted_get,
	.add_cs = busted_add_cs,
};
