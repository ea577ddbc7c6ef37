/* ticket: Concurrency Kit's ticket lock (ck_spinlock_ticket_t): FIFO-fair,
 * and it collapses once waiters outnumber CPUs; optionally with CK's
 * proportional backoff (ck_spinlock_ticket_lock_pb). */
#include "backend.h"

#ifdef TALLY_HAVE_CK
#include "life.h"
#include "tsan.h"

#include <ck_backoff.h>
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
 *   shift=N       0..16, default 8: the proportion for backoff=prop (so
 *                 refused without it).
 *
 * Two ticket locks, one per kind of counter, both FIFO:
 *   A private counter with no wait bound runs Concurrency Kit's, as it is:
 *   nobody can die holding it or give up waiting for it.  A bounded call
 *   on it (tally_add_wait(), the option wait_ms) tries CK's trylock until
 *   the bound: it takes no place in the queue, which CK's lock gives no way
 *   to leave.
 *   A shared counter runs tally's: CK's algorithm (take a ticket with one
 *   fetch-and-add, wait until it is served; the same backoffs) on two words
 *   of its own, plus what CK's has no way to do: a waiter whose bound
 *   passes leaves its ticket behind as gone, and whoever serves a gone
 *   ticket skips it; a holder that dies is recorded (src/life.h), and the
 *   waiter that finds it dead serves on for it (TALLY_RECOVERED).  The
 *   critical section is one store of the value word, made or not made, so
 *   what a dead holder leaves is consistent.  A waiter that dies in the
 *   queue, or a holder in the instant before it recorded itself, is not
 *   known: the wait bound ends the wait of everyone behind it.
 */
enum { BACKOFF_NONE, BACKOFF_PROP };

/* Gone tickets: ticket t is gone when gone[t % GONE] == t | GONE_MARK.  A
 * ring of 256 (2 KiB, only in shared counters' state): more tickets than
 * that are gone and not yet passed only when the lock has stopped moving.
 * A waiter whose place in the ring is taken waits on, for its bound once
 * more; then it leaves without a mark, and its ticket stays in the queue
 * (which had not moved in all that time). */
#define GONE	  256u
#define GONE_MARK (1ull << 32)

struct own_ticket {
	_Atomic uint32_t next;	  /* the next ticket to hand out */
	_Atomic uint32_t serving; /* the ticket that holds the lock */
};

struct ticket_state {
	union {
		ck_spinlock_ticket_t ck;
		struct own_ticket own;
	} lock;
	tally__word value;  /* on the lock's line; only the holder writes */
	tally__owner owner; /* shared counters: the holder (src/life.h) */
	/* Written only by init, read on every add: on their own line (see
	 * backends/spin.c). */
	_Alignas(TALLY_CACHELINE) unsigned backoff;
	unsigned shift;
	unsigned own; /* a shared counter: tally's ticket lock */
	/* Written only when a waiter gives up: off the hot lines. */
	_Alignas(TALLY_CACHELINE) _Atomic uint64_t gone[GONE];
};

static int ticket_parse(struct ticket_state *s, const char *options)
{
	static const char *const words[] = {"none", "prop", NULL};
	struct tally__opt o;
	int w, shift = 0;

	s->backoff = BACKOFF_NONE;
	s->shift = 8;
	while (tally__opt_next(&options, &o)) {
		if (tally__opt_is(&o, "backoff") &&
		    (w = tally__opt_word(&o, words)) >= 0)
			s->backoff = (unsigned)w;
		else if (tally__opt_is(&o, "shift") &&
			 tally__opt_uint(&o, 0, 16, &s->shift) == 0)
			shift = 1;
		else
			return TALLY_EOPTION;
	}
	if (shift && s->backoff != BACKOFF_PROP) {
		tally__explain_set(TALLY_EOPTION,
				   "invalid backend option: ticket's shift=N "
				   "tunes backoff=prop, and has no effect "
				   "without it");
		return TALLY_EOPTION;
	}
	return 0;
}

static int ticket_init(void *state, int64_t initial, unsigned flags,
		       const char *options)
{
	struct ticket_state *s = state;

	if (ticket_parse(s, options) != 0)
		return TALLY_EOPTION;
	s->own = (flags & TALLY_PSHARED) != 0;
	if (s->own) {
		atomic_init(&s->lock.own.next, 0);
		atomic_init(&s->lock.own.serving, 0);
	} else {
		ck_spinlock_ticket_init(&s->lock.ck);
	}
	for (unsigned i = 0; i < GONE; i++)
		atomic_init(&s->gone[i], 0);
	tally__word_init(&s->value, initial);
	atomic_init(&s->owner, 0);
	return 0;
}

/*
 * Serve on from ticket `from`, which we hold: to the next ticket, past
 * every gone one.  Seq_cst on both sides of the race with a waiter that
 * leaves (see leave()): we store `serving`, then look at its mark; it
 * stores its mark, then looks at `serving`; one of us sees the other.  A
 * compare-and-swap on the mark decides who has a gone ticket's turn.
 */
static void serve_from(struct ticket_state *s, uint32_t from)
{
	for (uint32_t t = from + 1;; t++) {
		/* Seq_cst, so release: our writes go to the next holder. */
		atomic_store_explicit(&s->lock.own.serving, t,
				      memory_order_seq_cst);
		uint64_t mark = (uint64_t)t | GONE_MARK;
		if (!atomic_compare_exchange_strong_explicit(
			    &s->gone[t % GONE], &mark, 0, memory_order_seq_cst,
			    memory_order_relaxed))
			return;
		/* t is gone, and its turn is ours: serve on. */
	}
}

/* Our bound passed while waiting with ticket t: leave it as gone.
 * TALLY_ETIMEDOUT (explained), or 0 when our turn came first (we hold the
 * lock, and add). */
static int leave(struct ticket_state *s, uint32_t t, struct tally__waiter *w)
{
	uint64_t mark = (uint64_t)t | GONE_MARK, empty = 0, dead;
	struct tally__waiter again = TALLY__WAITER(w->k, w->lock);

	while (!atomic_compare_exchange_weak_explicit(
		&s->gone[t % GONE], &empty, mark, memory_order_seq_cst,
		memory_order_relaxed)) {
		/* Its place is taken by another gone ticket: wait on. */
		empty = 0;
		if (atomic_load_explicit(&s->lock.own.serving,
					 memory_order_acquire) == t)
			return 0;
		if (tally__wait_spin(&again, NULL, &dead) < 0)
			return TALLY_ETIMEDOUT;
		ck_pr_stall();
	}
	if (atomic_load_explicit(&s->lock.own.serving, memory_order_seq_cst) !=
		    t ||
	    !atomic_compare_exchange_strong_explicit(&s->gone[t % GONE], &mark,
						     0, memory_order_acquire,
						     memory_order_relaxed))
		return TALLY_ETIMEDOUT; /* whoever serves t will skip it */
	return 0; /* served before the mark was seen: ours after all */
}

/* The holder `dead` died: if it still holds the lock, serve on for it (one
 * waiter does, the one whose compare-and-swap on the owner wins). */
static int serve_for_dead(struct ticket_state *s, uint64_t dead)
{
	if (!tally__owner_takeover(&s->owner, dead, 0))
		return 0;
	serve_from(s, atomic_load_explicit(&s->lock.own.serving,
					   memory_order_acquire));
	return 1;
}

/* tally's ticket lock (see above): 0 or TALLY_RECOVERED with the lock
 * held, or TALLY_ETIMEDOUT. */
static int own_lock(struct ticket_state *s, const struct tally__knobs *k)
{
	uint32_t t = atomic_fetch_add_explicit(&s->lock.own.next, 1,
					       memory_order_relaxed);
	struct tally__waiter w = TALLY__WAITER(k, "ticket");
	int recovered = 0, rc;
	int64_t sleep;
	uint64_t dead;

	for (;;) {
		/* Acquire: the previous holder's writes are ours. */
		uint32_t cur = atomic_load_explicit(&s->lock.own.serving,
						    memory_order_acquire);
		if (cur == t)
			return recovered ? TALLY_RECOVERED : 0;
		if (s->backoff == BACKOFF_PROP) {
			ck_backoff_t b = (t - cur) << s->shift;
			ck_backoff_eb(&b);
			rc = tally__wait_check(&w, &s->owner, &dead, &sleep);
		} else {
			ck_pr_stall();
			rc = tally__wait_spin(&w, &s->owner, &dead);
		}
		if (rc == TALLY__WAIT_DEAD)
			recovered |= serve_for_dead(s, dead);
		else if (rc < 0)
			return leave(s, t, &w);
	}
}

/* A bounded wait on CK's lock: its trylock until the bound (see above). */
static int ck_lock_bounded(struct ticket_state *s, const struct tally__knobs *k)
{
	struct tally__waiter w = TALLY__WAITER(k, "ticket");
	uint64_t dead;

	while (!ck_spinlock_ticket_trylock(&s->lock.ck)) {
		int rc = tally__wait_spin(&w, NULL, &dead);
		if (rc < 0)
			return rc;
		ck_pr_stall();
	}
	return 0;
}

/* 0 or TALLY_RECOVERED with the lock held (and recorded), or an error. */
static int ticket_lock(struct ticket_state *s, const struct tally__knobs *k,
		       uint64_t me)
{
	int rc = 0;

	tally__tsan_pre_lock(&s->lock);
	if (s->own)
		rc = own_lock(s, k);
	else if (k->wait_ns >= 0)
		rc = ck_lock_bounded(s, k);
	else if (s->backoff == BACKOFF_PROP)
		ck_spinlock_ticket_lock_pb(&s->lock.ck, s->shift);
	else
		ck_spinlock_ticket_lock(&s->lock.ck);
	if (rc < 0) {
		tally__tsan_lock_failed(&s->lock);
		return rc;
	}
	tally__owner_set(&s->owner, me);
	tally__tsan_post_lock(&s->lock);
	return rc;
}

static void ticket_unlock(struct ticket_state *s, uint64_t me)
{
	tally__owner_clear(&s->owner, me);
	tally__tsan_pre_unlock(&s->lock);
	if (s->own)
		serve_from(s, atomic_load_explicit(&s->lock.own.serving,
						   memory_order_relaxed));
	else
		ck_spinlock_ticket_unlock(&s->lock.ck);
	tally__tsan_post_unlock(&s->lock);
}

static int ticket_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	struct ticket_state *s = state;
	uint64_t me = tally__me(k);
	int rc = ticket_lock(s, k, me);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	ticket_unlock(s, me);
	return rc;
}

static int ticket_add_cs(void *state, int64_t delta,
			 const struct tally__knobs *k, void (*inside)(void *),
			 void *arg)
{
	struct ticket_state *s = state;
	uint64_t me = tally__me(k);
	int rc = ticket_lock(s, k, me);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	inside(arg);
	ticket_unlock(s, me);
	return rc;
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
