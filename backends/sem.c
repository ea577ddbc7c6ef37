/* sem: a POSIX semaphore used as a binary lock (sem_init(..., pshared, 1)). */
#include "backend.h"

#include <errno.h>
#include <semaphore.h>

struct sem_state {
	sem_t sem;
	tally__word value;
};

static int sem_init_(void *state, int64_t initial, unsigned flags,
		     const char *options)
{
	struct sem_state *s = state;

	(void)options;
	if (sem_init(&s->sem, (flags & TALLY_PSHARED) != 0, 1) != 0)
		return TALLY_ESYSTEM;
	tally__word_init(&s->value, initial);
	return 0;
}

static void sem_lock(struct sem_state *s)
{
	int rc;

	/* A signal handler (Ctrl-C in the tool) interrupts sem_wait. */
	while ((rc = sem_wait(&s->sem)) != 0 && errno == EINTR)
		;
	if (rc != 0)
		abort(); /* EINVAL: the semaphore is not one; a bug in tally */
}

static int sem_add(void *state, int64_t delta)
{
	struct sem_state *s = state;

	sem_lock(s);
	tally__word_add(&s->value, delta);
	sem_post(&s->sem);
	return 0;
}

static int sem_add_cs(void *state, int64_t delta, void (*inside)(void *),
		      void *arg)
{
	struct sem_state *s = state;

	sem_lock(s);
	tally__word_add(&s->value, delta);
	inside(arg);
	sem_post(&s->sem);
	return 0;
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
