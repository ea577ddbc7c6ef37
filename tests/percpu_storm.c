/* Storms for the percpu backend: far more workers than CPUs, moved between
 * CPUs while they add, interrupted by timer signals whose handlers add too,
 * in threads, forked processes and separate programs on a named counter;
 * the final count must be exact every time. */
#include "tally.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_LOST  1
#define EXIT_USAGE 2
#define EXIT_SETUP 3
#define EXIT_SKIP  77 /* CTest's SKIP_RETURN_CODE: no rseq on this system */

#define MAX_WORKERS 256
/* ns: 10000 timer signals a second per worker */
#define SIGNAL_PERIOD 100000L
#define HANDLER_DELTA (-7) /* what each signal handler adds */

static tally *counter;
static const char *expect = "any"; /* the path every worker must take */
static double seconds = 2.0;
static atomic_int stop;
static atomic_int wrong_path;
static atomic_int *gate; /* see start_gate() */

/* Adds made by this thread's signal handler; written only by the handler,
 * read by the thread once the signal is blocked. */
static _Thread_local uint64_t handler_adds;

/* An add from a signal handler interrupts the thread's own add: with rseq
 * the kernel aborts the interrupted sequence and it starts over; a
 * sequence that did not restart would lose one of the two. */
static void on_signal(int sig)
{
	(void)sig;
	tally_add(counter, HANDLER_DELTA);
	handler_adds++;
}

static void die(const char *what)
{
	fprintf(stderr, "percpu_storm: %s: %s\n", what, strerror(errno));
	exit(EXIT_SETUP);
}

/* The start gate of threads and forked processes: in a shared mapping
 * (start_gate()), opened once every worker exists, so that all of them
 * begin together.  Separate programs (run_named) each run for `seconds`
 * from their own start, which a few milliseconds of exec do not move. */
static void start_gate(void)
{
	gate = mmap(NULL, sizeof(*gate), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (gate == MAP_FAILED)
		die("mmap");
	atomic_store(gate, 0);
}

static void wait_at_gate(void)
{
	while (!atomic_load(gate))
		sched_yield();
}

static int path_ok(void)
{
	const char *p = tally_backend_path(counter);

	if (strcmp(expect, "any") == 0 || (p != NULL && strcmp(p, expect) == 0))
		return 1;
	fprintf(stderr, "percpu_storm: adds take path '%s', wanted '%s'\n",
		p ? p : "(none)", expect);
	return 0;
}

/* A timer that sends SIGRTMIN to this thread every SIGNAL_PERIOD. */
static timer_t start_timer(void)
{
	struct sigevent ev = {.sigev_notify = SIGEV_THREAD_ID,
			      .sigev_signo = SIGRTMIN};
	struct itimerspec its = {.it_interval.tv_nsec = SIGNAL_PERIOD,
				 .it_value.tv_nsec = SIGNAL_PERIOD};
	timer_t id;

	ev._sigev_un._tid = gettid(); /* sigev_notify_thread_id: glibc 2.41 */
	if (timer_create(CLOCK_MONOTONIC, &ev, &id) != 0 ||
	    timer_settime(id, 0, &its, NULL) != 0)
		die("timer");
	return id;
}

/* One worker: add `delta` until told to stop, under a signal storm.
 * Returns what it and its signal handler added (modulo 2^64). */
static uint64_t work(int64_t delta, uint64_t *signals)
{
	sigset_t set;
	uint64_t adds = 0;

	if (!path_ok())
		atomic_store(&wrong_path, 1);
	timer_t timer = start_timer();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int i = 0; i < 1024; i++)
			tally_add(counter, delta);
		adds += 1024;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	timer_delete(timer);
	*signals = handler_adds;
	return adds * (uint64_t)delta +
	       handler_adds * (uint64_t)(int64_t)HANDLER_DELTA;
}

static int64_t worker_delta(unsigned k)
{
	return (int64_t)(k + 1) * 1000003;
}

/* Threads: their results and kernel thread ids. */
struct thread_slot {
	unsigned k;
	atomic_int tid;
	uint64_t total, signals;
};

static void *thread_main(void *arg)
{
	struct thread_slot *w = arg;

	atomic_store(&w->tid, gettid());
	wait_at_gate();
	w->total = work(worker_delta(w->k), &w->signals);
	return NULL;
}

/* The affinity storm: move every worker (thread or process id) to a random
 * allowed CPU, over and over, until stop. */
struct mover {
	pid_t ids[MAX_WORKERS];
	atomic_int *tids; /* threads: read ids from here */
	size_t stride;	  /* bytes between tids */
	unsigned n;
	uint64_t moves;
};

static void *mover_main(void *arg)
{
	struct mover *m = arg;
	cpu_set_t allowed, one;
	int cpus[CPU_SETSIZE], ncpus = 0;
	unsigned seed = 12345;

	sched_getaffinity(0, sizeof(allowed), &allowed);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &allowed))
			cpus[ncpus++] = c;
	while (!atomic_load(&stop)) {
		for (unsigned k = 0; k < m->n; k++) {
			pid_t id =
				m->tids ? atomic_load((
						  atomic_int *)((char *)m
									->tids +
								k * m->stride))
					: m->ids[k];
			if (id <= 0)
				continue;
			CPU_ZERO(&one);
			CPU_SET(cpus[rand_r(&seed) % ncpus], &one);
			if (sched_setaffinity(id, sizeof(one), &one) == 0)
				m->moves++;
		}
		nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
	}
	return NULL;
}

static void install_handler(void)
{
	struct sigaction sa = {.sa_handler = on_signal};

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGRTMIN, &sa, NULL) != 0)
		die("sigaction");
}

static void sleep_then_stop(void)
{
	struct timespec ts = {
		.tv_sec = (time_t)seconds,
		.tv_nsec = (long)((seconds - (time_t)seconds) * 1e9)};
	nanosleep(&ts, NULL);
	atomic_store(&stop, 1);
}

static void *stopper_main(void *arg)
{
	(void)arg;
	sleep_then_stop();
	return NULL;
}

/* Add in this thread under a storm until `seconds` have passed. */
static uint64_t work_for_a_while(int64_t delta, uint64_t *signals)
{
	pthread_t stopper;

	if (pthread_create(&stopper, NULL, stopper_main, NULL) != 0)
		die("pthread_create");
	uint64_t total = work(delta, signals);
	pthread_join(stopper, NULL);
	return total;
}

static int verdict(const char *what, uint64_t expected, uint64_t signals,
		   uint64_t moves)
{
	int64_t actual;

	if (tally_get(counter, &actual) != 0)
		die("tally_get");
	printf("%s: path %s, %" PRIu64 " signal adds, %" PRIu64
	       " moves: expected %" PRId64 ", got %" PRId64 "%s\n",
	       what, tally_backend_path(counter), signals, moves,
	       (int64_t)expected, actual,
	       (uint64_t)actual == expected ? "" : "  LOST UPDATES");
	if (atomic_load(&wrong_path))
		return EXIT_LOST;
	return (uint64_t)actual == expected ? 0 : EXIT_LOST;
}

static int run_threads(unsigned n)
{
	static struct thread_slot ws[MAX_WORKERS];
	static struct mover m;
	pthread_t th[MAX_WORKERS], mt;
	uint64_t expected = 0, signals = 0;

	if (tally_create(&counter, "percpu", 0, 0) != 0)
		die("tally_create");
	m.n = n;
	m.tids = &ws[0].tid;
	m.stride = sizeof(ws[0]);
	start_gate();
	for (unsigned k = 0; k < n; k++) {
		ws[k].k = k;
		if (pthread_create(&th[k], NULL, thread_main, &ws[k]) != 0)
			die("pthread_create");
	}
	atomic_store(gate, 1);
	if (pthread_create(&mt, NULL, mover_main, &m) != 0)
		die("pthread_create");
	sleep_then_stop();
	for (unsigned k = 0; k < n; k++) {
		pthread_join(th[k], NULL);
		expected += ws[k].total;
		signals += ws[k].signals;
	}
	pthread_join(mt, NULL);
	int rc = verdict("threads", expected, signals, m.moves);
	tally_destroy(counter);
	return rc;
}

/* Forked processes and separate programs report this. */
struct report {
	uint64_t total, signals;
	int wrong_path;
};

static int wait_all(pid_t *pids, unsigned n)
{
	int rc = 0;

	for (unsigned k = 0; k < n; k++) {
		int st;
		while (waitpid(pids[k], &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "percpu_storm: worker %u failed\n", k);
			rc = EXIT_SETUP;
		}
	}
	return rc;
}

static int run_processes(unsigned n)
{
	struct report *rep =
		mmap(NULL, n * sizeof(*rep), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	static struct mover m;
	pthread_t mt;
	uint64_t expected = 0, signals = 0;

	if (rep == MAP_FAILED)
		die("mmap");
	if (tally_create(&counter, "percpu", 0, TALLY_PSHARED) != 0)
		die("tally_create");
	m.n = n;
	start_gate();
	pid_t parent = getpid();
	for (unsigned k = 0; k < n; k++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			/* A parent that dies before opening the gate
			 * takes its waiting children with it. */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(EXIT_SETUP);
			wait_at_gate();
			rep[k].total = work_for_a_while(worker_delta(k),
							&rep[k].signals);
			rep[k].wrong_path = atomic_load(&wrong_path);
			_exit(0);
		}
		m.ids[k] = pid;
	}
	atomic_store(gate, 1);
	if (pthread_create(&mt, NULL, mover_main, &m) != 0)
		die("pthread_create");
	sleep_then_stop(); /* the children stop on their own clocks */
	pthread_join(mt, NULL);
	int rc = wait_all(m.ids, n);
	for (unsigned k = 0; k < n; k++) {
		expected += rep[k].total;
		signals += rep[k].signals;
		if (rep[k].wrong_path)
			atomic_store(&wrong_path, 1);
	}
	if (rc == 0)
		rc = verdict("processes", expected, signals, m.moves);
	tally_destroy(counter);
	return rc;
}

/* A separate program on the named counter: report on stdout. */
static int named_child(const char *name, unsigned k)
{
	struct report r = {0};

	if (tally_open(&counter, name, NULL, 0, 0) != 0)
		die("tally_open");
	r.total = work_for_a_while(worker_delta(k), &r.signals);
	r.wrong_path = atomic_load(&wrong_path);
	tally_destroy(counter);
	return write(STDOUT_FILENO, &r, sizeof(r)) == (ssize_t)sizeof(r)
		       ? 0
		       : EXIT_SETUP;
}

/* The named counter, removed however the parent exits. */
static char named[64];
static pid_t named_owner;

static void remove_named(void)
{
	if (named_owner == getpid())
		tally_unlink(named);
}

/*
 * Separate programs (fork, then exec this one) on one named counter.  Odd
 * ones run with rseq turned off (GLIBC_TUNABLES), so both paths add to the
 * same slots at once; each checks that it took the path it should.
 */
static int run_named(const char *self, unsigned n)
{
	char *name = named, secs[32], kbuf[16];
	static struct mover m;
	int fds[MAX_WORKERS];
	pthread_t mt;
	uint64_t expected = 0, signals = 0;

	snprintf(named, sizeof(named), "percpu_storm.%d", (int)getpid());
	snprintf(secs, sizeof(secs), "%g", seconds);
	if (tally_open(&counter, name, "percpu", 0,
		       TALLY_CREATE | TALLY_EXCL) != 0)
		die("tally_open");
	named_owner = getpid();
	atexit(remove_named);
	m.n = n;
	for (unsigned k = 0; k < n; k++) {
		int p[2];
		if (pipe(p) != 0)
			die("pipe");
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			const char *want = strcmp(expect, "rseq") == 0 && k % 2
						   ? "atomic"
						   : expect;
			dup2(p[1], STDOUT_FILENO);
			if (k % 2)
				setenv("GLIBC_TUNABLES", "glibc.pthread.rseq=0",
				       1);
			snprintf(kbuf, sizeof(kbuf), "%u", k);
			execl(self, self, "named-child", name, secs, kbuf, want,
			      (char *)NULL);
			_exit(127);
		}
		close(p[1]);
		fds[k] = p[0];
		m.ids[k] = pid;
	}
	if (pthread_create(&mt, NULL, mover_main, &m) != 0)
		die("pthread_create");
	int rc = 0;
	for (unsigned k = 0; k < n; k++) {
		struct report r;
		if (read(fds[k], &r, sizeof(r)) != (ssize_t)sizeof(r)) {
			fprintf(stderr, "percpu_storm: no report from %u\n", k);
			rc = EXIT_SETUP;
			continue;
		}
		close(fds[k]);
		expected += r.total;
		signals += r.signals;
		if (r.wrong_path)
			atomic_store(&wrong_path, 1);
	}
	atomic_store(&stop, 1);
	pthread_join(mt, NULL);
	if (wait_all(m.ids, n) != 0)
		rc = EXIT_SETUP;
	if (rc == 0)
		rc = verdict("named (odd programs without rseq)", expected,
			     signals, m.moves);
	tally_destroy(counter);
	return rc;
}

int main(int argc, char **argv)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = cpus * 8 > MAX_WORKERS
			     ? MAX_WORKERS
			     : (unsigned)(cpus < 1 ? 8 : cpus * 8);

	if (argc >= 6 && strcmp(argv[1], "named-child") == 0) {
		seconds = atof(argv[3]);
		expect = argv[5];
		install_handler();
		return named_child(argv[2], (unsigned)atoi(argv[4]));
	}
	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: percpu_storm threads|processes|named "
				"[rseq|atomic|any [SECONDS]]\n");
		return EXIT_USAGE;
	}
	if (argc >= 3)
		expect = argv[2];
	if (argc >= 4)
		seconds = atof(argv[3]);
	install_handler();

	/* Expected rseq, but this system has none (an old kernel, glibc
	 * before 2.35, another architecture): nothing to test here. */
	if (strcmp(expect, "rseq") == 0) {
		tally *probe;
		if (tally_create(&probe, "percpu", 0, 0) != 0)
			die("tally_create");
		int none = strcmp(tally_backend_path(probe), "rseq") != 0;
		tally_destroy(probe);
		if (none && getenv("GLIBC_TUNABLES") == NULL) {
			printf("SKIP: rseq is not registered here\n");
			return EXIT_SKIP;
		}
	}
	if (strcmp(argv[1], "threads") == 0)
		return run_threads(n);
	if (strcmp(argv[1], "processes") == 0)
		return run_processes(n);
	if (strcmp(argv[1], "named") == 0)
		return run_named("/proc/self/exe", n > 16 ? 16 : n);
	fprintf(stderr, "percpu_storm: unknown mode '%s'\n", argv[1]);
	return EXIT_USAGE;
}
