/* Queue-lock nodes that live inside the counter's state, for the mcs and clh
 * backends. */
#ifndef TALLY_QNODES_H
#define TALLY_QNODES_H

#include "backend.h"

#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>

/*
 * A queue lock (MCS, CLH) has each waiter spin on a node of its own, and
 * other waiters write into that node.  So the node must be where every
 * waiter can reach it: on the waiter's stack only works for threads of one
 * process, and CLH hands nodes from one waiter to the next.  tally keeps a
 * pool of nodes inside the counter's state -- in shared memory when the
 * counter is -- and each add claims one for the length of the operation.
 * More concurrent adds than nodes wait (yielding) for one to come free, so
 * any number of workers stays correct.  A claim tries the node this thread
 * used last first, which is nearly always free again: no contention on the
 * pool in the common case.
 */
#define TALLY_QNODES 64

/* Claim a node: `busy` points at the first node's flag, nodes are `stride`
 * bytes apart.  Returns the index. */
static inline unsigned tally__qnode_claim(char *busy, size_t stride,
					  unsigned *hint)
{
	unsigned i = *hint % TALLY_QNODES;

	for (unsigned tries = 1;; tries++, i = (i + 1) % TALLY_QNODES) {
		_Atomic int *flag = (_Atomic int *)(busy + i * stride);

		/* Acquire: the previous user's writes to the node (its
		 * release below) happen before ours. */
		if (!atomic_load_explicit(flag, memory_order_relaxed) &&
		    !atomic_exchange_explicit(flag, 1, memory_order_acquire)) {
			*hint = i;
			return i;
		}
		if (tries % TALLY_QNODES == 0)
			sched_yield(); /* every node is in a queue */
	}
}

static inline void tally__qnode_release(_Atomic int *flag)
{
	atomic_store_explicit(flag, 0, memory_order_release);
}

#endif /* TALLY_QNODES_H */
