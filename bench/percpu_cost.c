/* percpu_cost: what percpu's add costs through tally_add() against the same
 * restartable sequence inlined into the caller (would TALLY_INLINE pay off
 * for percpu?), and against per-CPU and per-thread atomic slots (should
 * sharded become per-CPU?), and against the atomic backend; one and two
 * workers, interleaved, in thread CPU time.  Usage: percpu_cost [ROUNDS [MS]]
 */
#include "../backends/percpu.c" /* percpu_add itself, to inline it */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 256

/* The library's own percpu state, for the inlined and called variants. */
static _Alignas(TALLY_CACHELINE) struct percpu_state state;

static _Alignas(128) _Atomic int go, stop;

struct worker {
	_Alignas(128) tally *t;
	uint64_t ops, cpu_ns;
	int variant;
};

enum {
	INLINE,
	CALL,
	API,
	API_ATOMIC,
	API_SHARDED,
	RAW_XADD,
	API_XADD,
	N_VARIANTS
};
static const char *const names[N_VARIANTS] = {
	"rseq inlined",	     "rseq called",
	"tally_add percpu",  "tally_add percpu:path=atomic",
	"tally_add sharded", "atomic_fetch_add inlined",
	"tally_add atomic"};

/* The atomic backend's primitive, inline, on its own lines. */
static struct {
	_Alignas(128) _Atomic uint64_t v;
} raw;
static tally *counters[N_VARIANTS];

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A plain call to the same function, as a library without the indirect
 * jump through the handle would make. */
static const struct tally__knobs knobs = {.wait_ns = -1};

static __attribute__((noinline)) int called(void *s, int64_t d)
{
	return percpu_add(s, d, &knobs);
}

static void *loop(void *arg)
{
	struct worker *w = arg;
	uint64_t n = 0, t0;

	while (!atomic_load_explicit(&go, memory_order_acquire))
		;
	t0 = cpu_ns();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int i = 0; i < BATCH; i++) {
			switch (w->variant) {
			case INLINE:
				percpu_add(&state, 1, &knobs);
				break;
			case CALL:
				called(&state, 1);
				break;
			case RAW_XADD:
				atomic_fetch_add_explicit(&raw.v, 1,
							  memory_order_acq_rel);
				break;
			default:
				tally_add(w->t, 1);
			}
		}
		n += BATCH;
	}
	w->cpu_ns = cpu_ns() - t0;
	w->ops = n;
	return NULL;
}

/* CPU ns per add per worker, for one trial; a trial in which a worker
 * never ran (a busy machine) is run again. */
static double trial(int variant, int workers, int ms)
{
	struct worker ws[2];
	pthread_t th[2];
	double sum = 0;

	atomic_store(&go, 0);
	atomic_store(&stop, 0);
	for (int k = 0; k < workers; k++) {
		ws[k] = (struct worker){.t = counters[variant],
					.variant = variant};
		pthread_create(&th[k], NULL, loop, &ws[k]);
	}
	atomic_store(&go, 1);
	nanosleep(&(struct timespec){.tv_nsec = ms * 1000000L}, NULL);
	atomic_store(&stop, 1);
	int idle = 0;
	for (int k = 0; k < workers; k++) {
		pthread_join(th[k], NULL);
		idle |= ws[k].ops == 0;
		sum += idle ? 0 : (double)ws[k].cpu_ns / (double)ws[k].ops;
	}
	return idle ? trial(variant, workers, ms) : sum / workers;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 21;
	int ms = argc > 2 ? atoi(argv[2]) : 50;
	static double ns[2][N_VARIANTS][1000];
	const char *specs[N_VARIANTS] = {
		"percpu",  "percpu", "percpu", "percpu:path=atomic",
		"sharded", "atomic", "atomic"};

	if (rounds < 1 || rounds > 1000 || ms < 1)
		return 2;
	percpu_init(&state, 0, 0, NULL);
	for (int v = 0; v < N_VARIANTS; v++)
		if (tally_create(&counters[v], specs[v], 0, 0) != 0)
			return 3;
	printf("percpu_cost: %d rounds x %d ms, variants interleaved (order reversed every other round); path %s (inlined: %s)\n",
	       rounds, ms, tally_backend_path(counters[API]),
	       percpu_path(&state, &knobs));
	for (int r = 0; r < rounds; r++)
		for (int w = 1; w <= 2; w++)
			for (int i = 0; i < N_VARIANTS; i++) {
				int v = r % 2 ? N_VARIANTS - 1 - i : i;
				ns[w - 1][v][r] = trial(v, w, ms);
			}
	for (int w = 1; w <= 2; w++) {
		printf("\n%d worker%s: CPU ns per add (median, min..max)\n", w,
		       w > 1 ? "s" : "");
		double med[N_VARIANTS];
		for (int v = 0; v < N_VARIANTS; v++) {
			qsort(ns[w - 1][v], (size_t)rounds, sizeof(double),
			      cmp);
			med[v] = ns[w - 1][v][rounds / 2];
			printf("  %-30s %6.2f  (%.2f..%.2f)  x%.2f of inlined\n",
			       names[v], med[v], ns[w - 1][v][0],
			       ns[w - 1][v][rounds - 1], med[v] / med[INLINE]);
		}
	}
	int64_t v;
	for (int i = 0; i < N_VARIANTS; i++)
		tally_destroy(counters[i]);
	percpu_get(&state, &v);
	return 0;
}
