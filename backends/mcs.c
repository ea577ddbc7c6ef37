/* mcs: Concurrency Kit's MCS queue lock: FIFO-fair, each waiter spins on its
 * own node, so a hand-over touches one waiter's cache line, not all. */
#include "backend.h"

#ifdef TALLY_HAVE_CK
#include "qnodes.h"
#include "tsan.h"

#include <ck_spinlock.h>

/* Each node on its own line: waiters spin on their node's `locked` word. */
struct mcs_node {
	_Alignas(TALLY_CACHELINE) struct ck_spinlock_mcs node;
	_Atomic int busy;
};

struct mcs_state {
	_Alignas(TALLY_CACHELINE) struct ck_spinlock_mcs *queue;
	tally__word value; /* written only by the holder, beside the tail */
	struct mcs_node nodes[TALLY_QNODES];
};

static _Thread_local unsigned hint;

static int mcs_init(void *state, int64_t initial, unsigned flags,
		    const char *options)
{
	struct mcs_state *s = state;

	(void)flags; /* the nodes are in the state, shared when it is */
	(void)options;
	ck_spinlock_mcs_init(&s->queue);
	tally__word_init(&s->value, initial);
	for (unsigned i = 0; i < TALLY_QNODES; i++)
		atomic_init(&s->nodes[i].busy, 0);
	return 0;
}

static struct mcs_node *mcs_lock(struct mcs_state *s)
{
	struct mcs_node *n = &s->nodes[tally__qnode_claim(
		(char *)&s->nodes[0].busy, sizeof(s->nodes[0]), &hint)];

	tally__tsan_pre_lock(&s->queue);
	ck_spinlock_mcs_lock(&s->queue, &n->node);
	tally__tsan_post_lock(&s->queue);
	return n;
}

/* After ck_spinlock_mcs_unlock() returns no other waiter refers to the node
 * (a late successor has linked itself in first), so it can go back. */
static void mcs_unlock(struct mcs_state *s, struct mcs_node *n)
{
	tally__tsan_pre_unlock(&s->queue);
	ck_spinlock_mcs_unlock(&s->queue, &n->node);
	tally__tsan_post_unlock(&s->queue);
	tally__qnode_release(&n->busy);
}

static int mcs_add(void *state, int64_t delta)
{
	struct mcs_state *s = state;
	struct mcs_node *n = mcs_lock(s);

	tally__word_add(&s->value, delta);
	mcs_unlock(s, n);
	return 0;
}

static int mcs_add_cs(void *state, int64_t delta, void (*inside)(void *),
		      void *arg)
{
	struct mcs_state *s = state;
	struct mcs_node *n = mcs_lock(s);

	tally__word_add(&s->value, delta);
	inside(arg);
	mcs_unlock(s, n);
	return 0;
}

/* Without the lock: see tally__word in src/backend.h. */
static int mcs_get(void *state, int64_t *value)
{
	return tally__word_get(&((struct mcs_state *)state)->value, value);
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
	.state_size = sizeof(struct mcs_state),
	.state_align = _Alignof(struct mcs_state),
	.init = mcs_init,
	.add = mcs_add,
	.add_cs = mcs_add_cs,
	.get = mcs_get,
	.destroy = mcs_destroy,
#endif
};
