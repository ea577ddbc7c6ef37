/* The queue locks' node pools (src/qnodes.h): a holder that does not unlock
 * while bounded adds time out behind it, one after another, more of them
 * than the pool has nodes.  Each must come back TALLY_ETIMEDOUT within its
 * bound -- an MCS waiter that gave up leaves its node in the queue until an
 * unlock passes it, so the pool fills, and a claim that ignored the bound
 * would wait for a node for ever (a CLH waiter with nobody behind it takes
 * its node back: there the test guards the bound and the counts) -- and
 * once the holder unlocks, the nodes come back and every count is exact.
 * Threads only: the tsan preset runs it too. */
#include "tally.h"
#include "watchdog.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* More adds than any pool has nodes (TALLY_QNODES_MAX + 1 in clh's). */
#define ADDS	300
#define WAIT_MS 2
/* An add that ran past this came back late: the bound was not kept. */
#define LATE_NS (2000 * 1000000LL)

static _Atomic int held, go;

/* Inside the lock: say so, and stay there until told to go. */
static void hold(void *arg)
{
	(void)arg;
	atomic_store(&held, 1);
	while (!atomic_load(&go)) {
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
	}
}

static void *holder(void *arg)
{
	tally *t = arg;

	if (tally_add_cs(t, 1, hold, NULL) != 0)
		atomic_store(&held, -1);
	return NULL;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void stalled_holder(const char *backend)
{
	tally_backend_info info;
	tally *t;
	pthread_t th;

	if (tally_backend_find(backend, &info) != 0 || !info.built_in) {
		printf("%s is not built in: nothing to test\n", backend);
		return;
	}
	assert_int_equal(tally_create(&t, backend, 0, 0), 0);
	atomic_store(&held, 0);
	atomic_store(&go, 0);
	assert_int_equal(pthread_create(&th, NULL, holder, t), 0);
	while (atomic_load(&held) == 0)
		sched_yield();
	assert_int_equal(atomic_load(&held), 1);

	/* A claim that waits for ever must fail the test, not hang it. */
	watchdog_arm(
		60, 1,
		"unit_qnodes: an add ignored its wait bound (no queue node came free): hung\n");
	for (int i = 0; i < ADDS; i++) {
		int64_t start = now_ns();
		int rc = tally_add_wait(t, 1, WAIT_MS);
		int64_t took = now_ns() - start;

		if (rc != TALLY_ETIMEDOUT || took > LATE_NS)
			fail_msg(
				"%s: add %d behind a stalled holder: %s after %.3f s (bound %d ms)",
				backend, i, tally_errname(rc),
				(double)took / 1e9, WAIT_MS);
	}
	/* The last ones found the pool full: the error says why. */
	const char *why = tally_explain(TALLY_ETIMEDOUT);
	if (strcmp(backend, "mcs") == 0 &&
	    (why == NULL || strstr(why, "queue nodes") == NULL))
		fail_msg("%s: a full pool is not explained: %s", backend,
			 why != NULL ? why : "(nothing)");
	watchdog_disarm();

	atomic_store(&go, 1);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(atomic_load(&held), 1);
	/* The unlock passed every node that was left: all come back. */
	for (int i = 0; i < ADDS; i++)
		assert_int_equal(tally_add_wait(t, 1, 1000), 0);
	int64_t v;
	assert_int_equal(tally_get(t, &v), 0);
	assert_int_equal(v, 1 + ADDS);
	tally_destroy(t);
}

static void test_mcs_keeps_its_bound_when_the_pool_is_full(void **state)
{
	(void)state;
	stalled_holder("mcs");
}

static void test_clh_keeps_its_bound_when_the_pool_is_full(void **state)
{
	(void)state;
	stalled_holder("clh");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_mcs_keeps_its_bound_when_the_pool_is_full),
		cmocka_unit_test(
			test_clh_keeps_its_bound_when_the_pool_is_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
