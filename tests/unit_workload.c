/* The workloads on every backend: the final count equals the sum of what the
 * workers added (table-driven over the registry), in threads and processes;
 * and the harness can fail. */
#include "tally.h"
#include "workload.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

static struct wl_result res;

/*
 * Iterations sized so that spinning backends, which collapse once workers
 * outnumber the cores, still finish in seconds: inc with 4 spinning workers
 * on 2 cores costs a scheduler time slice per hand-over.
 */
static void configure(struct wl_config *cfg, enum wl_kind kind,
		      enum crew_mode mode, unsigned workers, unsigned caps)
{
	wl_defaults(kind, cfg);
	cfg->mode = mode;
	cfg->workers = workers;
	cfg->stall_timeout_s = 30;
	if (kind == WL_INC) {
		int crowded = workers > (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
		cfg->iters =
			(caps & TALLY_CAP_SPINNING) && crowded ? 2000 : 100000;
	} else {
		cfg->iters = 50;
		cfg->sleep_us = 200;
	}
}

static void run_exact(const tally_backend_info *b, enum wl_kind kind,
		      enum crew_mode mode, unsigned workers)
{
	struct wl_config cfg;
	char msg[256];
	tally *t;

	configure(&cfg, kind, mode, workers, b->caps);
	assert_int_equal(wl_check(&cfg, msg, sizeof(msg)), 0);
	assert_int_equal(
		tally_create(&t, b->name, cfg.initial,
			     mode == CREW_PROCESSES ? TALLY_PSHARED : 0),
		0);
	enum harness_verdict v = wl_run(t, &cfg, &res);
	tally_destroy(t);
	if (v != HARNESS_EXACT && res.lost == 0)
		fail_msg("%s %s %s x%u: %s: %s", b->name, wl_kind_name(kind),
			 crew_mode_name(mode), workers, harness_verdict_name(v),
			 res.reason);

	uint64_t sum = 0;
	for (unsigned k = 0; k < workers; k++) {
		assert_int_equal(res.done[k], cfg.iters);
		sum += res.done[k];
	}
	assert_int_equal(res.total_ops, sum);
	assert_false(res.stalled);
	assert_int_equal(res.killed_worker, -1);
	assert_int_equal(res.died_worker, -1);
	if (res.lost != 0)
		fail_msg("%s %s %s x%u: expected %lld, got %lld", b->name,
			 wl_kind_name(kind), crew_mode_name(mode), workers,
			 (long long)res.expected, (long long)res.actual);
}

/* Every synchronized backend, both workloads, 1, 2 and 4 workers. */
static void every_backend_exact(enum crew_mode mode, const unsigned *workers,
				size_t n)
{
	tally_backend_info b;

	FOR_EACH_BACKEND(b)
	{
		if ((b.caps & TALLY_CAP_RACY) ||
		    (mode == CREW_PROCESSES && !(b.caps & TALLY_CAP_PSHARED)))
			continue;
		for (size_t w = 0; w < n; w++) {
			run_exact(&b, WL_INC, mode, workers[w]);
			run_exact(&b, WL_ADDSUB, mode, workers[w]);
		}
	}
}

static void test_threads_exact(void **state)
{
	static const unsigned workers[] = {1, 2, 4};

	(void)state;
	every_backend_exact(CREW_THREADS, workers, 3);
}

/* Forked workers really share the counter: were it placed in a private
 * mapping (src/place.c, src/arena.c), each child would add to its own copy
 * and the parent would read the initial value ("expected 300000, got 0"). */
static void test_processes_exact(void **state)
{
	static const unsigned workers[] = {2, 4};

	(void)state;
	every_backend_exact(CREW_PROCESSES, workers, 2);
}

/* The expected value is exact, and a delta that cannot fit is refused. */
static void test_expected_values(void **state)
{
	struct wl_config cfg;
	char msg[256];

	(void)state;
	wl_defaults(WL_INC, &cfg);
	assert_int_equal(wl_check(&cfg, msg, sizeof(msg)), 0);
	assert_int_equal(wl_worker_delta(&cfg, 0), 1);
	assert_int_equal(wl_worker_delta(&cfg, 1), 2);
	wl_defaults(WL_ADDSUB, &cfg);
	assert_int_equal(wl_worker_delta(&cfg, 0), 5);
	assert_int_equal(wl_worker_delta(&cfg, 1), -5);

	/* The end value fits, but the counter could pass INT64_MAX on the
	 * way (all adds before all subtracts). */
	cfg.initial = INT64_MAX - 100;
	cfg.iters = 100;
	cfg.delta = 5;
	assert_int_equal(wl_check(&cfg, msg, sizeof(msg)), -1);

	wl_defaults(WL_INC, &cfg);
	cfg.workers = 4;
	cfg.delta = INT64_MAX / 3; /* worker 3 adds 4 x delta: too big */
	cfg.iters = 1;
	assert_int_equal(wl_check(&cfg, msg, sizeof(msg)), -1);
	cfg.delta = INT64_MAX / 10;
	assert_int_equal(wl_check(&cfg, msg, sizeof(msg)), 0);
	cfg.delta = INT64_MIN / 10;
	assert_int_equal(wl_check(&cfg, msg, sizeof(msg)), 0);
	cfg.iters = 2;
	assert_int_equal(wl_check(&cfg, msg, sizeof(msg)), -1);
}

/*
 * The deliberately racy backend proves the harness can fail: the check must
 * see its lost updates.  A loss is a matter of timing, so try a few times
 * with growing work; on two or more cores the first try loses nearly always.
 */
static void lost_updates_are_caught(enum crew_mode mode)
{
	struct wl_config cfg;

	wl_defaults(WL_INC, &cfg);
	cfg.mode = mode;
	for (int attempt = 0; attempt < 6; attempt++) {
		tally *t;

		cfg.iters = 1000000u << attempt;
		assert_int_equal(tally_create(&t, "none", 0,
					      mode == CREW_PROCESSES
						      ? TALLY_PSHARED
						      : 0),
				 0);
		enum harness_verdict v = wl_run(t, &cfg, &res);
		tally_destroy(t);
		assert_true(res.expected == (int64_t)(3 * cfg.iters));
		if (res.lost != 0) {
			/* The harness says so: the verdict, not the caller,
			 * calls it a loss. */
			assert_int_equal(v, HARNESS_LOST);
			assert_true(res.actual != res.expected);
			return;
		}
		assert_int_equal(v, HARNESS_EXACT);
	}
	fail_msg(
		"the 'none' backend never lost an update: either this machine has one CPU or the harness cannot see a loss");
}

static void test_harness_catches_lost_updates(void **state)
{
	(void)state;
	lost_updates_are_caught(CREW_THREADS);
	lost_updates_are_caught(CREW_PROCESSES);
}

static int stop_at_once(void *arg)
{
	(void)arg;
	return 1;
}

/* The harness judges a run that did not go as asked (a worker killed, a
 * run stopped by its caller) a fault, names it, and still checks the
 * count: a killed worker is no loss. */
static void test_faults_are_judged_by_the_harness(void **state)
{
	struct wl_config cfg;
	struct wl_result *r = malloc(sizeof(*r));
	tally *t;

	(void)state;
	assert_non_null(r);
	wl_defaults(WL_INC, &cfg);
	cfg.mode = CREW_PROCESSES;
	cfg.iters = 1000000000;
	cfg.kill_after_ms = 20;
	/* The survivor stops at the time limit (no fault of its own); a
	 * lock-free counter, so that the killed worker holds no lock (a
	 * robust mutex needs the kernel's robust list, which qemu-user
	 * lacks). */
	cfg.time_limit_s = 0.3;
	cfg.stall_timeout_s = 60;
	assert_int_equal(tally_create(&t, "atomic", 0, TALLY_PSHARED), 0);
	assert_int_equal(wl_run(t, &cfg, r), HARNESS_FAULT);
	assert_int_equal(r->verdict, HARNESS_FAULT);
	assert_int_equal(r->killed_worker, 0);
	assert_non_null(strstr(r->reason, "worker 0 was killed"));
	tally_destroy(t);

	wl_defaults(WL_INC, &cfg);
	cfg.iters = 1000000000;
	cfg.stop = stop_at_once;
	assert_int_equal(tally_create(&t, "atomic", 0, 0), 0);
	assert_int_equal(wl_run(t, &cfg, r), HARNESS_FAULT);
	assert_true(r->interrupted);
	assert_int_equal(r->lost, 0);
	assert_non_null(strstr(r->reason, "interrupted"));
	tally_destroy(t);
	free(r);
}

/*
 * adaptive hands the lock directly to a waiter that has waited too long.
 * If that waiter's process is killed while it waits, the unlock must not
 * hand the lock to the dead: here a child becomes that waiter (it finds
 * the lock held, sleeps, is woken by an unlock, finds the lock retaken and
 * asks for it), is killed, and the parent's next add must still get the
 * lock.  A lock handed to the dead would hang it until the alarm.
 */
static tally *starved;
static pid_t starver;

static void fork_a_waiter(void *unused)
{
	(void)unused;
	starver = fork();
	if (starver == 0)
		_exit(tally_add(starved, 1) < 0);
	usleep(100000); /* it finds the lock held and sleeps (spin=0) */
}

static void kill_the_waiter(void *unused)
{
	(void)unused;
	usleep(100000); /* woken by our unlock, it found the lock retaken */
	kill(starver, SIGKILL);
	waitpid(starver, NULL, 0);
}

static void test_a_killed_starving_waiter_is_passed_over(void **state)
{
	int64_t v;

	(void)state;
	SKIP_UNLESS_BUILT("adaptive");
	assert_int_equal(tally_create(&starved, "adaptive:spin=0,fair_us=1", 0,
				      TALLY_PSHARED),
			 0);
	assert_int_equal(tally_add_cs(starved, 1, fork_a_waiter, NULL), 0);
	assert_true(starver > 0);
	/* Retaken at once, before the woken child runs (if the child won,
	 * it added and left, and the kill finds it gone: no harm). */
	assert_int_equal(tally_add_cs(starved, 1, kill_the_waiter, NULL), 0);
	alarm(10);
	assert_int_equal(tally_add(starved, 1), 0);
	alarm(0);
	assert_int_equal(tally_get(starved, &v), 0);
	assert_true(v == 3 || v == 4);
	tally_destroy(starved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expected_values),
		cmocka_unit_test(test_threads_exact),
		cmocka_unit_test(test_processes_exact),
		cmocka_unit_test(test_harness_catches_lost_updates),
		cmocka_unit_test(test_faults_are_judged_by_the_harness),
		cmocka_unit_test(test_a_killed_starving_waiter_is_passed_over),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
