/* sem: a POSIX semaphore used as a binary lock (sem_init(..., pshared, 1)). */
#include "backend.h"
#include "life.h"

#include <errno.h>
#include <semaphore.h>
#include <time.h>

struct sem_state {
	sem_t sem;
	_Alignas(8) tally__word value;
	/* Shared counters: the holder (src/life.h). */
	_Alignas(8) tally__owner owner;
};

static int sem_init_(void *state, int64_t initial, unsigned flags,
		     const char *options)
{
	struct sem_state *s = state;

	(void)options;
	if (sem_init(&s->sem, (flags & TALLY_PSHARED) != 0, 1) != 0)
		return TALLY_ESYSTEM;
	tally__word_init(&s->value, initial);
	atomic_init(&s->owner, 0);
	return 0;
}

/*
 * A wait that may end: sleep on the semaphore until the next look at the
 * holder or the bound (sem_clockwait, glibc 2.30), whichever comes first.
 * A holder recorded dead is taken over: the semaphore stays taken, and this
 * caller holds it (TALLY_RECOVERED); its sem_post then frees it as the dead
 * holder's would have.
 */
static int sem_wait_bounded(struct sem_state *s, const struct tally__knobs *k,
			    uint64_t me)
{
	struct tally__waiter w = TALLY__WAITER(k, "sem");
	int64_t sleep;
	uint64_t dead;

	for (;;) {
		int rc = tally__wait_check(&w, &s->owner, &dead, &sleep);

		if (rc == TALLY__WAIT_DEAD &&
		    tally__owner_takeover(&s->owner, dead, me))
			return TALLY_RECOVERED;
		if (rc < 0)
			return rc;
		struct timespec until = tally__deadline(sleep > 0 ? sleep : 0);
#ifdef TALLY_TSAN
		if (sem_timedwait(&s->sem, &until) == 0)
#else
		if (sem_clockwait(&s->sem, CLOCK_MONOTONIC, &until) == 0)
#endif
			return 0;
		if (errno != ETIMEDOUT && errno != EINTR)
			abort(); /* EINVAL: not a semaphore; a bug in tally */
	}
}

/* The semaphore was taken at the first try: wait for it.  0 or
 * TALLY_RECOVERED with it held, or an error. */
static TALLY_NOINLINE int
sem_contended(struct sem_state *s, const struct tally__knobs *k, uint64_t me)
{
	int rc;

	if (errno != EAGAIN && errno != EINTR)
		abort(); /* EINVAL: not a semaphore; a bug in tally */
	if (k->life != NULL || k->wait_ns >= 0)
		return sem_wait_bounded(s, k, me);
	/* Private, no bound: a signal handler (Ctrl-C in the tool)
	 * interrupts sem_wait, nothing else. */
	while ((rc = sem_wait(&s->sem)) != 0 && errno == EINTR)
		;
	if (rc != 0)
		abort();
	return 0;
}

/* 0 or TALLY_RECOVERED with the semaphore held (and recorded), or an
 * error. */
static inline int sem_lock(struct sem_state *s, const struct tally__knobs *k,
			   uint64_t me)
{
	int rc = 0;

	if (sem_trywait(&s->sem) != 0 && (rc = sem_contended(s, k, me)) < 0)
		return rc;
	tally__owner_set(&s->owner, me);
	return rc;
}

static void sem_unlock(struct sem_state *s, uint64_t me)
{
	tally__owner_clear(&s->owner, me);
	sem_post(&s->sem);
}

static int sem_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	struct sem_state *s = state;
	uint64_t me = tally__me(k);
	int rc = sem_lock(s, k, me);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	sem_unlock(s, me);
	return rc;
}

static int sem_add_cs(void *state, int64_t delta, const struct tally__knobs *k,
		      void (*inside)(void *), void *arg)
{
	struct sem_state *s = state;
	uint64_t me = tally__me(k);
	int rc = sem_lock(s, k, me);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	inside(arg);
	sem_unlock(s, me);
	return rc;
}

/* Without the lock: see tally__word in src/backend.h. */
static int sem_get(void *state, int64_t *value)
{
	return tally__word_get(&((struct sem_state *)state)->value, value);
}

static void sem_destroy_(void *state)
{
	sem_destroy(&((struct sem_state *)state)->sem);
}

const struct tally_backend tally_backend_sem = {
	.name = "sem",
	.summary = "POSIX semaphore as a binary lock; sleeps when contended",
	.caps = TALLY_CAP_LOCKED | TALLY_CAP_BLOCKING | TALLY_CAP_PSHARED |
		TALLY_CAP_NAMED,
	.state_size = sizeof(struct sem_state),
	.state_align = _Alignof(struct sem_state),
	.init = sem_init_,
	.add = sem_add,
	.add_cs = sem_add_cs,
	.get = sem_get,
	.destroy = sem_destroy_,
};
