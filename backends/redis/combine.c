/* redis: combining -- while one thread's request is in flight, the adds of
 * the process's other threads queue up, and the next request carries their
 * sum. */
#include "redis_int.h"

#ifdef TALLY_HAVE_HIREDIS
#include <pthread.h>
#include <sched.h>
#include <stdio.h>

/* Send everything queued as one request, and hand each add its answer.
 * Called by the combining thread with q held; returns with q held. */
static void combine(struct client *cl, const struct pending *self)
{
	struct pending *batch = cl->head;
	uint64_t sum = 0;
	int64_t after = 0;

	/* Alone, right after a request that carried several adds: their
	 * callers were just woken and are about to add again.  Let them
	 * (one yield) rather than send this add alone and theirs after. */
	if (batch->next == NULL && cl->last_batch > 1) {
		pthread_mutex_unlock(&cl->q);
		sched_yield();
		pthread_mutex_lock(&cl->q);
		batch = cl->head;
	}
	cl->head = NULL;
	cl->tail = &cl->head;
	pthread_mutex_unlock(&cl->q);
	unsigned n = 0;
	for (struct pending *p = batch; p != NULL; p = p->next, n++)
		sum += (uint64_t)p->delta; /* wraps as the counter does */
	cl->last_batch = n;
	pthread_mutex_lock(&cl->io);
	int rc = tally__redis_request(cl, ++cl->seq, (int64_t)sum, &after);
	pthread_mutex_unlock(&cl->io);
	/* The request added the batch in order: each add's own value is the
	 * value before it plus the deltas up to and including its own. */
	uint64_t v = (uint64_t)after - sum;
	/* Why it failed is this thread's to tell (tally_explain()), and each
	 * add's caller returns it: every one of them gets the words. */
	const char *why = rc != 0 ? tally_explain(rc) : NULL;
	pthread_mutex_lock(&cl->q);
	for (struct pending *p = batch, *next; p != NULL; p = next) {
		next = p->next;
		v += (uint64_t)p->delta;
		p->after = (int64_t)v;
		p->rc = rc;
		if (why != NULL)
			snprintf(p->why, sizeof(p->why), "%s", why);
		p->done = 1;
		/* Only its own caller wakes: no herd of waiters that are not
		 * done yet.  p stays valid: its caller needs q to return. */
		if (p != self)
			pthread_cond_signal(&p->cv);
	}
}

int tally__redis_add_fetch(void *state, int64_t delta, int64_t *after)
{
	struct client *cl = tally__redis_client_of(state);
	struct pending me = {.delta = delta};

	if (cl == NULL)
		return TALLY_ENOMEM;
	pthread_cond_init(&me.cv, NULL);
	pthread_mutex_lock(&cl->q);
	*cl->tail = &me;
	cl->tail = &me.next;
	while (!me.done) {
		if (!cl->combining) {
			/* The first pass carries this add; a few more carry
			 * what arrived meanwhile, sparing waiters a wake-up
			 * to send it themselves. */
			cl->combining = 1;
			for (int pass = 0; pass < 4 && cl->head != NULL; pass++)
				combine(cl, &me);
			cl->combining = 0;
			/* The next waiter in line sends what is left. */
			if (cl->head != NULL)
				pthread_cond_signal(&cl->head->cv);
		} else {
			pthread_cond_wait(&me.cv, &cl->q);
		}
	}
	pthread_mutex_unlock(&cl->q);
	pthread_cond_destroy(&me.cv);
	if (me.rc == 0)
		*after = me.after;
	else /* whichever thread sent it, and after its later passes */
		tally__explain_set(me.rc, "%s", me.why);
	return me.rc;
}

#endif /* TALLY_HAVE_HIREDIS */
