/* Named shared counters: creation, validation of what is found under the
 * name, removal, and separate processes sharing one counter. */
#include "tally.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static char name[64], path[80];

static int setup(void **state)
{
	(void)state;
	snprintf(name, sizeof(name), "unit-%ld", (long)getpid());
	snprintf(path, sizeof(path), "/tally.%s", name);
	shm_unlink(path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	shm_unlink(path);
	return 0;
}

static void test_create_open_remove(void **state)
{
	tally *a, *b;
	int64_t v;
	struct stat st;
	char file[96];

	(void)state;
	assert_int_equal(tally_open(&a, name, NULL, 0, 0), TALLY_ENOTFOUND);
	assert_int_equal(
		tally_open(&a, name, "mutex", 500, TALLY_CREATE | TALLY_EXCL),
		0);
	assert_int_equal(
		tally_open(&b, name, "atomic", 0, TALLY_CREATE | TALLY_EXCL),
		TALLY_EEXIST);
	/* Without EXCL an existing counter is opened, whatever backend the
	 * caller would have created. */
	assert_int_equal(tally_open(&b, name, "atomic", 0, TALLY_CREATE), 0);
	assert_string_equal(tally_backend_name(b), "mutex");
	assert_int_equal(tally_add(a, 5), 0);
	assert_int_equal(tally_add(b, -7), 0);
	assert_int_equal(tally_get(b, &v), 0);
	assert_int_equal(v, 498);

	snprintf(file, sizeof(file), "/dev/shm/tally.%s", name);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(tally_unlink(name), 0);
	assert_int_equal(tally_unlink(name), TALLY_ENOTFOUND);
	/* Handles already open keep working after the name is gone. */
	assert_int_equal(tally_add(a, 2), 0);
	assert_int_equal(tally_get(b, &v), 0);
	assert_int_equal(v, 500);
	tally_destroy(a);
	tally_destroy(b);
}

static void test_names_are_validated(void **state)
{
	static const char *const bad[] = {"",	 ".hidden", "a/b",
					  "a b", "..",	    "x\n"};
	char longname[300];
	tally *t;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tally_open(&t, bad[i], NULL, 0, TALLY_CREATE),
				 TALLY_EINVAL);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(tally_open(&t, longname, NULL, 0, TALLY_CREATE),
			 TALLY_EINVAL);
	assert_int_equal(tally_open(&t, NULL, NULL, 0, TALLY_CREATE),
			 TALLY_EINVAL);
	assert_int_equal(tally_open(&t, name, NULL, 0, TALLY_EXCL),
			 TALLY_EINVAL);
	assert_int_equal(tally_open(&t, name, "nope", 0, TALLY_CREATE),
			 TALLY_ENOBACKEND);
	/* A failed create leaves nothing behind under the name. */
	assert_int_equal(tally_open(&t, name, NULL, 0, 0), TALLY_ENOTFOUND);
	assert_int_equal(tally_unlink("a/b"), TALLY_EINVAL);
}

/* Write `len` bytes of `data` as the whole object. */
static void plant(const void *data, size_t len)
{
	int fd = shm_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void test_foreign_and_truncated_objects_are_refused(void **state)
{
	char junk[4096];
	tally *t;

	(void)state;
	memset(junk, 'x', sizeof(junk));
	plant(junk, sizeof(junk));
	assert_int_equal(tally_open(&t, name, NULL, 0, 0), TALLY_EBADOBJECT);
	assert_int_equal(tally_open(&t, name, NULL, 0, TALLY_CREATE),
			 TALLY_EBADOBJECT);
	plant(junk, 10); /* shorter than any header */
	assert_int_equal(tally_open(&t, name, NULL, 0, 0), TALLY_EBADOBJECT);

	/* A genuine counter cut short: the header no longer matches. */
	shm_unlink(path);
	assert_int_equal(tally_open(&t, name, "ticket", 0, TALLY_CREATE), 0);
	tally_destroy(t);
	int fd = shm_open(path, O_RDWR, 0);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 256), 0);
	close(fd);
	assert_int_equal(tally_open(&t, name, NULL, 0, 0), TALLY_EBADOBJECT);
	/* The refused object is left alone for its owner to inspect. */
	assert_int_equal(tally_unlink(name), 0);
}

/* Separate processes, each opening the counter by name, lose nothing. */
static void test_processes_share_by_name(void **state)
{
	static const char *const backends[] = {"mutex", "sem", "spin", "ticket",
					       "atomic"};

	(void)state;
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		tally_backend_info info;
		tally *t;
		int64_t v;

		if (tally_backend_find(backends[i], &info) || !info.built_in)
			continue;
		assert_int_equal(tally_open(&t, name, backends[i], 1000,
					    TALLY_CREATE | TALLY_EXCL),
				 0);
		tally_destroy(t);
		for (int k = 0; k < 4; k++) {
			if (fork() == 0) {
				tally *c;
				if (tally_open(&c, name, NULL, 0, 0) != 0)
					_exit(1);
				/* Four spinning processes on two cores hand
				 * the lock over once per time slice: keep
				 * their work small enough to end in seconds
				 * even on a loaded machine. */
				int n = info.caps & TALLY_CAP_SPINNING ? 500
								       : 20000;
				for (int j = 0; j < n; j++)
					if (tally_add(c, k % 2 ? -3 : 3) < 0)
						_exit(1);
				tally_destroy(c);
				_exit(0);
			}
		}
		for (int k = 0; k < 4; k++) {
			int status;
			assert_true(wait(&status) > 0);
			assert_true(WIFEXITED(status) &&
				    WEXITSTATUS(status) == 0);
		}
		assert_int_equal(tally_open(&t, name, NULL, 0, 0), 0);
		assert_int_equal(tally_get(t, &v), 0);
		assert_int_equal(v, 1000);
		tally_destroy(t);
		assert_int_equal(tally_unlink(name), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_open_remove, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_names_are_validated, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_foreign_and_truncated_objects_are_refused, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_processes_share_by_name,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
