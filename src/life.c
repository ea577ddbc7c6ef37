/* Liveness of the processes that share a counter, from the kernel's file
 * locks, and the bounded wait of every lock backend (see src/life.h). */
#include "life.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

_Atomic unsigned tally__fork_epoch = 1;

/* Slot i's lock is on byte LIFE_BYTE + i of the counter's file: past its
 * end (a lock may cover bytes a file does not have), where no read, write
 * or mapping of the counter ever goes.  Below 2^31, for a 32-bit off_t. */
#define LIFE_BYTE 0x40000000

/* Every fork moves the epoch on in the child: its handles claim again. */
static void on_fork_child(void)
{
	atomic_fetch_add_explicit(&tally__fork_epoch, 1, memory_order_relaxed);
}

static void install_atfork(void)
{
	pthread_atfork(NULL, NULL, on_fork_child);
}

static int slot_lock(int fd, unsigned i, short type, int cmd, struct flock *fl)
{
	*fl = (struct flock){
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = (off_t)LIFE_BYTE + (off_t)i,
		.l_len = 1,
	};
	/* pid must be 0 for the OFD commands. */
	return fcntl(fd, cmd, fl);
}

/* Claim the first free slot: its lock first, then a new generation (so a
 * checker that still sees the old generation with the lock held takes the
 * old claimant for alive a moment longer: never for dead too early). */
static uint64_t claim(struct tally__life *l)
{
	for (unsigned i = 0; i < TALLY_LIFE_SLOTS; i++) {
		struct tally__life_slot *s = &l->table->slot[i];
		struct flock fl;

		if (slot_lock(l->fd, i, F_WRLCK, F_OFD_SETLK, &fl) != 0) {
			if (errno == EAGAIN || errno == EACCES)
				continue; /* another process's slot */
			return 0;	  /* no OFD locks here: no token */
		}
		uint32_t gen = atomic_fetch_add_explicit(&s->gen, 1,
							 memory_order_seq_cst) +
			       1;
		if (gen == 0) /* 0 is no token: skip it */
			gen = atomic_fetch_add_explicit(&s->gen, 1,
							memory_order_seq_cst) +
			      1;
		atomic_store_explicit(&s->pid, (int32_t)getpid(),
				      memory_order_relaxed);
		return ((uint64_t)(i + 1) << 32) | gen;
	}
	return 0; /* every slot taken: this process's holds are not known */
}

void tally__life_start(struct tally__life *l, struct tally__life_table *table,
		       int fd)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, install_atfork);
	l->table = table;
	l->fd = fd;
	atomic_init(&l->busy, 0);
	atomic_init(&l->token, fd >= 0 ? claim(l) : 0);
	atomic_init(&l->epoch, atomic_load_explicit(&tally__fork_epoch,
						    memory_order_relaxed));
}

void tally__life_stop(struct tally__life *l)
{
	/* Closing the description drops the slot's lock (unless a forked
	 * child still holds the inherited one: then that child is what the
	 * slot's lock stands for, which claims nothing). */
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

/* A description of our own of the file behind fd (fork shared the old
 * one with the parent), or -1. */
static int reopen(int fd)
{
	char proc[64];

	if (fd < 0)
		return -1;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	return open(proc, O_RDWR | O_CLOEXEC);
}

/*
 * The first use after a fork: claim again, once per handle and epoch.  One
 * thread does it (busy = epoch + 1); others yield until it is done.  A busy
 * of an older epoch belongs to a thread the fork left behind: take it.
 */
uint64_t tally__life_reclaim(struct tally__life *l)
{
	unsigned epoch =
		atomic_load_explicit(&tally__fork_epoch, memory_order_relaxed);

	for (;;) {
		if (atomic_load_explicit(&l->epoch, memory_order_acquire) ==
		    epoch)
			return atomic_load_explicit(&l->token,
						    memory_order_relaxed);
		unsigned busy =
			atomic_load_explicit(&l->busy, memory_order_relaxed);
		if (busy != epoch + 1 &&
		    atomic_compare_exchange_strong_explicit(
			    &l->busy, &busy, epoch + 1, memory_order_acquire,
			    memory_order_relaxed))
			break;
		sched_yield();
	}
	int old = l->fd;
	l->fd = reopen(old);
	if (old >= 0)
		close(old);
	uint64_t token = l->fd >= 0 ? claim(l) : 0;
	atomic_store_explicit(&l->token, token, memory_order_relaxed);
	/* Release: the token and fd are seen by whoever sees the epoch. */
	atomic_store_explicit(&l->epoch, epoch, memory_order_release);
	return token;
}

enum tally__liveness tally__alive(const struct tally__knobs *k, uint64_t token,
				  int32_t *pid)
{
	struct tally__life *l = k->life;
	uint64_t slot = (token >> 32) - 1;
	uint32_t gen = (uint32_t)token;
	struct flock fl;

	*pid = 0;
	if (token == 0 || l == NULL)
		return TALLY_UNKNOWN;
	if (token == tally__me(k)) /* after a fork, claims again first */
		return TALLY_ALIVE;
	/* The token came from shared memory: a slot out of range is no
	 * claim this table ever made. */
	if (l->fd < 0 || slot >= TALLY_LIFE_SLOTS)
		return TALLY_UNKNOWN;
	struct tally__life_slot *s = &l->table->slot[slot];
	*pid = atomic_load_explicit(&s->pid, memory_order_relaxed);
	/* A slot claimed again: its lock was free, so the claimant that made
	 * the token had gone. */
	if (atomic_load_explicit(&s->gen, memory_order_seq_cst) != gen)
		return TALLY_DEAD;
	if (slot_lock(l->fd, (unsigned)slot, F_WRLCK, F_OFD_GETLK, &fl) != 0)
		return TALLY_UNKNOWN;
	if (fl.l_type == F_UNLCK)
		return TALLY_DEAD; /* nobody holds it: the claimant is gone */
	return atomic_load_explicit(&s->gen, memory_order_seq_cst) == gen
		       ? TALLY_ALIVE
		       : TALLY_DEAD;
}

uint64_t tally__id32_token(const struct tally__knobs *k, uint32_t id)
{
	struct tally__life *l = k->life;
	uint32_t slot = (id >> TALLY__ID_GEN_BITS) - 1;

	/* The id came from shared memory: check its slot's range. */
	if (l == NULL || id <= TALLY__ID_UNKNOWN || slot >= TALLY_LIFE_SLOTS)
		return 0;
	uint32_t now = atomic_load_explicit(&l->table->slot[slot].gen,
					    memory_order_seq_cst);
	uint32_t gen = (now & ~TALLY__ID_GEN_MASK) | (id & TALLY__ID_GEN_MASK);
	return ((uint64_t)slot + 1) << 32 | gen;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* When to look at the holder: 1 ms into a wait (a live holder is nearly
 * always done by then), then every 20 ms (a look is a system call). */
#define FIRST_LOOK_NS 1000000u
#define NEXT_LOOK_NS  20000000u

/* "pid 123, as its own PID namespace numbers it", or nothing. */
static const char *pid_text(char *buf, size_t size, int32_t pid)
{
	if (pid > 0)
		snprintf(buf, size,
			 " (pid %ld, as its own PID namespace numbers it)",
			 (long)pid);
	else
		buf[0] = '\0';
	return buf;
}

static int timed_out(const struct tally__waiter *w, const tally__owner *owner,
		     uint64_t holder, enum tally__liveness live, int32_t pid,
		     uint64_t waited)
{
	char p[80];
	double s = (double)waited / 1e9;

	if (owner == NULL || w->k->life == NULL)
		tally__explain_set(
			TALLY_ETIMEDOUT,
			"the %s lock was not taken in %.3f s; nothing was added",
			w->lock, s);
	else if (holder == 0 || live == TALLY_UNKNOWN)
		tally__explain_set(
			TALLY_ETIMEDOUT,
			"the %s lock was not taken in %.3f s; nothing was added.  Its holder is not known: it had not yet recorded itself (it may have died in the instant after it took the lock), or its process has no slot in the counter's table",
			w->lock, s);
	else
		tally__explain_set(
			TALLY_ETIMEDOUT,
			"the %s lock was not taken in %.3f s; nothing was added.  It is held by a live process%s",
			w->lock, s, pid_text(p, sizeof(p), pid));
	return TALLY_ETIMEDOUT;
}

int tally__wait_check(struct tally__waiter *w, tally__owner *owner,
		      uint64_t *dead, int64_t *sleep_ns)
{
	uint64_t now = now_ns();
	int64_t bound = w->k->wait_ns;

	if (w->start == 0) {
		w->start = now;
		w->next_look = now + FIRST_LOOK_NS;
	}
	uint64_t waited = now - w->start;
	int over = bound >= 0 && waited >= (uint64_t)bound;
	/* Look at the holder when it is time, and always before giving up:
	 * a dead holder is taken over, not waited out. */
	if (owner != NULL && (now >= w->next_look || over)) {
		uint64_t holder =
			atomic_load_explicit(owner, memory_order_relaxed);
		int32_t pid = 0;
		enum tally__liveness live =
			holder != 0 ? tally__alive(w->k, holder, &pid)
				    : TALLY_UNKNOWN;

		w->next_look = now + NEXT_LOOK_NS;
		if (live == TALLY_DEAD) {
			*dead = holder;
			return TALLY__WAIT_DEAD;
		}
		if (over)
			return timed_out(w, owner, holder, live, pid, waited);
	} else if (over) {
		return timed_out(w, NULL, 0, TALLY_UNKNOWN, 0, waited);
	}
	int64_t sleep = owner != NULL ? (int64_t)(w->next_look - now)
				      : (int64_t)NEXT_LOOK_NS;
	if (bound >= 0 && (int64_t)((uint64_t)bound - waited) < sleep)
		sleep = (int64_t)((uint64_t)bound - waited);
	*sleep_ns = sleep;
	return TALLY__WAIT_ON;
}

int tally__holder_died(const struct tally__waiter *w, uint64_t dead)
{
	char p[80];
	int32_t pid = 0;

	tally__alive(w->k, dead, &pid);
	tally__explain_set(
		TALLY_ENOTRECOVERABLE,
		"the process that held the %s lock%s died holding it, and a queue lock cannot be taken over from it: the counter is unusable (remove it and make it again; the mutex and adaptive backends recover from this)",
		w->lock, pid_text(p, sizeof(p), pid));
	return TALLY_ENOTRECOVERABLE;
}
