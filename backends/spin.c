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
 *                 every run, and the README for why exp is the default.
 *   backoff=none  ck_spinlock_fas_lock: test-and-test-and-set, each waiter
 *                 spinning on a read of the lock word, so every release
 *                 sends the line to a waiter; fairer, slower.
 */
enum { BACKOFF_NONE, BACKOFF_EXP };

struct spin_state {
	ck_spinlock_t lock;
	tally__word value;  /* on the lock's line; only the holder writes */
	tally__owner owner; /* shared counters: the holder (src/life.h) */
	/* Read on every add but written only by init: on a line of its own,
	 * so that reading it never pulls the contended lock line into a
	 * shared state that the swap must then upgrade. */
	_Alignas(TALLY_CACHELINE) unsigned backoff;
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

	(void)flags; /* a spinlock word works unchanged in shared memory */
	if (spin_parse(s, options) != 0)
		return TALLY_EOPTION;
	ck_spinlock_init(&s->lock);
	tally__word_init(&s->value, initial);
	atomic_init(&s->owner, 0);
	return 0;
}

/*
 * A wait that may end: CK has no timed spinlock, so this is CK's own loop
 * (ck_spinlock_lock_eb: swap, then back off exponentially; ck_spinlock_lock:
 * swap, then spin on reads until the word is free) with the bounded wait of
 * src/life.h between tries.  A holder recorded dead is taken over: the word
 * stays set, and this caller holds it (TALLY_RECOVERED).  A spinlock's
 * critical section here is one store of the value word, which a holder
 * either made or did not, so what the dead holder left is consistent.
 */
static int spin_wait(struct spin_state *s, const struct tally__knobs *k,
		     uint64_t me)
{
	struct tally__waiter w = TALLY__WAITER(k, "spin");
	ck_backoff_t b = CK_BACKOFF_INITIALIZER;
	int64_t sleep;
	uint64_t dead;
	int rc;

	for (;;) {
		if (s->backoff == BACKOFF_EXP) {
			ck_backoff_eb(&b);
			/* Each turn already waited 2^9 loop turns or more. */
			rc = tally__wait_check(&w, &s->owner, &dead, &sleep);
		} else {
			do {
				ck_pr_stall();
				rc = tally__wait_spin(&w, &s->owner, &dead);
			} while (rc == TALLY__WAIT_ON &&
				 ck_spinlock_locked(&s->lock));
		}
		if (rc == TALLY__WAIT_DEAD &&
		    tally__owner_takeover(&s->owner, dead, me))
			return TALLY_RECOVERED;
		if (rc < 0)
			return rc;
		if (ck_spinlock_trylock(&s->lock))
			return 0;
	}
}

/* The lock was taken at the first swap: wait for it.  0 or TALLY_RECOVERED
 * with it held, or an error.  Out of line: the fast path is the swap. */
static TALLY_NOINLINE int
spin_contended(struct spin_state *s, const struct tally__knobs *k, uint64_t me)
{
	/* A private counter with no bound: nobody can die holding it and
	 * nothing ends the wait, so CK's loop as it is. */
	if (k->life == NULL && k->wait_ns < 0) {
		if (s->backoff == BACKOFF_EXP)
			ck_spinlock_lock_eb(&s->lock);
		else
			ck_spinlock_lock(&s->lock);
		return 0;
	}
	return spin_wait(s, k, me);
}

/* 0 or TALLY_RECOVERED with the lock held (and recorded), or an error. */
static inline int spin_lock(struct spin_state *s, const struct tally__knobs *k,
			    uint64_t me)
{
	int rc = 0;

	tally__tsan_pre_lock(&s->lock);
	if (!ck_spinlock_trylock(&s->lock) &&
	    (rc = spin_contended(s, k, me)) < 0) {
		tally__tsan_lock_failed(&s->lock);
		return rc;
	}
	tally__owner_set(&s->owner, me);
	tally__tsan_post_lock(&s->lock);
	return rc;
}

static void spin_unlock(struct spin_state *s, uint64_t me)
{
	tally__owner_clear(&s->owner, me);
	tally__tsan_pre_unlock(&s->lock);
	ck_spinlock_unlock(&s->lock);
	tally__tsan_post_unlock(&s->lock);
}

static int spin_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	struct spin_state *s = state;
	uint64_t me = tally__me(k);
	int rc = spin_lock(s, k, me);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	spin_unlock(s, me);
	return rc;
}

static int spin_add_cs(void *state, int64_t delta, const struct tally__knobs *k,
		       void (*inside)(void *), void *arg)
{
	struct spin_state *s = state;
	uint64_t me = tally__me(k);
	int rc = spin_lock(s, k, me);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	inside(arg);
	spin_unlock(s, me);
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
	.summary = "Concurrency Kit spinlock; unfair, fastest uncontended "
		   "(backoff=exp|none, default exp)",
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
