/* Workers as threads or forked processes, started together at a gate. */
#include "crew.h"
#include "clock.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* What the coordinator knows of one worker. */
struct member {
	struct crew *c;
	unsigned k;
	_Atomic int finished; /* release: work() returned */
	int gone;	      /* a process collected by waitpid */
	int killed;	      /* crew_kill() sent it SIGKILL */
	int status;	      /* from waitpid, once gone */
	pid_t pid;	      /* a process; 0 before it is started */
	pthread_t thread;
};

/* At the start of the mapping; the shared area and the slots follow. */
struct crew {
	struct crew_config cfg;
	size_t size, shared_off, slots_off, stride;
	unsigned started;
	int abandoned;
	/* Its own line: the workers spin on it until the gate opens and never
	 * touch it after. */
	_Alignas(CREW_LINE) _Atomic unsigned ready;
	_Atomic int gate; /* 0 closed, 1 go, -1 cancelled */
	_Alignas(CREW_LINE) struct member m[];
};

static size_t lines(size_t n)
{
	return (n + CREW_LINE - 1) / CREW_LINE * CREW_LINE;
}

const char *crew_mode_name(enum crew_mode mode)
{
	return mode == CREW_THREADS ? "threads" : "processes";
}

int crew_create(struct crew **out, const struct crew_config *cfg)
{
	size_t n = cfg->workers;

	if (n == 0 || n > CREW_MAX_WORKERS || cfg->work == NULL) {
		errno = EINVAL;
		return -1;
	}
	size_t shared_off =
		lines(sizeof(struct crew) + n * sizeof(struct member));
	size_t slots_off = shared_off + lines(cfg->shared_size);
	size_t stride = lines(cfg->slot_size);
	size_t size = slots_off + n * stride;
	struct crew *c = mmap(NULL, size, PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (c == MAP_FAILED)
		return -1;
	c->cfg = *cfg;
	c->size = size;
	c->shared_off = shared_off;
	c->slots_off = slots_off;
	c->stride = stride;
	for (unsigned k = 0; k < n; k++) {
		c->m[k].c = c;
		c->m[k].k = k;
	}
	*out = c;
	return 0;
}

void *crew_shared(const struct crew *c)
{
	return (char *)c + c->shared_off;
}

void *crew_slot(const struct crew *c, unsigned k)
{
	return (char *)c + c->slots_off + (size_t)k * c->stride;
}

/* Every worker, thread or process: at the gate, then work. */
static void member_main(struct member *m)
{
	struct crew *c = m->c;
	int gate;

	if (c->cfg.prepare)
		c->cfg.prepare(c, m->k, c->cfg.arg);
	/* Release: what prepare() wrote is seen by a coordinator that sees
	 * this worker ready. */
	atomic_fetch_add_explicit(&c->ready, 1, memory_order_release);
	while ((gate = atomic_load_explicit(&c->gate, memory_order_acquire)) ==
	       0)
		sched_yield();
	if (gate > 0)
		c->cfg.work(c, m->k, c->cfg.arg);
	atomic_store_explicit(&m->finished, 1, memory_order_release);
}

static void *thread_main(void *arg)
{
	member_main(arg);
	return NULL;
}

static int spawn(struct crew *c, struct member *m)
{
	if (c->cfg.mode == CREW_THREADS) {
		int rc = pthread_create(&m->thread, NULL, thread_main, m);
		if (rc != 0) {
			errno = rc;
			return -1;
		}
		return 0;
	}
	pid_t parent = getpid(), child = fork();
	if (child < 0)
		return -1;
	if (child == 0) {
		if (c->cfg.flags & CREW_IGNORE_SIGINT)
			signal(SIGINT, SIG_IGN);
		if (c->cfg.flags & CREW_DIE_WITH_PARENT) {
			/* An orphan would spin until a stop flag that nobody
			 * is left to set.  The parent may have died before
			 * prctl: then the death signal will never come. */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(0);
		}
		member_main(m);
		_exit(0);
	}
	m->pid = child;
	return 0;
}

unsigned crew_started(const struct crew *c)
{
	return c->started;
}

int crew_start(struct crew *c)
{
	for (; c->started < c->cfg.workers; c->started++)
		if (spawn(c, &c->m[c->started]) != 0) {
			int saved = errno;
			crew_cancel(c);
			crew_finish(c, 0);
			errno = saved;
			return -1;
		}
	return 0;
}

/*
 * fork() and pthread_create() both fail with EAGAIN when RLIMIT_NPROC is
 * reached (it counts the threads of every process of the user), when the
 * caller's pids cgroup is full (pids.max), or at kernel.threads-max; the
 * kernel lets root past RLIMIT_NPROC, so for root it is one of the others.
 * glibc's pthread_create() also says EAGAIN when no memory was left for a
 * thread's stack.
 */
const char *crew_start_error(enum crew_mode mode, int err, char *buf,
			     size_t size)
{
	struct rlimit rl;
	const char *why = strerror(err);
	const char *stacks =
		mode == CREW_THREADS
			? "; or no memory was left for a thread's stack"
			: "";

	if (err != EAGAIN)
		snprintf(buf, size, "%s", why);
	else if (getrlimit(RLIMIT_NPROC, &rl) != 0)
		snprintf(
			buf, size,
			"%s: a process limit was hit: RLIMIT_NPROC ('ulimit -u') or the pids cgroup (pids.max)%s",
			why, stacks);
	else if (rl.rlim_cur == RLIM_INFINITY)
		snprintf(
			buf, size,
			"%s: a process limit was hit: RLIMIT_NPROC ('ulimit -u') is unlimited, so the pids cgroup (pids.max) or kernel.threads-max%s",
			why, stacks);
	else if (geteuid() == 0)
		snprintf(
			buf, size,
			"%s: a process limit was hit: RLIMIT_NPROC ('ulimit -u') is %llu but does not bind root, so the pids cgroup (pids.max) or kernel.threads-max%s",
			why, (unsigned long long)rl.rlim_cur, stacks);
	else
		snprintf(
			buf, size,
			"%s: a process limit was hit: RLIMIT_NPROC ('ulimit -u') allows this user %llu processes and threads in all, or the pids cgroup (pids.max) is full%s",
			why, (unsigned long long)rl.rlim_cur, stacks);
	return buf;
}

int crew_wait_ready(struct crew *c, uint64_t deadline_ns)
{
	while (atomic_load_explicit(&c->ready, memory_order_acquire) <
	       c->cfg.workers) {
		if (c->cfg.mode == CREW_PROCESSES) {
			crew_reap(c, 0);
			for (unsigned k = 0; k < c->started; k++)
				if (c->m[k].gone)
					return -1;
		}
		if (deadline_ns && harness_now_ns() >= deadline_ns)
			return -1;
		harness_sleep_ns(100000);
	}
	return 0;
}

void crew_go(struct crew *c)
{
	atomic_store_explicit(&c->gate, 1, memory_order_release);
}

void crew_cancel(struct crew *c)
{
	atomic_store_explicit(&c->gate, -1, memory_order_release);
}

int crew_finished(const struct crew *c, unsigned k)
{
	return atomic_load_explicit(&c->m[k].finished, memory_order_acquire);
}

unsigned crew_count_done(const struct crew *c)
{
	unsigned n = 0;

	for (unsigned k = 0; k < c->cfg.workers; k++)
		n += crew_finished(c, k) || c->m[k].gone;
	return n;
}

void crew_reap(struct crew *c, int block)
{
	if (c->cfg.mode != CREW_PROCESSES)
		return;
	for (unsigned k = 0; k < c->started; k++) {
		struct member *m = &c->m[k];
		pid_t p;

		if (m->gone)
			continue;
		while ((p = waitpid(m->pid, &m->status, block ? 0 : WNOHANG)) <
			       0 &&
		       errno == EINTR)
			;
		if (p == 0)
			continue;
		/* < 0 (ECHILD: not ours to wait for any more): gone, how
		 * unknown. */
		if (p < 0)
			m->status = CREW_STATUS_UNKNOWN;
		m->gone = 1;
	}
}

/* Never a pid that is 0 or collected: kill(0, ...) would signal tally's
 * whole process group, and a collected pid may be somebody else's now. */
int crew_kill(struct crew *c, unsigned k)
{
	struct member *m = &c->m[k];

	if (c->cfg.mode != CREW_PROCESSES || m->pid <= 0 || m->gone)
		return -1;
	kill(m->pid, SIGKILL);
	m->killed = 1;
	return 0;
}

struct crew_outcome crew_outcome(const struct crew *c, unsigned k)
{
	const struct member *m = &c->m[k];
	struct crew_outcome o = {CREW_RUNNING, 0};

	if (c->cfg.mode != CREW_PROCESSES) {
		if (crew_finished(c, k))
			o.end = CREW_DONE;
		return o;
	}
	if (!m->gone)
		return o;
	o.status = m->status;
	if (m->killed)
		o.end = CREW_KILLED;
	else if (!crew_finished(c, k))
		o.end = CREW_DIED;
	else if (m->status != CREW_STATUS_UNKNOWN && WIFEXITED(m->status) &&
		 WEXITSTATUS(m->status) == 0)
		o.end = CREW_DONE;
	else
		o.end = CREW_FAILED;
	return o;
}

void crew_kill_all(struct crew *c)
{
	for (unsigned k = 0; k < c->started; k++)
		crew_kill(c, k);
}

int crew_finish(struct crew *c, int give_up)
{
	if (c->cfg.mode == CREW_PROCESSES) {
		if (give_up) {
			crew_reap(c, 0); /* who ended on their own, first */
			crew_kill_all(c);
		}
		crew_reap(c, 1);
		return 0;
	}
	if (give_up) {
		c->abandoned = c->started > 0;
		return c->abandoned;
	}
	for (unsigned k = 0; k < c->started; k++)
		if (!c->m[k].gone) {
			pthread_join(c->m[k].thread, NULL);
			c->m[k].gone = 1;
		}
	return 0;
}

void crew_destroy(struct crew *c)
{
	if (c != NULL && !c->abandoned)
		munmap(c, c->size);
}
