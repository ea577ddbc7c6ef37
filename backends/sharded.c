/* sharded: one counter spread over per-worker cache-line slots, summed on
 * read (LongAdder-style); far faster than one word under contention. */
#include "arena.h"
#include "backend.h"

#include <pthread.h>
#include <stdatomic.h>

/*
 * One padded cache line per slot, a slot per possible CPU of the host
 * (src/arena.h), at most SLOTS_MAX: more workers than CPUs never run at once.
 * Each thread (or forked process) takes the next slot round-robin on its
 * first add, so that up to `slots` workers never share a line and their adds
 * never bounce one between cores.  More workers share slots, which stays
 * correct (every slot is atomic) and merely contends again.  The count is
 * recorded in the state: a named counter made on a host with more or fewer
 * CPUs is read and added to as it was made.
 */
#define SLOTS_MAX 16u
/* What an opener accepts from another library's host: any count that a
 * host could have had. */
#define SLOTS_JOIN_MAX 8192u

struct slot {
	_Alignas(TALLY_CACHELINE) _Atomic uint64_t value;
};

struct sharded_state {
	_Alignas(TALLY_CACHELINE) _Atomic unsigned next; /* slot to hand out */
	uint32_t slots; /* written by init only */
	struct slot slot[];
};

static unsigned host_slots(void)
{
	unsigned n = tally__possible_cpus();

	return n < SLOTS_MAX ? n : SLOTS_MAX;
}

static size_t sharded_size(unsigned flags)
{
	(void)flags; /* the same everywhere: the state is all of it */
	return sizeof(struct sharded_state) +
	       (size_t)host_slots() * sizeof(struct slot);
}

/* This thread's slot in the counter it last used.  A thread alternating
 * between two sharded counters re-picks each time: still correct. */
static TALLY_THREAD_LOCAL struct {
	const void *state;
	unsigned slot;
} mine;

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A forked child must not keep its parent's slot: it would share that line
 * with the parent, and every forked worker would share it with the others. */
static void forget_slot(void)
{
	mine.state = NULL;
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, forget_slot);
}

static int sharded_init(void *state, int64_t initial, unsigned flags,
			const char *options)
{
	struct sharded_state *s = state;

	(void)flags; /* atomics work unchanged in shared memory */
	(void)options;
	s->slots = host_slots();
	for (unsigned i = 0; i < s->slots; i++)
		atomic_init(&s->slot[i].value, 0);
	atomic_init(&s->slot[0].value, (uint64_t)initial);
	atomic_init(&s->next, 0);
	return 0;
}

/* A named counter, perhaps from a library on another host: its count of
 * slots must be one a host could have and fill the bytes it came in. */
static int sharded_join(const void *state, size_t size)
{
	const struct sharded_state *s = state;
	uint32_t n = s->slots;

	if (n >= 1 && n <= SLOTS_JOIN_MAX &&
	    sizeof(*s) + (size_t)n * sizeof(struct slot) == size)
		return 0;
	tally__explain_set(
		TALLY_EBADOBJECT,
		"its sharded state records %lu slots in %zu bytes: 1 to %u slots of %zu bytes after %zu are readable",
		(unsigned long)n, size, SLOTS_JOIN_MAX, sizeof(struct slot),
		sizeof(*s));
	return TALLY_EBADOBJECT;
}

static unsigned pick_slot(struct sharded_state *s)
{
	pthread_once(&atfork_once, register_atfork);
	mine.slot =
		atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed) %
		s->slots;
	mine.state = s;
	return mine.slot;
}

/* acq_rel/acquire for the same reason as backends/atomic.c: order memory
 * like the lock-based backends do. */
static int sharded_add(void *state, int64_t delta, const struct tally__knobs *k)
{
	(void)k; /* no lock to wait for */
	struct sharded_state *s = state;
	/* The slot is checked against this counter's count: another counter
	 * mapped later at the same address (a named one reopened) may have
	 * fewer slots than the one the slot was picked in. */
	unsigned i = mine.state == s && mine.slot < s->slots ? mine.slot
							     : pick_slot(s);

	atomic_fetch_add_explicit(&s->slot[i].value, (uint64_t)delta,
				  memory_order_acq_rel);
	return 0;
}

/*
 * The sum is exact once the adds have finished.  While adds run it is not an
 * atomic snapshot: slots are read one after another, so it may be a value
 * the counter never held at any single instant (as with Java's LongAdder).
 */
static int sharded_get(void *state, int64_t *value)
{
	struct sharded_state *s = state;
	uint64_t sum = 0;

	for (unsigned i = 0; i < s->slots; i++)
		sum += atomic_load_explicit(&s->slot[i].value,
					    memory_order_acquire);
	*value = (int64_t)sum;
	return 0;
}

const struct tally_backend tally_backend_sharded = {
	.name = "sharded",
	.summary =
		"per-worker cache-line slots summed on read; fastest under contention",
	.caps = TALLY_CAP_LOCKFREE | TALLY_CAP_PSHARED | TALLY_CAP_NAMED,
	.state_size = sizeof(struct sharded_state) + sizeof(struct slot),
	.state_align = _Alignof(struct sharded_state),
	.size = sharded_size,
	.join = sharded_join,
	.init = sharded_init,
	.add = sharded_add,
	.get = sharded_get,
};
