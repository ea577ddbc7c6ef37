/* clh: Concurrency Kit's CLH queue lock: FIFO-fair, each waiter spins on its
 * predecessor's node, and nodes pass from one waiter to the next. */
#include "backend.h"

#ifdef TALLY_HAVE_CK
#include "qnodes.h"
#include "tsan.h"

#include <ck_spinlock.h>
#include <stddef.h>

/* Each node on its own line: a waiter spins on its predecessor's `wait`. */
struct clh_node {
	_Alignas(TALLY_CACHELINE) struct ck_spinlock_clh node;
	_Atomic int busy;
};

struct clh_state {
	_Alignas(TALLY_CACHELINE) struct ck_spinlock_clh *queue;
	tally__word value; /* written only by the holder, beside the tail */
	struct clh_node nodes[TALLY_QNODES + 1]; /* + the initial tail */
};

static _Thread_local unsigned hint;

static struct clh_node *owner_of(struct ck_spinlock_clh *n)
{
	return (struct clh_node *)((char *)n - offsetof(struct clh_node, node));
}

static int clh_init(void *state, int64_t initial, unsigned flags,
		    const char *options)
{
	struct clh_state *s = state;

	(void)flags; /* the nodes are in the state, shared when it is */
	(void)options;
	for (unsigned i = 0; i <= TALLY_QNODES; i++)
		atomic_init(&s->nodes[i].busy, 0);
	/* The queue starts with one unowned node as its tail; it is in use
	 * (the queue refers to it) like any node a waiter left behind. */
	atomic_store(&s->nodes[TALLY_QNODES].busy, 1);
	ck_spinlock_clh_init(&s->queue, &s->nodes[TALLY_QNODES].node);
	tally__word_init(&s->value, initial);
	return 0;
}

static struct ck_spinlock_clh *clh_lock(struct clh_state *s)
{
	struct clh_node *n = &s->nodes[tally__qnode_claim(
		(char *)&s->nodes[0].busy, sizeof(s->nodes[0]), &hint)];

	tally__tsan_pre_lock(&s->queue);
	ck_spinlock_clh_lock(&s->queue, &n->node);
	tally__tsan_post_lock(&s->queue);
	return &n->node;
}

/*
 * Unlock leaves our node to the next waiter and hands us our predecessor's,
 * which nobody refers to any more: that one goes back to the pool.  (The
 * initial tail joins the pool this way too; the pool plus the one node the
 * queue holds always add up to TALLY_QNODES + 1.)
 */
static void clh_unlock(struct clh_state *s, struct ck_spinlock_clh *n)
{
	tally__tsan_pre_unlock(&s->queue);
	ck_spinlock_clh_unlock(&n);
	tally__tsan_post_unlock(&s->queue);
	tally__qnode_release(&owner_of(n)->busy);
}

static int clh_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	(void)k;
	struct clh_state *s = state;
	struct ck_spinlock_clh *n = clh_lock(s);

	tally__word_add(&s->value, delta);
	clh_unlock(s, n);
	return 0;
}

static int clh_add_cs(void *state, int64_t delta, const struct tally__knobs *k,
		      void (*inside)(void *), void *arg)
{
	(void)k;
	struct clh_state *s = state;
	struct ck_spinlock_clh *n = clh_lock(s);

	tally__word_add(&s->value, delta);
	inside(arg);
	clh_unlock(s, n);
	return 0;
}

/* Without the lock: see tally__word in src/backend.h. */
static int clh_get(void *state, int64_t *value)
{
	return tally__word_get(&((struct clh_state *)state)->value, value);
}

static void clh_destroy(void *state)
{
	tally__tsan_destroy(&((struct clh_state *)state)->queue);
}
#endif /* TALLY_HAVE_CK */

/* Pointers between nodes are only valid where every process maps the state
 * at one address: a mapping inherited through fork, not a named counter. */
const struct tally_backend tally_backend_clh = {
	.name = "clh",
	.summary = "Concurrency Kit CLH queue lock; FIFO-fair, nodes passed on",
	.caps = TALLY_CAP_LOCKED | TALLY_CAP_SPINNING | TALLY_CAP_FAIR |
		TALLY_CAP_PSHARED,
	/* Not yet: a CLH waiter spins on its predecessor's node, and leaving
	 * means handing that node on to its own successor (issue 20). */
	.unbounded = 1,
#ifdef TALLY_HAVE_CK
	.state_size = sizeof(struct clh_state),
	.state_align = _Alignof(struct clh_state),
	.init = clh_init,
	.add = clh_add,
	.add_cs = clh_add_cs,
	.get = clh_get,
	.destroy = clh_destroy,
#endif
};
