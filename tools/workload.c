/* The lesson's workloads, in threads or in forked processes. */
#include "workload.h"
#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t wl_sigint;

static void on_sigint(int sig)
{
	(void)sig;
	wl_sigint = 1;
}

void wl_install_sigint(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
}

void wl_defaults(enum wl_kind kind, struct wl_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->kind = kind;
	cfg->mode = WL_THREADS;
	cfg->workers = 2;
	cfg->stall_timeout_s = 10.0;
	if (kind == WL_ADDSUB) {
		/* The lesson: 500, +5 and -5 a hundred times, 10 ms steps. */
		cfg->initial = 500;
		cfg->iters = 100;
		cfg->delta = 5;
		cfg->sleep_us = 10000;
	} else {
		/* The lesson: a million iterations, worker 1 adds 1, worker
		 * 2 adds 2. */
		cfg->initial = 0;
		cfg->iters = 1000000;
		cfg->delta = 1;
		cfg->sleep_us = 0;
	}
}

int wl_parse_kind(const char *s, enum wl_kind *kind)
{
	if (strcmp(s, "addsub") == 0)
		*kind = WL_ADDSUB;
	else if (strcmp(s, "inc") == 0)
		*kind = WL_INC;
	else
		return -1;
	return 0;
}

const char *wl_kind_name(enum wl_kind kind)
{
	return kind == WL_ADDSUB ? "addsub" : "inc";
}

const char *wl_mode_name(enum wl_mode mode)
{
	return mode == WL_THREADS ? "threads" : "processes";
}

static size_t round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

/* Exact arithmetic for the checks; wraps nowhere. */
typedef __int128 wide;

static wide wide_delta(const struct wl_config *cfg, unsigned k)
{
	if (cfg->kind == WL_ADDSUB)
		return k % 2 == 0 ? (wide)cfg->delta : -(wide)cfg->delta;
	return (wide)cfg->delta * (wide)(k + 1);
}

int64_t wl_worker_delta(const struct wl_config *cfg, unsigned k)
{
	return (int64_t)wide_delta(cfg, k); /* wl_check() proved it fits */
}

static int fits(wide v)
{
	return v >= INT64_MIN && v <= INT64_MAX;
}

int wl_check(const struct wl_config *cfg, char *msg, size_t size)
{
	wide up = 0, down = 0;

	for (unsigned k = 0; k < cfg->workers; k++) {
		wide d = wide_delta(cfg, k);
		/* iters <= 2^64 and |d| <= 2^63 * 1024: the product fits
		 * in 128 bits; the sums of up to 1024 of them do too. */
		wide c = d * (wide)cfg->iters;

		if (!fits(d)) {
			if (cfg->kind == WL_ADDSUB)
				snprintf(
					msg, size,
					"worker %u would subtract --delta, and "
					"-(%lld) does not fit in a signed "
					"64-bit integer",
					k, (long long)cfg->delta);
			else
				snprintf(
					msg, size,
					"worker %u would add --delta * %u, "
					"which does not fit in a signed 64-bit "
					"integer",
					k, k + 1);
			return -1;
		}
		if (!fits(c)) {
			snprintf(msg, size,
				 "worker %u's total (iters x delta) does not "
				 "fit "
				 "in a signed 64-bit integer",
				 k);
			return -1;
		}
		if (c > 0)
			up += c;
		else
			down += c;
	}
	/* Whatever the interleaving, the counter stays within
	 * [initial + all negative work, initial + all positive work]. */
	if (!fits(cfg->initial + up) || !fits(cfg->initial + down)) {
		snprintf(msg, size,
			 "the counter could pass through a value outside the "
			 "signed 64-bit range (from %lld, workers could add up "
			 "to the equivalent of %s%.3g); lower --iters, --delta "
			 "or --initial",
			 (long long)cfg->initial,
			 fits(cfg->initial + up) ? "" : "+",
			 fits(cfg->initial + up) ? (double)down : (double)up);
		return -1;
	}
	return 0;
}

/*
 * One worker's slot, on its own cache lines: workers write `done` after every
 * add, and a neighbour's slot on the same line would turn that store into
 * cache-line ping-pong that the measurement would then include.
 */
struct slot {
	_Alignas(128) _Atomic uint64_t done;
	_Atomic uint64_t end_ns;
	_Atomic unsigned recovered;
	_Atomic int error;
	_Atomic uint64_t unknown; /* adds of unknown outcome (remote) */
	_Atomic int finished;
};

/* Lives in an anonymous shared mapping, so that forked workers see it too. */
struct shared {
	_Atomic unsigned ready;
	_Atomic int go;
	_Atomic int stop;
	_Atomic uint64_t t0_ns; /* the common start: the sleeps' ticks count
				 * from here; written before go */
	struct slot slots[];
};

struct worker {
	tally *t;
	const struct wl_config *cfg;
	struct shared *sh;
	unsigned k;
};

static void sleep_us(uint64_t us)
{
	struct timespec ts = {.tv_sec = (time_t)(us / 1000000),
			      .tv_nsec = (long)(us % 1000000) * 1000};

	/* An interrupted sleep is simply shorter; the stop flag decides. */
	nanosleep(&ts, NULL);
}

/*
 * Sleep until tick i + 1 of `us` microseconds after the common start t0.
 * Absolute ticks, not `us` from now: every worker wakes at the same moments,
 * as the lesson's Python processes did (equal sleeps, started together, and
 * microseconds of work per step), so their adds meet in time.  Relative
 * sleeps would let each worker's wake-up latency pile up step after step
 * until their adds no longer met.  A worker that is late (descheduled for
 * longer than a tick) adds at once and catches up.
 */
static void sleep_tick(uint64_t t0_ns, uint64_t us, uint64_t i)
{
	uint64_t at = t0_ns + (i + 1) * us * 1000u;
	struct timespec ts = {.tv_sec = (time_t)(at / 1000000000u),
			      .tv_nsec = (long)(at % 1000000000u)};

	/* An interrupted sleep is simply shorter; the stop flag decides. */
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

static void work(const struct worker *w)
{
	struct slot *s = &w->sh->slots[w->k];
	int64_t d = wl_worker_delta(w->cfg, w->k);
	uint64_t iters = w->cfg->iters, us = w->cfg->sleep_us, i, t0;

	atomic_fetch_add(&w->sh->ready, 1);
	while (!atomic_load_explicit(&w->sh->go, memory_order_acquire))
		sched_yield();
	t0 = atomic_load_explicit(&w->sh->t0_ns, memory_order_relaxed);
	for (i = 0; i < iters; i++) {
		/* Relaxed: the flag carries no data; seeing it one add late
		 * is harmless. */
		if (atomic_load_explicit(&w->sh->stop, memory_order_relaxed))
			break;
		if (us)
			sleep_tick(t0, us, i);
		int rc = tally_add(w->t, d);
		if (rc == TALLY_EUNKNOWN) {
			/* Neither done nor lost: the server may have it.
			 * The next add would wait out a deadline too. */
			atomic_fetch_add(&s->unknown, 1);
			break;
		}
		if (rc < 0) {
			atomic_store(&s->error, rc);
			break;
		}
		if (rc == TALLY_RECOVERED)
			atomic_fetch_add(&s->recovered, 1);
		/* Published after the add: a worker killed between the two
		 * has one add in the counter that `done` does not show. */
		atomic_store_explicit(&s->done, i + 1, memory_order_release);
	}
	atomic_store(&s->end_ns, cli_now_ns());
	atomic_store_explicit(&s->finished, 1, memory_order_release);
}

static void *thread_main(void *arg)
{
	work(arg);
	return NULL;
}

int wl_spawn(enum wl_mode mode, void *(*fn)(void *), void *arg, unsigned flags,
	     pthread_t *thread, pid_t *pid)
{
	if (mode == WL_THREADS) {
		int rc = pthread_create(thread, NULL, fn, arg);
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
		if (flags & WL_SPAWN_IGNORE_SIGINT)
			signal(SIGINT, SIG_IGN);
		if (flags & WL_SPAWN_DIE_WITH_PARENT) {
			/* An orphan would spin until a stop flag that nobody
			 * is left to set.  The parent may have died before
			 * prctl: then the death signal will never come. */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(0);
		}
		fn(arg);
		_exit(0);
	}
	*pid = child;
	return 0;
}

/* State of the coordinator while the workers run. */
struct run {
	const struct wl_config *cfg;
	struct shared *sh;
	pthread_t *threads;
	pid_t *pids;
	unsigned started;
	uint64_t t0;
	int reaping_own_kills; /* the watchdog killed the rest: not deaths */
};

static uint64_t sum_done(const struct run *r)
{
	uint64_t n = 0;

	for (unsigned k = 0; k < r->cfg->workers; k++)
		n += atomic_load_explicit(&r->sh->slots[k].done,
					  memory_order_acquire);
	return n;
}

static int start_workers(struct run *r, struct worker *ws)
{
	for (unsigned k = 0; k < r->cfg->workers; k++) {
		/* The coordinator handles Ctrl-C and tells the workers
		 * through the stop flag. */
		if (wl_spawn(r->cfg->mode, thread_main, &ws[k],
			     WL_SPAWN_IGNORE_SIGINT | WL_SPAWN_DIE_WITH_PARENT,
			     &r->threads[k], r->pids ? &r->pids[k] : NULL) != 0)
			return -1;
		r->started++;
	}
	return 0;
}

/* Reap processes that ended; note one that died unplanned. */
static void reap(struct run *r, struct wl_result *res, int block)
{
	for (unsigned k = 0; k < r->started; k++) {
		int status;

		if (r->pids[k] <= 0)
			continue;
		pid_t p = waitpid(r->pids[k], &status, block ? 0 : WNOHANG);
		if (p != r->pids[k])
			continue;
		r->pids[k] = 0;
		if (r->reaping_own_kills || res->killed_worker == (int)k)
			continue;
		if (!atomic_load(&r->sh->slots[k].finished)) {
			if (res->died_worker < 0)
				res->died_worker = (int)k;
		} else if ((!WIFEXITED(status) || WEXITSTATUS(status) != 0) &&
			   res->failed_worker < 0) {
			res->failed_worker = (int)k;
			res->failed_status = status;
		}
	}
}

static unsigned count_finished(const struct run *r, const struct wl_result *res)
{
	unsigned n = 0;

	for (unsigned k = 0; k < r->cfg->workers; k++) {
		if (atomic_load(&r->sh->slots[k].finished))
			n++;
		else if (r->pids && r->pids[k] == 0)
			n++; /* a process that is gone, killed or crashed */
	}
	(void)res;
	return n;
}

static void show_progress(const struct run *r, uint64_t now, int final)
{
	uint64_t total = r->cfg->iters * r->cfg->workers;
	double pct = total ? 100.0 * (double)sum_done(r) / (double)total : 100;

	fprintf(stderr, "\r%s: %5.1f%% of %llu adds, %.1f s%s",
		r->cfg->label ? r->cfg->label : "running", pct,
		(unsigned long long)total, (double)(now - r->t0) / 1e9,
		final ? "\r\033[K" : "");
	fflush(stderr);
}

/*
 * Fault injection: SIGKILL the first worker still running (worker 0 unless it
 * has already finished).  Never a pid that reap() has cleared: kill(0, ...)
 * would kill tally's whole process group.
 */
static void kill_one(struct run *r, struct wl_result *res)
{
	for (unsigned k = 0; k < r->started; k++)
		if (r->pids[k] > 0 && !atomic_load(&r->sh->slots[k].finished)) {
			kill(r->pids[k], SIGKILL);
			res->killed_worker = (int)k;
			return;
		}
}

/*
 * The coordinator: watch the workers until all are finished, with Ctrl-C,
 * fault injection and the no-progress watchdog.  Never spins: it sleeps
 * 5 ms between looks, so it does not steal a core from the workers.
 */
static void supervise(struct run *r, struct wl_result *res)
{
	const struct wl_config *cfg = r->cfg;
	uint64_t last_ops = 0, last_change = r->t0, last_shown = r->t0;

	for (;;) {
		sleep_us(5000);
		uint64_t now = cli_now_ns();

		if (cfg->mode == WL_PROCESSES)
			reap(r, res, 0);
		if (count_finished(r, res) == cfg->workers)
			break;
		if (wl_sigint && !res->interrupted) {
			res->interrupted = 1;
			atomic_store(&r->sh->stop, 1);
		}
		/* Stopped like Ctrl-C: the counts of what was done are
		 * still checked exactly. */
		if (cfg->time_limit_s > 0 && !res->timed_out &&
		    (double)(now - r->t0) / 1e9 >= cfg->time_limit_s) {
			res->timed_out = 1;
			atomic_store(&r->sh->stop, 1);
		}
		if (cfg->kill_after_ms && res->killed_worker < 0 &&
		    now - r->t0 >= cfg->kill_after_ms * 1000000u)
			kill_one(r, res);
		uint64_t ops = sum_done(r);
		if (ops != last_ops) {
			last_ops = ops;
			last_change = now;
		} else if ((double)(now - last_change) / 1e9 >=
			   cfg->stall_timeout_s) {
			res->stalled = 1;
			atomic_store(&r->sh->stop, 1);
			break;
		}
		if (cfg->progress && now - last_shown >= 200000000u) {
			show_progress(r, now, 0);
			last_shown = now;
		}
	}
	if (cfg->progress && last_shown != r->t0)
		show_progress(r, cli_now_ns(), 1);
}

/* Workers that cannot make progress (spinning on a lock whose holder died)
 * never see the stop flag: processes are killed, threads abandoned. */
static void finish_workers(struct run *r, struct wl_result *res)
{
	if (r->cfg->mode == WL_PROCESSES) {
		if (res->stalled) {
			reap(r, res, 0); /* a death first seen now is one */
			r->reaping_own_kills = 1;
			for (unsigned k = 0; k < r->started; k++)
				if (r->pids[k] > 0)
					kill(r->pids[k], SIGKILL);
		}
		reap(r, res, 1);
		return;
	}
	if (!res->stalled)
		for (unsigned k = 0; k < r->started; k++)
			pthread_join(r->threads[k], NULL);
}

static void collect(struct run *r, tally *t, struct wl_result *res)
{
	const struct wl_config *cfg = r->cfg;
	uint64_t end = r->t0;
	int64_t expected = cfg->initial;

	for (unsigned k = 0; k < cfg->workers; k++) {
		struct slot *s = &r->sh->slots[k];
		uint64_t n = atomic_load(&s->done);

		res->done[k] = n;
		res->total_ops += n;
		res->recovered += atomic_load(&s->recovered);
		uint64_t u = atomic_load(&s->unknown);
		res->unknown += u;
		res->unknown_sum =
			(int64_t)((uint64_t)res->unknown_sum +
				  u * (uint64_t)wl_worker_delta(cfg, k));
		if (!res->add_error)
			res->add_error = atomic_load(&s->error);
		if (atomic_load(&s->end_ns) > end)
			end = atomic_load(&s->end_ns);
		/* n <= iters, so wl_check() proved this fits. */
		expected = (int64_t)((wide)expected +
				     (wide)n * (wide)wl_worker_delta(cfg, k));
	}
	if (res->stalled || end == r->t0)
		end = cli_now_ns();
	res->seconds = (double)(end - r->t0) / 1e9;
	res->expected = expected;
	/* tally_get() never waits for a lock, so this answers even when a
	 * dead worker holds it (a stalled run). */
	int rc = tally_get(t, &res->actual);
	if (rc < 0) {
		res->unread = 1;
		res->actual = expected; /* not shown: see unread */
		if (!res->add_error)
			res->add_error = rc;
	}
	res->lost = (int64_t)((uint64_t)res->expected - (uint64_t)res->actual);
}

int wl_run(tally *t, const struct wl_config *cfg, struct wl_result *res)
{
	/*
	 * One anonymous shared mapping holds all of the run's bookkeeping:
	 * the slots the workers write, and the coordinator's own arrays.  No
	 * heap: a forked worker exits holding a copy of everything, and
	 * memory checkers would report a heap block only its parent frees.
	 */
	size_t n = cfg->workers;
	size_t ws_off = sizeof(struct shared) + n * sizeof(struct slot);
	size_t th_off = round_up(ws_off + n * sizeof(struct worker),
				 _Alignof(pthread_t));
	size_t pid_off =
		round_up(th_off + n * sizeof(pthread_t), _Alignof(pid_t));
	size_t size = pid_off + n * sizeof(pid_t);
	struct run r = {.cfg = cfg};
	struct worker *ws;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	res->killed_worker = res->died_worker = res->failed_worker = -1;
	res->path = tally_backend_path(t);
	if (cfg->workers == 0 || cfg->workers > WL_MAX_WORKERS) {
		errno = EINVAL;
		return -1;
	}
	r.sh = mmap(NULL, size, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (r.sh == MAP_FAILED)
		return -1;
	ws = (struct worker *)((char *)r.sh + ws_off);
	r.threads = (pthread_t *)((char *)r.sh + th_off);
	r.pids = cfg->mode == WL_PROCESSES ? (pid_t *)((char *)r.sh + pid_off)
					   : NULL;
	for (unsigned k = 0; k < cfg->workers; k++)
		ws[k] = (struct worker){.t = t, .cfg = cfg, .sh = r.sh, .k = k};

	if (start_workers(&r, ws) != 0) {
		int saved = errno;
		atomic_store(&r.sh->stop, 1);
		atomic_store(&r.sh->go, 1);
		res->stalled = 0;
		finish_workers(&r, res);
		errno = saved;
		goto out;
	}
	/* A process that dies before it is ready (out of memory, say) is
	 * counted as finished by count_finished(); stop waiting for it. */
	while (atomic_load(&r.sh->ready) < cfg->workers &&
	       !(cfg->mode == WL_PROCESSES && (reap(&r, res, 0), 1) &&
		 count_finished(&r, res) > 0))
		sleep_us(100);
	r.t0 = cli_now_ns();
	/* Relaxed: the release store of go below publishes it. */
	atomic_store_explicit(&r.sh->t0_ns, r.t0, memory_order_relaxed);
	atomic_store_explicit(&r.sh->go, 1, memory_order_release);
	supervise(&r, res);
	finish_workers(&r, res);
	collect(&r, t, res);
	rc = 0;
	if (res->stalled && cfg->mode == WL_THREADS)
		return rc; /* abandoned threads still use the mapping */
out:
	munmap(r.sh, size);
	return rc;
}
