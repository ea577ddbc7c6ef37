/* The queue-lock node pool's size and its slow claim (src/qnodes.h). */
#include "qnodes.h"
#include "arena.h"
#include "life.h"

#include <sched.h>

unsigned tally__qnodes(void)
{
	unsigned cpus = tally__possible_cpus();

	if (cpus >= TALLY_QNODES_MAX / 4)
		return TALLY_QNODES_MAX;
	return cpus * 4 < TALLY_QNODES_MIN ? TALLY_QNODES_MIN : cpus * 4;
}

int tally__qnode_wait(char *busy, size_t stride, unsigned count, unsigned *hint,
		      struct tally__waiter *w)
{
	for (;;) {
		uint64_t dead;
		int64_t sleep;

		/* No holder to look at: a node comes free when an add
		 * unlocks, or an unlock passes one that left. */
		if (tally__wait_check(w, NULL, &dead, &sleep) < 0) {
			tally__explain_set(
				TALLY_ETIMEDOUT,
				"the %s lock was not taken in %.3f s; nothing was added: all %u of its queue nodes stayed held by adds that wait, or that gave up behind a holder that does not unlock",
				w->lock, (double)w->k->wait_ns / 1e9, count);
			return TALLY_ETIMEDOUT;
		}
		sched_yield(); /* every node is in the queue */
		int i = tally__qnode_pass(busy, stride, count, 0, hint);
		if (i >= 0)
			return i;
	}
}
