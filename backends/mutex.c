/* mutex: a pthread mutex around a plain word; process-shared and robust when
 * shared, so that a holder that dies is recovered from. */
#include "backend.h"
#include "life.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

/* The value sits beside the lock: it is only written by the lock holder, who
 * already owns this cache line. */
struct mutex_state {
	pthread_mutex_t lock;
	_Alignas(8) tally__word value;
};

static int mutex_init(void *state, int64_t initial, unsigned flags,
		      const char *options)
{
	struct mutex_state *s = state;
	pthread_mutexattr_t attr;
	int rc;

	(void)options;
	if (pthread_mutexattr_init(&attr) != 0)
		return TALLY_ENOMEM;
	if (flags & TALLY_PSHARED) {
		/* Robust: a process that dies holding the lock hands the next
		 * locker EOWNERDEAD instead of a deadlock. */
		pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
		pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	}
	rc = pthread_mutex_init(&s->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (rc != 0) {
		errno = rc;
		return rc == ENOMEM ? TALLY_ENOMEM : TALLY_ESYSTEM;
	}
	tally__word_init(&s->value, initial);
	return 0;
}

/* Take the lock within k's bound: the kernel's robust futexes already know
 * whether its holder lives (EOWNERDEAD), so no life table is needed;
 * pthread_mutex_clocklock (glibc 2.30) ends the wait. */
static int mutex_take(struct mutex_state *s, const struct tally__knobs *k)
{

	if (k->wait_ns < 0)
		return pthread_mutex_lock(&s->lock);
	/* Free (or its holder dead: EOWNERDEAD) at once, the common case:
	 * no clock read. */
	int rc = pthread_mutex_trylock(&s->lock);
	if (rc != EBUSY)
		return rc;
	if (k->wait_ns == 0)
		return ETIMEDOUT;
	struct timespec until = tally__deadline(k->wait_ns);
#ifdef TALLY_TSAN
	return pthread_mutex_timedlock(&s->lock, &until);
#else
	return pthread_mutex_clocklock(&s->lock, CLOCK_MONOTONIC, &until);
#endif
}

/* 0, TALLY_RECOVERED when the previous holder died, or an error. */
static int mutex_lock(struct mutex_state *s, const struct tally__knobs *k)
{
	int rc = mutex_take(s, k);

	if (rc == 0)
		return 0;
	if (rc == ETIMEDOUT) {
		tally__explain_set(
			TALLY_ETIMEDOUT,
			"the mutex lock was not taken in %.3f s; nothing was added.  It is held by a live thread or process (a robust mutex is recovered from one that died)",
			(double)k->wait_ns / 1e9);
		return TALLY_ETIMEDOUT;
	}
	if (rc == EOWNERDEAD) {
		/* The dead holder either stored its value or did not; the
		 * word itself is never torn, so the state is consistent. */
		pthread_mutex_consistent(&s->lock);
		return TALLY_RECOVERED;
	}
	if (rc == ENOTRECOVERABLE)
		return TALLY_ENOTRECOVERABLE;
	abort(); /* EINVAL/EDEADLK: a bug in tally, not a runtime condition */
}

static int mutex_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	struct mutex_state *s = state;
	int rc = mutex_lock(s, k);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int mutex_add_cs(void *state, int64_t delta,
			const struct tally__knobs *k, void (*inside)(void *),
			void *arg)
{
	struct mutex_state *s = state;
	int rc = mutex_lock(s, k);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	inside(arg);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* Without the lock: see tally__word in src/backend.h. */
static int mutex_get(void *state, int64_t *value)
{
	return tally__word_get(&((struct mutex_state *)state)->value, value);
}

static void mutex_destroy(void *state)
{
	pthread_mutex_destroy(&((struct mutex_state *)state)->lock);
}

const struct tally_backend tally_backend_mutex = {
	.name = "mutex",
	.summary = "pthread mutex; sleeps when contended, robust when shared",
	.caps = TALLY_CAP_BLOCKING | TALLY_CAP_PSHARED | TALLY_CAP_ROBUST |
		TALLY_CAP_LOCKED | TALLY_CAP_NAMED,
	.state_size = sizeof(struct mutex_state),
	.state_align = _Alignof(struct mutex_state),
	.init = mutex_init,
	.add = mutex_add,
	.add_cs = mutex_add_cs,
	.get = mutex_get,
	.destroy = mutex_destroy,
};
