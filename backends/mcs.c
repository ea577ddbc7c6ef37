/* mcs: Concurrency Kit's MCS queue lock: FIFO-fair, each waiter spins on its
 * own node, so a hand-over touches one waiter's cache line, not all. */
#include "backend.h"

#ifdef TALLY_HAVE_CK
#include "life.h"
#include "qnodes.h"
#include "tsan.h"

#include <ck_spinlock.h>
#include <stddef.h>

/*
 * Concurrency Kit's MCS lock, and what it has no way to do: let a waiter
 * leave the queue, or pass a holder that died.  Both are decided on the
 * node, by a compare-and-swap on its `state`:
 *   WAITING  queued (or holding, for a node that found the queue empty);
 *   GRANTED  the unlock before it handed it the lock;
 *   GONE     it left: its bound passed, or its process died while it
 *            waited (marked by its successor, which asks the kernel).
 * Every unlock is CK's ck_spinlock_mcs_unlock() with a compare-and-swap
 * WAITING -> GRANTED on the next node before it lets it go: if the node is
 * GONE, the turn is the unlocker's, and it unlocks again as that node,
 * until it reaches a waiter or empties the queue.  A waiter whose
 * bound passes swaps WAITING -> GONE: if it wins, it leaves (whoever grants
 * it passes through); if it loses, it was granted, and holds the lock.
 * A waiter looks at its predecessor's token (src/life.h): if the kernel
 * says its process is gone, the waiter marks it GONE if it was still
 * waiting, or, if it had been granted -- it died holding the lock --
 * unlocks for it (TALLY_RECOVERED).  The critical section is one store of
 * the value word, made or not, so what a dead holder leaves is consistent.
 * A holder that found the queue empty and died before it marked itself
 * GRANTED is not known: the wait bound ends the waits behind it.
 * A private counter with no bound runs CK's lock as it is: nobody leaves.
 */
enum { WAITING, GRANTED, GONE };

/* Each node on its own line: waiters spin on their node's `locked` word. */
struct mcs_node {
	_Alignas(TALLY_CACHELINE) struct ck_spinlock_mcs node;
	_Atomic uint32_t state;
	_Alignas(8) _Atomic uint64_t token; /* its waiter's, 0 when not known */
	_Atomic int busy;
};

struct mcs_state {
	_Alignas(TALLY_CACHELINE) struct ck_spinlock_mcs *queue;
	/* Written only by the holder, beside the tail. */
	_Alignas(8) tally__word value;
	unsigned count; /* nodes in the pool, tally__qnodes() at init */
	struct mcs_node nodes[];
};

static TALLY_THREAD_LOCAL unsigned hint;

static struct mcs_node *node_of(struct ck_spinlock_mcs *n)
{
	return (struct mcs_node *)(void *)((char *)n -
					   offsetof(struct mcs_node, node));
}

static int mcs_init(void *state, int64_t initial, unsigned flags,
		    const char *options)
{
	struct mcs_state *s = state;

	(void)flags; /* the nodes are in the state, shared when it is */
	(void)options;
	ck_spinlock_mcs_init(&s->queue);
	tally__word_init(&s->value, initial);
	s->count = tally__qnodes();
	for (unsigned i = 0; i < s->count; i++) {
		atomic_init(&s->nodes[i].busy, 0);
		atomic_init(&s->nodes[i].state, WAITING);
		atomic_init(&s->nodes[i].token, 0);
	}
	return 0;
}

/* CK's ck_spinlock_mcs_unlock() up to the hand-over: the node after n, or
 * NULL when n was the tail and the queue is now empty. */
static struct ck_spinlock_mcs *next_of(struct mcs_state *s, struct mcs_node *n)
{
	struct ck_spinlock_mcs *next = ck_pr_load_ptr(&n->node.next);

	if (next == NULL) {
		if (ck_pr_load_ptr(&s->queue) == &n->node &&
		    ck_pr_cas_ptr(&s->queue, &n->node, NULL))
			return NULL;
		/* A locker has swapped itself in and is linking in. */
		while ((next = ck_pr_load_ptr(&n->node.next)) == NULL)
			ck_pr_stall();
	}
	return next;
}

/*
 * Unlock as node n, then hand on: to the next waiter, or through every
 * GONE one.  This is CK's unlock with one step put before the hand-over:
 * the compare-and-swap that tells a waiter from a GONE node happens before
 * the store that lets the waiter go, so that store is the unlocker's last
 * touch of the node (a waiter let go may at once free and reuse it).  Once
 * the next node is known nobody else refers to n, so n goes back to the
 * pool.  GRANTED already: an unlock for a holder that died between this
 * swap and the store (see pass_dead()): the store is then all that is left.
 */
static void mcs_release(struct mcs_state *s, struct mcs_node *n)
{
	ck_pr_fence_unlock();
	for (;;) {
		struct ck_spinlock_mcs *next = next_of(s, n);

		tally__qnode_release(&n->busy);
		if (next == NULL)
			return;
		uint32_t seen = WAITING;
		n = node_of(next);
		if (atomic_compare_exchange_strong_explicit(
			    &n->state, &seen, GRANTED, memory_order_acq_rel,
			    memory_order_acquire) ||
		    seen == GRANTED) {
			ck_pr_store_uint(&n->node.locked, false);
			return;
		}
		/* GONE: its turn is ours; unlock as it. */
	}
}

/* The process of our predecessor p is gone: mark it GONE if it was still
 * waiting (whoever grants it passes through), or unlock for it if it held
 * the lock: 1 then (a recovery), else 0. */
static int pass_dead(struct mcs_state *s, struct mcs_node *p)
{
	uint32_t waiting = WAITING;

	if (atomic_compare_exchange_strong_explicit(&p->state, &waiting, GONE,
						    memory_order_acq_rel,
						    memory_order_acquire) ||
	    waiting == GONE)
		return 0;
	mcs_release(s, p); /* GRANTED: it died holding the lock */
	return 1;
}

/* CK's ck_spinlock_mcs_lock(), with a wait that may end (see above): 0 or
 * TALLY_RECOVERED with the lock held, or TALLY_ETIMEDOUT (left). */
static TALLY_NOINLINE int mcs_wait(struct mcs_state *s, struct mcs_node *n,
				   struct tally__waiter *w)
{
	struct ck_spinlock_mcs *prev;
	int recovered = 0, granted = 0, rc;
	uint64_t dead;

	ck_pr_store_uint(&n->node.locked, true);
	ck_pr_store_ptr(&n->node.next, NULL);
	ck_pr_fence_store_atomic();
	prev = ck_pr_fas_ptr(&s->queue, &n->node);
	if (prev == NULL)
		return 0;
	ck_pr_store_ptr(&prev->next, &n->node);
	struct mcs_node *p = node_of(prev);
	while (ck_pr_load_uint(&n->node.locked) == true) {
		ck_pr_stall();
		rc = tally__wait_spin(w, &p->token, &dead);
		if (rc == TALLY__WAIT_DEAD) {
			recovered |= pass_dead(s, p);
		} else if (rc < 0 && !granted) {
			uint32_t waiting = WAITING;
			if (atomic_compare_exchange_strong_explicit(
				    &n->state, &waiting, GONE,
				    memory_order_acq_rel, memory_order_acquire))
				return rc; /* left: the node is passed on */
			/* Granted: the unlock is about to let us go. */
			granted = 1;
		}
	}
	return recovered ? TALLY_RECOVERED : 0;
}

/* 0 or TALLY_RECOVERED with the lock held in *out, or an error. */
static inline int mcs_lock(struct mcs_state *s, const struct tally__knobs *k,
			   struct mcs_node **out)
{
	struct tally__waiter w = TALLY__WAITER(k, "mcs");
	int rc = tally__qnode_claim((char *)&s->nodes[0].busy,
				    sizeof(s->nodes[0]), s->count, &hint, &w);

	if (rc < 0)
		return rc;
	struct mcs_node *n = &s->nodes[rc];
	rc = 0;

	atomic_store_explicit(&n->state, WAITING, memory_order_relaxed);
	atomic_store_explicit(&n->token, tally__me(k), memory_order_relaxed);
	tally__tsan_pre_lock(&s->queue);
	if (k->life == NULL && k->wait_ns < 0)
		ck_spinlock_mcs_lock(&s->queue, &n->node);
	else
		rc = mcs_wait(s, n, &w);
	if (rc < 0) {
		tally__tsan_lock_failed(&s->queue);
		return rc;
	}
	ck_pr_fence_lock();
	/* Taken from an empty queue, nobody granted it: say so.  A plain
	 * store: while we live nobody else writes our node's state (a
	 * successor swaps it only once the kernel says we are dead). */
	atomic_store_explicit(&n->state, GRANTED, memory_order_relaxed);
	tally__tsan_post_lock(&s->queue);
	*out = n;
	return rc;
}

static void mcs_unlock(struct mcs_state *s, struct mcs_node *n)
{
	tally__tsan_pre_unlock(&s->queue);
	mcs_release(s, n);
	tally__tsan_post_unlock(&s->queue);
}

static int mcs_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	struct mcs_state *s = state;
	struct mcs_node *n;
	int rc = mcs_lock(s, k, &n);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	mcs_unlock(s, n);
	return rc;
}

static int mcs_add_cs(void *state, int64_t delta, const struct tally__knobs *k,
		      void (*inside)(void *), void *arg)
{
	struct mcs_state *s = state;
	struct mcs_node *n;
	int rc = mcs_lock(s, k, &n);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	inside(arg);
	mcs_unlock(s, n);
	return rc;
}

/* Without the lock: see tally__word in src/backend.h. */
static int mcs_get(void *state, int64_t *value)
{
	return tally__word_get(&((struct mcs_state *)state)->value, value);
}

/* The pool follows the host (src/qnodes.h). */
static size_t mcs_size(unsigned flags)
{
	(void)flags;
	return sizeof(struct mcs_state) +
	       tally__qnodes() * sizeof(struct mcs_node);
}

static void mcs_destroy(void *state)
{
	tally__tsan_destroy(&((struct mcs_state *)state)->queue);
}
#endif /* TALLY_HAVE_CK */

/* Pointers between nodes are only valid where every process maps the state
 * at one address: a mapping inherited through fork, not a named counter. */
const struct tally_backend tally_backend_mcs = {
	.name = "mcs",
	.summary = "Concurrency Kit MCS queue lock; FIFO-fair, local spinning",
	.caps = TALLY_CAP_LOCKED | TALLY_CAP_SPINNING | TALLY_CAP_FAIR |
		TALLY_CAP_PSHARED,
#ifdef TALLY_HAVE_CK
	.state_size = sizeof(struct mcs_state) +
		      TALLY_QNODES_MIN * sizeof(struct mcs_node),
	.state_align = _Alignof(struct mcs_state),
	.size = mcs_size,
	.init = mcs_init,
	.add = mcs_add,
	.add_cs = mcs_add_cs,
	.get = mcs_get,
	.destroy = mcs_destroy,
#endif
};
