/* TALLY_INLINE: the add that a program does itself for the atomic backend,
 * and the library's add for every other, give the same counts, wrap-around
 * and errors; the fast path is armed exactly where the backend allows it. */
#define TALLY_INLINE
#include "tally.h"

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

#define ADDS 100000

/* The word the inline add uses, read as the header's inline code reads it. */
static void *inline_word(tally *t)
{
	void *word;

	memcpy(&word, (const char *)t + offsetof(struct tally__hot, word),
	       sizeof(word));
	return word;
}

static void test_fast_path_is_armed_for_atomic_only(void **state)
{
	tally_backend_info b;
	tally *t;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		assert_int_equal(tally_create(&t, b.name, 0, 0), 0);
		if ((inline_word(t) != NULL) != (strcmp(b.name, "atomic") == 0))
			fail_msg(
				"%s: inline fast path %s", b.name,
				inline_word(t)
					? "armed, but its add is not a plain atomic add"
					: "not armed");
		tally_destroy(t);
	}
}

/* Both workers begin together: past a barrier, and each waits until the
 * other is running too. */
struct job {
	tally *t;
	int64_t delta;
	pthread_barrier_t *start;
	_Atomic int *running;
};

static void *adder(void *p)
{
	const struct job *j = p;

	pthread_barrier_wait(j->start);
	atomic_fetch_add(j->running, 1);
	while (atomic_load(j->running) < 2)
		sched_yield();
	for (int i = 0; i < ADDS; i++)
		if (tally_add(j->t, j->delta) < 0)
			return p;
	return NULL;
}

/* Two threads, adding 1 and 2: exact on every synchronized backend. */
static void test_threads_count_exactly(void **state)
{
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		pthread_barrier_t start;
		_Atomic int running = 0;
		struct job j[2];
		pthread_t th[2];
		void *r[2];
		int64_t v;

		if (b.caps & TALLY_CAP_RACY)
			continue;
		assert_int_equal(tally_create(&j[0].t, b.name, 500, 0), 0);
		j[1].t = j[0].t;
		j[0].delta = 1;
		j[1].delta = 2;
		j[0].start = j[1].start = &start;
		j[0].running = j[1].running = &running;
		assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
		for (int k = 0; k < 2; k++)
			assert_int_equal(
				pthread_create(&th[k], NULL, adder, &j[k]), 0);
		for (int k = 0; k < 2; k++)
			pthread_join(th[k], &r[k]);
		pthread_barrier_destroy(&start);
		assert_null(r[0]);
		assert_null(r[1]);
		assert_int_equal(tally_get(j[0].t, &v), 0);
		if (v != 500 + 3 * ADDS)
			fail_msg("%s: %lld, not %d", b.name, (long long)v,
				 500 + 3 * ADDS);
		tally_destroy(j[0].t);
	}
}

static void test_wraps_and_refuses_null_as_the_library_does(void **state)
{
	tally *t;
	int64_t v;

	(void)state;
	assert_int_equal(tally_add(NULL, 1), TALLY_EINVAL);
	assert_int_equal(tally_create(&t, "atomic", INT64_MAX, 0), 0);
	assert_int_equal(tally_add(t, 1), 0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(tally_add(t, INT64_MIN), 0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_true(v == 0);
	tally_destroy(t);
}

static char name[64];

/* Removes the named counter even when an assertion ended the test. */
static int unlink_name(void **state)
{
	(void)state;
	tally_unlink(name);
	return 0;
}

/* A named counter (tally_open, renamed like tally_create) is armed too, and
 * its shared word takes inline adds from two handles. */
static void test_named_counter_adds_inline(void **state)
{
	tally *a, *b;
	int64_t v;

	(void)state;
	snprintf(name, sizeof(name), "unit-inline-%ld", (long)getpid());
	tally_unlink(name);
	assert_int_equal(
		tally_open(&a, name, "atomic", 7, TALLY_CREATE | TALLY_EXCL),
		0);
	assert_int_equal(tally_open(&b, name, NULL, 0, 0), 0);
	assert_non_null(inline_word(a));
	assert_non_null(inline_word(b));
	assert_int_equal(tally_add(a, 5), 0);
	assert_int_equal(tally_add(b, -2), 0);
	assert_int_equal(tally_get(a, &v), 0);
	assert_int_equal(v, 10);
	tally_destroy(a);
	tally_destroy(b);
	assert_int_equal(tally_unlink(name), 0);
}

/* An argument: run only the tests whose names match it (cmocka's filter),
 * as the must-fail run does (tests/unit.cmake). */
int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fast_path_is_armed_for_atomic_only),
		cmocka_unit_test(test_threads_count_exactly),
		cmocka_unit_test(
			test_wraps_and_refuses_null_as_the_library_does),
		cmocka_unit_test_teardown(test_named_counter_adds_inline,
					  unlink_name),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
