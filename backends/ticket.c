/* ticket: Concurrency Kit's ticket lock (ck_spinlock_ticket_t): FIFO-fair,
 * and it collapses once waiters outnumber CPUs; optionally with CK's
 * proportional backoff (ck_spinlock_ticket_lock_pb). */
#include "backend.h"

#ifdef TALLY_HAVE_CK
#include "life.h"
#include "tsan.h"

#include <ck_backoff.h>
#include <ck_spinlock.h>
#include <stddef.h>

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
 *   what a dead holder leaves is consistent.  Who took a ticket is recorded
 *   with the ticket, as soon as it is taken (see struct ticket_rec), so
 *   the same answer covers a holder and a waiter that died in the queue:
 *   when the ticket being served belongs to a process the kernel says is
 *   gone, whether it held the lock or never got it, the waiter that wins
 *   the compare-and-swap on the record serves on for it.  A process that
 *   dies in the instant between taking its ticket and recording it is not
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

/*
 * Who took ticket t: rec[t % RECS], a sequence lock keyed by the ticket.
 * The taker stores tk = 2t + 1 (being written), its token, then tk = 2t; a
 * reader trusts the token only if it read tk == 2t before and after it.
 * More than RECS tickets waiting at once overwrite the oldest waiters'
 * records: those are then not known (the bound applies), never misread.
 * A record a line: the records of consecutive tickets, taken by different
 * processes in turn, would otherwise share one line that every add then
 * pulls from the other process (16-byte records cost shared counters with
 * two contending processes two thirds of their adds).
 */
#define RECS 32u

struct ticket_rec {
	_Alignas(64) _Atomic uint64_t tk;
	_Alignas(8) _Atomic uint64_t token; /* 0: cleared (served, or left) */
};

struct own_ticket {
	_Atomic uint32_t next;	  /* the next ticket to hand out */
	_Atomic uint32_t serving; /* the ticket that holds the lock */
};

struct ticket_state {
	union {
		ck_spinlock_ticket_t ck;
		struct own_ticket own;
	} lock;
	/* On the lock's line; only the holder writes. */
	_Alignas(8) tally__word value;
	/* Written only by init, read on every add: on their own line (see
	 * backends/spin.c). */
	_Alignas(TALLY_CACHELINE) unsigned backoff;
	unsigned shift;
	unsigned own; /* a shared counter: tally's ticket lock */
	/* Written only when a waiter gives up: off the hot lines. */
	_Alignas(TALLY_CACHELINE) _Atomic uint64_t gone[GONE];
	/* Written once per ticket by its taker, read by waiters now and then
	 * (shared counters only). */
	_Alignas(TALLY_CACHELINE) struct ticket_rec rec[RECS];
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
		tally__explain_set(
			TALLY_EOPTION,
			"invalid backend option: ticket's shift=N tunes backoff=prop, and has no effect without it");
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
	for (unsigned i = 0; s->own && i < GONE; i++)
		atomic_init(&s->gone[i], 0);
	for (unsigned i = 0; s->own && i < RECS; i++) {
		atomic_init(&s->rec[i].tk, UINT64_MAX); /* no ticket's */
		atomic_init(&s->rec[i].token, 0);
	}
	tally__word_init(&s->value, initial);
	return 0;
}

/* Record ticket t as taken by `me` (0: not known, nothing to record). */
static inline void rec_set(struct ticket_state *s, uint32_t t, uint64_t me)
{
	struct ticket_rec *r = &s->rec[t % RECS];

	if (me == 0)
		return;
	atomic_store_explicit(&r->tk, 2 * (uint64_t)t + 1,
			      memory_order_relaxed);
	atomic_store_explicit(&r->token, me, memory_order_release);
	atomic_store_explicit(&r->tk, 2 * (uint64_t)t, memory_order_release);
}

/* Ticket t's record no longer names a live claim on the lock: it was
 * served and is about to be passed on, or it was left. */
static inline void rec_clear(struct ticket_state *s, uint32_t t, uint64_t me)
{
	if (me != 0)
		atomic_store_explicit(&s->rec[t % RECS].token, 0,
				      memory_order_relaxed);
}

/* The token that took ticket t, or 0 when not known. */
static uint64_t rec_get(struct ticket_state *s, uint32_t t)
{
	struct ticket_rec *r = &s->rec[t % RECS];
	uint64_t want = 2 * (uint64_t)t;

	if (atomic_load_explicit(&r->tk, memory_order_acquire) != want)
		return 0;
	uint64_t token = atomic_load_explicit(&r->token, memory_order_acquire);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&r->tk, memory_order_relaxed) != want)
		return 0;
	return token;
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
		/* A load first: a ticket is rarely gone, and the swap that
		 * decides it is a locked instruction. */
		uint64_t mark = (uint64_t)t | GONE_MARK;
		if (atomic_load_explicit(&s->gone[t % GONE],
					 memory_order_seq_cst) != mark ||
		    !atomic_compare_exchange_strong_explicit(
			    &s->gone[t % GONE], &mark, 0, memory_order_seq_cst,
			    memory_order_relaxed))
			return;
		/* t is gone, and its turn is ours: serve on. */
	}
}

/* Our bound passed while waiting with ticket t: leave it as gone, its
 * record cleared first (a gone ticket is skipped, never served for the
 * dead).  TALLY_ETIMEDOUT (explained), or 0 when our turn came first (we
 * hold the lock, recorded again, and add). */
static int leave(struct ticket_state *s, uint32_t t, struct tally__waiter *w,
		 uint64_t me)
{
	uint64_t mark = (uint64_t)t | GONE_MARK, empty = 0, dead;
	/* Waiting for a place in the ring is waiting for the queue to move
	 * (the server frees places as it passes them), not for the lock:
	 * it gets a bound of its own, at least TALLY_DEFAULT_WAIT_MS.  A
	 * ticket left in the queue unmarked would never be served to anyone,
	 * so it is left so only when the queue has stood still that long. */
	struct tally__knobs slow = *w->k;
	if (slow.wait_ns < (int64_t)TALLY_DEFAULT_WAIT_MS * 1000000)
		slow.wait_ns = (int64_t)TALLY_DEFAULT_WAIT_MS * 1000000;
	struct tally__waiter again = TALLY__WAITER(&slow, w->lock);

	rec_clear(s, t, me);
	while (!atomic_compare_exchange_weak_explicit(
		&s->gone[t % GONE], &empty, mark, memory_order_seq_cst,
		memory_order_relaxed)) {
		/* Its place is taken by another gone ticket: wait on. */
		empty = 0;
		if (atomic_load_explicit(&s->lock.own.serving,
					 memory_order_acquire) == t)
			break;
		if (tally__wait_spin(&again, NULL, &dead) < 0) {
			/* The queue has not moved in all that time.  The
			 * ticket stays in it, recorded: served for us, should
			 * we die before its turn. */
			rec_set(s, t, me);
			return TALLY_ETIMEDOUT;
		}
		ck_pr_stall();
	}
	if (atomic_load_explicit(&s->lock.own.serving, memory_order_seq_cst) !=
		    t ||
	    (atomic_load_explicit(&s->gone[t % GONE], memory_order_relaxed) ==
		     mark &&
	     !atomic_compare_exchange_strong_explicit(&s->gone[t % GONE], &mark,
						      0, memory_order_acquire,
						      memory_order_relaxed)))
		return TALLY_ETIMEDOUT; /* whoever serves t will skip it */
	rec_set(s, t, me);
	return 0; /* served before the mark was seen: ours after all */
}

/* The process `dead`, which took ticket cur, is gone, and cur is being
 * served: serve on for it, whether it held the lock or never got it.  One
 * waiter does, the one whose compare-and-swap on the record wins (a live
 * claim clears its record before it serves on, so a record that still
 * names `dead` is cur's turn, unserved).  1 when the dead one held the
 * lock (or may have: it took its turn), for TALLY_RECOVERED. */
static int serve_for_dead(struct ticket_state *s, uint32_t cur, uint64_t dead)
{
	struct ticket_rec *r = &s->rec[cur % RECS];

	if (rec_get(s, cur) != dead ||
	    !atomic_compare_exchange_strong_explicit(&r->token, &dead, 0,
						     memory_order_acquire,
						     memory_order_relaxed))
		return 0;
	serve_from(s, cur);
	return 1;
}

/* tally's ticket lock (see above), waiting with ticket t: 0 or
 * TALLY_RECOVERED with the lock held, or TALLY_ETIMEDOUT. */
static TALLY_NOINLINE int own_wait(struct ticket_state *s,
				   const struct tally__knobs *k, uint32_t t,
				   uint64_t me)
{
	struct tally__waiter w = TALLY__WAITER(k, "ticket");
	tally__owner holder = 0; /* a copy of cur's record, when it checks */
	int recovered = 0, rc;
	int64_t sleep;
	uint64_t dead;

	for (;;) {
		/* Acquire: the previous holder's writes are ours. */
		uint32_t cur = atomic_load_explicit(&s->lock.own.serving,
						    memory_order_acquire);
		if (cur == t)
			return recovered ? TALLY_RECOVERED : 0;
		/* Who took the ticket being served: its holder, or a
		 * waiter that has yet to see its turn (or never will); read
		 * only when the wait looks (rec_get is a few loads). */
		if (s->backoff == BACKOFF_PROP) {
			ck_backoff_t b = (t - cur) << s->shift;
			ck_backoff_eb(&b);
			atomic_store_explicit(&holder, rec_get(s, cur),
					      memory_order_relaxed);
			rc = tally__wait_check(&w, &holder, &dead, &sleep);
		} else {
			ck_pr_stall();
			if (tally__wait_spin_due(&w))
				atomic_store_explicit(&holder, rec_get(s, cur),
						      memory_order_relaxed);
			rc = tally__wait_spin(&w, &holder, &dead);
		}
		if (rc == TALLY__WAIT_DEAD)
			recovered |= serve_for_dead(s, cur, dead);
		else if (rc < 0)
			return leave(s, t, &w, me);
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

/*
 * One try (a bound of 0), without a ticket: take the next one only if it
 * is the one being served, as CK's trylock does, so that a caller that
 * only tries never leaves a gone ticket behind.  A program that tries in a
 * loop would otherwise leave them faster than the holder's unlock passes
 * them.  0 with the lock held, or TALLY_ETIMEDOUT, explained.
 */
static TALLY_NOINLINE int own_try(struct ticket_state *s,
				  const struct tally__knobs *k, uint64_t me)
{
	struct tally__waiter w = TALLY__WAITER(k, "ticket");
	uint32_t cur = atomic_load_explicit(&s->lock.own.serving,
					    memory_order_acquire);
	uint32_t t = cur;

	/* Acquire: the previous holder's writes are ours. */
	if (atomic_compare_exchange_strong_explicit(
		    &s->lock.own.next, &t, cur + 1, memory_order_acquire,
		    memory_order_relaxed)) {
		rec_set(s, cur, me);
		return 0;
	}
	tally__owner holder = rec_get(s, cur);
	int64_t sleep;
	uint64_t dead;
	int rc = tally__wait_check(&w, &holder, &dead, &sleep);
	if (rc == TALLY__WAIT_DEAD) {
		/* Its holder died: queue, and let the wait take it over. */
		struct tally__knobs now = *k;

		now.wait_ns = 1000000;
		t = atomic_fetch_add_explicit(&s->lock.own.next, 1,
					      memory_order_relaxed);
		rec_set(s, t, me);
		return own_wait(s, &now, t, me);
	}
	return rc < 0 ? rc : TALLY_ETIMEDOUT;
}

/* CK's lock, taken when its trylock failed (see ticket_lock()). */
static TALLY_NOINLINE int ck_wait(struct ticket_state *s,
				  const struct tally__knobs *k)
{
	if (k->wait_ns >= 0)
		return ck_lock_bounded(s, k);
	if (s->backoff == BACKOFF_PROP)
		ck_spinlock_ticket_lock_pb(&s->lock.ck, s->shift);
	else
		ck_spinlock_ticket_lock(&s->lock.ck);
	return 0;
}

/* 0 or TALLY_RECOVERED with the lock held (and recorded), or an error.
 * Inline up to the wait: a shared counter's ticket, served at once, or a
 * private counter's free lock taken by CK's trylock (one compare-and-swap;
 * it takes no place in the queue when it fails). */
static inline int ticket_lock(struct ticket_state *s,
			      const struct tally__knobs *k, uint64_t me)
{
	int rc = 0;

	/* tally's own lock is C11 atomics, which ThreadSanitizer checks
	 * through their orders: no annotation.  CK's is inline assembly. */
	if (s->own) {
		if (k->wait_ns == 0)
			return own_try(s, k, me);
		uint32_t t = atomic_fetch_add_explicit(&s->lock.own.next, 1,
						       memory_order_relaxed);
		rec_set(s, t, me);
		/* Acquire: the previous holder's writes are ours. */
		if (atomic_load_explicit(&s->lock.own.serving,
					 memory_order_acquire) != t)
			rc = own_wait(s, k, t, me);
		return rc;
	}
	tally__tsan_pre_lock(&s->lock);
	if (!ck_spinlock_ticket_trylock(&s->lock.ck) &&
	    (rc = ck_wait(s, k)) < 0) {
		tally__tsan_lock_failed(&s->lock);
		return rc;
	}
	tally__tsan_post_lock(&s->lock);
	return rc;
}

static void ticket_unlock(struct ticket_state *s, uint64_t me)
{
	if (s->own) {
		uint32_t t = atomic_load_explicit(&s->lock.own.serving,
						  memory_order_relaxed);
		rec_clear(s, t, me);
		serve_from(s, t);
		return;
	}
	tally__tsan_pre_unlock(&s->lock);
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

/* Only a shared counter runs tally's lock, which needs the rings: a private
 * one's state ends before them (4 KiB less per counter). */
static size_t ticket_size(unsigned flags)
{
	return flags & (TALLY_PSHARED | TALLY__NAMED)
		       ? sizeof(struct ticket_state)
		       : offsetof(struct ticket_state, gone);
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
	.summary =
		"Concurrency Kit ticket lock; FIFO-fair, collapses when oversubscribed (backoff=none|prop, shift=N)",
	.caps = TALLY_CAP_LOCKED | TALLY_CAP_SPINNING | TALLY_CAP_FAIR |
		TALLY_CAP_PSHARED | TALLY_CAP_NAMED,
	.takes_options = 1,
#ifdef TALLY_HAVE_CK
	.state_size = sizeof(struct ticket_state),
	.state_align = _Alignof(struct ticket_state),
	.size = ticket_size,
	.init = ticket_init,
	.add = ticket_add,
	.add_cs = ticket_add_cs,
	.get = ticket_get,
	.destroy = ticket_destroy,
#endif
};
