/* tally-fork: forked worker processes add to one counter that they share
 * (TALLY_PSHARED), and the parent checks the total.  The backend comes from
 * --backend, else $TALLY_BACKEND, else the library's default. */
#define _POSIX_C_SOURCE 200809L
#include <tally.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

enum { EXIT_EXACT = 0, EXIT_LOST = 1, EXIT_USAGE = 2, EXIT_RUNTIME = 3 };

#define INITIAL 500

/* Worker k waits at the start gate, adds k+1, `iters` times, to the counter
 * it inherited, and exits 0, or EXIT_RUNTIME when an add failed.  Its copy of
 * the handle is its own to destroy: that unmaps the shared memory here, and
 * leaves the counter itself to the parent that created it. */
static void worker(tally *t, unsigned k, uint64_t iters, int gate[2])
{
	int status = 0;
	char c;

	/* The gate opens (read() sees end of file) when the parent closes
	 * the write end, after forking everyone: all workers then start
	 * together instead of one after another as they were forked. */
	close(gate[1]);
	while (read(gate[0], &c, 1) < 0 && errno == EINTR)
		;
	close(gate[0]);
	for (uint64_t i = 0; i < iters; i++) {
		int rc = tally_add(t, (int64_t)k + 1);
		if (rc < 0) { /* TALLY_RECOVERED (> 0) is a success */
			fprintf(stderr, "tally-fork: worker %u: %s\n", k,
				tally_strerror(rc));
			status = EXIT_RUNTIME;
			break;
		}
	}
	tally_destroy(t);
	_exit(status);
}

/* Fork the workers and wait for all of them; 0, or EXIT_RUNTIME when one
 * could not be started or did not finish cleanly. */
static int run_workers(tally *t, unsigned nworkers, uint64_t iters)
{
	int failed = 0, gate[2];
	unsigned started;

	if (pipe(gate) != 0) {
		perror("tally-fork: pipe");
		return EXIT_RUNTIME;
	}
	fflush(NULL); /* or the children would flush our buffers again */
	for (started = 0; started < nworkers; started++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("tally-fork: fork");
			failed = 1;
			break;
		}
		if (pid == 0)
			worker(t, started, iters, gate);
	}
	close(gate[0]);
	close(gate[1]); /* open the gate */
	for (unsigned i = 0; i < started; i++) {
		int status;
		pid_t pid;

		while ((pid = wait(&status)) < 0 && errno == EINTR)
			;
		if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	}
	return failed ? EXIT_RUNTIME : 0;
}

/* One run on `backend` (NULL: $TALLY_BACKEND, else the default); returns an
 * exit code. */
static int run_fork(const char *backend, unsigned nworkers, uint64_t iters)
{
	tally *t;
	int64_t got;
	int rc = tally_create(&t, backend, INITIAL, TALLY_PSHARED);

	if (rc != 0) {
		fprintf(stderr, "tally-fork: %s: %s (%s)\n",
			backend ? backend : "default backend",
			tally_strerror(rc), tally_errname(rc));
		return rc == TALLY_ESYSTEM || rc == TALLY_ENOMEM ||
				       rc == TALLY_EREMOTE
			       ? EXIT_RUNTIME
			       : EXIT_USAGE;
	}
	/* Worker k adds (k+1) * iters: in all iters * n(n+1)/2, modulo 2^64
	 * like the counter itself. */
	uint64_t want = INITIAL + iters * nworkers * (nworkers + 1ull) / 2;

	rc = run_workers(t, nworkers, iters);
	if (rc == 0) {
		rc = tally_get(t, &got);
		if (rc < 0) {
			fprintf(stderr, "tally-fork: %s: %s\n",
				tally_backend_name(t), tally_strerror(rc));
			rc = EXIT_RUNTIME;
		} else {
			printf("%-8s %u processes: %" PRId64
			       ", expected %" PRId64 "\n",
			       tally_backend_name(t), nworkers, got,
			       (int64_t)want);
			rc = got == (int64_t)want ? EXIT_EXACT : EXIT_LOST;
		}
	}
	tally_destroy(t);
	return rc;
}

/* Why --backend all passes over a backend, or NULL to run it. */
static const char *skip_reason(const tally_backend_info *b)
{
	if (!b->built_in)
		return "not built in";
	if (!(b->caps & TALLY_CAP_PSHARED))
		return "cannot be process-shared";
	if (b->caps & TALLY_CAP_REMOTE)
		return "needs a server (name it to use it)";
	return NULL;
}

/* --backend all: every built-in backend that can be shared between
 * processes and needs no server, by capability bits; a TALLY_CAP_RACY one is
 * expected to lose updates and is not held against the run. */
static int run_all(unsigned nworkers, uint64_t iters)
{
	int worst = EXIT_EXACT;

	for (size_t i = 0; i < tally_backend_count(); i++) {
		tally_backend_info b;

		if (tally_backend_at(i, &b) != 0)
			return EXIT_RUNTIME;
		const char *skip = skip_reason(&b);

		if (skip != NULL) {
			printf("%-8s skipped: %s\n", b.name, skip);
			continue;
		}
		int rc = run_fork(b.name, nworkers, iters);
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
		"usage: tally-fork [--backend NAME|all] [--workers N] [--iters N]\n\n"
		"Fork --workers (2) processes that share one counter starting at 500;\nworker k adds k+1, --iters (100000) times.  The parent checks the total.\n"
		"--backend defaults to $TALLY_BACKEND, else the library's default; 'all' runs\nevery built-in backend that can be process-shared and needs no server.\n"
		"exit status: 0 exact, 1 lost updates, 2 bad input, 3 runtime failure\n");
}

int main(int argc, char **argv)
{
	const char *backend = NULL;
	uint64_t nworkers = 2, iters = 100000;

	for (int i = 1; i < argc; i += 2) {
		const char *arg = argv[i], *val = argv[i + 1];

		if (strcmp(arg, "--help") == 0) {
			usage(stdout);
			return EXIT_EXACT;
		}
		if (val != NULL && strcmp(arg, "--backend") == 0)
			backend = val;
		else if (strcmp(arg, "--workers") == 0 &&
			 parse_u64(val, 1, 256, &nworkers) == 0)
			;
		else if (strcmp(arg, "--iters") == 0 &&
			 parse_u64(val, 1, UINT64_C(1) << 32, &iters) == 0)
			;
		else {
			fprintf(stderr, "tally-fork: bad argument '%s'\n", arg);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (backend != NULL && strcmp(backend, "all") == 0)
		return run_all((unsigned)nworkers, iters);
	return run_fork(backend, (unsigned)nworkers, iters);
}
