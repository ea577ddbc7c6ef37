/* adaptive: a lock that spins briefly, then sleeps on a futex; eventually
 * fair; works in threads, across forked processes and in named counters. */
#include "backend.h"

#if defined(__linux__)
#include "life.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/*
 * The algorithm.  Sources: Drepper, "Futexes Are Tricky" (2011), mutex 3;
 * WebKit's WTF::Lock and ParkingLot; Rust's parking_lot RawMutex; Go's
 * sync.Mutex starvation mode.  None of their code is used: ParkingLot and
 * parking_lot keep their wait queues in a process-private hash table, so
 * they cannot serve processes that share only the lock's memory.  Here
 * every bit of state is in the counter's state, and the kernel's futex
 * queue is the wait queue.
 *
 * `word` holds three bits:
 *   LOCKED   the lock is held.
 *   PARKED   a thread may be asleep on `word`: the unlock must wake one.
 *   HANDOFF  a starving waiter asks for the lock directly (see below).
 * Uncontended, a lock is one compare-and-swap 0 -> LOCKED and an unlock one
 * compare-and-swap LOCKED -> 0; any other bit sends the unlock to its slow
 * path.  An unlock must be a read-modify-write (not a plain store, as in a
 * spinlock) because it must see, atomically with the release, whether
 * anyone sleeps: a store followed by a load could miss a thread that set
 * PARKED in between and then sleep for ever (Drepper's mutex 1 bug).
 *
 * Contended, a locker first spins: it retries up to `spin` times, waiting
 * an exponentially growing number of loop turns between tries without
 * touching the lock's line (as Concurrency Kit's ck_spinlock_fas_lock_eb
 * does), so that the holder keeps the line and can take the lock again at
 * once.  With two CPUs and a short critical section the lock is then nearly
 * never slept on.  Past the spins it sleeps: it counts itself in `sleepers`,
 * sets PARKED, and calls FUTEX_WAIT while the word still reads
 * LOCKED|PARKED (if the unlock came in between, the kernel returns at once
 * and it tries again: no lost wake-up).
 *
 * Who sets PARKED again after an unlock cleared it and woke one sleeper
 * while others still sleep?  Drepper's answer is that a woken thread always
 * takes the lock "contended", setting PARKED whether or not anyone else
 * sleeps; that costs a useless FUTEX_WAKE system call per unlock after the
 * last sleeper has gone.  Here `sleepers` counts the threads between their
 * decision to sleep and their return from FUTEX_WAIT, and whoever takes the
 * lock on the slow path (a woken sleeper always does) sets PARKED exactly
 * when it is not zero (mark_sleepers()).  A taker on the fast path looks
 * at no count, but then the thread that the last unlock woke is still on
 * its way through the slow path, and sets PARKED for those left asleep
 * when it takes the lock or goes back to sleep.
 *
 * Eventual fairness.  A lock that lets newcomers barge in is fast, but a
 * woken sleeper may lose the race again and again.  So a waiter that has
 * waited longer than `fair_us` since it began becomes the (single)
 * starving waiter: it claims `handoff` (idle -> a claim number of its own,
 * never idle or given, fresh for every claim), records its token in
 * `starver`, sets HANDOFF in the word and sleeps on `handoff`.  The next
 * unlock sees HANDOFF and, instead of releasing, passes the lock on while
 * still LOCKED: it clears HANDOFF, records the starver as the holder, and
 * turns that very claim into GIVEN with a compare-and-swap (release: the
 * holder's writes come with it) and wakes the waiter, which then holds the
 * lock and sets `handoff` back to idle.  Meanwhile the word never reads
 * unlocked, so nobody barges past it.  A sleeper asks only once it has been
 * woken, and the kernel wakes a futex's sleepers in the order they went to
 * sleep (among threads of one priority), so each sleeper comes to ask in
 * turn; one that finds another already starving sleeps again.  As with
 * parking_lot's "eventual fairness" and Go's starvation mode, the fast
 * barging path stays for everyone else.
 *
 * Nobody is handed a lock it did not wait for.  A starving waiter that
 * stops waiting (its bound passed) withdraws its claim with a
 * compare-and-swap claim -> idle; the unlock's claim -> given on the same
 * word decides which came first, so either the waiter withdrew and the
 * unlock releases as usual, or the lock was given and the waiter takes it
 * (and adds: it did get the lock).  A starving waiter that was killed
 * cannot withdraw: the unlock asks the kernel whether the starver's process
 * lives (src/life.h: a file lock its process holds, true in every PID
 * namespace and never another process's), and if it is gone, withdraws the
 * claim itself and releases.  A starver that dies in the instant after
 * that question is handed a lock it will not release -- and is then a
 * holder that died, recovered as below.  (The claim was the starver's
 * process id until tally 0.1: another namespace's pid 1, or a recycled pid,
 * passed for alive and wedged the lock.)
 *
 * A holder that dies.  On a shared counter every holder records its token
 * in `owner` (src/life.h); a waiter that has slept a while looks, and if the
 * kernel says the holder's process is gone, takes the lock over with a
 * compare-and-swap on `owner` and adds (TALLY_RECOVERED).  The critical
 * section is one store of the value word, made or not made, so the value a
 * dead holder leaves is consistent.  A holder that died before it recorded
 * itself is not known; the wait bound (wait_ms) then ends every wait.  The
 * sleepers count of a process killed while asleep stays counted, which only
 * costs later unlocks a useless wake-up.
 *
 * The cost, by construction (not yet measured against the speed goals):
 * nothing on a private counter, whose adds record no owner and never ask
 * the kernel; on a shared counter two stores on the lock's own line per
 * add, and a system call only on a slow path that has already slept or
 * on a hand-over to a starving waiter.
 *
 * Options, after "adaptive:":
 *   spin=N      tries before sleeping, 0..64 (default 10)
 *   fair_us=N   wait in microseconds after which a waiter is handed the
 *               lock directly, 1..1000000 (default 1000)
 */
enum { LOCKED = 1u, PARKED = 2u, HANDOFF = 4u };
/* `handoff`: idle, given, or else the claim number of the starving waiter.
 * 0xffffffff as an unsigned constant (an enumerator must fit an int). */
#define HANDOFF_IDLE  0u
#define HANDOFF_GIVEN UINT32_MAX

struct adaptive_state {
	_Atomic uint32_t word;
	_Atomic uint32_t sleepers; /* slow path only */
	_Atomic uint32_t handoff;  /* a futex of its own, for the starving */
	_Atomic uint32_t claims;   /* where claim numbers come from */
	_Alignas(8) tally__word value; /* on the lock's line; only the holder */
	_Alignas(8) tally__owner owner;	      /* shared counters: the holder */
	_Alignas(8) _Atomic uint64_t starver; /* the starving waiter's token */
	/* Written only by init, read by every slow path: on a line of its
	 * own, so that reading them never takes the lock's line away from
	 * its holder. */
	_Alignas(TALLY_CACHELINE) unsigned spin;
	unsigned fair_us;
	int futex_private; /* FUTEX_PRIVATE_FLAG, or 0 when shared */
};

static int adaptive_parse(struct adaptive_state *s, const char *options)
{
	struct tally__opt o;

	s->spin = 10;
	s->fair_us = 1000;
	while (tally__opt_next(&options, &o)) {
		int rc = tally__opt_is(&o, "spin")
				 ? tally__opt_uint(&o, 0, 64, &s->spin)
			 : tally__opt_is(&o, "fair_us")
				 ? tally__opt_uint(&o, 1, 1000000, &s->fair_us)
				 : TALLY_EOPTION;
		if (rc != 0)
			return TALLY_EOPTION;
	}
	return 0;
}

static int adaptive_init(void *state, int64_t initial, unsigned flags,
			 const char *options)
{
	struct adaptive_state *s = state;

	if (adaptive_parse(s, options) != 0)
		return TALLY_EOPTION;
	/* A private futex is hashed by (mm, address): faster, but another
	 * process's wake would never find it. */
	s->futex_private = (flags & TALLY_PSHARED) ? 0 : FUTEX_PRIVATE_FLAG;
	atomic_init(&s->word, 0);
	atomic_init(&s->sleepers, 0);
	atomic_init(&s->handoff, HANDOFF_IDLE);
	atomic_init(&s->claims, 0);
	tally__word_init(&s->value, initial);
	atomic_init(&s->owner, 0);
	atomic_init(&s->starver, 0);
	return 0;
}

/* Sleep while *addr == val, at most ns nanoseconds (< 0: without bound);
 * any wake-up, signal or timeout: the caller looks again. */
static void futex_wait(const struct adaptive_state *s, _Atomic uint32_t *addr,
		       uint32_t val, int64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000),
			      .tv_nsec = (long)(ns % 1000000000)};

	syscall(SYS_futex, addr, FUTEX_WAIT | s->futex_private, val,
		ns < 0 ? NULL : &ts, NULL, 0);
}

static void futex_wake(const struct adaptive_state *s, _Atomic uint32_t *addr,
		       int n)
{
	syscall(SYS_futex, addr, FUTEX_WAKE | s->futex_private, n, NULL, NULL,
		0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* About 2^(8 + try) loop turns, up to 2^16, without touching memory:
 * ck_backoff_eb's shape.  The compiler barrier keeps the loop. */
static void backoff(unsigned try)
{
	unsigned n = 1u << (8 + (try < 8 ? try : 8));

	for (unsigned i = 0; i < n; i++)
		atomic_signal_fence(memory_order_seq_cst);
}

/*
 * The holder, having come by the slow path: if anyone still sleeps, make
 * sure PARKED is set, so that our unlock wakes one (see above).  Seq_cst,
 * as is every slow-path access to `word` and `sleepers`: a sleeper counts
 * itself and then reads the word; we changed the word and then read the
 * count.  In the single order of seq_cst operations one of us comes first,
 * so either we see its count, or it sees our LOCKED without PARKED and sets
 * PARKED itself before it sleeps.  (A sleeper already asleep was counted
 * before the unlock, seq_cst too, that cleared its PARKED bit.)
 */
static void mark_sleepers(struct adaptive_state *s)
{
	if (atomic_load_explicit(&s->sleepers, memory_order_seq_cst) != 0 &&
	    !(atomic_load_explicit(&s->word, memory_order_relaxed) & PARKED))
		atomic_fetch_or_explicit(&s->word, PARKED,
					 memory_order_relaxed);
}

/* Take the lock if the word w is unlocked: 1 on success. */
static int try_take(struct adaptive_state *s, uint32_t w)
{
	if (w & LOCKED)
		return 0;
	/* Seq_cst, so also acquire: the previous holder's writes (its
	 * release) are ours. */
	if (!atomic_compare_exchange_strong_explicit(&s->word, &w, w | LOCKED,
						     memory_order_seq_cst,
						     memory_order_relaxed))
		return 0;
	mark_sleepers(s);
	return 1;
}

/* One wait of the slow path: its bound, and what a waiter checks. */
struct wait {
	struct tally__waiter w;
	uint64_t me;
	int bounded; /* shared or with a bound: sleeps end, holders are seen */
};

/*
 * Between two sleeps: TALLY__WAIT_ON (sleep again, at most *ns), the lock
 * taken over from a dead holder (TALLY_RECOVERED), or TALLY_ETIMEDOUT.
 */
static int between_sleeps(struct adaptive_state *s, struct wait *wt,
			  int64_t *ns)
{
	uint64_t dead;

	*ns = -1;
	if (!wt->bounded)
		return TALLY__WAIT_ON;
	int rc = tally__wait_check(&wt->w, &s->owner, &dead, ns);
	if (rc != TALLY__WAIT_DEAD)
		return rc;
	if (!tally__owner_takeover(&s->owner, dead, wt->me))
		return TALLY__WAIT_ON; /* another waiter took it over */
	/* Ours, LOCKED as the dead holder left it: make sure our unlock
	 * wakes whoever still sleeps. */
	mark_sleepers(s);
	return TALLY_RECOVERED;
}

/* A fresh claim number: never idle, never given. */
static uint32_t new_claim(struct adaptive_state *s)
{
	uint32_t c =
		atomic_fetch_add_explicit(&s->claims, 1, memory_order_relaxed);

	return c % (HANDOFF_GIVEN - 1) + 1;
}

/* Set HANDOFF on a held lock, or take the lock if it came free: 1 taken,
 * 0 flagged.  Seq_cst (a full barrier): our claim on `handoff` is visible
 * before the unlock can see the bit that tells it to look. */
static int flag_handoff(struct adaptive_state *s)
{
	for (;;) {
		uint32_t w =
			atomic_load_explicit(&s->word, memory_order_relaxed);
		if (!(w & LOCKED)) {
			if (try_take(s, w))
				return 1;
			continue;
		}
		if (atomic_compare_exchange_weak_explicit(
			    &s->word, &w, w | HANDOFF, memory_order_seq_cst,
			    memory_order_relaxed))
			return 0;
	}
}

/* What take_handed_over() answers besides TALLY_RECOVERED and errors. */
enum { NOT_HANDED = 0, HANDED = 2 };

/*
 * The starving waiter: HANDED once it holds the lock (handed over, or free
 * after all), TALLY_RECOVERED when it took it over from a dead holder,
 * NOT_HANDED when another waiter is already the starving one or our claim
 * was withdrawn (the caller then sleeps again), or TALLY_ETIMEDOUT (claim
 * withdrawn).
 */
static int take_handed_over(struct adaptive_state *s, struct wait *wt)
{
	uint32_t idle = HANDOFF_IDLE, me = new_claim(s), h;
	int rc = 0;

	if (!atomic_compare_exchange_strong_explicit(&s->handoff, &idle, me,
						     memory_order_seq_cst,
						     memory_order_relaxed))
		return NOT_HANDED;
	atomic_store_explicit(&s->starver, wt->me, memory_order_seq_cst);
	if (flag_handoff(s)) {
		/* Free after all: no hand-over. */
		atomic_store_explicit(&s->handoff, HANDOFF_IDLE,
				      memory_order_seq_cst);
		return HANDED;
	}
	/* Seq_cst (so acquire): pairs with the unlock's compare-and-swap,
	 * which brings the holder's writes. */
	while ((h = atomic_load_explicit(&s->handoff, memory_order_seq_cst)) ==
	       me) {
		int64_t ns;

		rc = between_sleeps(s, wt, &ns);
		if (rc != TALLY__WAIT_ON) {
			/* Stop waiting: withdraw, unless it was given. */
			uint32_t mine = me;
			if (atomic_compare_exchange_strong_explicit(
				    &s->handoff, &mine, HANDOFF_IDLE,
				    memory_order_seq_cst, memory_order_seq_cst))
				return rc; /* withdrawn: recovered or late */
			h = mine;
			break;
		}
		futex_wait(s, &s->handoff, me, ns);
	}
	if (h != HANDOFF_GIVEN)
		return NOT_HANDED; /* withdrawn by an unlock: we were dead */
	/* Handed over, the word kept whatever PARKED it had; an earlier
	 * unlock may have cleared it with others still asleep. */
	mark_sleepers(s);
	/* Only now may another waiter claim the hand-over. */
	atomic_store_explicit(&s->handoff, HANDOFF_IDLE, memory_order_seq_cst);
	return HANDED;
}

/* Sleep once on the word, unless it changed (then return at once). */
static void sleep_on_word(struct adaptive_state *s, int64_t ns)
{
	/* Counted before we look at the word: see mark_sleepers(). */
	atomic_fetch_add_explicit(&s->sleepers, 1, memory_order_seq_cst);
	uint32_t w = atomic_load_explicit(&s->word, memory_order_seq_cst);

	while (w & LOCKED) {
		if ((w & PARKED) ||
		    atomic_compare_exchange_weak_explicit(
			    &s->word, &w, w | PARKED, memory_order_seq_cst,
			    memory_order_relaxed)) {
			futex_wait(s, &s->word, w | PARKED, ns);
			break;
		}
	}
	atomic_fetch_sub_explicit(&s->sleepers, 1, memory_order_relaxed);
}

/* 0 or TALLY_RECOVERED with the lock held, or TALLY_ETIMEDOUT. */
static int adaptive_lock_slow(struct adaptive_state *s, struct wait *wt)
{
	uint64_t start = 0;
	unsigned try = 0;

	for (;;) {
		uint32_t w =
			atomic_load_explicit(&s->word, memory_order_relaxed);
		if (try_take(s, w))
			return 0;
		/* Spin while it may pay: not when a starving waiter is
		 * about to be handed the lock anyway. */
		if (try < s->spin && !(w & HANDOFF)) {
			backoff(try++);
			continue;
		}
		if (start == 0) {
			start = now_ns();
		} else if (now_ns() - start >= s->fair_us * 1000ull) {
			int rc = take_handed_over(s, wt);
			if (rc == HANDED)
				return 0;
			if (rc != NOT_HANDED)
				return rc;
		}
		int64_t ns;
		int rc = between_sleeps(s, wt, &ns);
		if (rc != TALLY__WAIT_ON)
			return rc;
		sleep_on_word(s, ns);
	}
}

static TALLY_NOINLINE int adaptive_contended(struct adaptive_state *s,
					     const struct tally__knobs *k,
					     uint64_t me)
{
	struct wait wt = {
		.w = TALLY__WAITER(k, "adaptive"),
		.me = me,
		.bounded = k->life != NULL || k->wait_ns >= 0,
	};

	return adaptive_lock_slow(s, &wt);
}

static inline int adaptive_lock(struct adaptive_state *s,
				const struct tally__knobs *k, uint64_t me)
{
	uint32_t unlocked = 0;
	int rc = 0;

	/* No ThreadSanitizer annotation anywhere in this lock: TSan checks it
	 * through its own memory orders (see src/tsan.h). */
	if (!atomic_compare_exchange_weak_explicit(&s->word, &unlocked, LOCKED,
						   memory_order_acquire,
						   memory_order_relaxed) &&
	    (rc = adaptive_contended(s, k, me)) < 0)
		return rc;
	tally__owner_set(&s->owner, me);
	return rc;
}

/*
 * Pass the held lock to the starving waiter of claim h, whose token is st:
 * 1 when it took it, 0 when it had withdrawn first (we still hold the lock
 * and the word has lost HANDOFF: the caller releases as usual).
 */
static int give(struct adaptive_state *s, uint32_t h, uint64_t st)
{
	/* Stay LOCKED: the lock passes to the starving waiter, not to
	 * whoever barges in first. */
	atomic_fetch_and_explicit(&s->word, ~HANDOFF, memory_order_seq_cst);
	/* The new holder, recorded before it is given the lock: should it
	 * die before it runs, it is a dead holder, and recovered. */
	atomic_store_explicit(&s->owner, st, memory_order_relaxed);
	/* Seq_cst (so release): our writes go with it. */
	if (atomic_compare_exchange_strong_explicit(
		    &s->handoff, &h, HANDOFF_GIVEN, memory_order_seq_cst,
		    memory_order_seq_cst)) {
		futex_wake(s, &s->handoff, 1);
		return 1;
	}
	atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
	/* Withdrawn first.  A newer claim may have come since we read h and
	 * had its bit cleared above: set it again, so that it is seen. */
	h = atomic_load_explicit(&s->handoff, memory_order_seq_cst);
	if (h != HANDOFF_IDLE && h != HANDOFF_GIVEN)
		atomic_fetch_or_explicit(&s->word, HANDOFF,
					 memory_order_seq_cst);
	return 0;
}

static void adaptive_unlock_slow(struct adaptive_state *s,
				 const struct tally__knobs *k)
{
	/* Seq_cst here and on the failures below (so acquire): having seen
	 * HANDOFF, we see the claim on `handoff` that was made before it. */
	uint32_t w = atomic_load_explicit(&s->word, memory_order_seq_cst);

	for (;;) {
		uint32_t h =
			(w & HANDOFF)
				? atomic_load_explicit(&s->handoff,
						       memory_order_seq_cst)
				: HANDOFF_IDLE;
		if (h != HANDOFF_IDLE && h != HANDOFF_GIVEN) {
			uint64_t st = atomic_load_explicit(
				&s->starver, memory_order_seq_cst);
			int32_t pid;

			if (tally__alive(k, st, &pid) != TALLY_DEAD) {
				if (give(s, h, st))
					return;
			} else if (atomic_compare_exchange_strong_explicit(
					   &s->handoff, &h, HANDOFF_IDLE,
					   memory_order_seq_cst,
					   memory_order_seq_cst)) {
				/* Its process is gone: withdraw the claim
				 * for it, and wake whoever sleeps on it,
				 * should it be alive after all. */
				futex_wake(s, &s->handoff, INT_MAX);
			}
			w = atomic_load_explicit(&s->word,
						 memory_order_seq_cst);
			continue;
		}
		/* Release, clearing a HANDOFF whose claim was withdrawn.
		 * Seq_cst (so release: our writes go to the next holder):
		 * clearing PARKED is ordered after the count of every
		 * sleeper it leaves asleep (see mark_sleepers()). */
		if (atomic_compare_exchange_weak_explicit(
			    &s->word, &w, 0, memory_order_seq_cst,
			    memory_order_seq_cst)) {
			if (w & PARKED)
				futex_wake(s, &s->word, 1);
			return;
		}
	}
}

static void adaptive_unlock(struct adaptive_state *s,
			    const struct tally__knobs *k, uint64_t me)
{
	uint32_t locked = LOCKED;

	tally__owner_clear(&s->owner, me);
	if (!atomic_compare_exchange_strong_explicit(&s->word, &locked, 0,
						     memory_order_release,
						     memory_order_relaxed))
		adaptive_unlock_slow(s, k);
}

static int adaptive_add(void *state, int64_t delta,
			const struct tally__knobs *k)
{
	struct adaptive_state *s = state;
	uint64_t me = tally__me(k);
	int rc = adaptive_lock(s, k, me);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	adaptive_unlock(s, k, me);
	return rc;
}

static int adaptive_add_cs(void *state, int64_t delta,
			   const struct tally__knobs *k, void (*inside)(void *),
			   void *arg)
{
	struct adaptive_state *s = state;
	uint64_t me = tally__me(k);
	int rc = adaptive_lock(s, k, me);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	inside(arg);
	adaptive_unlock(s, k, me);
	return rc;
}

/* Without the lock: see tally__word in src/backend.h. */
static int adaptive_get(void *state, int64_t *value)
{
	return tally__word_get(&((struct adaptive_state *)state)->value, value);
}

#endif /* __linux__ */

/* Futexes are Linux's: elsewhere the name is known, not built in. */
const struct tally_backend tally_backend_adaptive = {
	.name = "adaptive",
	.summary =
		"spins briefly, then sleeps on a futex; eventually fair, works across processes (spin=N, fair_us=N)",
	.caps = TALLY_CAP_LOCKED | TALLY_CAP_BLOCKING | TALLY_CAP_PSHARED |
		TALLY_CAP_NAMED,
	.takes_options = 1,
#if defined(__linux__)
	.state_size = sizeof(struct adaptive_state),
	.state_align = _Alignof(struct adaptive_state),
	.init = adaptive_init,
	.add = adaptive_add,
	.add_cs = adaptive_add_cs,
	.get = adaptive_get,
#endif
};
