/* ck_fas_eb: the yardstick for tally's 'spin' backend -- a hand-written
 * loop around Concurrency Kit's FAS lock on one shared counter, as CK's own
 * regression benchmark takes it, with nothing of tally in between. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ck_spinlock.h>

/* Ops between two looks at the stop flag: the look is then noise. */
#define BATCH	    256
#define MAX_WORKERS 64

/* The lock and the counter on one 128-byte line, as tally's spin state. */
static struct {
	_Alignas(128) ck_spinlock_fas_t lock;
	uint64_t value;
} shared = {.lock = CK_SPINLOCK_FAS_INITIALIZER};

static _Alignas(128) _Atomic int go, stop;
static int backoff = 1; /* 1: ck_spinlock_fas_lock_eb; 0: _lock */

struct worker {
	_Alignas(128) uint64_t ops; /* each worker's count on its own line */
};

static void *loop(void *arg)
{
	struct worker *w = arg;
	uint64_t n = 0;

	while (!atomic_load_explicit(&go, memory_order_acquire))
		;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int i = 0; i < BATCH; i++) {
			if (backoff)
				ck_spinlock_fas_lock_eb(&shared.lock);
			else
				ck_spinlock_fas_lock(&shared.lock);
			shared.value++;
			ck_spinlock_fas_unlock(&shared.lock);
		}
		n += BATCH;
	}
	w->ops = n;
	return NULL;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	static struct worker ws[MAX_WORKERS];
	pthread_t th[MAX_WORKERS];
	unsigned workers = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 2;
	unsigned ms = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 500;
	uint64_t ops = 0;

	if (argc > 3)
		backoff = strcmp(argv[3], "none") != 0;
	if (argc > 4 || workers < 1 || workers > MAX_WORKERS || ms < 1 ||
	    ms > 60000) {
		fprintf(stderr,
			"usage: ck_fas_eb [WORKERS (1-64, default 2) [MS (default 500) [eb|none]]]\n");
		return 2;
	}
	for (unsigned k = 0; k < workers; k++)
		if (pthread_create(&th[k], NULL, loop, &ws[k]) != 0)
			return 3;
	uint64_t t0 = now_ns();
	atomic_store_explicit(&go, 1, memory_order_release);
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
	atomic_store_explicit(&stop, 1, memory_order_relaxed);
	for (unsigned k = 0; k < workers; k++) {
		pthread_join(th[k], NULL);
		ops += ws[k].ops;
	}
	double s = (double)(now_ns() - t0) / 1e9;
	if (shared.value != ops) {
		fprintf(stderr, "ck_fas_eb: count %llu, adds %llu\n",
			(unsigned long long)shared.value,
			(unsigned long long)ops);
		return 1;
	}
	/* One line: adds per second (wall), for scripts. */
	printf("%.0f\n", (double)ops / s);
	return 0;
}
