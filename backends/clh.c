/* clh: a CLH queue lock that a waiter can leave: FIFO-fair, each waiter spins
 * on its predecessor's node, and nodes pass from one waiter to the next. */
#include "backend.h"
#include "life.h"
#include "qnodes.h"

#include <stdatomic.h>
#include <stdint.h>

/*
 * Craig's, Landin's and Hagersten's queue lock, with the abandonment of
 * Scott's CLH-try lock ("Non-blocking timeout in scalable queue-based spin
 * locks", PODC 2002), written with C11 atomics so that ThreadSanitizer
 * checks its orders itself.  Concurrency Kit's CLH lock has no way for a
 * waiter to leave: one that gave up would leave its successor spinning on a
 * node nobody will ever release.
 *
 * The queue is a chain of nodes, by index into the pool in the state (so it
 * holds across processes that map the state at different addresses).  A
 * locker swaps its node in as the tail and spins on its predecessor's
 * `state`:
 *   WAITING   its owner is queued;  HOLDING  its owner holds the lock;
 *   RELEASED  its owner unlocked: the lock is the successor's;
 *   LEFT      its owner gave up: wait on its `pred` instead.
 * Each node is freed by whoever reads its last state -- its successor, or
 * its owner when it leaves with no successor (it swaps the tail back) -- so
 * exactly once.  A waiter also looks at its predecessor's token
 * (src/life.h): if the kernel says that process is gone, a node it left
 * HOLDING is a lock to take over (TALLY_RECOVERED), and one it left WAITING
 * is passed as if LEFT.  One that died between swapping itself in and
 * recording its predecessor cannot be passed: TALLY_ENOTRECOVERABLE.  The
 * critical section is one store of the value word, made or not, so what a
 * dead holder leaves is consistent.
 */
enum { WAITING, HOLDING, RELEASED, LEFT };
#define NO_PRED UINT32_MAX

/* Each node on its own line: its successor spins on `state`. */
struct clh_node {
	_Alignas(TALLY_CACHELINE) _Atomic uint32_t state;
	_Atomic uint32_t pred; /* the node its owner waits on, or NO_PRED */
	_Alignas(8) _Atomic uint64_t token; /* its owner's, 0 when not known */
	_Atomic int busy;		    /* claimed from the pool */
};

struct clh_state {
	_Alignas(TALLY_CACHELINE) _Atomic uint32_t tail;
	/* Written only by the holder, beside the tail. */
	_Alignas(8) tally__word value;
	/* Nodes in the pool: tally__qnodes() at init, and one more for the
	 * queue's tail when it is idle. */
	unsigned count;
	struct clh_node nodes[];
};

static TALLY_THREAD_LOCAL unsigned hint;

static int clh_init(void *state, int64_t initial, unsigned flags,
		    const char *options)
{
	struct clh_state *s = state;

	(void)flags; /* the nodes are in the state, shared when it is */
	(void)options;
	s->count = tally__qnodes() + 1;
	for (unsigned i = 0; i < s->count; i++) {
		atomic_init(&s->nodes[i].state, RELEASED);
		atomic_init(&s->nodes[i].pred, NO_PRED);
		atomic_init(&s->nodes[i].token, 0);
		atomic_init(&s->nodes[i].busy, 0);
	}
	/* The queue starts with one released node as its tail, in use like
	 * any node a holder left behind: the pool plus the nodes the queue
	 * refers to always add up to the count. */
	atomic_init(&s->nodes[s->count - 1].busy, 1);
	atomic_init(&s->tail, s->count - 1);
	tally__word_init(&s->value, initial);
	return 0;
}

static void free_node(struct clh_state *s, uint32_t i)
{
	tally__qnode_release(&s->nodes[i].busy);
}

/* Our bound passed while we wait on p: leave the queue.  With nobody behind
 * us, swap the tail back to p and free our node; else mark it LEFT, with p
 * in its pred, and our successor passes it (and frees it). */
static void leave(struct clh_state *s, uint32_t n, uint32_t p)
{
	uint32_t self = n;

	if (atomic_compare_exchange_strong_explicit(&s->tail, &self, p,
						    memory_order_release,
						    memory_order_relaxed)) {
		free_node(s, n);
		return;
	}
	atomic_store_explicit(&s->nodes[n].state, LEFT, memory_order_release);
}

/* Node n, queued behind node p, waits for the lock: 0 or TALLY_RECOVERED
 * with it held, or TALLY_ETIMEDOUT (left) or TALLY_ENOTRECOVERABLE. */
static TALLY_NOINLINE int clh_wait(struct clh_state *s, uint32_t n, uint32_t p,
				   struct tally__waiter *w)
{
	const struct tally__knobs *k = w->k;
	struct clh_node *me = &s->nodes[n];
	int bounded = k->life != NULL || k->wait_ns >= 0;
	int recovered = 0, rc;
	uint64_t dead;

	for (;;) {
		struct clh_node *pn = &s->nodes[p];
		uint32_t st;
		while ((st = atomic_load_explicit(
				&pn->state, memory_order_acquire)) == WAITING ||
		       st == HOLDING) {
			tally__cpu_relax();
			if (!bounded)
				continue;
			rc = tally__wait_spin(w, &pn->token, &dead);
			if (rc == TALLY__WAIT_DEAD)
				break;
			if (rc < 0) {
				leave(s, n, p);
				return rc;
			}
		}
		if (st == WAITING || st == HOLDING) {
			/* Its process died; what it left is final. */
			st = atomic_load_explicit(&pn->state,
						  memory_order_acquire);
			if (st == HOLDING) {
				st = RELEASED; /* died holding the lock */
				recovered = 1;
			} else if (st == WAITING) {
				if (atomic_load_explicit(
					    &pn->pred, memory_order_relaxed) ==
				    NO_PRED) {
					leave(s, n, p);
					return tally__holder_died(w, dead);
				}
				st = LEFT; /* died waiting: pass it */
			}
		}
		if (st == RELEASED) {
			atomic_store_explicit(&me->state, HOLDING,
					      memory_order_relaxed);
			free_node(s, p);
			return recovered ? TALLY_RECOVERED : 0;
		}
		/* LEFT: wait on the node it waited on, recorded as ours
		 * before p is freed (a successor that finds us dead must
		 * never follow a freed node). */
		uint32_t q =
			atomic_load_explicit(&pn->pred, memory_order_relaxed);
		atomic_store_explicit(&me->pred, q, memory_order_relaxed);
		free_node(s, p);
		p = q;
	}
}

/* 0 or TALLY_RECOVERED with the lock held by node *out, or an error.
 * Inline up to the wait: a predecessor already released is the free lock. */
static inline int clh_lock(struct clh_state *s, const struct tally__knobs *k,
			   uint32_t *out)
{
	struct tally__waiter w = TALLY__WAITER(k, "clh");
	int claimed =
		tally__qnode_claim((char *)&s->nodes[0].busy,
				   sizeof(s->nodes[0]), s->count, &hint, &w);

	if (claimed < 0)
		return claimed;
	uint32_t n = (uint32_t)claimed;
	struct clh_node *me = &s->nodes[n];

	*out = n;
	atomic_store_explicit(&me->token, tally__me(k), memory_order_relaxed);
	atomic_store_explicit(&me->pred, NO_PRED, memory_order_relaxed);
	atomic_store_explicit(&me->state, WAITING, memory_order_relaxed);
	/* Release: a successor that finds us sees the stores above; acquire:
	 * we see our predecessor's. */
	uint32_t p =
		atomic_exchange_explicit(&s->tail, n, memory_order_acq_rel);
	atomic_store_explicit(&me->pred, p, memory_order_relaxed);
	if (atomic_load_explicit(&s->nodes[p].state, memory_order_acquire) !=
	    RELEASED)
		return clh_wait(s, n, p, &w);
	atomic_store_explicit(&me->state, HOLDING, memory_order_relaxed);
	free_node(s, p);
	return 0;
}

/* The node stays in the queue as the next locker's predecessor: it frees
 * it.  This store is our last touch of the node. */
static void clh_unlock(struct clh_state *s, uint32_t n)
{
	atomic_store_explicit(&s->nodes[n].state, RELEASED,
			      memory_order_release);
}

static int clh_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	struct clh_state *s = state;
	uint32_t n;
	int rc = clh_lock(s, k, &n);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	clh_unlock(s, n);
	return rc;
}

static int clh_add_cs(void *state, int64_t delta, const struct tally__knobs *k,
		      void (*inside)(void *), void *arg)
{
	struct clh_state *s = state;
	uint32_t n;
	int rc = clh_lock(s, k, &n);

	if (rc < 0)
		return rc;
	tally__word_add(&s->value, delta);
	inside(arg);
	clh_unlock(s, n);
	return rc;
}

/* Without the lock: see tally__word in src/backend.h. */
static int clh_get(void *state, int64_t *value)
{
	return tally__word_get(&((struct clh_state *)state)->value, value);
}

/* The pool follows the host (src/qnodes.h). */
static size_t clh_size(unsigned flags)
{
	(void)flags;
	return sizeof(struct clh_state) +
	       (tally__qnodes() + 1) * sizeof(struct clh_node);
}

/* The state is shared by fork only (not TALLY_CAP_NAMED): the nodes are
 * linked by index, so a named counter could be, but its bytes would then
 * come from other users and every index would need checking first. */
const struct tally_backend tally_backend_clh = {
	.name = "clh",
	.summary =
		"CLH queue lock a waiter can leave; FIFO-fair, nodes passed on",
	.caps = TALLY_CAP_LOCKED | TALLY_CAP_SPINNING | TALLY_CAP_FAIR |
		TALLY_CAP_PSHARED,
	.state_size = sizeof(struct clh_state) +
		      (TALLY_QNODES_MIN + 1) * sizeof(struct clh_node),
	.state_align = _Alignof(struct clh_state),
	.size = clh_size,
	.init = clh_init,
	.add = clh_add,
	.add_cs = clh_add_cs,
	.get = clh_get,
};
