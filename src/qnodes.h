/* Queue-lock nodes that live inside the counter's state, for the mcs and clh
 * backends. */
#ifndef TALLY_QNODES_H
#define TALLY_QNODES_H

#include "backend.h"

#include <stdatomic.h>
#include <stddef.h>

struct tally__waiter;

/*
 * A queue lock (MCS, CLH) has each waiter spin on a node of its own, and
 * other waiters write into that node.  So the node must be where every
 * waiter can reach it: on the waiter's stack only works for threads of one
 * process, and CLH hands nodes from one waiter to the next.  tally keeps a
 * pool of nodes inside the counter's state -- in shared memory when the
 * counter is -- and each add claims one for the length of the operation.
 *
 * An add holds a node from its claim until its unlock (MCS), or until its
 * successor frees it (CLH); a waiter whose bound passed leaves its node in
 * the queue until an unlock passes it.  So the pool bounds the adds that can
 * be queued at once, not the adds that run: more than that wait (yielding)
 * for a node to come free, outside the queue's order, and stay correct.  At
 * most one add per CPU runs at a time, but a preempted waiter keeps its
 * node, so the pool follows the host: four nodes per possible CPU, at least
 * 16 (a small host oversubscribed), at most 256 -- 16 on a 2-CPU host, where
 * a constant 64 cost every counter 6 KiB it did not use.  A claim tries the
 * node this thread used last first, which is nearly always free again: no
 * contention on the pool in the common case.
 */
#define TALLY_QNODES_MIN 16u
#define TALLY_QNODES_MAX 256u

/* The nodes a new counter's pool has on this host. */
unsigned tally__qnodes(void);

/* The slow claim: every node was busy on a first pass.  Waits for one under
 * w's bound: its index, or TALLY_ETIMEDOUT (explained). */
int tally__qnode_wait(char *busy, size_t stride, unsigned count, unsigned *hint,
		      struct tally__waiter *w);

/* One pass over the pool from node `from`: the index of a node it claimed
 * (and *hint set to it), or -1 when every node was busy.  `busy` points at
 * the first node's flag, nodes are `stride` bytes apart. */
static inline int tally__qnode_pass(char *busy, size_t stride, unsigned count,
				    unsigned from, unsigned *hint)
{
	unsigned i = from < count ? from : 0;

	for (unsigned tries = 0; tries < count; tries++) {
		_Atomic int *flag = (_Atomic int *)(void *)(busy + i * stride);

		/* Acquire: the previous user's writes to the node (its
		 * release below) happen before ours. */
		if (!atomic_load_explicit(flag, memory_order_relaxed) &&
		    !atomic_exchange_explicit(flag, 1, memory_order_acquire)) {
			*hint = i;
			return (int)i;
		}
		if (++i == count)
			i = 0;
	}
	return -1;
}

/* Claim a node of `count`, starting from the one this thread used last.
 * Returns its index, or TALLY_ETIMEDOUT when none came free within w's
 * bound (the pool is full of adds that wait on a stopped holder, or that
 * left). */
static inline int tally__qnode_claim(char *busy, size_t stride, unsigned count,
				     unsigned *hint, struct tally__waiter *w)
{
	int i = tally__qnode_pass(busy, stride, count, *hint, hint);

	return i >= 0 ? i : tally__qnode_wait(busy, stride, count, hint, w);
}

static inline void tally__qnode_release(_Atomic int *flag)
{
	atomic_store_explicit(flag, 0, memory_order_release);
}

#endif /* TALLY_QNODES_H */
