/* Many counters (issue 22): 10^5 counters of the packed backends made,
 * added to from threads and forked processes, destroyed in random order,
 * every count exact; a freed slot reused never carries its old counts; a
 * named counter made on another host shape is read exactly or refused. */
#include "tally.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define MANY	100000
#define THREADS 4
#define FORKS	2

/* The backends whose counters share memory with others' (src/arena.h). */
static const char *const packed[] = {"percpu", "percpu:path=atomic", "sharded",
				     "atomic", NULL};

static tally **counters;

/* A fixed shuffle, so that a failure can be run again. */
static void shuffle(size_t *order, size_t n, uint64_t seed)
{
	uint64_t x = seed | 1;

	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t i = n; i > 1; i--) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t j = (size_t)(x % i), tmp = order[i - 1];
		order[i - 1] = order[j];
		order[j] = tmp;
	}
}

/* One worker: pinned to a CPU of its own where it can be, so that the
 * adds land in every CPU's slots; adds k + 1 to every counter it owns... */
struct worker {
	pthread_t th;
	const char *backend;
	unsigned flags, k;
	int rc;
};

static void pin(unsigned k)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(&set);
	CPU_SET((size_t)(k % (unsigned)(n > 0 ? n : 1)), &set);
	sched_setaffinity(0, sizeof(set), &set); /* best effort */
}

/* Each thread makes its share of the counters (create from any thread),
 * with initial value i. */
static void *make_share(void *arg)
{
	struct worker *w = arg;

	pin(w->k);
	for (size_t i = w->k; i < MANY && w->rc == 0; i += THREADS)
		w->rc = tally_create(&counters[i], w->backend, (int64_t)i,
				     w->flags);
	return NULL;
}

/* ... and every thread adds k + 1 to every counter. */
static void *add_all(void *arg)
{
	struct worker *w = arg;

	pin(w->k);
	for (size_t i = 0; i < MANY && w->rc == 0; i++)
		w->rc = tally_add(counters[i], (int64_t)w->k + 1);
	return NULL;
}

/* Each thread destroys the counters whose place in the shuffle is its. */
static size_t *order;

static void *destroy_share(void *arg)
{
	struct worker *w = arg;

	for (size_t i = w->k; i < MANY; i += THREADS)
		tally_destroy(counters[order[i]]);
	return NULL;
}

static void run_threads(void *(*fn)(void *), const char *backend,
			unsigned flags)
{
	struct worker w[THREADS];

	for (unsigned k = 0; k < THREADS; k++) {
		w[k] = (struct worker){
			.backend = backend, .flags = flags, .k = k};
		assert_int_equal(pthread_create(&w[k].th, NULL, fn, &w[k]), 0);
	}
	for (unsigned k = 0; k < THREADS; k++) {
		pthread_join(w[k].th, NULL);
		assert_int_equal(w[k].rc, 0);
	}
}

/* What THREADS threads, and FORKS processes adding 100 each, leave. */
static int64_t expected(size_t i, int forks)
{
	return (int64_t)i + THREADS * (THREADS + 1) / 2 + forks * FORKS * 100;
}

static void check_all(const char *backend, int forks)
{
	for (size_t i = 0; i < MANY; i++) {
		int64_t v;

		assert_int_equal(tally_get(counters[i], &v), 0);
		if (v != expected(i, forks))
			fail_msg("%s: counter %zu holds %lld, not %lld",
				 backend, i, (long long)v,
				 (long long)expected(i, forks));
	}
}

/* Forked children add 100 to every counter each, at once. */
static void add_in_children(void)
{
	pid_t pid[FORKS];

	for (int c = 0; c < FORKS; c++) {
		pid[c] = fork();
		assert_true(pid[c] >= 0);
		if (pid[c] == 0) {
			pin((unsigned)c);
			for (size_t i = 0; i < MANY; i++)
				if (tally_add(counters[i], 100) != 0)
					_exit(1);
			_exit(0);
		}
	}
	for (int c = 0; c < FORKS; c++) {
		int status;

		assert_int_equal(waitpid(pid[c], &status, 0), pid[c]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
}

static void many(unsigned flags)
{
	counters = calloc(MANY, sizeof(*counters));
	order = calloc(MANY, sizeof(*order));
	assert_non_null(counters);
	assert_non_null(order);
	for (int b = 0; packed[b] != NULL; b++) {
		run_threads(make_share, packed[b], flags);
		run_threads(add_all, packed[b], flags);
		if (flags & TALLY_PSHARED)
			add_in_children();
		check_all(packed[b], (flags & TALLY_PSHARED) != 0);
		shuffle(order, MANY, 0x5eed + (uint64_t)b);
		run_threads(destroy_share, packed[b], flags);
	}
	free(order);
	free(counters);
}

static void test_many_in_threads(void **state)
{
	(void)state;
	many(0);
}

static void test_many_shared_with_processes(void **state)
{
	(void)state;
	many(TALLY_PSHARED);
}

/*
 * Counters made, added to on every CPU and by the atomic path, destroyed;
 * as many made again take the freed slots (and lines), and must start from
 * their own initial value, not from what the last owner left.
 */
static void reuse(unsigned flags)
{
	enum { N = 2000 };
	static tally *t[N];

	for (int b = 0; packed[b] != NULL; b++) {
		for (int i = 0; i < N; i++)
			assert_int_equal(
				tally_create(&t[i], packed[b], 1000 + i, flags),
				0);
		counters = t;
		for (unsigned k = 0; k < THREADS; k++) {
			pin(k);
			for (int i = 0; i < N; i++)
				assert_int_equal(tally_add(t[i], 7), 0);
		}
		for (int i = N - 1; i >= 0; i--)
			tally_destroy(t[i]);
		for (int i = 0; i < N; i++) {
			int64_t v;

			assert_int_equal(
				tally_create(&t[i], packed[b], -i, flags), 0);
			assert_int_equal(tally_get(t[i], &v), 0);
			if (v != -i)
				fail_msg(
					"%s: a new counter starts at %lld, not %d: a freed slot kept its counts",
					packed[b], (long long)v, -i);
		}
		for (int i = 0; i < N; i++)
			tally_destroy(t[i]);
	}
	pin(0);
}

static void test_reuse_starts_from_zero(void **state)
{
	(void)state;
	reuse(0);
	reuse(TALLY_PSHARED);
}

/*
 * A forked child's shared counters are its own: the slots its parent freed
 * are the parent's to hand out again, so a counter the child makes and one
 * the parent makes meanwhile never share memory.
 */
static void test_child_and_parent_never_share_a_slot(void **state)
{
	(void)state;
	for (int b = 0; packed[b] != NULL; b++) {
		tally *freed, *mine, *theirs;
		int to_child[2], to_parent[2];
		char c = 0;
		int64_t v;

		/* A freed slot waiting on the free list at the fork. */
		assert_int_equal(
			tally_create(&freed, packed[b], 0, TALLY_PSHARED), 0);
		tally_destroy(freed);
		assert_int_equal(pipe(to_child), 0);
		assert_int_equal(pipe(to_parent), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(to_parent[0]);
			close(to_child[1]);
			int ok = tally_create(&theirs, packed[b], 0,
					      TALLY_PSHARED) == 0 &&
				 tally_add(theirs, 100) == 0;
			ok = ok && write(to_parent[1], "x", 1) == 1;
			ok = ok && read(to_child[0], &c, 1) == 1;
			ok = ok && tally_get(theirs, &v) == 0 && v == 100;
			_exit(ok ? 0 : 1);
		}
		/* Only the child writes to_parent, so a child that died is
		 * an end of file here, not a wait without end. */
		close(to_parent[1]);
		close(to_child[0]);
		assert_int_equal(read(to_parent[0], &c, 1), 1);
		assert_int_equal(
			tally_create(&mine, packed[b], 0, TALLY_PSHARED), 0);
		assert_int_equal(tally_get(mine, &v), 0);
		assert_int_equal(v, 0);
		assert_int_equal(tally_add(mine, 1), 0);
		assert_int_equal(write(to_child[1], "x", 1), 1);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg(
				"%s: the child's counter was written by its parent's",
				packed[b]);
		tally_destroy(mine);
		close(to_child[1]);
		close(to_parent[0]);
	}
}

/* Named counters: their object, as src/named.c lays it out. */
#define H_HEADER_SIZE 12
#define H_STATE_SIZE  144
#define H_TOTAL_SIZE  152
#define H_LAYOUT      8
/* The build's shape: byte order ('L' or 'B'), word size, alignment of
 * uint64_t and of _Atomic uint64_t, a byte each. */
#define H_SHAPE 164
/* A percpu state: off (8), shift (4), slots (2), where (2); then a slot per
 * line: own (8), shared (8).  sharded's: next (4), slots (4); a slot per
 * line. */
#define LINE 128

static char name[64];

static int setup(void **state)
{
	(void)state;
	snprintf(name, sizeof(name), "unit-many-%ld", (long)getpid());
	tally_unlink(name);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tally_unlink(name);
	return 0;
}

static int object(void)
{
	char file[128];

	snprintf(file, sizeof(file), "/dev/shm/tally.%s", name);
	return open(file, O_RDWR | O_CLOEXEC);
}

static uint64_t get_u64(int fd, off_t at)
{
	uint64_t v = 0;

	assert_int_equal(pread(fd, &v, sizeof(v), at), sizeof(v));
	return v;
}

static void put(int fd, off_t at, const void *p, size_t n)
{
	assert_int_equal(pwrite(fd, p, n, at), (ssize_t)n);
}

/*
 * Give a named counter `slots` slots, as a library on a host with that many
 * possible CPUs would have made it: the header's sizes, the state's count
 * (at count_at in the state, count_size bytes), the object's size.  Slots
 * past the ones it had hold `extra` each (in the word at `word` of the
 * slot's line).  Returns how many slots it had.
 */
static uint64_t reshape(unsigned slots, size_t count_at, size_t count_size,
			uint64_t extra, size_t word)
{
	int fd = object();
	assert_true(fd >= 0);
	uint32_t hs;
	assert_int_equal(pread(fd, &hs, sizeof(hs), H_HEADER_SIZE), 4);
	off_t at = (off_t)hs; /* both states start on the header's next line */
	uint64_t had = (get_u64(fd, H_STATE_SIZE) - LINE) / LINE;
	uint64_t state = LINE + (uint64_t)slots * LINE;
	uint64_t total = ((uint64_t)at + state + 4095) / 4096 * 4096;

	assert_int_equal(ftruncate(fd, (off_t)total), 0);
	put(fd, H_STATE_SIZE, &state, 8);
	put(fd, H_TOTAL_SIZE, &total, 8);
	/* The count in its own width, so that it reads the same in either
	 * byte order. */
	uint16_t slots16 = (uint16_t)slots;
	uint32_t slots32 = slots;
	assert_true(count_size == 2 || count_size == 4);
	put(fd, at + (off_t)count_at,
	    count_size == 2 ? (const void *)&slots16 : (const void *)&slots32,
	    count_size);
	for (uint64_t i = had; i < slots; i++)
		put(fd, at + LINE + (off_t)(i * LINE + word), &extra, 8);
	close(fd);
	return had;
}

/* The count goes where a host's own library would put it, and the value
 * read back is every slot's. */
static void test_named_other_host_shape_is_read_exactly(void **state)
{
	tally *t;
	int64_t v;
	long online = sysconf(_SC_NPROCESSORS_ONLN);

	(void)state;
	/* percpu from a host with 64 possible CPUs: its slots past ours hold
	 * counts this host's CPUs never wrote. */
	assert_int_equal(
		tally_open(&t, name, "percpu", 10, TALLY_CREATE | TALLY_EXCL),
		0);
	assert_int_equal(tally_add(t, 1), 0);
	tally_destroy(t);
	uint64_t had = reshape(64, 12, 2, 5, 8);
	assert_true(had >= 1 && had < 64);
	assert_int_equal(tally_open(&t, name, "percpu", 0, 0), 0);
	assert_int_equal(tally_get(t, &v), 0);
	/* 10 + 1, and 5 in each slot that this host's library made none of. */
	assert_int_equal(v, 11 + 5 * (int64_t)(64 - had));
	/* Every CPU of this host has a slot of its own there: adds from
	 * each are counted once. */
	for (unsigned k = 0; k < (unsigned)online; k++) {
		pin(k);
		assert_int_equal(tally_add(t, 2), 0);
	}
	pin(0);
	int64_t w;
	assert_int_equal(tally_get(t, &w), 0);
	assert_int_equal(w, v + 2 * online);
	tally_destroy(t);

	/* From a host with one CPU: this host's other CPUs have no slot of
	 * their own, and fold their adds into slot 0's atomic word. */
	assert_int_equal(tally_unlink(name), 0);
	assert_int_equal(
		tally_open(&t, name, "percpu", 3, TALLY_CREATE | TALLY_EXCL),
		0);
	tally_destroy(t);
	reshape(1, 12, 2, 0, 8);
	assert_int_equal(tally_open(&t, name, "percpu", 0, 0), 0);
	for (unsigned k = 0; k < (unsigned)online; k++) {
		pin(k);
		assert_int_equal(tally_add(t, 10), 0);
	}
	pin(0);
	assert_int_equal(tally_get(t, &v), 0);
	assert_int_equal(v, 3 + 10 * online);
	tally_destroy(t);

	/* sharded from a host with 40: every slot is summed. */
	assert_int_equal(tally_unlink(name), 0);
	assert_int_equal(
		tally_open(&t, name, "sharded", 1, TALLY_CREATE | TALLY_EXCL),
		0);
	tally_destroy(t);
	had = reshape(40, 4, 4, 3, 0);
	assert_int_equal(tally_open(&t, name, "sharded", 0, 0), 0);
	assert_int_equal(tally_get(t, &v), 0);
	/* 1, and 3 in each slot past the ones this host made. */
	assert_int_equal(v, 1 + 3 * (int64_t)(40 - had));
	for (int i = 0; i < 100; i++)
		assert_int_equal(tally_add(t, 1), 0);
	assert_int_equal(tally_get(t, &w), 0);
	assert_int_equal(w, v + 100);
	tally_destroy(t);
}

/* Opening the named counter now is refused as no counter of this layout,
 * and the explanation names it and says `says` (case c, for the message). */
static void expect_refused(size_t c, const char *says)
{
	tally *t;

	assert_int_equal(tally_open(&t, name, NULL, 0, 0), TALLY_EBADOBJECT);
	const char *why = tally_explain(TALLY_EBADOBJECT);
	if (strstr(why, says) == NULL || strstr(why, name) == NULL)
		fail_msg("case %zu: explained as '%s'", c, why);
}

/* A count the object's size cannot hold, or a state laid out for another
 * place, is refused with a reason, never read. */
static void test_named_garbled_shape_is_refused(void **state)
{
	tally *t;
	static const uint16_t bad16 = 1000, zero16 = 0;
	static const uint32_t bad32 = 1000, shift = 16;

	(void)state;
	const struct {
		const char *backend;
		size_t at, size;
		const void *value;
		const char *says;
	} cases[] = {
		{"percpu", 12, 2, &bad16, "percpu state is not one"},
		{"percpu", 12, 2, &zero16, "percpu state is not one"},
		{"percpu", 8, 4, &shift, "percpu state is not one"},
		{"sharded", 4, 4, &bad32, "sharded state records 1000 slots"},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		tally_unlink(name);
		assert_int_equal(tally_open(&t, name, cases[c].backend, 0,
					    TALLY_CREATE | TALLY_EXCL),
				 0);
		tally_destroy(t);
		int fd = object();
		assert_true(fd >= 0);
		uint32_t hs;
		assert_int_equal(pread(fd, &hs, 4, H_HEADER_SIZE), 4);
		put(fd, (off_t)hs + (off_t)cases[c].at, cases[c].value,
		    cases[c].size);
		close(fd);
		expect_refused(c, cases[c].says);
	}
	/* A header whose state cannot be the backend's least. */
	tally_unlink(name);
	assert_int_equal(
		tally_open(&t, name, "percpu", 0, TALLY_CREATE | TALLY_EXCL),
		0);
	tally_destroy(t);
	int fd = object();
	uint64_t tiny = 8;
	put(fd, H_STATE_SIZE, &tiny, 8);
	close(fd);
	assert_int_equal(tally_open(&t, name, NULL, 0, 0), TALLY_EBADOBJECT);
	assert_non_null(
		strstr(tally_explain(TALLY_EBADOBJECT), "state is 8 bytes"));
}

/* A counter made by a build of another byte order, word size or alignment
 * of 64-bit words is refused, saying which -- also when that build's byte
 * order garbles the layout field; and one of an older layout (no shape
 * recorded) says its layout. */
static void test_named_foreign_build_is_refused(void **state)
{
	const int big = __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__;
	const uint8_t word = sizeof(void *), align = _Alignof(uint64_t);
	char says_order[64], says_word[64];
	struct {
		off_t at;
		uint8_t value;
		const char *says;
	} cases[] = {
		{H_SHAPE, big ? 'L' : 'B', says_order},
		{H_SHAPE + 1, word == 8 ? 4 : 8, says_word},
		{H_SHAPE + 2, align == 8 ? 4 : 8, "aligns 64-bit words at"},
		{H_SHAPE + 3, 2, "atomic ones at 2"},
		{H_SHAPE, 0, "not a tally counter of layout"},
	};
	tally *t;

	(void)state;
	snprintf(says_order, sizeof(says_order), "made by a %s build",
		 big ? "little-endian" : "big-endian");
	snprintf(says_word, sizeof(says_word), "made by a %u-bit build",
		 word == 8 ? 32u : 64u);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		tally_unlink(name);
		assert_int_equal(tally_open(&t, name, "atomic", 0,
					    TALLY_CREATE | TALLY_EXCL),
				 0);
		tally_destroy(t);
		int fd = object();
		assert_true(fd >= 0);
		uint8_t shape[4];
		assert_int_equal(pread(fd, shape, 4, H_SHAPE), 4);
		assert_int_equal(shape[0], big ? 'B' : 'L');
		assert_int_equal(shape[1], word);
		put(fd, cases[c].at, &cases[c].value, 1);
		if (c == 0) { /* the layout as the other byte order wrote it */
			uint32_t layout;
			assert_int_equal(pread(fd, &layout, 4, H_LAYOUT), 4);
			layout = __builtin_bswap32(layout);
			put(fd, H_LAYOUT, &layout, 4);
		}
		close(fd);
		expect_refused(c, cases[c].says);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_in_threads),
		cmocka_unit_test(test_many_shared_with_processes),
		cmocka_unit_test(test_reuse_starts_from_zero),
		cmocka_unit_test(test_child_and_parent_never_share_a_slot),
		cmocka_unit_test_setup_teardown(
			test_named_other_host_shape_is_read_exactly, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_named_garbled_shape_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_named_foreign_build_is_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
