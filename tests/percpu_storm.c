/* Storms for the percpu backend: far more workers than CPUs, moved between
 * CPUs while they add, interrupted by timer signals whose handlers add too,
 * in threads, forked processes and separate programs on a named counter;
 * the final count must be exact every time. */
#include "crew.h"
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

/* Each worker's slot in the crew (tools/harness/crew.h): its kernel thread
 * id, for the mover, and its results. */
struct slot {
	atomic_int tid;
	int wrong_path;
	uint64_t total, signals;
};

/* The affinity storm: move every worker (thread or process id) to a random
 * allowed CPU, over and over, until stop. */
struct mover {
	pid_t ids[MAX_WORKERS];
	struct crew *crew; /* or NULL: the ids are in ids[] */
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
		if (CPU_ISSET((size_t)c, &allowed))
			cpus[ncpus++] = c;
	while (!atomic_load(&stop)) {
		for (unsigned k = 0; k < m->n; k++) {
			pid_t id = m->crew ? atomic_load(
						     &((struct slot *)crew_slot(
							       m->crew, k))
							      ->tid)
					   : m->ids[k];
			if (id <= 0)
				continue;
			CPU_ZERO(&one);
			CPU_SET((size_t)cpus[rand_r(&seed) % ncpus], &one);
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
		.tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
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

/* Before the gate: say who this worker is, for the mover. */
static void say_tid(struct crew *c, unsigned k, void *arg)
{
	struct slot *s = crew_slot(c, k);

	(void)arg;
	atomic_store(&s->tid, gettid());
}

/* Threads are stopped by the coordinator; a process keeps its own time
 * (its `stop` is its own). */
static void storm(struct crew *c, unsigned k, void *arg)
{
	struct slot *s = crew_slot(c, k);
	int processes = *(const int *)arg;

	s->total = processes ? work_for_a_while(worker_delta(k), &s->signals)
			     : work(worker_delta(k), &s->signals);
	s->wrong_path = atomic_load(&wrong_path);
}

/* Threads or forked processes: a crew of n workers, started together at its
 * gate, each moved between CPUs while it adds under a signal storm. */
static int run_crew(unsigned n, enum crew_mode mode)
{
	int processes = mode == CREW_PROCESSES;
	struct crew_config cfg = {
		.mode = mode,
		.workers = n,
		.slot_size = sizeof(struct slot),
		/* A coordinator that dies takes its workers with it. */
		.flags = CREW_DIE_WITH_PARENT,
		.prepare = say_tid,
		.work = storm,
		.arg = &processes,
	};
	static struct mover m;
	struct crew *c;
	pthread_t mt;
	uint64_t expected = 0, signals = 0;
	int rc = 0;

	if (tally_create(&counter, "percpu", 0,
			 processes ? TALLY_PSHARED : 0) != 0)
		die("tally_create");
	if (crew_create(&c, &cfg) != 0 || crew_start(c) != 0)
		die("starting the workers");
	if (crew_wait_ready(c, 0) != 0) {
		fprintf(stderr, "percpu_storm: a worker died at the start\n");
		crew_cancel(c);
		crew_finish(c, 0);
		crew_destroy(c);
		tally_destroy(counter);
		return EXIT_SETUP;
	}
	m.n = n;
	m.crew = c;
	crew_go(c);
	if (pthread_create(&mt, NULL, mover_main, &m) != 0)
		die("pthread_create");
	sleep_then_stop(); /* processes stop on their own clocks */
	/* The mover first: it must not move a pid after it is collected (and
	 * perhaps somebody else's). */
	pthread_join(mt, NULL);
	crew_finish(c, 0);
	for (unsigned k = 0; k < n; k++) {
		const struct slot *s = crew_slot(c, k);
		if (processes && crew_outcome(c, k).end != CREW_DONE) {
			fprintf(stderr, "percpu_storm: worker %u failed\n", k);
			rc = EXIT_SETUP;
		}
		expected += s->total;
		signals += s->signals;
		if (s->wrong_path)
			atomic_store(&wrong_path, 1);
	}
	if (rc == 0)
		rc = verdict(crew_mode_name(mode), expected, signals, m.moves);
	crew_destroy(c);
	tally_destroy(counter);
	return rc;
}

/* Separate programs report this. */
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

/* This program's file: /proc/self/exe natively; its target under an
 * emulator, which the emulator must be given (qemu-user answers the link
 * with the program it runs, and cannot exec /proc/self/exe itself). */
static const char *self_path(void)
{
	static char path[4096];
	ssize_t n;

	if (getenv("TALLY_TEST_EMULATOR") == NULL)
		return "/proc/self/exe";
	n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	if (n <= 0)
		die("readlink /proc/self/exe");
	path[n] = '\0';
	return path;
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
			/* Under a cross build's emulator (tests/CMakeLists.txt)
			 * a program of this architecture starts through it. */
			const char *emu = getenv("TALLY_TEST_EMULATOR");
			if (emu != NULL && *emu != '\0')
				execlp(emu, emu, self, "named-child", name,
				       secs, kbuf, want, (char *)NULL);
			else
				execl(self, self, "named-child", name, secs,
				      kbuf, want, (char *)NULL);
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
		fprintf(stderr,
			"usage: percpu_storm threads|processes|named [rseq|atomic|any [SECONDS]]\n");
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
		return run_crew(n, CREW_THREADS);
	if (strcmp(argv[1], "processes") == 0)
		return run_crew(n, CREW_PROCESSES);
	if (strcmp(argv[1], "named") == 0)
		return run_named(self_path(), n > 16 ? 16 : n);
	fprintf(stderr, "percpu_storm: unknown mode '%s'\n", argv[1]);
	return EXIT_USAGE;
}
