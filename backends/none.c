/* none: a plain load, add and store with no synchronization at all. */
#include "backend.h"

/*
 * Deliberately racy, to show what a lock buys.  `volatile` makes every add a
 * real load and a real store in the generated code, so the compiler can
 * neither keep the value in a register across iterations nor merge many adds
 * into one; two threads on two cores then overwrite each other's stores and
 * lose updates.  (It is still a data race in the C11 sense: that is the point,
 * and ThreadSanitizer must report it.)
 */
struct none_state {
	volatile uint64_t value;
};

static int none_init(void *state, int64_t initial, unsigned flags,
		     const char *options)
{
	(void)flags;
	(void)options;
	((struct none_state *)state)->value = (uint64_t)initial;
	return 0;
}

static int none_add(void *state, int64_t delta)
{
	struct none_state *s = state;
	uint64_t v = s->value;		/* another worker may store here ... */
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
	.init = none_init,
	.add = none_add,
	.get = none_get,
};
