/* tally_describe(): what it says of a handle is the handle's own backend,
 * capability bits, sharing, wait bound, path, name and options, for every
 * backend and every way a handle is made; bad arguments write nothing. */
#include "tally.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

static char name[64];

/* What every description must say of handle t on backend b. */
static void check(tally *t, const tally_backend_info *b, unsigned flags,
		  int named)
{
	tally_handle_info d;
	const char *path = tally_backend_path(t);

	assert_int_equal(tally_describe(t, &d), 0);
	assert_string_equal(d.backend, b->name);
	if (d.caps != b->caps)
		fail_msg("%s: caps %#x, the registry says %#x", b->name, d.caps,
			 b->caps);
	if (d.flags != flags || d.named != named)
		fail_msg("%s: flags %#x named %d, want %#x and %d", b->name,
			 d.flags, d.named, flags, named);
	assert_int_equal(d.wait_ms, tally_wait_limit(t));
	if (path == NULL)
		assert_null(d.path);
	else
		assert_string_equal(d.path, path);
	if (named)
		assert_string_equal(d.name, name);
	else
		assert_null(d.name);
	assert_string_equal(d.options, ""); /* made with none */
}

static void test_every_backend_private_shared_named(void **state)
{
	tally_backend_info b;
	tally *t;

	(void)state;
	snprintf(name, sizeof(name), "unit-describe-%d", (int)getpid());
	FOR_EACH_BACKEND(b)
	{
		assert_int_equal(tally_create(&t, b.name, 0, 0), 0);
		check(t, &b, 0, 0);
		tally_destroy(t);
		if (b.caps & TALLY_CAP_PSHARED) {
			assert_int_equal(
				tally_create(&t, b.name, 0, TALLY_PSHARED), 0);
			check(t, &b, TALLY_PSHARED, 0);
			tally_destroy(t);
		}
		if (b.caps & TALLY_CAP_NAMED) {
			assert_int_equal(tally_open(&t, name, b.name, 0,
						    TALLY_CREATE | TALLY_EXCL),
					 0);
			check(t, &b, TALLY_PSHARED, 1);
			tally_destroy(t);
			/* An opener that names no backend learns it here. */
			assert_int_equal(tally_open(&t, name, NULL, 0, 0), 0);
			check(t, &b, TALLY_PSHARED, 1);
			tally_destroy(t);
			assert_int_equal(tally_unlink(name), 0);
		}
	}
}

/* The handle's own options, not its backend's defaults: a wait bound on
 * every backend with a lock, and percpu's path. */
static void test_handle_options_are_described(void **state)
{
	tally_backend_info b;
	tally_handle_info d;
	char spec[64];
	tally *t;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		if (!(b.caps & TALLY_CAP_LOCKED))
			continue;
		snprintf(spec, sizeof(spec), "%s:wait_ms=250", b.name);
		if (tally_backend_check(spec, 0) == TALLY_EOPTION)
			continue; /* a lock whose wait cannot be bounded yet */
		assert_int_equal(tally_create(&t, spec, 0, 0), 0);
		assert_int_equal(tally_describe(t, &d), 0);
		if (d.wait_ms != 250)
			fail_msg("%s: wait_ms %lld, want 250", spec,
				 (long long)d.wait_ms);
		tally_destroy(t);
	}
	if (built_in("percpu")) {
		assert_int_equal(tally_create(&t, "percpu:path=atomic", 0, 0),
				 0);
		assert_int_equal(tally_describe(t, &d), 0);
		assert_string_equal(d.path, "atomic");
		tally_destroy(t);
	}
}

/* The counter's options, as given and as a named counter recorded them,
 * apart from the handle's wait_ms; an opener that names no backend learns
 * them, and they outlive the spec string they came from. */
static void test_counter_options_and_name_are_described(void **state)
{
	tally_handle_info d;
	char spec[64];
	tally *t, *u;

	(void)state;
	SKIP_UNLESS_BUILT("adaptive");
	snprintf(spec, sizeof(spec), "adaptive:spin=3,wait_ms=40,fair_us=7");
	assert_int_equal(tally_create(&t, spec, 0, 0), 0);
	memset(spec, 'x', sizeof(spec) - 1);
	assert_int_equal(tally_describe(t, &d), 0);
	assert_string_equal(d.options, "spin=3,fair_us=7");
	assert_null(d.name);
	assert_int_equal(d.wait_ms, 40);
	tally_destroy(t);

	snprintf(name, sizeof(name), "unit-describe-o-%d", (int)getpid());
	assert_int_equal(tally_open(&t, name, "adaptive:fair_us=9", 0,
				    TALLY_CREATE | TALLY_EXCL),
			 0);
	assert_int_equal(tally_open(&u, name, NULL, 0, 0), 0);
	assert_int_equal(tally_describe(u, &d), 0);
	assert_string_equal(d.name, name);
	assert_string_equal(d.options, "fair_us=9");
	assert_int_equal(tally_describe(t, &d), 0);
	assert_string_equal(d.name, name);
	assert_string_equal(d.options, "fair_us=9");
	tally_destroy(u);
	tally_destroy(t);
	assert_int_equal(tally_unlink(name), 0);
}

static void test_bad_arguments_write_nothing(void **state)
{
	tally_handle_info d, before;
	tally *t;

	(void)state;
	memset(&d, 0xa5, sizeof(d));
	before = d;
	assert_int_equal(tally_describe(NULL, &d), TALLY_EINVAL);
	assert_memory_equal(&d, &before, sizeof(d));
	assert_int_equal(tally_create(&t, "atomic", 0, 0), 0);
	assert_int_equal(tally_describe(t, NULL), TALLY_EINVAL);
	tally_destroy(t);
}

static int unlink_name(void **state)
{
	(void)state;
	if (name[0] != '\0')
		tally_unlink(name); /* after a failed check, if any */
	return 0;
}

/* A spec as it may be shown: every URL's password is "***", and nothing
 * else changes (tally_backend_redact()); a short buffer is cut, and
 * terminated. */
static void test_passwords_are_redacted(void **state)
{
	static const char *const cases[][2] = {
		{"redis:url=redis://:s3cret@db:6379/2,key=k",
		 "redis:url=redis://:***@db:6379/2,key=k"},
		{"redis:url=redis://alice:pw@db,key=k",
		 "redis:url=redis://alice:***@db,key=k"},
		{"redis:key=k,url=redis://a:p:w/x@y@db:1",
		 "redis:key=k,url=redis://a:***@db:1"},
		{"redis:url=redis://alice@db,key=a@b", /* no password */
		 "redis:url=redis://alice@db,key=a@b"},
		{"redis:url=redis://db:6379", "redis:url=redis://db:6379"},
		{"x:a=s://:1@h,b=t://u:2@h", "x:a=s://:***@h,b=t://u:***@h"},
		{"atomic", "atomic"},
	};
	char buf[128];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(
			tally_backend_redact(cases[i][0], buf, sizeof(buf)),
			cases[i][1]);
	assert_string_equal(tally_backend_redact(NULL, buf, sizeof(buf)), "");
	assert_string_equal(
		tally_backend_redact("redis:url=redis://:pw@h", buf, 22),
		"redis:url=redis://:**");
	/* A create that fails says so without the password. */
	tally_backend_info b;
	if (tally_backend_find("redis", &b) != 0 || !b.built_in)
		skip();
	tally *t;
	int rc =
		tally_create(&t, "redis:url=redis://:s3cret@127.0.0.1:1", 0, 0);
	assert_int_equal(rc, TALLY_EREMOTE);
	assert_null(strstr(tally_explain(rc), "s3cret"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(
			test_every_backend_private_shared_named, unlink_name),
		cmocka_unit_test(test_handle_options_are_described),
		cmocka_unit_test_teardown(
			test_counter_options_and_name_are_described,
			unlink_name),
		cmocka_unit_test(test_bad_arguments_write_nothing),
		cmocka_unit_test(test_passwords_are_redacted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
