/* Who holds a lock in shared memory, and whether it still lives: each
 * process's token on a counter, vouched for by the kernel; and the bounded
 * wait that every lock backend's slow path runs on. */
#ifndef TALLY_LIFE_H
#define TALLY_LIFE_H

#include "backend.h"
#include "tsan.h"

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/*
 * Liveness, the way LMDB's reader table does it.  A shared counter's file
 * (the named object, or a memfd for TALLY_PSHARED) carries a table of
 * TALLY_LIFE_SLOTS slots.  A process that uses the counter claims a free slot
 * by taking an open-file-description lock (F_OFD_SETLK) on the slot's byte
 * of the file, through a descriptor of its own, and holds it for as long as
 * its handle lives.  The kernel drops that lock when the last descriptor of
 * the description closes, which happens when the process dies however it
 * dies; no other process can take it meanwhile; and F_OFD_GETLK answers
 * whether it is held the same way in every PID namespace.  So "is the holder
 * alive" is a question the kernel answers, never a process id that another
 * namespace, or a later process given the same number, would answer wrongly.
 *
 * A token names one claim: the slot, and the generation the claim gave the
 * slot (bumped on every claim), so that a token of a process that died is
 * never taken for the process that claimed its slot next.
 *
 * A process forked after the claim shares its parent's open file
 * description, and so its lock: the child must not speak with its parent's
 * token.  Every fork moves tally__fork_epoch on (pthread_atfork), and a
 * handle whose claim is of an older epoch claims again, through a
 * description of its own (reopened through /proc/self/fd), on its next use.
 * A program that forks with a raw clone system call, bypassing atfork, must
 * not use a shared lock in the child.
 */
#define TALLY_LIFE_SLOTS 64

/* One slot of the table, in the counter's shared memory.  pid is what the
 * claimant's own PID namespace calls it: for messages only, never trusted. */
struct tally__life_slot {
	_Atomic uint32_t gen;
	_Atomic int32_t pid;
};

struct tally__life_table {
	struct tally__life_slot slot[TALLY_LIFE_SLOTS];
};

/* One handle's side, in the handle (private memory). */
struct tally__life {
	struct tally__life_table *table;    /* in the shared mapping */
	_Alignas(8) _Atomic uint64_t token; /* this process's claim; 0: none */
	_Atomic unsigned epoch;		    /* tally__fork_epoch of the claim */
	_Atomic unsigned busy;		    /* a claim in progress: epoch + 1 */
	int fd; /* this process's own description of the file, -1 none */
};

extern _Atomic unsigned tally__fork_epoch;

/* src/life.c.  Start a handle's side on `fd` (taken over: closed with the
 * handle) and claim a slot.  Never fails: without a slot, or a descriptor,
 * the process just has no token (its holds are "not known"). */
void tally__life_start(struct tally__life *l, struct tally__life_table *table,
		       int fd);
void tally__life_stop(struct tally__life *l);
uint64_t tally__life_reclaim(struct tally__life *l);

/* This process's token on the counter, 0 when it has none.  The hot path:
 * a few loads, no system call, except once after a fork. */
static inline uint64_t tally__me(const struct tally__knobs *k)
{
	struct tally__life *l = k->life;

	if (l == NULL)
		return 0;
	if (atomic_load_explicit(&l->epoch, memory_order_acquire) ==
	    atomic_load_explicit(&tally__fork_epoch, memory_order_relaxed))
		return atomic_load_explicit(&l->token, memory_order_relaxed);
	return tally__life_reclaim(l);
}

enum tally__liveness { TALLY_DEAD = 0, TALLY_ALIVE = 1, TALLY_UNKNOWN = -1 };

/* Does the process that made `token` still live?  TALLY_DEAD only when the
 * kernel says so; TALLY_UNKNOWN for token 0, or when this process cannot
 * ask.  *pid: the pid the slot's claimant gave, for messages (0: none). */
enum tally__liveness tally__alive(const struct tally__knobs *k, uint64_t token,
				  int32_t *pid);

/*
 * The holder of a lock, recorded beside it: the holder's token, written
 * just after it takes the lock and cleared just before it releases it.  A
 * holder that dies in between leaves its token, which a waiter finds dead.
 * One that dies in the instants between taking the lock and recording
 * itself, or between clearing and releasing, leaves 0: not known, and the
 * wait bound ends the wait.  Relaxed: the lock's own acquire and release
 * order these stores with the critical section, and the one decision taken
 * on the owner -- a takeover -- is a compare-and-swap, which reads the
 * latest value whatever the order of the rest.
 */
typedef _Atomic uint64_t tally__owner;

static inline void tally__owner_set(tally__owner *o, uint64_t me)
{
	if (me != 0)
		atomic_store_explicit(o, me, memory_order_relaxed);
}

static inline void tally__owner_clear(tally__owner *o, uint64_t me)
{
	if (me != 0)
		atomic_store_explicit(o, 0, memory_order_relaxed);
}

/* Take the lock over from `dead`, whose process the kernel says is gone:
 * 1 when this caller now holds it (recorded as `me`, or as not known when
 * it has no token), 0 when someone else did first, or the owner changed.
 * Acquire: what the dead holder wrote is ours. */
static inline int tally__owner_takeover(tally__owner *o, uint64_t dead,
					uint64_t me)
{
	return atomic_compare_exchange_strong_explicit(
		o, &dead, me, memory_order_acquire, memory_order_relaxed);
}

/*
 * A token in 32 bits, for a lock word that records its own holder (as the
 * kernel's robust futexes hold the owner's thread id): taking the lock and
 * recording the holder are then one compare-and-swap, with no instant in
 * between where a holder that dies is not known.  The slot (1 to 64) in the
 * top 7 bits, the low 25 bits of the claim's generation below; 0 is "free"
 * and TALLY__ID_UNKNOWN a holder without a token.
 */
#define TALLY__ID_GEN_BITS 25
#define TALLY__ID_GEN_MASK ((1u << TALLY__ID_GEN_BITS) - 1)
#define TALLY__ID_UNKNOWN  1u

static inline uint32_t tally__id32(uint64_t token)
{
	if (token == 0)
		return TALLY__ID_UNKNOWN;
	return (uint32_t)((token >> 32) << TALLY__ID_GEN_BITS) |
	       ((uint32_t)token & TALLY__ID_GEN_MASK);
}

/* The token a lock word's id stands for, to ask tally__alive(): 0 when not
 * known.  A slot claimed again since (its generation moved on) gives a
 * token of the older claim, which tally__alive() reports dead. */
uint64_t tally__id32_token(const struct tally__knobs *k, uint32_t id);

/*
 * A bounded wait for a lock, between a backend's tries.  The first call
 * starts the clock; every check looks at the time, and now and then (first
 * after 1 ms, then every 20 ms) at the recorded holder.
 */
struct tally__waiter {
	const struct tally__knobs *k;
	const char *lock; /* "spin", for messages */
	uint64_t start, next_look;
	unsigned turns;
};

#define TALLY__WAITER(knobs, name)                                             \
	{                                                                      \
		.k = (knobs), .lock = (name)                                   \
	}

enum {
	TALLY__WAIT_ON = 0,   /* keep waiting */
	TALLY__WAIT_DEAD = 1, /* the holder in *dead died: take it over */
};

/*
 * For a waiter that sleeps between tries (a futex, a semaphore): returns
 * TALLY__WAIT_ON, TALLY__WAIT_DEAD (with the dead holder's token in *dead),
 * or TALLY_ETIMEDOUT (explained: how long, and what is known of the
 * holder).  owner may be NULL (no holder recorded).  *sleep_ns: how long
 * the caller may sleep before it must call again.
 */
int tally__wait_check(struct tally__waiter *w, tally__owner *owner,
		      uint64_t *dead, int64_t *sleep_ns);

/* For a waiter that spins: the same, looking at the clock on one call in
 * 64 only (a clock read costs more than a turn of a spin loop). */
static inline int tally__wait_spin(struct tally__waiter *w, tally__owner *owner,
				   uint64_t *dead)
{
	int64_t ignored;

	if ((++w->turns & 63u) != 1u)
		return TALLY__WAIT_ON;
	return tally__wait_check(w, owner, dead, &ignored);
}

/* Whether the next tally__wait_spin() looks: for a waiter that must work
 * out who the holder is before it can be looked at. */
static inline int tally__wait_spin_due(const struct tally__waiter *w)
{
	return (w->turns & 63u) == 0u;
}

/* The holder in `dead` died and its lock cannot be taken over: explain
 * TALLY_ENOTRECOVERABLE for tally_explain() and return it. */
int tally__holder_died(const struct tally__waiter *w, uint64_t dead);

/*
 * The absolute deadline ns from now, for the blocking calls that take one
 * (pthread_mutex_clocklock, sem_clockwait), on TALLY_WAIT_CLOCK.
 * ThreadSanitizer (gcc 12's) intercepts pthread_mutex_timedlock and
 * sem_timedwait but not their clock* variants, and takes a lock taken by
 * those for not taken: TSan builds use the timed calls, on the wall clock.
 */
#ifdef TALLY_TSAN
#define TALLY_WAIT_CLOCK CLOCK_REALTIME
#else
#define TALLY_WAIT_CLOCK CLOCK_MONOTONIC
#endif

static inline struct timespec tally__deadline(int64_t ns)
{
	struct timespec ts;

	clock_gettime(TALLY_WAIT_CLOCK, &ts);
	ts.tv_sec += (time_t)(ns / 1000000000);
	ts.tv_nsec += (long)(ns % 1000000000);
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

#endif /* TALLY_LIFE_H */
