/* The redis backend against a private server ($TALLY_TEST_REDIS_URL): the
 * same invariants as every backend, plus what only a server has. */
#include "tally.h"
#include "workload.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

static char spec[512];

/* "redis:url=...,key=unit-PID-what" */
static const char *backend(const char *what, const char *extra)
{
	snprintf(spec, sizeof(spec), "redis:url=%s,key=unit-%ld-%s%s",
		 getenv("TALLY_TEST_REDIS_URL"), (long)getpid(), what, extra);
	return spec;
}

static void test_wraps_like_every_backend(void **state)
{
	tally *t;
	int64_t v;

	(void)state;
	assert_int_equal(tally_create(&t, backend("wrap", ""), INT64_MAX, 0),
			 0);
	/* INCRBY refuses to overflow; tally wraps modulo 2^64 instead. */
	assert_int_equal(tally_add(t, 1), 0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(tally_add(t, -1), 0);
	assert_int_equal(tally_add(t, INT64_MIN), 0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == -1);
	tally_destroy(t);
}

static void test_keep_joins_an_existing_counter(void **state)
{
	tally *a, *b;
	int64_t v;

	(void)state;
	assert_int_equal(tally_create(&a, backend("keep", ""), 40, 0), 0);
	assert_int_equal(tally_add(a, 2), 0);
	/* `keep` joins without resetting; without it, create resets. */
	assert_int_equal(tally_create(&b, backend("keep", ",keep"), 0, 0), 0);
	assert_int_equal(tally_get(b, &v), 0);
	assert_int_equal(v, 42);
	tally_destroy(b);
	assert_int_equal(tally_create(&b, backend("keep", ""), 7, 0), 0);
	assert_int_equal(tally_get(a, &v), 0);
	assert_int_equal(v, 7);
	tally_destroy(a);
	tally_destroy(b);
}

static void test_bad_options_and_unreachable_server(void **state)
{
	static const char *const bad[] = {
		"redis:url=http://x",	 "redis:url=redis://",
		"redis:url=redis://h:0", "redis:url=redis://h:99999",
		"redis:url=redis://h/x", "redis:key=",
		"redis:timeout_ms=0",	 "redis:colour=blue",
		"redis:keep=1",
	};
	tally *t = (tally *)0x1;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tally_create(&t, bad[i], 0, 0), TALLY_EOPTION);
	/* Port 1 on loopback: refused at once. */
	assert_int_equal(
		tally_create(&t, "redis:url=redis://127.0.0.1:1", 0, 0),
		TALLY_EREMOTE);
	assert_ptr_equal(t, (tally *)0x1);
}

/* Threads and forked processes, each with connections of their own. */
static void test_workloads_exact(void **state)
{
	static const enum wl_mode modes[] = {WL_THREADS, WL_PROCESSES};
	struct wl_config cfg;
	struct wl_result *res = malloc(sizeof(*res));

	(void)state;
	assert_non_null(res);
	for (int m = 0; m < 2; m++) {
		for (unsigned workers = 1; workers <= 4; workers *= 2) {
			tally *t;

			wl_defaults(WL_INC, &cfg);
			cfg.mode = modes[m];
			cfg.workers = workers;
			cfg.iters = 2000;
			assert_int_equal(tally_create(&t, backend("inc", ""), 0,
						      m ? TALLY_PSHARED : 0),
					 0);
			assert_int_equal(wl_run(t, &cfg, res), 0);
			tally_destroy(t);
			assert_int_equal(res->add_error, 0);
			assert_int_equal(res->lost, 0);
			assert_true(
				res->expected ==
				(int64_t)(2000 * workers * (workers + 1) / 2));
		}
	}
	free(res);
}

int main(void)
{
	if (getenv("TALLY_TEST_REDIS_URL") == NULL) {
		fprintf(stderr, "unit_redis: set TALLY_TEST_REDIS_URL\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wraps_like_every_backend),
		cmocka_unit_test(test_keep_joins_an_existing_counter),
		cmocka_unit_test(test_bad_options_and_unreachable_server),
		cmocka_unit_test(test_workloads_exact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
