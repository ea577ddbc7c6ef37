/* interface_cost: what tally_add() costs over the same primitive written
 * inline (atomic_fetch_add, a pthread mutex, a CK ticket lock, CK's FAS lock
 * with exponential backoff as the spin backend takes it), with one and two
 * workers, measured side by side in one run. */
/* Built as a TALLY_INLINE program: `tally_add(...)` is then the inline add
 * (include/tally.h), and `(tally_add)(...)` the library's exported function,
 * which is what a program built without TALLY_INLINE calls. */
#define TALLY_INLINE
#include "tally.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifdef TALLY_HAVE_CK
#include <ck_spinlock.h>
#endif

#ifdef __clang__
#define COMPILER "clang " __clang_version__
#else
#define COMPILER "gcc " __VERSION__
#endif

/* Ops between two looks at the stop flag: the look is then noise. */
#define BATCH 256

/* Each raw primitive on its own 128-byte lines, as tally places its state. */
static struct {
	_Alignas(128) _Atomic uint64_t v;
} raw_atomic;
static struct {
	_Alignas(128) pthread_mutex_t lock;
	uint64_t v;
} raw_mutex = {.lock = PTHREAD_MUTEX_INITIALIZER};
#ifdef TALLY_HAVE_CK
static struct {
	_Alignas(128) ck_spinlock_ticket_t lock;
	uint64_t v;
} raw_ticket = {.lock = CK_SPINLOCK_TICKET_INITIALIZER};
static struct {
	_Alignas(128) ck_spinlock_fas_t lock;
	uint64_t v;
} raw_spin = {.lock = CK_SPINLOCK_FAS_INITIALIZER};
#endif

static _Alignas(128) _Atomic int go, stop;

struct worker {
	_Alignas(128) tally *t;
	uint64_t ops;
	uint64_t cpu_ns; /* CPU time this thread spent in its loop */
};

/*
 * CPU time, not wall time: on a machine that other work shares, a worker
 * that is descheduled stops its own clock, so a stolen time slice does not
 * land on whichever side of a pair happened to run then.
 */
static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One worker function per operation, so that the raw one is inlined: the
 * same loop, the same stop-flag look every BATCH ops, only OP differs. */
#define DEFINE_LOOP(name, OP)                                                  \
	static void *name(void *arg)                                           \
	{                                                                      \
		struct worker *w = arg;                                        \
		uint64_t n = 0, t0;                                            \
		(void)w;                                                       \
		while (!atomic_load_explicit(&go, memory_order_acquire))       \
			;                                                      \
		t0 = cpu_ns();                                                 \
		while (!atomic_load_explicit(&stop, memory_order_relaxed)) {   \
			for (int i = 0; i < BATCH; i++) {                      \
				OP;                                            \
			}                                                      \
			n += BATCH;                                            \
		}                                                              \
		w->ops = n;                                                    \
		w->cpu_ns = cpu_ns() - t0;                                     \
		return NULL;                                                   \
	}

/* The same memory order as the atomic backend (see backends/atomic.c). */
DEFINE_LOOP(loop_raw_atomic,
	    atomic_fetch_add_explicit(&raw_atomic.v, 1, memory_order_acq_rel))
/* Checks the lock's result as the mutex backend does. */
DEFINE_LOOP(loop_raw_mutex,
	    if (pthread_mutex_lock(&raw_mutex.lock) != 0) abort();
	    raw_mutex.v++; pthread_mutex_unlock(&raw_mutex.lock))
#ifdef TALLY_HAVE_CK
DEFINE_LOOP(loop_raw_ticket, ck_spinlock_ticket_lock(&raw_ticket.lock);
	    raw_ticket.v++; ck_spinlock_ticket_unlock(&raw_ticket.lock))
/* The spin backend's default variant (backoff=exp). */
DEFINE_LOOP(loop_raw_spin, ck_spinlock_fas_lock_eb(&raw_spin.lock);
	    raw_spin.v++; ck_spinlock_fas_unlock(&raw_spin.lock))
#endif
/*
 * The same primitives behind a plain (non-inlined, direct) call: the floor
 * for any interface that is a function.  On x86 a call pushes its return
 * address, and a locked instruction must first drain that store, so even an
 * empty call adds to an atomic add (see bench/README.md).
 */
__attribute__((noinline)) static void call_atomic(void)
{
	atomic_fetch_add_explicit(&raw_atomic.v, 1, memory_order_acq_rel);
}

__attribute__((noinline)) static void call_mutex(void)
{
	if (pthread_mutex_lock(&raw_mutex.lock) != 0)
		abort();
	raw_mutex.v++;
	pthread_mutex_unlock(&raw_mutex.lock);
}
DEFINE_LOOP(loop_call_atomic, call_atomic())
DEFINE_LOOP(loop_call_mutex, call_mutex())
#ifdef TALLY_HAVE_CK
__attribute__((noinline)) static void call_ticket(void)
{
	ck_spinlock_ticket_lock(&raw_ticket.lock);
	raw_ticket.v++;
	ck_spinlock_ticket_unlock(&raw_ticket.lock);
}
DEFINE_LOOP(loop_call_ticket, call_ticket())
__attribute__((noinline)) static void call_spin(void)
{
	ck_spinlock_fas_lock_eb(&raw_spin.lock);
	raw_spin.v++;
	ck_spinlock_fas_unlock(&raw_spin.lock);
}
DEFINE_LOOP(loop_call_spin, call_spin())
#endif

/* A caller that ignores nothing: a failed add would stop the program. */
DEFINE_LOOP(loop_tally, if ((tally_add)(w->t, 1) < 0) abort())
DEFINE_LOOP(loop_inline, if (tally_add(w->t, 1) < 0) abort())

struct kind {
	const char *name;
	void *(*raw)(void *);  /* the primitive inline in the loop */
	void *(*call)(void *); /* the primitive behind a direct call */
};

static const struct kind kinds[] = {
	{"atomic", loop_raw_atomic, loop_call_atomic},
	{"mutex", loop_raw_mutex, loop_call_mutex},
#ifdef TALLY_HAVE_CK
	{"ticket", loop_raw_ticket, loop_call_ticket},
	{"spin", loop_raw_spin, loop_call_spin},
#endif
};
#define N_KINDS (sizeof(kinds) / sizeof(kinds[0]))

/* One trial: `workers` threads run fn for `ms` milliseconds; CPU ns per
 * add (all workers' CPU time / all their adds). */
static double trial(void *(*fn)(void *), tally *t, unsigned workers,
		    unsigned ms)
{
	pthread_t th[2];
	struct worker w[2] = {{.t = t}, {.t = t}};
	uint64_t cpu = 0, ops = 0;

	atomic_store(&go, 0);
	atomic_store(&stop, 0);
	for (unsigned k = 0; k < workers; k++)
		if (pthread_create(&th[k], NULL, fn, &w[k]) != 0)
			abort();
	atomic_store_explicit(&go, 1, memory_order_release);
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
	atomic_store_explicit(&stop, 1, memory_order_relaxed);
	for (unsigned k = 0; k < workers; k++) {
		pthread_join(th[k], NULL);
		ops += w[k].ops;
		cpu += w[k].cpu_ns;
	}
	return (double)cpu / (double)ops;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts v; returns the median. */
static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(double), cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void print_context(unsigned reps, unsigned ms)
{
	struct utsname u;
	char line[256], model[160] = "unknown";
	FILE *f = fopen("/proc/cpuinfo", "r");
	double load = 0;

	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
			snprintf(model, sizeof(model), "%s",
				 strchr(line, ':') + 2);
			model[strcspn(model, "\n")] = '\0';
			break;
		}
	if (f)
		fclose(f);
	uname(&u);
	getloadavg(&load, 1);
	printf("# interface_cost: tally_add() against the inline primitive\n"
	       "# cpu: %s, %ld online CPUs; %s %s %s; load average %.2f\n"
	       "# compiler: %s; libtally %s (shared)\n"
	       "# %u interleaved rounds (raw, call, api, inline; reversed every other round) of %u ms per configuration; ns/op is CPU time per add\n",
	       model, sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release,
	       u.machine, load, COMPILER, tally_version(), reps, ms);
}

static int run_pairs(const struct kind *k, unsigned workers, unsigned reps,
		     unsigned ms)
{
	double *v = calloc((size_t)reps * 7, sizeof(double));
	double *raw = v, *call = v + reps, *api = v + 2 * reps;
	double *ratio = v + 3 * reps, *vs_call = v + 4 * reps;
	double *inl = v + 5 * reps, *inl_ratio = v + 6 * reps;
	tally *t;
	int rc = tally_create(&t, k->name, 0, 0);

	if (rc != 0 || v == NULL) {
		fprintf(stderr, "interface_cost: %s: %s\n", k->name,
			tally_strerror(rc));
		return 1;
	}
	for (unsigned r = 0; r < reps; r++) {
		/* raw, call, api, inline; then the reverse: none always
		 * first. */
		if (r % 2 == 0) {
			raw[r] = trial(k->raw, NULL, workers, ms);
			call[r] = trial(k->call, NULL, workers, ms);
			api[r] = trial(loop_tally, t, workers, ms);
			inl[r] = trial(loop_inline, t, workers, ms);
		} else {
			inl[r] = trial(loop_inline, t, workers, ms);
			api[r] = trial(loop_tally, t, workers, ms);
			call[r] = trial(k->call, NULL, workers, ms);
			raw[r] = trial(k->raw, NULL, workers, ms);
		}
		ratio[r] = api[r] / raw[r];
		vs_call[r] = api[r] / call[r];
		inl_ratio[r] = inl[r] / raw[r];
	}
	double mr = median(ratio, reps), lo = ratio[0], hi = ratio[reps - 1];
	double q1 = ratio[reps / 4], q3 = ratio[(3 * reps) / 4];
	double mi = median(inl_ratio, reps);
	printf("%-7s %7u %9.2f %9.2f %9.2f %9.2f %7.3f %6.3f..%-6.3f %6.3f..%-6.3f %7.3f %7.3f  %s/%s\n",
	       k->name, workers, median(raw, reps), median(call, reps),
	       median(api, reps), median(inl, reps), mr, q1, q3, lo, hi,
	       median(vs_call, reps), mi, mr <= 1.10 ? "ok" : "above",
	       mi <= 1.10 ? "ok" : "above");
	tally_destroy(t);
	free(v);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned reps = 21, ms = 50;

	if (argc > 1)
		reps = (unsigned)strtoul(argv[1], NULL, 10);
	if (argc > 2)
		ms = (unsigned)strtoul(argv[2], NULL, 10);
	if (argc > 3 || reps < 1 || reps > 10000 || ms < 1 || ms > 10000) {
		fprintf(stderr,
			"usage: interface_cost [ROUNDS (1-10000, default 21) [MS per trial (1-10000, default 50)]]\n");
		return 2;
	}
	print_context(reps, ms);
	printf("# raw: the primitive inline; call: the same behind a direct call; api: tally_add();\n# inline: tally_add() in a program built with TALLY_INLINE (atomic adds in the caller,\n# other backends call the library)\n# ratio = api/raw (target <= 1.10), median over rounds, IQR and range; api/call: the\n# part of the ratio that tally's dispatch adds beyond being a function;\n# inline/raw: the same ratio for TALLY_INLINE; target: api/inline\n");
	printf("%-7s %7s %9s %9s %9s %9s %7s %14s %14s %7s %7s  %s\n",
	       "backend", "workers", "raw ns", "call ns", "api ns", "inline ns",
	       "ratio", "ratio IQR", "ratio range", "api/call", "inl/raw",
	       "target");
	for (unsigned w = 1; w <= 2; w++)
		for (size_t i = 0; i < N_KINDS; i++)
			if (run_pairs(&kinds[i], w, reps, ms) != 0)
				return 3;
	return 0;
}
