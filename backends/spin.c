/* spin: Concurrency Kit's default spinlock (ck_spinlock_t, fetch-and-store):
 * unfair, the fastest lock when uncontended; with exponential backoff
 * (ck_spinlock_fas_lock_eb) by default, or without (spin:backoff=none). */
#include "backend.h"

#ifdef TALLY_HAVE_CK
#include "life.h"
#include "tsan.h"

#include <ck_backoff.h>
#include <ck_spinlock.h>

/*
 * Options:
 *   backoff=exp   (default) ck_spinlock_fas_lock_eb: a waiter whose swap
 *                 failed waits 2^9, 2^10, ... (up to 2^20) loop turns before
 *                 swapping again, without looking at the lock meanwhile.
 *                 The holder's line then stays in its own cache, so it
 *                 releases and retakes the lock many times in a row (in
 *                 CK's own loop, on a quiet machine, four times the adds
 *                 per second of backoff=none, and less fair).  Through
 *                 tally on the busy development machine the two could not
 *                 be told apart: see bench/results/spin_default.txt for
 *                 every run, and bench/README.md ("Lock variants") for
 *                 why exp is the default.
 *   backoff=none  ck_spinlock_fas_lock: test-and-test-and-set, each waiter
 *                 spinning on a read of the lock word, so every release
 *                 sends the line to a waiter; fairer, slower.
 */
enum { BACKOFF_NONE, BACKOFF_EXP };

/*
 * A shared counter's lock word is also the record of its holder: a locker
 * swaps it from 0 to its id (tally__id32(), src/life.h) with one
 * compare-and-swap, so no instant passes between taking the lock and
 * recording who took it, and a holder killed at any point is known (as the
 * kernel's robust futexes know theirs: they hold the owner's thread id).
 * A waiter whose look finds the id's process gone swaps the word from that
 * id to its own: it holds the lock (TALLY_RECOVERED).  CK's unlock (a store
 * of 0) works on that word unchanged; its swap to 1 does not (it would
 * overwrite a holder's id, and take any word but 1 for free), so a shared
 * counter never runs CK's lock loops.  A private counter runs CK's lock as
 * it is: nobody can die holding it, and its word only ever holds 0 or 1.
 */
struct spin_state {
	ck_spinlock_t lock;
	/* On the lock's line; only the holder writes. */
	_Alignas(8) tally__word value;
	/* Read on every add but written only by init: on a line of its own,
	 * so that reading them never pulls the contended lock line into a
	 * shared state that the swap must then upgrade. */
	_Alignas(TALLY_CACHELINE) unsigned backoff;
	unsigned shared; /* TALLY_PSHARED: the word holds ids (see above) */
};

static int spin_parse(struct spin_state *s, const char *options)
{
	static const char *const words[] = {"none", "exp", NULL};
	struct tally__opt o;

	s->backoff = BACKOFF_EXP;
	while (tally__opt_next(&options, &o)) {
		int w = tally__opt_is(&o, "backoff")
				? tally__opt_word(&o, words)
				: -1;
		if (w < 0)
			return TALLY_EOPTION;
		s->backoff = (unsigned)w;
	}
	return 0;
}

static int spin_init(void *state, int64_t initial, unsigned flags,
		     const char *options)
{
	struct spin_state *s = state;

	if (spin_parse(s, options) != 0)
		return TALLY_EOPTION;
	s->shared = (flags & TALLY_PSHARED) != 0;
	ck_spinlock_init(&s->lock);
	tally__word_init(&s->value, initial);
	return 0;
}

/* A shared counter's swap: 0 to our id (see struct spin_state). */
static inline int spin_take(struct spin_state *s, uint32_t id)
{
	if (!ck_pr_cas_uint(&s->lock.value, 0, id))
		return 0;
	ck_pr_fence_lock();
	return 1;
}

/*
 * A wait that may end, on a shared counter (or a private one with a
 * bound): CK has no timed spinlock, so this is CK's own loop
 * (ck_spinlock_lock_eb: swap, then back off exponentially;
 * ck_spinlock_lock: spin on reads until the word is free, then swap), on
 * the compare-and-swap above, with the bounded wait of src/life.h between
 * tries.  A holder found dead is taken over by a swap from its id to ours.
 * A spinlock's critical section here is one store of the value word, which
 * a holder either made or did not, so what the dead holder left is
 * consistent.
 */
static int spin_wait(struct spin_state *s, const struct tally__knobs *k,
		     uint32_t id)
{
	struct tally__waiter w = TALLY__WAITER(k, "spin");
	ck_backoff_t b = CK_BACKOFF_INITIALIZER;
	tally__owner holder = 0; /* whom the word names, when the wait looks */
	int64_t sleep;
	uint64_t dead;
	int rc;

	for (;;) {
		unsigned seen = ck_pr_load_uint(&s->lock.value);
		if (s->backoff == BACKOFF_EXP) {
			ck_backoff_eb(&b);
			atomic_store_explicit(&holder,
					      tally__id32_token(k, seen),
					      memory_order_relaxed);
			rc = tally__wait_check(&w, &holder, &dead, &sleep);
		} else {
			do {
				ck_pr_stall();
				if (tally__wait_spin_due(&w))
					atomic_store_explicit(
						&holder,
						tally__id32_token(k, seen),
						memory_order_relaxed);
				rc = tally__wait_spin(&w, &holder, &dead);
			} while (rc == TALLY__WAIT_ON &&
				 (seen = ck_pr_load_uint(&s->lock.value)) != 0);
		}
		if (rc == TALLY__WAIT_DEAD && seen > TALLY__ID_UNKNOWN &&
		    ck_pr_cas_uint(&s->lock.value, seen, id)) {
			ck_pr_fence_lock();
			return TALLY_RECOVERED;
		}
		if (rc < 0)
			return rc;
		if (spin_take(s, id))
			return 0;
	}
}

/* The lock was taken at the first try: wait for it.  0 or TALLY_RECOVERED
 * with it held, or an error.  Out of line: the fast path is the swap. */
static TALLY_NOINLINE int
spin_contended(struct spin_state *s, const struct tally__knobs *k, uint32_t id)
{
	if (s->shared || k->wait_ns >= 0)
		return spin_wait(s, k, id);
	/* A private counter with no bound: nobody can die holding it and
	 * nothing ends the wait, so CK's loop as it is. */
	if (s->backoff == BACKOFF_EXP)
		ck_spinlock_lock_eb(&s->lock);
	else
		ck_spinlock_lock(&s->lock);
	return 0;
}

/* 0 or TALLY_RECOVERED with the lock held, or an error.  A private
 * counter's word holds 1 when locked (its handle has no token: id 1), a
 * shared one's the holder's id. */
static inline int spin_lock(struct spin_state *s, const struct tally__knobs *k)
{
	uint32_t id = tally__id32(tally__me(k));
	int rc = 0;

	tally__tsan_pre_lock(&s->lock);
	if (!spin_take(s, id) && (rc = spin_contended(s, k, id)) < 0) {
		tally__tsan_lock_failed(&s->lock);
		return rc;
	}
	tally__tsan_post_lock(&s->lock);
	return rc;
}

static void spin_unlock(struct spin_state *s)
{
	tally__tsan_pre_unlock(&s->lock);
	ck_spinlock_unlock(&s->lock);
	tally__tsan_post_unlock(&s->lock);
}

static int spin_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	struct spin_state *s = state;
	int rc = spin_lock(s, k);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	spin_unlock(s);
	return rc;
}

static int spin_add_cs(void *state, int64_t delta, const struct tally__knobs *k,
		       void (*inside)(void *), void *arg)
{
	struct spin_state *s = state;
	int rc = spin_lock(s, k);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	inside(arg);
	spin_unlock(s);
	return rc;
}

/* Without the lock: see tally__word in src/backend.h. */
static int spin_get(void *state, int64_t *value)
{
	return tally__word_get(&((struct spin_state *)state)->value, value);
}

static void spin_destroy(void *state)
{
	tally__tsan_destroy(&((struct spin_state *)state)->lock);
}
#endif /* TALLY_HAVE_CK */

/* Without Concurrency Kit the identity stays, so the name is known and
 * answers "not built in"; the operations are NULL. */
const struct tally_backend tally_backend_spin = {
	.name = "spin",
	.summary =
		"Concurrency Kit spinlock; unfair, fastest uncontended (backoff=exp|none, default exp)",
	.caps = TALLY_CAP_LOCKED | TALLY_CAP_SPINNING | TALLY_CAP_PSHARED |
		TALLY_CAP_NAMED,
	.takes_options = 1,
#ifdef TALLY_HAVE_CK
	.state_size = sizeof(struct spin_state),
	.state_align = _Alignof(struct spin_state),
	.init = spin_init,
	.add = spin_add,
	.add_cs = spin_add_cs,
	.get = spin_get,
	.destroy = spin_destroy,
#endif
};
