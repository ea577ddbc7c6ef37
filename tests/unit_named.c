/* Named shared counters: creation, validation of what is found under the
 * name, removal, and separate processes sharing one counter. */
#include "crew.h"
#include "tally.h"

#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

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
	/* Without EXCL an existing counter is joined only as what it is: a
	 * caller that names another backend is refused, and told which. */
	assert_int_equal(tally_open(&b, name, "atomic", 0, TALLY_CREATE),
			 TALLY_EMISMATCH);
	assert_non_null(strstr(tally_explain(TALLY_EMISMATCH),
			       "exists with backend mutex, not atomic"));
	assert_int_equal(tally_open(&b, name, "MUTEX", 0, TALLY_CREATE), 0);
	tally_destroy(b);
	/* Naming none joins whatever it is. */
	assert_int_equal(tally_open(&b, name, NULL, 0, TALLY_CREATE), 0);
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
	assert_int_equal(fchmod(fd, 0600), 0); /* trusted: what it holds is
						  what is tested */
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

	/* A genuine counter of every backend that can be named, cut short:
	 * the header no longer matches. */
	tally_backend_info b;
	FOR_EACH_BACKEND(b)
	{
		if (!(b.caps & TALLY_CAP_NAMED))
			continue;
		shm_unlink(path);
		assert_int_equal(tally_open(&t, name, b.name, 0, TALLY_CREATE),
				 0);
		tally_destroy(t);
		int fd = shm_open(path, O_RDWR, 0);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 256), 0);
		close(fd);
		if (tally_open(&t, name, NULL, 0, 0) != TALLY_EBADOBJECT)
			fail_msg("%s: a counter cut short was not refused",
				 b.name);
		/* The refused object is left alone for its owner to inspect.
		 */
		assert_int_equal(tally_unlink(name), 0);
	}
}

/* Worker k of a sharing test (a forked process of a crew, started at its
 * gate): open the counter by name before the gate, then add k + 1 n times.
 * Exits 1 on any failure. */
static tally *share_counter; /* each worker's own handle */

static void share_open(struct crew *c, unsigned k, void *arg)
{
	(void)c;
	(void)k;
	(void)arg;
	if (tally_open(&share_counter, name, NULL, 0, 0) != 0)
		_exit(1);
}

static void share_add(struct crew *c, unsigned k, void *arg)
{
	int n = *(const int *)crew_shared(c);

	(void)arg;
	for (int j = 0; j < n; j++)
		if (tally_add(share_counter, (int64_t)k + 1) < 0)
			_exit(1);
	tally_destroy(share_counter);
}

/*
 * Separate processes, each opening the counter by name, lose nothing: for
 * every built-in backend that can back a named counter (the registry
 * decides) and synchronizes.  Worker k adds k + 1, so that no loss can be
 * hidden by another's: the total is 1000 + n * (1 + 2 + 3 + 4), and a
 * worker whose adds went nowhere (a private mapping, say) cannot come out
 * even.
 */
static void test_processes_share_by_name(void **state)
{
	tally_backend_info info;
	size_t tried = 0;

	(void)state;
	for (size_t i = 0; i < tally_backend_count(); i++) {
		struct crew_config cfg = {
			.mode = CREW_PROCESSES,
			.workers = 4,
			.shared_size = sizeof(int),
			.flags = CREW_DIE_WITH_PARENT,
			.prepare = share_open,
			.work = share_add,
		};
		struct crew *c;
		tally *t;
		int64_t v;

		assert_int_equal(tally_backend_at(i, &info), 0);
		if (!info.built_in || !(info.caps & TALLY_CAP_NAMED) ||
		    (info.caps & (TALLY_CAP_RACY | TALLY_CAP_REMOTE)))
			continue;
		tried++;
		assert_int_equal(tally_open(&t, name, info.name, 1000,
					    TALLY_CREATE | TALLY_EXCL),
				 0);
		tally_destroy(t);
		/* Four spinning processes on two cores hand the lock over
		 * once per time slice: keep their work small enough to end in
		 * seconds even on a loaded machine. */
		int n = info.caps & TALLY_CAP_SPINNING ? 500 : 20000;
		assert_int_equal(crew_create(&c, &cfg), 0);
		*(int *)crew_shared(c) = n;
		assert_int_equal(crew_start(c), 0);
		int ready = crew_wait_ready(c, 0);
		if (ready == 0)
			crew_go(c);
		else
			crew_cancel(c);
		crew_finish(c, 0);
		for (unsigned k = 0; k < cfg.workers; k++) {
			if (crew_outcome(c, k).end != CREW_DONE)
				fail_msg(
					"%s: worker %u could not open the counter by name or add",
					info.name, k);
		}
		assert_int_equal(ready, 0);
		crew_destroy(c);
		assert_int_equal(tally_open(&t, name, NULL, 0, 0), 0);
		assert_int_equal(tally_get(t, &v), 0);
		if (v != 1000 + 10 * (int64_t)n)
			fail_msg("%s: %lld, not %lld", info.name, (long long)v,
				 1000 + 10 * (long long)n);
		tally_destroy(t);
		assert_int_equal(tally_unlink(name), 0);
	}
	assert_true(tried > 0); /* atomic, at least, is always built in */
}

/* Open the object itself, as another program (or user) could. */
static int raw_open(void)
{
	int fd = shm_open(path, O_RDWR, 0);

	assert_true(fd >= 0);
	return fd;
}

/* An object others could have written is never joined, not even to create
 * it, whatever it holds; the refusal names the owner and the mode. */
static void test_untrusted_objects_are_refused(void **state)
{
	tally *t;
	int fd;

	(void)state;
	assert_int_equal(
		tally_open(&t, name, "atomic", 100, TALLY_CREATE | TALLY_EXCL),
		0);
	tally_destroy(t);
	fd = raw_open();
	assert_int_equal(fchmod(fd, 0666), 0);
	assert_int_equal(tally_open(&t, name, NULL, 0, 0), TALLY_EUNTRUSTED);
	assert_non_null(strstr(tally_explain(TALLY_EUNTRUSTED), "mode 0666"));
	assert_int_equal(tally_open(&t, name, "atomic", 0, TALLY_CREATE),
			 TALLY_EUNTRUSTED);
	assert_int_equal(tally_open(&t, name, NULL, 0, TALLY_CREATE),
			 TALLY_EUNTRUSTED);
	assert_int_equal(fchmod(fd, 0640), 0); /* group may read only */
	assert_int_equal(tally_open(&t, name, NULL, 0, 0), TALLY_EUNTRUSTED);
	if (geteuid() == 0) {
		/* Another owner, with the mode right: still not ours. */
		assert_int_equal(fchmod(fd, 0600), 0);
		assert_int_equal(fchown(fd, 65534, 65534), 0);
		assert_int_equal(tally_open(&t, name, NULL, 0, 0),
				 TALLY_EUNTRUSTED);
		assert_non_null(
			strstr(tally_explain(TALLY_EUNTRUSTED), "uid 65534"));
	}
	assert_int_equal(fchown(fd, geteuid(), getegid()), 0);
	assert_int_equal(fchmod(fd, 0600), 0);
	assert_int_equal(tally_open(&t, name, NULL, 0, 0), 0);
	tally_destroy(t);
	close(fd);
}

/* A counter whose header is complete but never marked ready: its creator
 * (an older tally, which named objects before finishing them) died. */
static void test_unfinished_objects_say_so(void **state)
{
	const uint32_t ready = 0x52454459u; /* "REDY", in this byte order */
	tally_backend_info b;

	(void)state;
	FOR_EACH_BACKEND(b)
	{
		char head[512];
		tally *t;
		int fd;

		if (!(b.caps & TALLY_CAP_NAMED))
			continue;
		assert_int_equal(tally_open(&t, name, b.name, 0,
					    TALLY_CREATE | TALLY_EXCL),
				 0);
		tally_destroy(t);
		fd = raw_open();
		assert_int_equal(pread(fd, head, sizeof(head), 0),
				 sizeof(head));
		char *at = memmem(head, sizeof(head), &ready, sizeof(ready));
		assert_non_null(at);
		assert_int_equal(pwrite(fd, "\0\0\0\0", 4, at - head), 4);
		close(fd);
		if (tally_open(&t, name, NULL, 0, 0) != TALLY_EUNFINISHED)
			fail_msg("%s: an unfinished counter was opened",
				 b.name);
		assert_int_equal(tally_open(&t, name, NULL, 0, TALLY_CREATE),
				 TALLY_EUNFINISHED);
		assert_int_equal(tally_unlink(name), 0);
	}
}

/* A file-size limit below the counter's size is an error code, not the
 * SIGXFSZ that growing the file would raise, and leaves no name behind. */
static void test_file_size_limit_is_an_error(void **state)
{
	int status;
	pid_t pid = fork();

	(void)state;
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {.rlim_cur = 1024, .rlim_max = 1024};
		tally *t;
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
			_exit(10);
		int rc = tally_open(&t, name, "mutex", 0, TALLY_CREATE);
		if (rc != TALLY_ENOSPACE)
			_exit(11);
		if (strstr(tally_explain(rc), "file-size limit") == NULL)
			_exit(12);
		_exit(tally_open(&t, name, NULL, 0, 0) == TALLY_ENOTFOUND ? 0
									  : 13);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Options are part of what a counter is; a backend check reaches nothing. */
static void test_backend_check(void **state)
{
	(void)state;
	assert_int_equal(tally_backend_check("atomic", 0), 0);
	assert_int_equal(tally_backend_check("atomic", TALLY_PSHARED), 0);
	assert_int_equal(tally_backend_check("atomic:foo", 0), TALLY_EOPTION);
	assert_int_equal(tally_backend_check("nope", 0), TALLY_ENOBACKEND);
	assert_int_equal(tally_backend_check("atomic", 1u << 5), TALLY_EINVAL);
	if (built_in("redis")) {
		/* Port 1 on loopback, where nothing listens: a check that
		 * tried to connect would be refused (TALLY_EREMOTE), not
		 * answer 0; and a test never aims traffic off this machine. */
		assert_int_equal(
			tally_backend_check(
				"redis:url=redis://127.0.0.1:1,key=k", 0),
			0);
		assert_int_equal(tally_backend_check("redis:url=redis://:0", 0),
				 TALLY_EOPTION);
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
		cmocka_unit_test_setup_teardown(
			test_untrusted_objects_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unfinished_objects_say_so,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_file_size_limit_is_an_error, setup, teardown),
		cmocka_unit_test(test_backend_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
