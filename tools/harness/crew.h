/*
 * A crew: the workers of one run, as threads or as forked processes, and
 * everything they share.  The one way tally's workloads, `tally bench`,
 * `tally stress` and the tests start workers.
 *
 * One anonymous shared mapping holds it all: the crew's own bookkeeping
 * (thread ids, pids, exit statuses), a start gate, an area the caller lays
 * out (crew_shared), and one slot per worker (crew_slot), each on cache lines
 * of its own.  No heap: a forked worker exits holding a copy of the parent's
 * heap, and memory checkers would report a block only its parent frees.
 *
 * The life of a crew, from the coordinator's side:
 *
 *	crew_create()	map, zeroed
 *	crew_start()	spawn every worker; each says it is ready and waits
 *			at the gate
 *	crew_wait_ready(), then crew_go()	all start together
 *	... watch the slots; crew_reap() notes processes that ended ...
 *	crew_finish()	join or reap them all (or give up on stuck ones)
 *	crew_destroy()
 */
#ifndef TALLY_HARNESS_CREW_H
#define TALLY_HARNESS_CREW_H

#include <stddef.h>
#include <stdint.h>

enum crew_mode { CREW_THREADS, CREW_PROCESSES };

#define CREW_MAX_WORKERS 1024u
/* Slots and the shared area start on a line of this size and are padded to
 * one: two 64-byte lines, which x86's adjacent-line prefetcher pairs. */
#define CREW_LINE 128u

/* crew_config.flags; they apply to processes (threads share the
 * coordinator's signals and parent). */
#define CREW_IGNORE_SIGINT   1u /* the coordinator handles Ctrl-C */
#define CREW_DIE_WITH_PARENT 2u /* SIGKILLed when the coordinator dies */

struct crew;

struct crew_config {
	enum crew_mode mode;
	unsigned workers;   /* 1 to CREW_MAX_WORKERS */
	size_t shared_size; /* bytes at crew_shared(), zeroed; may be 0 */
	size_t slot_size;   /* bytes at each crew_slot(), zeroed; may be 0 */
	unsigned flags;	    /* CREW_* above */
	/* What worker k does before it says it is ready (NULL: nothing),
	 * and once the gate opens; arg is passed as is. */
	void (*prepare)(struct crew *c, unsigned k, void *arg);
	void (*work)(struct crew *c, unsigned k, void *arg);
	void *arg;
};

const char *crew_mode_name(enum crew_mode mode);

/* Map a crew for cfg (copied).  0, or -1 with errno set (EINVAL for a
 * worker count out of range). */
int crew_create(struct crew **out, const struct crew_config *cfg);
void *crew_shared(const struct crew *c);
void *crew_slot(const struct crew *c, unsigned k);

/*
 * Spawn every worker.  Each one counts itself ready and waits at the gate.
 * Returns 0, or -1 with errno set when one could not be started: then the
 * gate is closed for good (crew_cancel), the workers already started have
 * left without working and are joined, and the crew can only be destroyed.
 */
int crew_start(struct crew *c);

/*
 * Why crew_start() failed with errno err, for a message: strerror(err), and
 * for EAGAIN, which limit refuses another process or thread (RLIMIT_NPROC,
 * `ulimit -u`, with its value; else the pids cgroup or the kernel's), since
 * "Resource temporarily unavailable" alone does not say.  Written into buf
 * (256 bytes fit every answer); returns buf.
 */
const char *crew_start_error(enum crew_mode mode, int err, char *buf,
			     size_t size);

/* Workers started: all of them after crew_start() returned 0, else the
 * number of the one that could not be. */
unsigned crew_started(const struct crew *c);

/* Wait until every worker is at the gate.  0; or -1 when a process ended
 * before it got there, or at the monotonic time deadline_ns (0: none). */
int crew_wait_ready(struct crew *c, uint64_t deadline_ns);

/* Open the gate: every worker calls work().  Release: what the coordinator
 * wrote before is seen by the workers. */
void crew_go(struct crew *c);
/* Open the gate the other way: the workers leave without working. */
void crew_cancel(struct crew *c);

/* Worker k's work() returned: acquire, so its slot is final. */
int crew_finished(const struct crew *c, unsigned k);
/* Workers finished, or (processes) ended in any other way. */
unsigned crew_count_done(const struct crew *c);

/*
 * Processes: collect those that ended (block: wait for every one); then
 * crew_outcome() says how.  Threads: nothing to do (crew_finish joins them).
 */
void crew_reap(struct crew *c, int block);

/* SIGKILL process k if it is still there (not collected).  0 when a signal
 * was sent; its outcome is then CREW_KILLED ever after. */
int crew_kill(struct crew *c, unsigned k);

/* How worker k's part ended, as far as the coordinator knows. */
enum crew_end {
	CREW_RUNNING, /* not ended (or not yet collected, or abandoned) */
	CREW_DONE,    /* work() returned; a process then exited 0 */
	CREW_FAILED,  /* a process: work() returned, then it exited badly
		       * (a memory checker's error exit, a signal) */
	CREW_KILLED,  /* SIGKILLed by crew_kill() */
	CREW_DIED,    /* a process that ended before its work() returned,
		       * not by crew_kill(): a crash, a signal from
		       * elsewhere, out of memory, an exit of its own */
};

#define CREW_STATUS_UNKNOWN (-1)
struct crew_outcome {
	enum crew_end end;
	/* Processes that ended: the status as from waitpid, or
	 * CREW_STATUS_UNKNOWN when waitpid could not tell (WIFEXITED() calls
	 * it abnormal); threads: 0. */
	int status;
};

/* Worker k's outcome: the one question the coordinator asks of each. */
struct crew_outcome crew_outcome(const struct crew *c, unsigned k);

/* SIGKILL every process still there. */
void crew_kill_all(struct crew *c);

/*
 * Wait for every worker to end.  give_up: workers that cannot end (spinning
 * on a lock whose holder died) are not waited for: processes are killed
 * first, threads are abandoned.  Returns 1 when threads were abandoned: they
 * may still use the crew, their arguments and the counter, so none of it may
 * be freed (crew_destroy then keeps the mapping); else 0.
 */
int crew_finish(struct crew *c, int give_up);

/* Unmap the crew, unless threads were abandoned. */
void crew_destroy(struct crew *c);

#endif /* TALLY_HARNESS_CREW_H */
