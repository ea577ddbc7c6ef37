/* ticket: Concurrency Kit's ticket lock (ck_spinlock_ticket_t): FIFO-fair,
 * and it collapses once waiters outnumber CPUs; optionally with CK's
 * proportional backoff (ck_spinlock_ticket_lock_pb). */
#include "backend.h"

#ifdef TALLY_HAVE_CK
#include "tsan.h"

#include <ck_spinlock.h>

/*
 * Options:
 *   backoff=none  (default) ck_spinlock_ticket_lock: every waiter reads the
 *                 lock word between pauses.
 *   backoff=prop  ck_spinlock_ticket_lock_pb: a waiter n places from the
 *                 head of the queue waits about n << shift loop turns
 *                 between reads, so fewer reads hit the line the holder
 *                 writes.  It cannot cure the collapse when oversubscribed:
 *                 that comes from a preempted waiter whose turn it is,
 *                 which no backoff moves out of the way.
 *   shift=N       0..16, default 8: the proportion for backoff=prop.
 */
enum { BACKOFF_NONE, BACKOFF_PROP };

struct ticket_state {
	ck_spinlock_ticket_t lock;
	tally__word value; /* on the lock's line; only the holder writes */
	/* Written only by init, read on every add: on their own line (see
	 * backends/spin.c). */
	_Alignas(TALLY_CACHELINE) unsigned backoff;
	unsigned shift;
};

static int ticket_parse(struct ticket_state *s, const char *options)
{
	static const char *const words[] = {"none", "prop", NULL};
	struct tally__opt o;
	int w;

	s->backoff = BACKOFF_NONE;
	s->shift = 8;
	while (tally__opt_next(&options, &o)) {
		if (tally__opt_is(&o, "backoff") &&
		    (w = tally__opt_word(&o, words)) >= 0)
			s->backoff = (unsigned)w;
		else if (!tally__opt_is(&o, "shift") ||
			 tally__opt_uint(&o, 0, 16, &s->shift) != 0)
			return TALLY_EOPTION;
	}
	return 0;
}

static int ticket_init(void *state, int64_t initial, unsigned flags,
		       const char *options)
{
	struct ticket_state *s = state;

	(void)flags; /* a spinlock word works unchanged in shared memory */
	if (ticket_parse(s, options) != 0)
		return TALLY_EOPTION;
	ck_spinlock_ticket_init(&s->lock);
	tally__word_init(&s->value, initial);
	return 0;
}

static void ticket_lock(struct ticket_state *s)
{
	tally__tsan_pre_lock(&s->lock);
	if (s->backoff == BACKOFF_PROP)
		ck_spinlock_ticket_lock_pb(&s->lock, s->shift);
	else
		ck_spinlock_ticket_lock(&s->lock);
	tally__tsan_post_lock(&s->lock);
}

static void ticket_unlock(struct ticket_state *s)
{
	tally__tsan_pre_unlock(&s->lock);
	ck_spinlock_ticket_unlock(&s->lock);
	tally__tsan_post_unlock(&s->lock);
}

static int ticket_add(void *state, int64_t delta)
{
	struct ticket_state *s = state;

	ticket_lock(s);
	tally__word_add(&s->value, delta);
	ticket_unlock(s);
	return 0;
}

static int ticket_add_cs(void *state, int64_t delta, void (*inside)(void *),
			 void *arg)
{
	struct ticket_state *s = state;

	ticket_lock(s);
	tally__word_add(&s->value, delta);
	inside(arg);
	ticket_unlock(s);
	return 0;
}

/* Without the lock: see tally__word in src/backend.h. */
static int ticket_get(void *state, int64_t *value)
{
	return tally__word_get(&((struct ticket_state *)state)->value, value);
}

static void ticket_destroy(void *state)
{
	tally__tsan_destroy(&((struct ticket_state *)state)->lock);
}
#endif /* TALLY_HAVE_CK */

/* Without Concurrency Kit the identity stays, so the name is known and
 * answers "not built in"; the operations are NULL. */
const struct tally_backend tally_backend_ticket = {
	.name = "ticket",
	.summary = "Concurrency Kit ticket lock; FIFO-fair, collapses when "
		   "oversubscribed (backoff=none|prop, shift=N)",
	.caps = TALLY_CAP_LOCKED | TALLY_CAP_SPINNING | TALLY_CAP_FAIR |
		TALLY_CAP_PSHARED | TALLY_CAP_NAMED,
	.takes_options = 1,
#ifdef TALLY_HAVE_CK
	.state_size = sizeof(struct ticket_state),
	.state_align = _Alignof(struct ticket_state),
	.init = ticket_init,
	.add = ticket_add,
	.add_cs = ticket_add_cs,
	.get = ticket_get,
	.destroy = ticket_destroy,
#endif
};
