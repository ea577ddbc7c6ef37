/* atomic: C11 atomic_fetch_add on one 64-bit word; lock-free, the default. */
#include "backend.h"

#include <stdatomic.h>

/* Unsigned, so that wrap-around is plain modulo arithmetic.  TALLY_INLINE
 * programs add to `value` themselves (add_is_word): keep it first, and keep
 * atomic_add exactly one acq_rel fetch-add. */
struct atomic_state {
	_Alignas(8) _Atomic uint64_t value;
};

static int atomic_init_(void *state, int64_t initial, unsigned flags,
			const char *options)
{
	(void)flags;
	(void)options;
	atomic_init(&((struct atomic_state *)state)->value, (uint64_t)initial);
	return 0;
}

/*
 * acq_rel on add and acquire on get make this backend order memory like the
 * lock-based ones do (a get that sees an add also sees what the adder wrote
 * before it), so embedding code may switch backends without auditing its
 * ordering.  On x86 `lock xadd` is a full barrier whatever we ask for, so this
 * costs nothing there; relaxed would only pay off on weakly ordered CPUs.
 */
static int atomic_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	(void)k; /* no lock to wait for */
	atomic_fetch_add_explicit(&((struct atomic_state *)state)->value,
				  (uint64_t)delta, memory_order_acq_rel);
	return 0;
}

static int atomic_get(void *state, int64_t *value)
{
	*value = (int64_t)atomic_load_explicit(
		&((struct atomic_state *)state)->value, memory_order_acquire);
	return 0;
}

const struct tally_backend tally_backend_atomic = {
	.name = "atomic",
	.summary = "C11 atomic_fetch_add; lock-free, the default",
	.caps = TALLY_CAP_LOCKFREE | TALLY_CAP_PSHARED | TALLY_CAP_NAMED,
	.state_size = sizeof(struct atomic_state),
	.state_align = _Alignof(struct atomic_state),
	.add_is_word = 1, /* value is the first member; see atomic_add */
	.init = atomic_init_,
	.add = atomic_add,
	.get = atomic_get,
};
