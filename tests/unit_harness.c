/* The harness (tools/harness/): the crew starts its workers together, gives
 * each a slot of its own, says how each one ended; and the stress rounds
 * find a lock that does not exclude (the must-fail run, tests/unit.cmake). */
#include "clock.h"
#include "crew.h"
#include "stress_round.h"
#include "tally.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

static const enum crew_mode modes[] = {CREW_THREADS, CREW_PROCESSES};

/* ---- the crew ------------------------------------------------------------ */

struct gate_shared {
	_Atomic unsigned passed; /* workers past the gate */
};

struct gate_slot {
	unsigned k;
	unsigned passed_before; /* how many were past the gate when k got there
				 */
	uint64_t pad[20];	/* wider than a line: slots must not overlap */
};

static void gate_work(struct crew *c, unsigned k, void *arg)
{
	struct gate_shared *sh = crew_shared(c);
	struct gate_slot *s = crew_slot(c, k);

	(void)arg;
	s->passed_before = atomic_fetch_add(&sh->passed, 1);
	s->k = k + 1;
	for (size_t i = 0; i < sizeof(s->pad) / sizeof(s->pad[0]); i++)
		s->pad[i] = k;
}

/* Nobody works before crew_go(): the workers wait at the gate, all ready. */
static void test_nobody_passes_the_gate_before_go(void **state)
{
	(void)state;
	for (size_t m = 0; m < 2; m++) {
		struct crew_config cfg = {
			.mode = modes[m],
			.workers = 5,
			.shared_size = sizeof(struct gate_shared),
			.slot_size = sizeof(struct gate_slot),
			.flags = CREW_DIE_WITH_PARENT,
			.work = gate_work,
		};
		struct crew *c;

		assert_int_equal(crew_create(&c, &cfg), 0);
		struct gate_shared *sh = crew_shared(c);
		assert_int_equal(crew_start(c), 0);
		assert_int_equal(crew_wait_ready(c, 0), 0);
		harness_sleep_ns(
			50000000); /* time enough to pass a gate that is open */
		if (atomic_load(&sh->passed) != 0)
			fail_msg(
				"%s: %u workers passed the gate before crew_go()",
				crew_mode_name(modes[m]),
				atomic_load(&sh->passed));
		for (unsigned k = 0; k < cfg.workers; k++)
			assert_false(crew_finished(c, k));
		crew_go(c);
		assert_int_equal(crew_finish(c, 0), 0);
		assert_int_equal(atomic_load(&sh->passed), cfg.workers);
		for (unsigned k = 0; k < cfg.workers; k++) {
			struct gate_slot *s = crew_slot(c, k);
			assert_true(crew_finished(c, k));
			assert_int_equal(s->k, k + 1);
			assert_int_equal(s->pad[19], k);
			assert_int_equal(crew_outcome(c, k).end, CREW_DONE);
			if (modes[m] == CREW_PROCESSES) {
				int st = crew_outcome(c, k).status;
				assert_true(WIFEXITED(st));
				assert_int_equal(WEXITSTATUS(st), 0);
			}
		}
		assert_int_equal(crew_count_done(c), cfg.workers);
		crew_destroy(c);
	}
}

/* The shared area and every slot start on a line of their own and do not
 * overlap: a worker's stores never share a line with another's. */
static void test_slots_have_lines_of_their_own(void **state)
{
	static const size_t sizes[] = {0, 1, 24, CREW_LINE, CREW_LINE + 1};

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct crew_config cfg = {
			.mode = CREW_THREADS,
			.workers = 7,
			.shared_size = sizes[i],
			.slot_size = sizes[i],
			.work = gate_work,
		};
		size_t lines = (sizes[i] + CREW_LINE - 1) / CREW_LINE;
		struct crew *c;

		assert_int_equal(crew_create(&c, &cfg), 0);
		uintptr_t sh = (uintptr_t)crew_shared(c);
		assert_int_equal(sh % CREW_LINE, 0);
		for (unsigned k = 0; k < cfg.workers; k++) {
			uintptr_t s = (uintptr_t)crew_slot(c, k);
			assert_int_equal(s % CREW_LINE, 0);
			assert_true(s >= sh + lines * CREW_LINE);
			if (k > 0)
				assert_true(
					s - (uintptr_t)crew_slot(c, k - 1) >=
					lines * CREW_LINE);
			/* Every byte of it is the worker's to write. */
			memset((void *)s, 0xff, sizes[i]);
		}
		crew_destroy(c);
	}
}

static void test_bad_configurations_are_refused(void **state)
{
	struct crew_config cfg = {.mode = CREW_THREADS, .work = gate_work};
	struct crew *c;

	(void)state;
	cfg.workers = 0;
	assert_int_equal(crew_create(&c, &cfg), -1);
	assert_int_equal(errno, EINVAL);
	cfg.workers = CREW_MAX_WORKERS + 1;
	assert_int_equal(crew_create(&c, &cfg), -1);
	assert_int_equal(errno, EINVAL);
	cfg.workers = 1;
	cfg.work = NULL;
	assert_int_equal(crew_create(&c, &cfg), -1);
	assert_int_equal(errno, EINVAL);
}

/* Worker 1 exits with status 3 before it is ready; the others are fine. */
static void exit_early(struct crew *c, unsigned k, void *arg)
{
	(void)c;
	(void)arg;
	if (k == 1)
		_exit(3);
}

/* A process that ends before the gate is seen: crew_wait_ready() gives up
 * at once, and the crew says how the process ended. */
static void test_a_process_that_dies_early_is_seen(void **state)
{
	struct crew_config cfg = {
		.mode = CREW_PROCESSES,
		.workers = 3,
		.slot_size = sizeof(struct gate_slot),
		.shared_size = sizeof(struct gate_shared),
		.flags = CREW_DIE_WITH_PARENT,
		.prepare = exit_early,
		.work = gate_work,
	};
	struct crew *c;

	(void)state;
	assert_int_equal(crew_create(&c, &cfg), 0);
	assert_int_equal(crew_start(c), 0);
	assert_int_equal(crew_wait_ready(c, 0), -1);
	crew_go(c);
	assert_int_equal(crew_finish(c, 0), 0);
	assert_false(crew_finished(c, 1));
	struct crew_outcome w = crew_outcome(c, 1);
	assert_int_equal(w.end, CREW_DIED);
	assert_true(WIFEXITED(w.status));
	assert_int_equal(WEXITSTATUS(w.status), 3);
	assert_true(crew_finished(c, 0));
	assert_true(crew_finished(c, 2));
	assert_int_equal(crew_count_done(c), 3);
	crew_destroy(c);
}

/* Worker 0 never gets ready: only a deadline ends the wait for it. */
static void hang_before_ready(struct crew *c, unsigned k, void *arg)
{
	(void)c;
	(void)arg;
	if (k == 0)
		for (;;)
			pause();
}

/* Stuck processes: killed by crew_finish(give_up), and marked as killed. */
static void test_give_up_kills_stuck_processes(void **state)
{
	struct crew_config cfg = {
		.mode = CREW_PROCESSES,
		.workers = 2,
		.flags = CREW_DIE_WITH_PARENT,
		.prepare = hang_before_ready,
		.work = gate_work,
		.slot_size = sizeof(struct gate_slot),
		.shared_size = sizeof(struct gate_shared),
	};
	struct crew *c;

	(void)state;
	assert_int_equal(crew_create(&c, &cfg), 0);
	assert_int_equal(crew_start(c), 0);
	assert_int_equal(crew_wait_ready(c, harness_now_ns() + 100000000u), -1);
	crew_cancel(c);
	/* Worker 1 leaves the cancelled gate on its own: wait for that. */
	for (int waited = 0;
	     crew_outcome(c, 1).end == CREW_RUNNING && waited < 5000;
	     waited += 10) {
		harness_sleep_ns(10000000);
		crew_reap(c, 0);
	}
	assert_int_equal(crew_finish(c, 1), 0);
	struct crew_outcome w = crew_outcome(c, 0);
	assert_int_equal(w.end, CREW_KILLED);
	assert_true(WIFSIGNALED(w.status));
	assert_int_equal(WTERMSIG(w.status), SIGKILL);
	/* Worker 1 left at the cancelled gate on its own: not killed, and
	 * it never worked. */
	assert_int_equal(crew_outcome(c, 1).end, CREW_DONE);
	assert_true(crew_finished(c, 1));
	assert_int_equal(((struct gate_slot *)crew_slot(c, 1))->k, 0);
	/* Never a signal to a worker already collected. */
	assert_int_equal(crew_kill(c, 1), -1);
	crew_destroy(c);
}

/* Where the workers of the die-with-parent test say who they are. */
static int pid_pipe = -1;

static void say_pid(struct crew *c, unsigned k, void *arg)
{
	pid_t me = getpid();

	(void)c;
	(void)k;
	(void)arg;
	if (write(pid_pipe, &me, sizeof(me)) != sizeof(me))
		_exit(1);
}

static void hang(struct crew *c, unsigned k, void *arg)
{
	(void)c;
	(void)k;
	(void)arg;
	for (;;)
		pause();
}

/* Ended: gone, or a zombie nobody has collected yet. */
static int ended(pid_t pid)
{
	char path[64], buf[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* the state follows the name */
	return p != NULL && (p[2] == 'Z' || p[2] == 'X');
}

/* Die with the parent: a coordinator that dies while its workers are stuck
 * takes them with it (an orphan would spin for ever). */
static void test_workers_die_with_their_coordinator(void **state)
{
	int fd[2], status;
	pid_t coordinator, pids[2];

	(void)state;
	assert_int_equal(pipe(fd), 0);
	coordinator = fork();
	assert_true(coordinator >= 0);
	if (coordinator == 0) {
		struct crew_config cfg = {
			.mode = CREW_PROCESSES,
			.workers = 2,
			.flags = CREW_DIE_WITH_PARENT,
			.prepare = say_pid,
			.work = hang,
		};
		struct crew *c;

		close(fd[0]);
		pid_pipe = fd[1];
		/* Every worker has said who it is and is at the gate or
		 * past it when the coordinator dies. */
		if (crew_create(&c, &cfg) != 0 || crew_start(c) != 0 ||
		    crew_wait_ready(c, 0) != 0)
			_exit(1);
		crew_go(c);
		_exit(0);
	}
	close(fd[1]);
	for (int k = 0; k < 2; k++)
		assert_int_equal(read(fd[0], &pids[k], sizeof(pids[k])),
				 sizeof(pids[k]));
	close(fd[0]);
	assert_int_equal(waitpid(coordinator, &status, 0), coordinator);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	int waited = 0;
	while ((!ended(pids[0]) || !ended(pids[1])) && waited < 5000) {
		harness_sleep_ns(10000000);
		waited += 10;
	}
	for (int k = 0; k < 2; k++)
		if (!ended(pids[k])) {
			/* Every survivor, before failing: an orphan keeps
			 * the test's output open. */
			for (int j = k; j < 2; j++)
				if (!ended(pids[j]))
					kill(pids[j], SIGKILL);
			fail_msg(
				"worker %d (pid %ld) outlived its coordinator by 5 s",
				k, (long)pids[k]);
		}
}

/* ---- stress rounds --------------------------------------------------------
 */

/*
 * A round that stretches critical sections: four workers, every pause point
 * yielding.  A lock that does not exclude lets a second worker into a
 * section that the first is yielding inside, in every run: about a quarter
 * of 2048 operations per worker are stretched.  Spinning locks get one
 * worker per CPU (at least two), as `tally stress` gives them: a fair
 * spinning lock hands over once per time slice when its waiters outnumber
 * the CPUs, and the round would take a minute.
 */
static void crowded_round(const tally_backend_info *b, enum crew_mode mode,
			  struct stress_round *r)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned workers = 4;

	if ((b->caps & TALLY_CAP_SPINNING) && cpus < 4)
		workers = cpus < 2 ? 2 : (unsigned)cpus;
	stress_draw(1, 1, workers, (int)mode, 1, r);
	r->workers = workers;
	r->ops = 2048;
	r->yield_rate = 255;
	r->sleep_rate = 0;
	r->initial = INT64_MAX - 5;
	/* As `tally stress` bounds a round: a busy machine may cut it. */
	r->deadline = harness_now_ns() + 10000000000u;
}

/* Every backend with a lock keeps its sections apart and its count exact
 * through a round, in threads and (where it can be shared) processes. */
static void test_stress_round_finds_no_overlap(void **state)
{
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		if (!(b.caps & TALLY_CAP_LOCKED))
			continue;
		for (size_t m = 0; m < 2; m++) {
			struct stress_round r;
			struct stress_outcome o;
			tally *t;

			if (modes[m] == CREW_PROCESSES &&
			    !(b.caps & TALLY_CAP_PSHARED))
				continue;
			crowded_round(&b, modes[m], &r);
			assert_int_equal(tally_create(&t, b.name, r.initial,
						      modes[m] == CREW_PROCESSES
							      ? TALLY_PSHARED
							      : 0),
					 0);
			stress_run(t, &r, &o);
			tally_destroy(t);
			if (o.verdict == HARNESS_OVERLAP)
				fail_msg(
					"%s (%s): %llu times a worker found the critical section occupied",
					b.name, crew_mode_name(modes[m]),
					(unsigned long long)o.overlaps);
			if (o.verdict == HARNESS_ERROR ||
			    o.verdict == HARNESS_FAULT)
				fail_msg("%s (%s): %s", b.name,
					 crew_mode_name(modes[m]), o.reason);
			if (o.verdict == HARNESS_LOST)
				fail_msg("%s (%s): expected %lld, actual %lld",
					 b.name, crew_mode_name(modes[m]),
					 (long long)o.expected,
					 (long long)o.actual);
			assert_true(o.adds > 0);
			if (!o.cut)
				assert_true(o.adds >= r.workers * r.ops);
		}
	}
}

/* A round on the racy backend loses updates, and the round says so: the
 * check of the count is live. */
static void test_stress_round_sees_lost_updates(void **state)
{
	struct stress_round r;
	struct stress_outcome o;
	tally *t;

	(void)state;
	if (getenv("TALLY_TEST_BACKEND") != NULL)
		skip();
	stress_draw(1, 1, 2, CREW_THREADS, 0, &r);
	r.workers = 2;
	r.ops = 4096;
	r.yield_rate = 255;
	assert_int_equal(tally_create(&t, "none:window_us=50", r.initial, 0),
			 0);
	stress_run(t, &r, &o);
	tally_destroy(t);
	assert_int_equal(o.verdict, HARNESS_LOST);
	assert_true(o.expected != o.actual);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nobody_passes_the_gate_before_go),
		cmocka_unit_test(test_slots_have_lines_of_their_own),
		cmocka_unit_test(test_bad_configurations_are_refused),
		cmocka_unit_test(test_a_process_that_dies_early_is_seen),
		cmocka_unit_test(test_give_up_kills_stuck_processes),
		cmocka_unit_test(test_workers_die_with_their_coordinator),
		cmocka_unit_test(test_stress_round_finds_no_overlap),
		cmocka_unit_test(test_stress_round_sees_lost_updates),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
