/* relaxed: a test-only C11 test-and-set lock whose unlock is a relaxed store
 * instead of a release.  It excludes (the exchange that takes it is atomic),
 * and on x86-64 every count it keeps is exact, because the hardware orders
 * stores anyway; but the C11 memory model gives the next holder no view of
 * what this holder wrote in its critical section.  Only a happens-before
 * checker finds that: the tsan preset requires ThreadSanitizer to report it
 * (tests/sanitize.cmake), which proves that TSan checks the C11 locks
 * through their own orders, with no annotation to hide a wrong one.  Built
 * only into the test copy of the library, as busted is. */
#include "backend.h"

#include <stdatomic.h>

struct relaxed_state {
	_Atomic unsigned locked;
	_Alignas(8) tally__word value;
};

static int relaxed_init(void *state, int64_t initial, unsigned flags,
			const char *options)
{
	struct relaxed_state *s = state;

	(void)flags;
	(void)options;
	atomic_init(&s->locked, 0);
	tally__word_init(&s->value, initial);
	return 0;
}

static void relaxed_lock(struct relaxed_state *s)
{
	while (atomic_exchange_explicit(&s->locked, 1, memory_order_acquire))
		while (atomic_load_explicit(&s->locked, memory_order_relaxed))
			tally__cpu_relax();
}

/* The bug on purpose: memory_order_release is what a lock's unlock needs. */
static void relaxed_unlock(struct relaxed_state *s)
{
	atomic_store_explicit(&s->locked, 0, memory_order_relaxed);
}

static int relaxed_add_cs(void *state, int64_t delta,
			  const struct tally__knobs *k, void (*inside)(void *),
			  void *arg)
{
	struct relaxed_state *s = state;

	(void)k;
	relaxed_lock(s);
	tally__word_add(&s->value, delta);
	if (inside != NULL)
		inside(arg);
	relaxed_unlock(s);
	return 0;
}

static int relaxed_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	return relaxed_add_cs(state, delta, k, NULL, NULL);
}

static int relaxed_get(void *state, int64_t *value)
{
	return tally__word_get(&((struct relaxed_state *)state)->value, value);
}

const struct tally_backend tally_backend_relaxed = {
	.name = "relaxed",
	.summary =
		"test only: a C11 spinlock whose unlock is relaxed (must fail under ThreadSanitizer)",
	.caps = TALLY_CAP_LOCKED | TALLY_CAP_SPINNING | TALLY_CAP_PSHARED,
	.state_size = sizeof(struct relaxed_state),
	.state_align = _Alignof(struct relaxed_state),
	.init = relaxed_init,
	.add = relaxed_add,
	.get = relaxed_get,
	.add_cs = relaxed_add_cs,
};
