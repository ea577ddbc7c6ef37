/* Unit tests of the public API, table-driven over the backend registry. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>

#include <cmocka.h>

#include "test_util.h"

static void test_registry_lists_known_backends(void **state)
{
	static const char *const expected[] = {"none", "mutex",	 "sem",
					       "spin", "ticket", "atomic"};
	tally_backend_info info;

	(void)state;
	assert_true(tally_backend_count() >= 6);
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(tally_backend_find(expected[i], &info), 0);
		assert_string_equal(info.name, expected[i]);
		assert_non_null(info.summary);
	}
	assert_int_equal(tally_backend_at(tally_backend_count(), &info),
			 TALLY_EINVAL);
	assert_int_equal(tally_backend_at(0, NULL), TALLY_EINVAL);
	assert_int_equal(tally_backend_find("nope", &info), TALLY_ENOBACKEND);
}

static void test_names_are_case_insensitive(void **state)
{
	tally *t = NULL;

	(void)state;
	assert_int_equal(tally_create(&t, "MuTeX", 7, 0), 0);
	assert_string_equal(tally_backend_name(t), "mutex");
	tally_destroy(t);
}

static void test_bad_arguments_change_nothing(void **state)
{
	tally *t = (tally *)0x1; /* must stay untouched on failure */
	int64_t v = 42;

	(void)state;
	assert_int_equal(tally_create(NULL, "atomic", 0, 0), TALLY_EINVAL);
	assert_int_equal(tally_create(&t, "atomic", 0, 1u << 20), TALLY_EINVAL);
	assert_int_equal(tally_create(&t, "no-such", 0, 0), TALLY_ENOBACKEND);
	assert_int_equal(tally_create(&t, "", 0, 0), TALLY_ENOBACKEND);
	assert_int_equal(tally_create(&t, "mutex:x=1", 0, 0), TALLY_EOPTION);
	assert_ptr_equal(t, (tally *)0x1);
	assert_int_equal(tally_add(NULL, 1), TALLY_EINVAL);
	assert_int_equal(tally_get(NULL, &v), TALLY_EINVAL);
	assert_int_equal(v, 42);
	assert_int_equal(tally_flush(NULL), TALLY_EINVAL);
	tally_destroy(NULL);

	assert_int_equal(tally_create(&t, "atomic", 3, 0), 0);
	assert_int_equal(tally_get(t, NULL), TALLY_EINVAL);
	tally_destroy(t);
}

/* none takes one option, window_us=N (0..1000000); anything else is refused
 * and leaves the out-parameter alone.  A window only delays the store: one
 * worker alone still counts exactly. */
static void test_none_window_option(void **state)
{
	static const char *const bad[] = {
		"none:window_us=",	  "none:window_us=-1",
		"none:window_us=1000001", "none:window_us=12x",
		"none:window_us= 5",	  "none:window=5",
		"none:window_us=5,x=1",	  "none:window_us=99999999",
	};
	tally *t = (tally *)0x1;
	int64_t v = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(tally_create(&t, bad[i], 0, 0), TALLY_EOPTION);
		assert_ptr_equal(t, (tally *)0x1);
	}
	assert_int_equal(tally_create(&t, "none:window_us=0", 5, 0), 0);
	tally_destroy(t);
	assert_int_equal(tally_create(&t, "NONE:window_us=1000000", 5, 0), 0);
	tally_destroy(t);
	assert_int_equal(
		tally_create(&t, "none:window_us=20", 5, TALLY_PSHARED), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(tally_add(t, 3), 0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_int_equal(v, 35);
	tally_destroy(t);
}

/* The environment names a backend other than the default (one with a lock:
 * the default is lock-free), and an explicit name, the default's, wins over
 * it. */
static void test_default_comes_from_environment(void **state)
{
	tally_backend_info env;
	tally *t;

	(void)state;
	PICK_OR_SKIP(TALLY_CAP_LOCKED, 0, env);
	assert_string_not_equal(env.name, TALLY_DEFAULT_BACKEND);
	unsetenv(TALLY_ENV_BACKEND);
	assert_int_equal(tally_create(&t, NULL, 0, 0), 0);
	assert_string_equal(tally_backend_name(t), TALLY_DEFAULT_BACKEND);
	tally_destroy(t);

	setenv(TALLY_ENV_BACKEND, env.name, 1);
	assert_int_equal(tally_create(&t, NULL, 0, 0), 0);
	assert_string_equal(tally_backend_name(t), env.name);
	tally_destroy(t);
	assert_int_equal(tally_create(&t, TALLY_DEFAULT_BACKEND, 0, 0), 0);
	assert_string_equal(tally_backend_name(t), TALLY_DEFAULT_BACKEND);
	tally_destroy(t);

	setenv(TALLY_ENV_BACKEND, "bogus", 1);
	assert_int_equal(tally_create(&t, NULL, 0, 0), TALLY_ENOBACKEND);
	setenv(TALLY_ENV_BACKEND, "", 1);
	assert_int_equal(tally_create(&t, NULL, 0, 0), 0);
	assert_string_equal(tally_backend_name(t), TALLY_DEFAULT_BACKEND);
	tally_destroy(t);
	unsetenv(TALLY_ENV_BACKEND);
}

/* Every backend wraps modulo 2^64 the same way, in private and shared
 * memory. */
static void test_every_backend_wraps_alike(void **state)
{
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		for (unsigned flags = 0; flags <= TALLY_PSHARED;
		     flags += TALLY_PSHARED) {
			tally *t;
			int64_t v;

			if ((flags & TALLY_PSHARED) &&
			    !(b.caps & TALLY_CAP_PSHARED))
				continue;
			assert_int_equal(
				tally_create(&t, b.name, INT64_MAX, flags), 0);
			assert_int_equal(tally_add(t, 1), 0);
			assert_int_equal(tally_get(t, &v), 0);
			assert_true(v == INT64_MIN);
			assert_int_equal(tally_add(t, -1), 0);
			assert_int_equal(tally_add(t, INT64_MIN), 0);
			assert_int_equal(tally_get(t, &v), 0);
			assert_true(v == -1);
			assert_int_equal(tally_add(t, INT64_MIN), 0);
			assert_int_equal(tally_add(t, INT64_MIN), 0);
			/* Every add here is applied when it returns: a flush
			 * has nothing to wait for and changes nothing. */
			assert_int_equal(tally_flush(t), 0);
			assert_int_equal(tally_get(t, &v), 0);
			assert_true(v == -1);
			tally_destroy(t);
		}
	}
}

static void test_errors_have_messages_and_names(void **state)
{
	static const int codes[] = {
#define CODE(name, value, msg) value,
		TALLY_ERRNO_MAP(CODE)
#undef CODE
	};

	(void)state;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		assert_string_not_equal(tally_strerror(codes[i]),
					"unknown error");
		assert_true(strncmp(tally_errname(codes[i]), "TALLY_E", 7) ==
			    0);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(tally_strerror(codes[i]),
						tally_strerror(codes[j]));
	}
	assert_string_equal(tally_strerror(-9999), "unknown error");
	assert_string_equal(tally_errname(TALLY_ENOTBUILT), "TALLY_ENOTBUILT");
	assert_string_equal(tally_version(), TALLY_VERSION_STRING);
}

/* A backend not built in is still known, and says so. */
static void test_not_built_in_is_not_unknown(void **state)
{
	tally_backend_info b;
	tally *t;
	int missing = 0;

	(void)state;
	for (size_t i = 0; i < tally_backend_count(); i++) {
		tally_backend_at(i, &b);
		if (b.built_in)
			continue;
		missing++;
		assert_int_equal(tally_create(&t, b.name, 0, 0),
				 TALLY_ENOTBUILT);
	}
	if (missing == 0)
		skip(); /* every optional library was present at build time */
}

/*
 * The critical-section probe.  Every worker's callback counts itself into
 * `occupied` on entry and out on exit: under a lock that excludes, nobody
 * ever finds anyone inside; two workers inside at once are caught the
 * moment they overlap, not only when the overlap happens to lose an
 * increment.  A count rather than a flag, so that one overlap's exit does
 * not clear the mark of a worker still inside and hide the next.  Relaxed
 * order: under a working lock the lock orders the sections, and the count
 * is atomic only so that a broken lock's overlap is a finding, not a data
 * race of the test's own.
 *
 * So that an overlap cannot be missed by chance of scheduling, the workers
 * start together (a barrier, then each waits until all are running), and
 * every 64th section stays open until another worker is at the door: one
 * that has said it is calling tally_add_cs() (`knocking`) and has not
 * returned.  A lock keeps that one out; no lock lets it walk into the
 * occupied section.  The wait ends when every other worker is done.
 */
struct cs_arg {
	tally *t;
	pthread_barrier_t start;
	unsigned workers;
	_Atomic unsigned running, done, knocking;
	_Atomic unsigned occupied; /* workers inside now */
	_Atomic unsigned overlaps;
	uint64_t plain; /* touched only inside the critical section */
};

/* tally_add_cs() on the probe, knocking while it runs. */
static int probed_add_cs(struct cs_arg *a, void (*in)(void *))
{
	atomic_fetch_add(&a->knocking, 1);
	int rc = tally_add_cs(a->t, 3, in, a);
	atomic_fetch_sub(&a->knocking, 1);
	return rc;
}

static void enter(struct cs_arg *a)
{
	if (atomic_fetch_add_explicit(&a->occupied, 1, memory_order_relaxed))
		atomic_fetch_add_explicit(&a->overlaps, 1,
					  memory_order_relaxed);
}

static void leave(struct cs_arg *a)
{
	atomic_fetch_sub_explicit(&a->occupied, 1, memory_order_relaxed);
}

/* Fails the test if the probe ever found the section occupied. */
static void check_exclusive(const char *what, struct cs_arg *a)
{
	unsigned n = atomic_load(&a->overlaps);

	if (n != 0)
		fail_msg(
			"%s: %u times a worker found the critical section occupied: the lock does not exclude",
			what, n);
}

static void start_together(struct cs_arg *a, unsigned n)
{
	a->workers = n;
	assert_int_equal(pthread_barrier_init(&a->start, NULL, n), 0);
}

/* In a worker: returns when all of them are past the barrier. */
static void wait_for_all(struct cs_arg *a)
{
	pthread_barrier_wait(&a->start);
	atomic_fetch_add(&a->running, 1);
	while (atomic_load(&a->running) < a->workers)
		sched_yield();
}

static long elapsed_ns(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000000000L + t.tv_nsec - t0->tv_nsec;
}

/* Inside: until another worker knocks (this one knocks too), or every
 * other worker is done; then on the CPU for up to 200 us more, time for
 * one that is not kept out to come in (a descheduled one may need a few
 * tries), or until one has. */
static void hold_the_door(struct cs_arg *a)
{
	struct timespec t0;

	while (atomic_load(&a->knocking) < 2 &&
	       atomic_load(&a->done) + 1 < a->workers)
		sched_yield();
	unsigned seen = atomic_load(&a->overlaps);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (elapsed_ns(&t0) < 200000 && atomic_load(&a->overlaps) == seen)
		;
}

static void inside(void *p)
{
	struct cs_arg *a = p;

	enter(a);
	uint64_t v = *(volatile uint64_t *)&a->plain;
	if (v % 64 == 63)
		hold_the_door(a);
	*(volatile uint64_t *)&a->plain = v + 1; /* lost if not exclusive */
	leave(a);
}

static void *cs_worker(void *p)
{
	struct cs_arg *a = p;
	void *r = NULL;

	wait_for_all(a);
	for (int i = 0; i < 20000 && r == NULL; i++)
		if (probed_add_cs(a, inside) != 0)
			r = p;
	atomic_fetch_add(&a->done, 1);
	return r;
}

/* tally_add_cs() runs its callback under the lock, so a plain increment in
 * it is never lost; backends without a lock refuse it. */
static void test_add_cs_runs_inside_the_lock(void **state)
{
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		struct cs_arg a = {0};
		pthread_t th[2];
		void *r0, *r1;
		int64_t v;

		assert_int_equal(tally_create(&a.t, b.name, 0, 0), 0);
		if (!(b.caps & TALLY_CAP_LOCKED)) {
			assert_int_equal(tally_add_cs(a.t, 1, inside, &a),
					 TALLY_EUNSUPPORTED);
			tally_destroy(a.t);
			continue;
		}
		assert_int_equal(tally_add_cs(a.t, 1, NULL, &a), TALLY_EINVAL);
		assert_int_equal(tally_add_cs(NULL, 1, inside, &a),
				 TALLY_EINVAL);
		start_together(&a, 2);
		for (int k = 0; k < 2; k++)
			assert_int_equal(
				pthread_create(&th[k], NULL, cs_worker, &a), 0);
		pthread_join(th[0], &r0);
		pthread_join(th[1], &r1);
		pthread_barrier_destroy(&a.start);
		assert_null(r0);
		assert_null(r1);
		check_exclusive(b.name, &a);
		assert_int_equal(tally_get(a.t, &v), 0);
		assert_int_equal(v, 3 * 40000);
		if (a.plain != 40000)
			fail_msg(
				"%s: %llu of 40000 calls inside the lock counted: the callback ran outside it",
				b.name, (unsigned long long)a.plain);
		tally_destroy(a.t);
	}
}

/*
 * Backend options: each lock variant a backend offers (src/backend.h,
 * tally__opt) is a working lock, and a bad option or value is
 * TALLY_EOPTION with nothing made.  Variants of backends not built in are
 * skipped (they answer TALLY_ENOTBUILT).
 */
static const char *const good_options[] = {
	"spin:backoff=exp",
	"spin:backoff=none",
	"ticket:backoff=none",
	"ticket:backoff=prop",
	"ticket:backoff=prop,shift=0",
	"ticket:shift=16,backoff=prop",
	"adaptive:spin=0",
	"adaptive:spin=64,fair_us=1000000",
	/* every contended waiter is handed the lock: the hand-over path */
	"adaptive:spin=0,fair_us=1",
	/* a bound on the wait (the core's option, for every lock) */
	"mutex:wait_ms=60000",
	"sem:wait_ms=60000",
	"spin:wait_ms=60000,backoff=none",
	"ticket:backoff=prop,wait_ms=60000",
	"mcs:wait_ms=60000",
	"clh:wait_ms=60000",
	"adaptive:wait_ms=60000,spin=0,fair_us=1",
	"spin:wait_ms=0",
};

static const char *const bad_options[] = {
	"spin:backoff",
	"spin:backoff=",
	"spin:backoff=fast",
	"spin:backoff=expo",
	"spin:x=1",
	"spin:backoff=exp,",
	"ticket:shift=17",
	"ticket:shift=-1",
	"ticket:shift=",
	"ticket:shift=1x",
	"ticket:backoff=exp",
	"adaptive:spin=65",
	"adaptive:fair_us=0",
	"adaptive:spin",
	"adaptive:fair_us=1000001",
	"adaptive:spin=1,bogus",
	"adaptive:spin=99999999999",
	/* one rule: a repeated option, or two that contradict each other, or
	 * one without the other it tunes, is refused everywhere */
	"spin:backoff=exp,backoff=none",
	"spin:backoff=exp,backoff=exp",
	"ticket:backoff=prop,shift=4,shift=5",
	"ticket:shift=4",
	"ticket:backoff=none,shift=4",
	"adaptive:spin=1,spin=3",
	"adaptive:fair_us=5,spin=1,fair_us=5",
	"none:window_us=1,window_us=2",
	"percpu:path=atomic,path=atomic",
	"percpu:path=atomic,path=auto",
	"percpu:path=fast",
	"redis:key=a,key=b",
	"redis:keep,reset",
	"redis:reset,keep",
	"redis:keep,keep",
	/* wait_ms: a number of milliseconds, for a backend with a lock */
	"spin:wait_ms=1,wait_ms=2",
	"mutex:wait_ms=1,wait_ms=1",
	"spin:wait_ms=86400001",
	"spin:wait_ms=-1",
	"spin:wait_ms=",
	"spin:wait_ms",
	"mutex:wait_ms=5,bogus",
	"mutex:bogus",
	"atomic:wait_ms=5",
	"sharded:wait_ms=5",
	"percpu:wait_ms=5",
	"none:wait_ms=5",
	"redis:wait_ms=5",
};

/* As inside(), but every fourth call gives up the CPU while holding the
 * lock: the other workers then find it held, spin, sleep (adaptive) and,
 * past fair_us, ask for it to be handed over. */
static void inside_yielding(void *p)
{
	struct cs_arg *a = p;

	enter(a);
	uint64_t v = *(volatile uint64_t *)&a->plain;
	if (v % 4 == 0)
		sched_yield();
	if (v % 64 == 63)
		hold_the_door(a);
	*(volatile uint64_t *)&a->plain = v + 1;
	leave(a);
}

#define CROWD_ADDS 4000

static void *crowd_worker(void *p)
{
	struct cs_arg *a = p;
	void *r = NULL;

	wait_for_all(a);
	for (int i = 0; i < CROWD_ADDS && r == NULL; i++)
		if (probed_add_cs(a, inside_yielding) != 0)
			r = p;
	atomic_fetch_add(&a->done, 1);
	return r;
}

static void test_backend_options(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_options) / sizeof(*bad_options);
	     i++) {
		tally *t = (tally *)0x1;

		if (!built_in(bad_options[i]))
			continue;
		if (tally_create(&t, bad_options[i], 0, 0) != TALLY_EOPTION)
			fail_msg("'%s' was not refused as TALLY_EOPTION",
				 bad_options[i]);
		assert_ptr_equal(t, (tally *)0x1);
	}
	for (size_t i = 0; i < sizeof(good_options) / sizeof(*good_options);
	     i++) {
		struct cs_arg a = {0};
		tally_backend_info b;
		pthread_t th[4];
		void *r;
		int64_t v;

		if (!built_in(good_options[i]))
			continue;
		if (tally_create(&a.t, good_options[i], 0, 0) != 0)
			fail_msg("'%s' was refused", good_options[i]);
		/* A spinning lock with more workers than CPUs can take a time
		 * slice per hand-over: two workers for those. */
		assert_int_equal(
			tally_backend_find(tally_backend_name(a.t), &b), 0);
		unsigned n = (b.caps & TALLY_CAP_SPINNING) ? 2 : 4;
		start_together(&a, n);
		for (unsigned k = 0; k < n; k++)
			assert_int_equal(
				pthread_create(&th[k], NULL, crowd_worker, &a),
				0);
		for (unsigned k = 0; k < n; k++) {
			pthread_join(th[k], &r);
			assert_null(r);
		}
		pthread_barrier_destroy(&a.start);
		check_exclusive(good_options[i], &a);
		assert_int_equal(tally_get(a.t, &v), 0);
		if (v != 3 * CROWD_ADDS * (int64_t)n ||
		    a.plain != CROWD_ADDS * n)
			fail_msg("%s: count %lld, %llu of %u inside the lock",
				 good_options[i], (long long)v,
				 (unsigned long long)a.plain, CROWD_ADDS * n);
		tally_destroy(a.t);
	}
}

/* Holds the lock (from inside tally_add_cs) until the test lets it go. */
struct holder {
	tally *t;
	_Atomic int inside, release;
};

static void hold(void *p)
{
	struct holder *h = p;

	atomic_store(&h->inside, 1);
	while (!atomic_load(&h->release))
		sched_yield();
}

static void *holder_main(void *p)
{
	struct holder *h = p;

	return tally_add_cs(h->t, 7, hold, h) == 0 ? NULL : p;
}

static double since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* A bounded add on a lock that another thread holds: TALLY_ETIMEDOUT after
 * about the bound, nothing added, and the lock goes on working once it is
 * free (a FIFO lock keeps no place for a waiter that left). */
static void expect_timeout(tally *t, const char *name, int64_t wait_ms,
			   int via_option)
{
	struct timespec t0;
	int64_t v;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = via_option ? tally_add(t, 1) : tally_add_wait(t, 1, wait_ms);
	double s = since(&t0);
	if (rc != TALLY_ETIMEDOUT)
		fail_msg(
			"%s: a bounded add (%lld ms) on a held lock returned %s",
			name, (long long)wait_ms, tally_errname(rc));
	if (s < (double)wait_ms / 1000 * 0.9 || s > (double)wait_ms / 1000 + 2)
		fail_msg("%s: a %lld ms bound ended after %.3f s", name,
			 (long long)wait_ms, s);
	if (strstr(tally_explain(rc), "not taken in") == NULL)
		fail_msg("%s: the timeout is not explained: %s", name,
			 tally_explain(rc));
	assert_int_equal(tally_get(t, &v), 0);
	if (v != 17)
		fail_msg("%s: a timed-out add changed the value to %lld", name,
			 (long long)v);
}

/* Every wait for a lock can be bounded: tally_add_wait(), and the option
 * wait_ms, on private and shared counters of every backend with a lock. */
static void test_wait_is_bounded(void **state)
{
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		tally *t;

		if (!(b.caps & TALLY_CAP_LOCKED)) {
			assert_int_equal(tally_create(&t, b.name, 0, 0), 0);
			assert_int_equal(tally_add_wait(t, 1, 0), 0);
			assert_int_equal(tally_wait_limit(t), 0);
			tally_destroy(t);
			continue;
		}
		for (unsigned flags = 0; flags <= TALLY_PSHARED;
		     flags += TALLY_PSHARED) {
			struct holder h = {0};
			char spec[64];
			pthread_t th;
			void *r;
			int64_t v;

			if (flags && !(b.caps & TALLY_CAP_PSHARED))
				continue;
			assert_int_equal(tally_create(&h.t, b.name, 10, flags),
					 0);
			assert_int_equal(tally_wait_limit(h.t),
					 flags ? TALLY_DEFAULT_WAIT_MS : 0);
			snprintf(spec, sizeof(spec), "%s:wait_ms=150", b.name);
			assert_int_equal(tally_create(&t, spec, 0, flags), 0);
			assert_int_equal(tally_wait_limit(t), 150);
			tally_destroy(t);
			assert_int_equal(tally_add_wait(h.t, 1, -1),
					 TALLY_EINVAL);
			assert_int_equal(tally_add_wait(h.t, 1, 86400001),
					 TALLY_EINVAL);
			assert_int_equal(
				pthread_create(&th, NULL, holder_main, &h), 0);
			while (!atomic_load(&h.inside))
				sched_yield();
			expect_timeout(h.t, b.name, 0, 0);
			expect_timeout(h.t, b.name, 100, 0);
			expect_timeout(h.t, b.name, 100, 0);
			atomic_store(&h.release, 1);
			pthread_join(th, &r);
			assert_null(r);
			assert_int_equal(tally_add_wait(h.t, 1, 1000), 0);
			assert_int_equal(tally_add(h.t, 1), 0);
			assert_int_equal(tally_get(h.t, &v), 0);
			if (v != 19)
				fail_msg(
					"%s: after the timeouts the count is %lld, not 19",
					b.name, (long long)v);
			tally_destroy(h.t);
		}
	}
	assert_int_equal(tally_add_wait(NULL, 1, 0), TALLY_EINVAL);
	assert_int_equal(tally_wait_limit(NULL), -1);
}

/* The option wait_ms bounds tally_add() itself. */
static void test_wait_option_bounds_add(void **state)
{
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		struct holder h = {0};
		char spec[64];
		pthread_t th;
		void *r;

		if (!(b.caps & TALLY_CAP_LOCKED))
			continue;
		snprintf(spec, sizeof(spec), "%s:wait_ms=120", b.name);
		assert_int_equal(tally_create(&h.t, spec, 10, 0), 0);
		assert_int_equal(pthread_create(&th, NULL, holder_main, &h), 0);
		while (!atomic_load(&h.inside))
			sched_yield();
		expect_timeout(h.t, spec, 120, 1);
		atomic_store(&h.release, 1);
		pthread_join(th, &r);
		assert_null(r);
		assert_int_equal(tally_add(h.t, 1), 0);
		tally_destroy(h.t);
	}
}

/* tally_get() reads without the lock: it answers while another thread holds
 * it (a slow holder, or one that died, which it cannot tell apart), and sees
 * the add made under it.  A get that waited would hang here until the alarm
 * ends the test. */
static void test_get_never_waits_for_the_lock(void **state)
{
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		struct holder h = {0};
		pthread_t th;
		void *r;
		int64_t v = 0;

		if (!(b.caps & TALLY_CAP_LOCKED))
			continue;
		assert_int_equal(tally_create(&h.t, b.name, 10, 0), 0);
		assert_int_equal(pthread_create(&th, NULL, holder_main, &h), 0);
		while (!atomic_load(&h.inside))
			sched_yield();
		alarm(10);
		assert_int_equal(tally_get(h.t, &v), 0);
		alarm(0);
		if (v != 17)
			fail_msg(
				"%s: get while the lock is held read %lld, not 17",
				b.name, (long long)v);
		atomic_store(&h.release, 1);
		pthread_join(th, &r);
		assert_null(r);
		tally_destroy(h.t);
	}
}

/* tally_backend_path: percpu names the way its adds go, and a counter whose
 * adds take different paths stays exact; other backends have one way. */
static void test_backend_path(void **state)
{
	tally *fast, *slow, *one;
	int64_t v;

	(void)state;
	assert_null(tally_backend_path(NULL));
	assert_int_equal(tally_create(&one, "atomic", 0, 0), 0);
	assert_null(tally_backend_path(one));
	tally_destroy(one);

	assert_int_equal(tally_create(&fast, "percpu", 5, 0), 0);
	const char *p = tally_backend_path(fast);
	assert_non_null(p);
	assert_true(strcmp(p, "rseq") == 0 || strcmp(p, "atomic") == 0);
	assert_int_equal(tally_create(&slow, "PerCPU:path=atomic", -5, 0), 0);
	assert_string_equal(tally_backend_path(slow), "atomic");
	assert_int_equal(tally_create(&one, "percpu:path=auto", 0, 0), 0);
	assert_string_equal(tally_backend_path(one), p);
	tally_destroy(one);
	assert_int_equal(tally_create(&one, "percpu:path=fast", 0, 0),
			 TALLY_EOPTION);
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(tally_add(fast, INT64_MAX), 0);
		assert_int_equal(tally_add(slow, 3), 0);
	}
	assert_int_equal(tally_get(fast, &v), 0);
	assert_int_equal(v, (int64_t)(5 + 1000 * (uint64_t)INT64_MAX));
	assert_int_equal(tally_get(slow, &v), 0);
	assert_int_equal(v, 2995);
	tally_destroy(fast);
	tally_destroy(slow);
}

struct sleeper {
	tally *t;
	_Atomic int started;
};

static void *sleeper_main(void *p)
{
	struct sleeper *z = p;

	atomic_fetch_add(&z->started, 1);
	return tally_add(z->t, 1) >= 0 ? NULL : p;
}

/* Bounded adds racing each other: each either adds or leaves, never both,
 * and a lock that waiters keep leaving (a FIFO lock's queue, passed
 * through) still counts exactly and still works. */
#define BOUNDED_THREADS 3 /* one more than this machine has CPUs */
#define BOUNDED_TRIES	1000

/* Inside the critical sections of one counter: who is in (an overlap is a
 * lock that let a waiter in that had left, or was never let in), and a
 * plain count that only holders write (ThreadSanitizer's to check). */
struct bounded_probe {
	_Atomic int occupied;
	_Atomic long overlaps;
	long inside;
};

static void bounded_inside(void *p)
{
	struct bounded_probe *pr = p;

	if (atomic_fetch_add(&pr->occupied, 1) != 0)
		atomic_fetch_add(&pr->overlaps, 1);
	pr->inside++;
	sched_yield(); /* a section long enough to meet in */
	atomic_fetch_sub(&pr->occupied, 1);
}

struct bounded_arg {
	tally *t;
	struct bounded_probe *probe;
	pthread_barrier_t *go; /* all start at once, so that they race */
	unsigned seed;
	long added;
	int failed; /* an error other than a timeout */
};

static void *bounded_main(void *p)
{
	struct bounded_arg *a = p;

	pthread_barrier_wait(a->go);
	for (int i = 0; i < BOUNDED_TRIES; i++) {
		a->seed = a->seed * 1103515245u + 12345u;
		/* 0 ms (one try), 1 ms, or the handle's own bound (1 ms)
		 * with a probe inside the lock */
		static const int64_t bound[8] = {0, 0, 0, 1, 1, 1, -1, -1};
		int64_t b = bound[(a->seed >> 16) % 8];
		int rc = b < 0 ? tally_add_cs(a->t, 1, bounded_inside, a->probe)
			       : tally_add_wait(a->t, 1, b);
		if (rc == 0)
			a->added++;
		else if (rc != TALLY_ETIMEDOUT)
			a->failed = rc;
	}
	return NULL;
}

static void test_bounded_adds_race(void **state)
{
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		if (!(b.caps & TALLY_CAP_LOCKED))
			continue;
		for (unsigned flags = 0; flags <= TALLY_PSHARED;
		     flags += TALLY_PSHARED) {
			struct bounded_arg a[BOUNDED_THREADS];
			pthread_t th[BOUNDED_THREADS];
			struct bounded_probe probe = {0};
			pthread_barrier_t go;
			char spec[64];
			long added = 0;
			int64_t v;
			tally *t;

			if (flags && !(b.caps & TALLY_CAP_PSHARED))
				continue;
			snprintf(spec, sizeof(spec), "%s:wait_ms=1", b.name);
			assert_int_equal(tally_create(&t, spec, 0, flags), 0);
			assert_int_equal(pthread_barrier_init(&go, NULL,
							      BOUNDED_THREADS),
					 0);
			for (int i = 0; i < BOUNDED_THREADS; i++) {
				a[i] = (struct bounded_arg){
					.t = t,
					.probe = &probe,
					.go = &go,
					.seed = 7u + (unsigned)i};
				assert_int_equal(pthread_create(&th[i], NULL,
								bounded_main,
								&a[i]),
						 0);
			}
			for (int i = 0; i < BOUNDED_THREADS; i++) {
				assert_int_equal(pthread_join(th[i], NULL), 0);
				if (a[i].failed)
					fail_msg(
						"%s: a bounded add returned %s",
						b.name,
						tally_errname(a[i].failed));
				added += a[i].added;
			}
			pthread_barrier_destroy(&go);
			if (atomic_load(&probe.overlaps) != 0)
				fail_msg(
					"%s%s: %ld times a worker found the critical section occupied",
					b.name, flags ? " (shared)" : "",
					atomic_load(&probe.overlaps));
			assert_int_equal(tally_add_wait(t, 1, 5000), 0);
			assert_int_equal(tally_get(t, &v), 0);
			if (v != added + 1)
				fail_msg(
					"%s%s: %ld adds succeeded, the counter says %lld",
					b.name, flags ? " (shared)" : "",
					added + 1, (long long)v);
			tally_destroy(t);
		}
	}
}

static void pause_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* A forked peer of a shared counter, stopped where the test wants it. */
struct peer {
	pid_t pid;
	int ready; /* read end: one byte once the peer is where it waits */
};

/* inside() of a peer that holds the lock: say so, then hold it hold_ms
 * (or until killed, for -1). */
struct peer_hold {
	int fd;
	long hold_ms;
};

static void peer_inside(void *p)
{
	const struct peer_hold *h = p;

	if (write(h->fd, "i", 1) != 1)
		_exit(9);
	if (h->hold_ms < 0)
		for (;;)
			pause();
	pause_ms(h->hold_ms);
}

/* Fork a peer that holds t's lock (hold_ms >= 0 or -1: until killed), or,
 * for hold_ms == -2, one that says it is about to add and then adds (it
 * waits, behind a holder). */
static struct peer peer_start(tally *t, long hold_ms)
{
	struct peer p;
	int fds[2];
	char c;

	assert_int_equal(pipe(fds), 0);
	p.pid = fork();
	assert_true(p.pid >= 0);
	if (p.pid == 0) {
		struct peer_hold h = {.fd = fds[1], .hold_ms = hold_ms};

		close(fds[0]);
		if (hold_ms == -2) {
			if (write(fds[1], "w", 1) != 1)
				_exit(9);
			_exit(tally_add(t, 1) < 0 ? 1 : 0);
		}
		_exit(tally_add_cs(t, 1, peer_inside, &h) < 0 ? 1 : 0);
	}
	close(fds[1]);
	p.ready = fds[0];
	assert_int_equal(read(p.ready, &c, 1), 1);
	return p;
}

static void peer_kill(struct peer *p)
{
	kill(p->pid, SIGKILL);
	assert_int_equal(waitpid(p->pid, NULL, 0), p->pid);
	close(p->ready);
}

static int peer_wait(struct peer *p)
{
	int status;

	assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
	close(p->ready);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* An add on a shared lock whose holder, or a waiter in its queue, was
 * killed: it ends well within its bound, adds, and the lock goes on. */
static void expect_passed(tally *t, const char *name, const char *what,
			  int want_recovered, int64_t want)
{
	struct timespec t0;
	int64_t v;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = tally_add_wait(t, 1, 5000);
	double s = since(&t0);
	if (rc < 0 || (want_recovered && rc != TALLY_RECOVERED))
		fail_msg("%s: an add after %s returned %s after %.3f s: %s",
			 name, what, tally_errname(rc), s, tally_explain(rc));
	if (s > 2.5)
		fail_msg("%s: an add after %s took %.3f s", name, what, s);
	assert_int_equal(tally_get(t, &v), 0);
	if (v != want)
		fail_msg("%s: after %s the value is %lld, not %lld", name, what,
			 (long long)v, (long long)want);
	rc = tally_add_wait(t, 1, 5000);
	if (rc != 0)
		fail_msg("%s: the add after the one after %s returned %s", name,
			 what, tally_errname(rc));
}

/* Waiters that leave far faster than the holder unlocks: a FIFO lock must
 * not keep a place for each (a ticket lock's ring of gone tickets filled
 * within 85 ms of 1 ms tries, and a ticket then left unmarked was never
 * served again: the lock was lost).  A holder keeps the lock 300 ms while
 * three threads try with 1 ms bounds; then the lock must still work. */
struct leaver_arg {
	tally *t;
	_Atomic int *stop;
	long added;
};

static void *leaver_main(void *p)
{
	struct leaver_arg *a = p;

	while (!atomic_load(a->stop))
		if (tally_add_wait(a->t, 1, 1) == 0)
			a->added++;
	return NULL;
}

static void hold_300ms(void *p)
{
	struct holder *h = p;

	atomic_store(&h->inside, 1);
	pause_ms(300);
}

static void *holder_300ms_main(void *p)
{
	struct holder *h = p;

	return tally_add_cs(h->t, 1, hold_300ms, h) == 0 ? NULL : p;
}

static void test_leavers_never_wedge(void **state)
{
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		if (!(b.caps & TALLY_CAP_LOCKED) ||
		    !(b.caps & TALLY_CAP_PSHARED))
			continue;
		struct holder h = {0};
		struct leaver_arg a[3];
		pthread_t th[3], ht;
		_Atomic int stop = 0;
		long added = 1;
		int64_t v;
		void *r;

		assert_int_equal(tally_create(&h.t, b.name, 0, TALLY_PSHARED),
				 0);
		assert_int_equal(
			pthread_create(&ht, NULL, holder_300ms_main, &h), 0);
		while (!atomic_load(&h.inside))
			sched_yield();
		for (int i = 0; i < 3; i++) {
			a[i] = (struct leaver_arg){.t = h.t, .stop = &stop};
			assert_int_equal(pthread_create(&th[i], NULL,
							leaver_main, &a[i]),
					 0);
		}
		assert_int_equal(pthread_join(ht, &r), 0);
		assert_null(r);
		pause_ms(50);
		atomic_store(&stop, 1);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(pthread_join(th[i], NULL), 0);
			added += a[i].added;
		}
		int rc = tally_add_wait(h.t, 1, 5000);
		if (rc != 0)
			fail_msg(
				"%s: after waiters left in a crowd, an add returned %s: %s",
				b.name, tally_errname(rc), tally_explain(rc));
		assert_int_equal(tally_get(h.t, &v), 0);
		if (v != added + 1)
			fail_msg("%s: %ld adds went in, the counter says %lld",
				 b.name, added + 1, (long long)v);
		tally_destroy(h.t);
	}
}

/* Every lock shared by fork survives its peers' deaths: a holder killed
 * inside the lock is taken over (TALLY_RECOVERED); a waiter killed in a
 * FIFO lock's queue is passed, and never handed the lock for good. */
static void test_dead_peers_are_passed(void **state)
{
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		tally *t;

		if (!(b.caps & TALLY_CAP_LOCKED) ||
		    !(b.caps & TALLY_CAP_PSHARED))
			continue;
		if ((b.caps & TALLY_CAP_ROBUST) && !robust_futexes()) {
			printf("%s: not tested: this kernel (or emulator) keeps no robust futex list\n",
			       b.name);
			continue;
		}
		assert_int_equal(tally_create(&t, b.name, 0, TALLY_PSHARED), 0);
		struct peer h = peer_start(t, -1);
		peer_kill(&h);
		expect_passed(t, b.name, "its holder was killed", 1, 2);

		h = peer_start(t, 400);
		struct peer w = peer_start(t, -2);
		pause_ms(100); /* w is in the queue, or about to be */
		peer_kill(&w);
		assert_int_equal(peer_wait(&h), 0);
		expect_passed(t, b.name, "a waiter was killed", 0, 5);
		tally_destroy(t);
	}
}

/* Waiters that found the lock held long enough to go to sleep are woken
 * when it comes free: every one of them finishes.  An unlock that forgot
 * to wake a sleeper would leave it asleep until the alarm ends the test. */
static void test_unlock_wakes_the_waiters(void **state)
{
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		struct holder h = {0};
		struct sleeper z = {0};
		pthread_t th, ws[4];
		void *r;
		int64_t v;

		if (!(b.caps & TALLY_CAP_LOCKED))
			continue;
		assert_int_equal(tally_create(&h.t, b.name, 0, 0), 0);
		z.t = h.t;
		assert_int_equal(pthread_create(&th, NULL, holder_main, &h), 0);
		while (!atomic_load(&h.inside))
			sched_yield();
		for (int k = 0; k < 4; k++)
			assert_int_equal(
				pthread_create(&ws[k], NULL, sleeper_main, &z),
				0);
		while (atomic_load(&z.started) < 4)
			sched_yield();
		usleep(50000); /* long past any spinning: they sleep now */
		alarm(20);
		atomic_store(&h.release, 1);
		pthread_join(th, &r);
		assert_null(r);
		for (int k = 0; k < 4; k++) {
			pthread_join(ws[k], &r);
			assert_null(r);
		}
		alarm(0);
		assert_int_equal(tally_get(h.t, &v), 0);
		assert_int_equal(v, 7 + 4);
		tally_destroy(h.t);
	}
}

/* An argument: run only the tests whose names match it (cmocka's filter,
 * '*' a wildcard), as the must-fail runs do (tests/unit.cmake). */
int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry_lists_known_backends),
		cmocka_unit_test(test_names_are_case_insensitive),
		cmocka_unit_test(test_bad_arguments_change_nothing),
		cmocka_unit_test(test_none_window_option),
		cmocka_unit_test(test_default_comes_from_environment),
		cmocka_unit_test(test_every_backend_wraps_alike),
		cmocka_unit_test(test_errors_have_messages_and_names),
		cmocka_unit_test(test_not_built_in_is_not_unknown),
		cmocka_unit_test(test_add_cs_runs_inside_the_lock),
		cmocka_unit_test(test_get_never_waits_for_the_lock),
		cmocka_unit_test(test_wait_is_bounded),
		cmocka_unit_test(test_wait_option_bounds_add),
		cmocka_unit_test(test_dead_peers_are_passed),
		cmocka_unit_test(test_bounded_adds_race),
		cmocka_unit_test(test_leavers_never_wedge),
		cmocka_unit_test(test_backend_path),
		cmocka_unit_test(test_backend_options),
		cmocka_unit_test(test_unlock_wakes_the_waiters),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
