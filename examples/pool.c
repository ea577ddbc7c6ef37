/* tally-pool: a small thread pool that counts its finished jobs with tally.
 * The backend comes from --backend, else $TALLY_BACKEND, else the library's
 * default; the pool's code is the same whichever one it gets. */
#define _POSIX_C_SOURCE 200809L
#include <tally.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { EXIT_EXACT = 0, EXIT_LOST = 1, EXIT_USAGE = 2, EXIT_RUNTIME = 3 };

#define QUEUE 64 /* jobs waiting at most; submit() blocks when full */

/*
 * The pool: a bounded ring of job numbers under one mutex, and two tally
 * counters that every worker updates without that mutex: `finished` (+1 per
 * job) and `steps` (+the job's result).  Only the counters see concurrency
 * from all workers at once; that is what the backend has to get right.
 */
struct pool {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	uint64_t ring[QUEUE];
	size_t head, count;
	int closing;
	int error; /* first tally error a worker saw (under lock) */
	tally *finished, *steps;
	pthread_t *threads;
	unsigned nthreads;
};

/* The "work": the number of Collatz steps from n down to 1. */
static uint64_t job_steps(uint64_t n)
{
	uint64_t steps = 0;

	for (; n > 1; steps++)
		n = (n & 1) ? 3 * n + 1 : n / 2;
	return steps;
}

static void record_error(struct pool *p, int rc)
{
	pthread_mutex_lock(&p->lock);
	if (p->error == 0)
		p->error = rc;
	pthread_mutex_unlock(&p->lock);
}

static void *worker(void *arg)
{
	struct pool *p = arg;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (p->count == 0 && !p->closing)
			pthread_cond_wait(&p->not_empty, &p->lock);
		if (p->count == 0) { /* closing, and nothing left */
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		uint64_t n = p->ring[p->head];
		p->head = (p->head + 1) % QUEUE;
		p->count--;
		pthread_cond_signal(&p->not_full);
		pthread_mutex_unlock(&p->lock);

		/* tally_add() returns 0, TALLY_RECOVERED (> 0, also success)
		 * or a negative error. */
		int rc = tally_add(p->steps, (int64_t)job_steps(n));
		if (rc >= 0)
			rc = tally_add(p->finished, 1);
		if (rc < 0)
			record_error(p, rc);
	}
}

static void submit(struct pool *p, uint64_t n)
{
	pthread_mutex_lock(&p->lock);
	while (p->count == QUEUE)
		pthread_cond_wait(&p->not_full, &p->lock);
	p->ring[(p->head + p->count) % QUEUE] = n;
	p->count++;
	pthread_cond_signal(&p->not_empty);
	pthread_mutex_unlock(&p->lock);
}

/* Start nthreads workers; 0 or an errno value. */
static int pool_start(struct pool *p, unsigned nthreads)
{
	int rc;

	p->threads = calloc(nthreads, sizeof(*p->threads));
	if (p->threads == NULL)
		return ENOMEM;
	for (p->nthreads = 0; p->nthreads < nthreads; p->nthreads++) {
		rc = pthread_create(&p->threads[p->nthreads], NULL, worker, p);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Let the workers drain the queue, then join them. */
static void pool_finish(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->closing = 1;
	pthread_cond_broadcast(&p->not_empty);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	free(p->threads);
}

/* Run `jobs` jobs on `nthreads` threads with counters on `backend` (NULL:
 * $TALLY_BACKEND, else the default).  Returns an exit code. */
static int run_pool(const char *backend, unsigned nthreads, uint64_t jobs)
{
	struct pool p = {.lock = PTHREAD_MUTEX_INITIALIZER,
			 .not_empty = PTHREAD_COND_INITIALIZER,
			 .not_full = PTHREAD_COND_INITIALIZER};
	int64_t finished = 0, steps = 0;
	uint64_t want_steps = 0;
	int rc;

	rc = tally_create(&p.finished, backend, 0, 0);
	if (rc == 0)
		rc = tally_create(&p.steps, backend, 0, 0);
	if (rc != 0) {
		fprintf(stderr, "tally-pool: %s: %s (%s)\n",
			backend ? backend : "default backend",
			tally_strerror(rc), tally_errname(rc));
		tally_destroy(p.finished);
		return rc == TALLY_ESYSTEM || rc == TALLY_ENOMEM ||
				       rc == TALLY_EREMOTE
			       ? EXIT_RUNTIME
			       : EXIT_USAGE;
	}
	rc = pool_start(&p, nthreads);
	if (rc != 0)
		fprintf(stderr, "tally-pool: pthread_create: %s\n",
			strerror(rc));
	for (uint64_t n = 1; rc == 0 && n <= jobs; n++) {
		submit(&p, n);
		want_steps += job_steps(n);
	}
	pool_finish(&p);
	if (rc == 0 && p.error == 0) {
		rc = tally_get(p.finished, &finished);
		if (rc >= 0)
			rc = tally_get(p.steps, &steps);
		if (rc < 0)
			p.error = rc;
	}
	if (p.error != 0)
		fprintf(stderr, "tally-pool: %s: %s\n",
			tally_backend_name(p.finished),
			tally_strerror(p.error));
	else if (rc == 0)
		printf("%-8s %u threads: %" PRId64 " of %" PRIu64
		       " jobs counted, %" PRId64 " of %" PRIu64 " steps\n",
		       tally_backend_name(p.finished), nthreads, finished, jobs,
		       steps, want_steps);
	tally_destroy(p.finished);
	tally_destroy(p.steps);
	if (rc != 0 || p.error != 0)
		return EXIT_RUNTIME;
	return finished == (int64_t)jobs && steps == (int64_t)want_steps
		       ? EXIT_EXACT
		       : EXIT_LOST;
}

/* --backend all: every built-in backend that needs no server.  A backend
 * with TALLY_CAP_RACY is expected to lose updates: its count is shown but
 * not held against it. */
static int run_all(unsigned nthreads, uint64_t jobs)
{
	int worst = EXIT_EXACT;

	for (size_t i = 0; i < tally_backend_count(); i++) {
		tally_backend_info b;

		if (tally_backend_at(i, &b) != 0)
			return EXIT_RUNTIME;
		if (!b.built_in || (b.caps & TALLY_CAP_REMOTE)) {
			printf("%-8s skipped: %s\n", b.name,
			       b.built_in ? "needs a server (name it to use it)"
					  : "not built in");
			continue;
		}
		int rc = run_pool(b.name, nthreads, jobs);
		if (rc == EXIT_LOST && (b.caps & TALLY_CAP_RACY)) {
			printf("%-8s lost updates, as expected without synchronization\n",
			       b.name);
			continue;
		}
		if (rc > worst)
			worst = rc;
	}
	return worst;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tally-pool [--backend NAME|all] [--threads N] [--jobs N]\n\n"
		"Run --jobs (100000) small jobs on a pool of --threads workers (default: one\nper CPU), count the finished ones with tally, and check the count.\n"
		"--backend defaults to $TALLY_BACKEND, else the library's default; 'all' runs\nevery built-in backend that needs no server.\n"
		"exit status: 0 exact, 1 lost updates, 2 bad input, 3 runtime failure\n");
}

int main(int argc, char **argv)
{
	const char *backend = NULL;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t nthreads = cpus < 2 ? 2 : cpus > 16 ? 16 : (uint64_t)cpus;
	uint64_t jobs = 100000;

	for (int i = 1; i < argc; i += 2) {
		const char *arg = argv[i], *val = argv[i + 1];

		if (strcmp(arg, "--help") == 0) {
			usage(stdout);
			return EXIT_EXACT;
		}
		if (val != NULL && strcmp(arg, "--backend") == 0)
			backend = val;
		else if (strcmp(arg, "--threads") == 0 &&
			 parse_u64(val, 1, 256, &nthreads) == 0)
			;
		else if (strcmp(arg, "--jobs") == 0 &&
			 parse_u64(val, 1, UINT64_C(1) << 40, &jobs) == 0)
			;
		else {
			fprintf(stderr, "tally-pool: bad argument '%s'\n", arg);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (backend != NULL && strcmp(backend, "all") == 0)
		return run_all((unsigned)nthreads, jobs);
	return run_pool(backend, (unsigned)nthreads, jobs);
}
