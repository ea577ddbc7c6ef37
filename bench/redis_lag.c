/* redis_lag: how late another process sees a write-behind add (issue 21,
 * requirement 4: "the lag another process sees <= N ms + one round trip").
 *
 * A writer (this process) adds 1 at a time to `redis:...,flush_ms=N` and
 * notes the CLOCK_MONOTONIC time of each add; a reader (a child forked
 * before any handle exists) polls a sync `redis:...,keep` handle on the
 * same key with tally_get() as fast as it can and notes, in a MAP_SHARED
 * table indexed by the value, when each add first shows; lag = seen - add.
 * Adds are spaced by a random 0..G us (G = min(N ms, 1 ms) unless --gap-us
 * says), so they fall at every phase of the flush period and every period
 * has an add near its start (the worst case).  The reader's own get
 * latency is the round trip it is judged against; the get that first shows
 * an add is part of its lag, and is reported too.
 *
 * Usage: redis_lag [--url URL] [--flush-ms N,N...] [--seconds S]
 *                  [--gap-us G] [--poll-us P] [--seed N] [--key PREFIX]
 *                  [--max-samples N] [--format text|json]
 * Exit: 0 measured (whatever the verdict), 1 a count was wrong (an add never
 * seen, or the key moved by more than was added), 2 bad input, 3 a failure
 * (no server, a system call). */
#include "tally.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef __clang__
#define COMPILER "clang " __clang_version__
#else
#define COMPILER "gcc " __VERSION__
#endif
#ifndef TALLY_LAG_BUILD_TYPE
#define TALLY_LAG_BUILD_TYPE "unknown"
#endif

#define MAX_N	     16
#define MAX_URL	     512
#define MAX_KEY	     128
#define WAIT_S	     30 /* for the other process at a step of a round */
#define SEEN_EXTRA_S 10 /* after the last flush, for the reader to see it */

static const char usage[] =
	"usage: redis_lag [--url URL] [--flush-ms N,N...] [--seconds S] [--gap-us G] [--poll-us P] [--seed N] [--key PREFIX] [--max-samples N] [--format text|json]\n";

struct opts {
	char url[MAX_URL], key[MAX_KEY];
	long flush_ms[MAX_N];
	int n;
	double seconds;
	long gap_us; /* 0: min(N ms, 1 ms) */
	long poll_us;
	unsigned long seed;
	long max_samples;
	int json;
};

/* What the reader tells the writer about one round.  Written by the reader
 * before it publishes reader_done (release), read after (acquire). */
struct reader_report {
	int rc; /* 0, 1 (a count wrong) or 3 (a failure) */
	char why[256];
	uint64_t gets;
	double rtt_p50_ns, rtt_p99_ns, rtt_max_ns;
	int64_t base, final;
};

/* The one page (and table) the two processes share.  Each step of a round
 * is published as the round's number in its own word. */
struct shared {
	_Atomic long writer_ready, reader_ready, writer_done, reader_done;
	_Atomic int abort_all;
	_Atomic uint64_t added; /* adds made so far this round */
	/* what the reader has seen so far this round, and when it last saw
	 * the value change: for the writer's messages */
	_Atomic uint64_t seen, seen_at_ns;
	uint64_t total; /* adds of the round, once writer_done */
	pid_t writer;	/* the reader's parent: gone, the reader ends */
	char spec[MAX_URL + MAX_KEY + 64];
	struct reader_report rep;
};

static struct shared *sh;
/* Shared too (mapped before the fork, so at one address in both): per add
 * k (the value base + k + 1), when the reader's get that first showed it
 * was sent, and when it returned. */
static uint64_t *sent_ns, *seen_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
			      .tv_nsec = (long)(ns % 1000000000u)};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* xorshift64*: the gaps between adds, reproducible from --seed. */
static uint64_t rng;

static uint64_t next_random(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717u;
}

/* --- arguments ---------------------------------------------------------- */

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;

	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int bad(const char *opt, const char *val, const char *want)
{
	fprintf(stderr, "redis_lag: %s '%s': %s\n", opt, val, want);
	return 2;
}

static int parse_list(struct opts *o, const char *s)
{
	char buf[256], *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", s);
	o->n = 0;
	for (char *t = strtok_r(buf, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		if (o->n == MAX_N ||
		    parse_long(t, 1, 3600000, &o->flush_ms[o->n]) != 0)
			return -1;
		o->n++;
	}
	return o->n > 0 ? 0 : -1;
}

/* One option with its value; 0, or the exit status. */
static int option(struct opts *o, const char *opt, const char *val)
{
	if (strcmp(opt, "--url") == 0) {
		if (val[0] == '\0' || strlen(val) >= sizeof(o->url) ||
		    strchr(val, ',') != NULL)
			return bad(
				opt, val,
				"a redis:// URL without a comma, under 512 bytes");
		snprintf(o->url, sizeof(o->url), "%s", val);
	} else if (strcmp(opt, "--key") == 0) {
		if (val[0] == '\0' || strlen(val) >= sizeof(o->key) - 16 ||
		    strpbrk(val, ", \t\n") != NULL)
			return bad(
				opt, val,
				"a key prefix without commas or spaces, under 112 bytes");
		snprintf(o->key, sizeof(o->key), "%s", val);
	} else if (strcmp(opt, "--flush-ms") == 0) {
		if (parse_list(o, val) != 0)
			return bad(
				opt, val,
				"up to 16 comma-separated integers, 1 to 3600000");
	} else if (strcmp(opt, "--seconds") == 0) {
		char *end;
		errno = 0;
		o->seconds = strtod(val, &end);
		if (errno != 0 || end == val || *end != '\0' ||
		    !(o->seconds >= 0.1 && o->seconds <= 3600))
			return bad(opt, val,
				   "a number of seconds, 0.1 to 3600");
	} else if (strcmp(opt, "--gap-us") == 0) {
		if (parse_long(val, 1, 10000000, &o->gap_us) != 0)
			return bad(opt, val, "an integer, 1 to 10000000");
	} else if (strcmp(opt, "--poll-us") == 0) {
		if (parse_long(val, 0, 1000000, &o->poll_us) != 0)
			return bad(opt, val, "an integer, 0 to 1000000");
	} else if (strcmp(opt, "--seed") == 0) {
		long v;
		if (parse_long(val, 1, LONG_MAX, &v) != 0)
			return bad(opt, val, "a positive integer");
		o->seed = (unsigned long)v;
	} else if (strcmp(opt, "--max-samples") == 0) {
		if (parse_long(val, 100, 100000000, &o->max_samples) != 0)
			return bad(opt, val, "an integer, 100 to 100000000");
	} else if (strcmp(opt, "--format") == 0) {
		if (strcmp(val, "text") != 0 && strcmp(val, "json") != 0)
			return bad(opt, val, "text or json");
		o->json = strcmp(val, "json") == 0;
	} else {
		fprintf(stderr, "redis_lag: unknown option '%s'\n%s", opt,
			usage);
		return 2;
	}
	return 0;
}

static int parse(struct opts *o, int argc, char **argv)
{
	static const char *const names[] = {
		"--url",     "--key",  "--flush-ms",	"--seconds", "--gap-us",
		"--poll-us", "--seed", "--max-samples", "--format"};
	int given[sizeof(names) / sizeof(names[0])] = {0};

	*o = (struct opts){.url = "redis://127.0.0.1:6379",
			   .flush_ms = {1, 10, 100},
			   .n = 3,
			   .seconds = 20,
			   .seed = 1,
			   .max_samples = 1000000};
	snprintf(o->key, sizeof(o->key), "tally-lag.%ld", (long)getpid());
	for (int i = 1; i < argc; i += 2) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			exit(0);
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "redis_lag: '%s' without a value\n%s",
				argv[i], usage);
			return 2;
		}
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (strcmp(argv[i], names[k]) == 0 && given[k]++) {
				fprintf(stderr,
					"redis_lag: '%s' given twice\n%s",
					argv[i], usage);
				return 2;
			}
		int rc = option(o, argv[i], argv[i + 1]);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* --- statistics --------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Nearest rank of q (0..1] in sorted v[n], n > 0. */
static double rank(const uint64_t *v, size_t n, double q)
{
	size_t i = (size_t)(q * (double)n + 0.999999);

	return (double)v[i == 0 ? 0 : (i > n ? n : i) - 1];
}

/* --- the reader (a child) ----------------------------------------------- */

static pid_t child; /* in the writer: the reader */

/* Whether the other process has ended (the writer's child is looked at,
 * not reaped). */
static int peer_gone(void)
{
	if (child == 0)
		return getppid() != sh->writer;
	siginfo_t si = {0};
	return waitid(P_PID, (id_t)child, &si, WEXITED | WNOHANG | WNOWAIT) !=
		       0 ||
	       si.si_pid == child;
}

static int wait_for(_Atomic long *word, long round)
{
	uint64_t end = now_ns() + (uint64_t)WAIT_S * 1000000000u;

	while (atomic_load_explicit(word, memory_order_acquire) != round) {
		if (atomic_load(&sh->abort_all) || now_ns() > end ||
		    peer_gone())
			return -1;
		sleep_ns(100000);
	}
	return 0;
}

static int reader_fail(struct reader_report *r, int rc, const char *what,
		       int err)
{
	r->rc = rc;
	snprintf(r->why, sizeof(r->why), "reader: %s%s%s", what,
		 err != 0 ? ": " : "", err != 0 ? tally_explain(err) : "");
	return rc;
}

/* Poll until every add of the round has shown; the round's report. */
static int poll_round(tally *t, const struct opts *o, long round,
		      struct reader_report *r, uint64_t **rtt, size_t *cap)
{
	uint64_t seen = 0, done_at = 0;
	size_t n = 0;
	int64_t v;

	for (;;) {
		if (atomic_load(&sh->abort_all))
			return reader_fail(r, 3, "stopped by the writer", 0);
		uint64_t t0 = now_ns();
		int rc = tally_get(t, &v);
		uint64_t t1 = now_ns();
		if (rc != 0)
			return reader_fail(r, 3, "tally_get", rc);
		if (n == *cap) {
			size_t c = *cap * 2;
			uint64_t *p = realloc(*rtt, c * sizeof(**rtt));
			if (p == NULL)
				return reader_fail(r, 3, "out of memory", 0);
			*rtt = p;
			*cap = c;
		}
		(*rtt)[n++] = t1 - t0;
		/* The writer counts an add just after making it, so its
		 * flusher may send one add not yet counted. */
		uint64_t added =
			atomic_load_explicit(&sh->added, memory_order_acquire);
		uint64_t d = (uint64_t)v - (uint64_t)r->base;
		if (d > added + 1 || d > (uint64_t)o->max_samples) {
			snprintf(r->why, sizeof(r->why),
				 "reader: the key moved by %" PRId64
				 " with %" PRIu64
				 " added: another writer on the key?",
				 (int64_t)d, added);
			r->rc = 1;
			return 1;
		}
		if (seen < d) {
			for (; seen < d; seen++) {
				sent_ns[seen] = t0;
				seen_ns[seen] = t1;
			}
			atomic_store(&sh->seen_at_ns, t1);
			atomic_store(&sh->seen, seen);
		}
		if (atomic_load_explicit(&sh->writer_done,
					 memory_order_acquire) == round) {
			if (seen >= sh->total)
				break;
			if (done_at == 0)
				done_at = t1;
			if (t1 - done_at >
			    (uint64_t)SEEN_EXTRA_S * 1000000000u) {
				snprintf(
					r->why, sizeof(r->why),
					"reader: %" PRIu64 " of %" PRIu64
					" adds seen %d s after the writer's flush returned",
					seen, sh->total, SEEN_EXTRA_S);
				r->rc = 1;
				return 1;
			}
		}
		if (o->poll_us > 0)
			sleep_ns((uint64_t)o->poll_us * 1000u);
	}
	r->final = v;
	r->gets = n;
	qsort(*rtt, n, sizeof(**rtt), cmp_u64);
	r->rtt_p50_ns = rank(*rtt, n, 0.50);
	r->rtt_p99_ns = rank(*rtt, n, 0.99);
	r->rtt_max_ns = (double)(*rtt)[n - 1];
	return 0;
}

static int reader_round(const struct opts *o, long round, uint64_t **rtt,
			size_t *cap)
{
	struct reader_report *r = &sh->rep;
	tally *t = NULL;
	int rc;

	/* The writer has read the last round's report once it starts this
	 * one. */
	if (wait_for(&sh->writer_ready, round) != 0)
		return reader_fail(r, 3, "the writer never got ready", 0);
	memset(r, 0, sizeof(*r));
	rc = tally_create(&t, sh->spec, 0, 0);
	if (rc != 0)
		return reader_fail(r, 3, "tally_create", rc);
	/* A few gets first: a connected client, a loaded script. */
	for (int i = 0; i < 100 && rc == 0; i++)
		rc = tally_get(t, &r->base);
	if (rc != 0) {
		tally_destroy(t);
		return reader_fail(r, 3, "tally_get", rc);
	}
	atomic_store_explicit(&sh->reader_ready, round, memory_order_release);
	rc = poll_round(t, o, round, r, rtt, cap);
	tally_destroy(t);
	return rc;
}

static void reader(const struct opts *o)
{
	size_t cap = 1 << 16;
	uint64_t *rtt = malloc(cap * sizeof(*rtt));
	int rc = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != sh->writer)
		_exit(3);
	for (long round = 1; round <= o->n && rc == 0; round++) {
		if (rtt == NULL) {
			rc = reader_fail(&sh->rep, 3, "out of memory", 0);
		} else {
			rc = reader_round(o, round, &rtt, &cap);
		}
		atomic_store_explicit(&sh->reader_done, round,
				      memory_order_release);
	}
	free(rtt);
	_exit(rc);
}

/* --- the writer (this process) ------------------------------------------ */

struct result {
	long flush_ms, gap_us;
	double seconds;
	uint64_t samples;
	double lag_min, lag_p50, lag_p99, lag_max, lag_mean; /* ms */
	double shown_p50, shown_max; /* ms: the get that first showed an add */
	/* ms between the moments the reader saw the value change: the
	 * flusher's period as another process sees it */
	uint64_t jumps;
	double jump_p50, jump_p99, jump_max;
	double rtt_p50, rtt_p99, rtt_max, gets_per_s; /* ms */
	double bound;				      /* N + rtt_p99, ms */
	uint64_t over_bound;
	int exact;
};

static long failing_n; /* the round's N, for the messages */

static int fail(const char *what, int err)
{
	fprintf(stderr, "redis_lag: flush_ms=%ld: %s%s%s\n", failing_n, what,
		err != 0 ? ": " : "", err != 0 ? tally_explain(err) : "");
	atomic_store(&sh->abort_all, 1);
	return 3;
}

/* The adds of one round, spaced by random gaps, until the time is up. */
static int add_for(tally *w, const struct opts *o, long round, long gap_us,
		   uint64_t *add_ns, uint64_t *total)
{
	uint64_t n = 0, end = now_ns() + (uint64_t)(o->seconds * 1e9);

	while (n < (uint64_t)o->max_samples && now_ns() < end) {
		uint64_t gap = next_random() % ((uint64_t)gap_us * 1000u + 1);
		if (gap != 0)
			sleep_ns(gap);
		add_ns[n] = now_ns();
		int rc = tally_add(w, 1);
		if (rc != 0)
			return fail("tally_add", rc);
		atomic_store_explicit(&sh->added, ++n, memory_order_release);
		if (atomic_load_explicit(&sh->reader_done,
					 memory_order_acquire) == round)
			break; /* the reader gave up: no use adding more */
	}
	*total = n;
	return 0;
}

static void summarize(struct result *res, const uint64_t *add_ns, uint64_t *tmp,
		      size_t n)
{
	const struct reader_report *r = &sh->rep;
	double sum = 0;

	for (size_t k = 0; k < n; k++) {
		tmp[k] = seen_ns[k] - add_ns[k];
		sum += (double)tmp[k];
	}
	res->rtt_p50 = r->rtt_p50_ns / 1e6;
	res->rtt_p99 = r->rtt_p99_ns / 1e6;
	res->rtt_max = r->rtt_max_ns / 1e6;
	res->bound = (double)res->flush_ms + res->rtt_p99;
	res->over_bound = 0;
	for (size_t k = 0; k < n; k++)
		res->over_bound += (double)tmp[k] / 1e6 > res->bound;
	qsort(tmp, n, sizeof(*tmp), cmp_u64);
	res->samples = n;
	res->lag_min = (double)tmp[0] / 1e6;
	res->lag_p50 = rank(tmp, n, 0.50) / 1e6;
	res->lag_p99 = rank(tmp, n, 0.99) / 1e6;
	res->lag_max = (double)tmp[n - 1] / 1e6;
	res->lag_mean = sum / (double)n / 1e6;
	for (size_t k = 0; k < n; k++)
		tmp[k] = seen_ns[k] - sent_ns[k];
	qsort(tmp, n, sizeof(*tmp), cmp_u64);
	res->shown_p50 = rank(tmp, n, 0.50) / 1e6;
	res->shown_max = (double)tmp[n - 1] / 1e6;
	size_t j = 0;
	for (size_t k = 1; k < n; k++)
		if (seen_ns[k] != seen_ns[k - 1])
			tmp[j++] = seen_ns[k] - seen_ns[k - 1];
	res->jumps = j;
	if (j == 0)
		return;
	qsort(tmp, j, sizeof(*tmp), cmp_u64);
	res->jump_p50 = rank(tmp, j, 0.50) / 1e6;
	res->jump_p99 = rank(tmp, j, 0.99) / 1e6;
	res->jump_max = (double)tmp[j - 1] / 1e6;
}

/* After a failed flush: how far the reader got, and when it stopped. */
static void tell_seen(uint64_t t0, uint64_t t1)
{
	uint64_t at = atomic_load(&sh->seen_at_ns);

	fprintf(stderr,
		"redis_lag: flush_ms=%ld: %" PRIu64
		" adds in %.3f s, then the flush returned after %.3f s; the reader had seen %" PRIu64
		" of them, the last new value %.3f s after the first add\n",
		failing_n, atomic_load(&sh->added), (double)(t1 - t0) / 1e9,
		(double)(now_ns() - t1) / 1e9, atomic_load(&sh->seen),
		at > t0 ? (double)(at - t0) / 1e9 : 0.0);
}

static int writer_round(const struct opts *o, long round, uint64_t *add_ns,
			uint64_t *tmp, struct result *res)
{
	long n_ms = o->flush_ms[round - 1];
	failing_n = n_ms;
	/* Gaps of at most N/2 put an add in every period, so that each
	 * period's worst case (an add just after a flush) is sampled; at most
	 * 1 ms keeps the long periods' sample counts up. */
	long gap_us = o->gap_us != 0 ? o->gap_us
				     : (n_ms * 500 < 1000 ? n_ms * 500 : 1000);
	char spec[sizeof(sh->spec)];
	tally *w = NULL;
	int64_t v;
	uint64_t total = 0;
	int rc;

	snprintf(spec, sizeof(spec), "redis:url=%s,key=%s.%ld,flush_ms=%ld",
		 o->url, o->key, n_ms, n_ms);
	rc = tally_create(&w, spec, 0, 0);
	if (rc != 0)
		return fail("tally_create", rc);
	/* One add sent before the reader starts: the writer's connection
	 * and script are warm when the first measured add is made. */
	if ((rc = tally_add(w, 1)) != 0 || (rc = tally_flush(w)) != 0) {
		tally_destroy(w);
		return fail("the first add", rc);
	}
	snprintf(sh->spec, sizeof(sh->spec), "redis:url=%s,key=%s.%ld,keep",
		 o->url, o->key, n_ms);
	atomic_store(&sh->added, 0);
	atomic_store(&sh->seen, 0);
	atomic_store(&sh->seen_at_ns, 0);
	atomic_store_explicit(&sh->writer_ready, round, memory_order_release);
	if (wait_for(&sh->reader_ready, round) != 0 &&
	    atomic_load(&sh->reader_done) != round) {
		tally_destroy(w);
		return fail("the reader never got ready", 0);
	}
	uint64_t t0 = now_ns();
	rc = sh->rep.rc == 0 ? add_for(w, o, round, gap_us, add_ns, &total) : 0;
	uint64_t t1 = now_ns();
	if (rc == 0 && (rc = tally_flush(w)) != 0) {
		rc = fail("tally_flush", rc);
		tell_seen(t0, t1);
	}
	double secs = (double)(now_ns() - t0) / 1e9;
	if (rc == 0 && (rc = tally_get(w, &v)) != 0)
		rc = fail("tally_get", rc);
	tally_destroy(w);
	if (rc != 0)
		return rc;
	sh->total = total;
	atomic_store_explicit(&sh->writer_done, round, memory_order_release);
	if (wait_for(&sh->reader_done, round) != 0)
		return fail("the reader never finished", 0);
	if (sh->rep.rc != 0) {
		fprintf(stderr, "redis_lag: flush_ms=%ld: %s\n", n_ms,
			sh->rep.why);
		return sh->rep.rc;
	}
	*res = (struct result){.flush_ms = n_ms, .gap_us = gap_us};
	res->seconds = secs;
	res->gets_per_s = (double)sh->rep.gets / secs;
	res->exact = v == (int64_t)total + 1 &&
		     sh->rep.final == sh->rep.base + (int64_t)total;
	if (total == 0) {
		fprintf(stderr, "redis_lag: flush_ms=%ld: no add was made\n",
			n_ms);
		return 3;
	}
	summarize(res, add_ns, tmp, (size_t)total);
	if (!res->exact)
		fprintf(stderr,
			"redis_lag: flush_ms=%ld: %" PRIu64
			" adds; the writer reads %" PRId64
			" (1 + the adds expected), the reader %" PRId64
			" from %" PRId64 "\n",
			n_ms, total, v, sh->rep.final, sh->rep.base);
	return res->exact ? 0 : 1;
}

/* --- context and output ------------------------------------------------- */

struct context {
	char cpu[512], kernel[256], url[MAX_URL], load0[64], load1[64];
};

static void loadavg(char *out, size_t size)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double a = -1, b = -1, c = -1;

	if (f != NULL) {
		if (fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3)
			a = b = c = -1;
		fclose(f);
	}
	snprintf(out, size, "[%.2f, %.2f, %.2f]", a, b, c);
}

static void context(struct context *c, const struct opts *o)
{
	struct utsname u;
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(c->cpu, sizeof(c->cpu), "?");
	if (f != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			if (strncmp(line, "model name", 10) == 0) {
				char *p = strchr(line, ':');
				snprintf(c->cpu, sizeof(c->cpu), "%s",
					 p ? p + 2 : line);
				c->cpu[strcspn(c->cpu, "\n")] = '\0';
				break;
			}
		fclose(f);
	}
	if (uname(&u) == 0)
		snprintf(c->kernel, sizeof(c->kernel), "%s %s %s", u.sysname,
			 u.release, u.machine);
	else
		snprintf(c->kernel, sizeof(c->kernel), "?");
	tally_backend_redact(o->url, c->url, sizeof(c->url));
	loadavg(c->load0, sizeof(c->load0));
}

/* A string for JSON: the few characters that need it escaped, the rest
 * (a CPU name, a URL) as is. */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static const char *verdict(const struct result *r)
{
	if (r->lag_max <= r->bound)
		return "yes";
	return r->lag_p99 <= r->bound ? "NO (p99 yes)" : "NO";
}

static void print_json(const struct context *c, const struct opts *o,
		       const struct result *res, int n)
{
	printf("{\"context\": {\"program\": \"redis_lag\", \"tally\": ");
	json_str(tally_version());
	printf(", \"compiler\": ");
	json_str(COMPILER);
	printf(", \"build_type\": ");
	json_str(TALLY_LAG_BUILD_TYPE);
	printf(", \"cpu_model\": ");
	json_str(c->cpu);
	printf(", \"online_cpus\": %ld, \"kernel\": ",
	       sysconf(_SC_NPROCESSORS_ONLN));
	json_str(c->kernel);
	printf(", \"url\": ");
	json_str(c->url);
	printf(",\n \"loadavg_start\": %s, \"loadavg_end\": %s, \"seconds_per_n\": %g, \"poll_us\": %ld, \"seed\": %lu, \"max_samples\": %ld,\n",
	       c->load0, c->load1, o->seconds, o->poll_us, o->seed,
	       o->max_samples);
	printf(" \"lag\": \"ms from the writer's tally_add() to the return of the reader's first tally_get() that shows it\",\n \"rtt\": \"ms of each tally_get() of the reader (sync, keep: TYPE and GET, one round trip)\",\n \"showing_get\": \"ms of the reader's get that first showed an add (part of its lag)\",\n \"seen_interval\": \"ms between the moments the reader saw the value change: the flush period as another process sees it\",\n \"bound\": \"flush_ms + rtt p99\"},\n \"results\": [");
	for (int i = 0; i < n; i++) {
		const struct result *r = &res[i];
		printf("%s\n  {\"flush_ms\": %ld, \"gap_us_max\": %ld, \"seconds\": %.3f, \"samples\": %" PRIu64
		       ", \"flush_periods\": %.0f, \"exact\": %s,\n",
		       i ? "," : "", r->flush_ms, r->gap_us, r->seconds,
		       r->samples, r->seconds * 1000 / (double)r->flush_ms,
		       r->exact ? "true" : "false");
		printf("   \"lag_ms\": {\"min\": %.4f, \"p50\": %.4f, \"p99\": %.4f, \"max\": %.4f, \"mean\": %.4f},\n",
		       r->lag_min, r->lag_p50, r->lag_p99, r->lag_max,
		       r->lag_mean);
		printf("   \"rtt_ms\": {\"gets_per_s\": %.0f, \"p50\": %.4f, \"p99\": %.4f, \"max\": %.4f},\n",
		       r->gets_per_s, r->rtt_p50, r->rtt_p99, r->rtt_max);
		printf("   \"showing_get_ms\": {\"p50\": %.4f, \"max\": %.4f},\n",
		       r->shown_p50, r->shown_max);
		printf("   \"seen_interval_ms\": {\"count\": %" PRIu64
		       ", \"p50\": %.4f, \"p99\": %.4f, \"max\": %.4f},\n",
		       r->jumps, r->jump_p50, r->jump_p99, r->jump_max);
		printf("   \"bound_ms\": %.4f, \"over_bound\": %" PRIu64
		       ", \"max_over_n_ms\": %.4f, \"max_within_bound\": %s, \"p99_within_bound\": %s}",
		       r->bound, r->over_bound,
		       r->lag_max - (double)r->flush_ms,
		       r->lag_max <= r->bound ? "true" : "false",
		       r->lag_p99 <= r->bound ? "true" : "false");
	}
	printf("\n]}\n");
}

static void print_text(const struct context *c, const struct result *res, int n)
{
	printf("# redis_lag: tally %s, %s (%s), %s, %s, %ld CPUs; load %s at start, %s at end; %s\n",
	       tally_version(), COMPILER, TALLY_LAG_BUILD_TYPE, c->kernel,
	       c->cpu, sysconf(_SC_NPROCESSORS_ONLN), c->load0, c->load1,
	       c->url);
	printf("# ms. lag: the writer's tally_add() to the return of the reader's first tally_get() showing it; rtt: the reader's tally_get(); bound: N + rtt p99; over: samples above it; interval: between the value changes the reader saw\n");
	printf("%8s %7s %8s %8s %8s %7s %7s %7s %8s %6s %8s %8s  %s\n",
	       "flush_ms", "samples", "lag_p50", "lag_p99", "lag_max",
	       "rtt_p50", "rtt_p99", "rtt_max", "bound", "over", "int_p50",
	       "int_max", "max <= N + rtt");
	for (int i = 0; i < n; i++) {
		const struct result *r = &res[i];
		printf("%8ld %7" PRIu64
		       " %8.3f %8.3f %8.3f %7.3f %7.3f %7.3f %8.3f %6" PRIu64
		       " %8.3f %8.3f  %s\n",
		       r->flush_ms, r->samples, r->lag_p50, r->lag_p99,
		       r->lag_max, r->rtt_p50, r->rtt_p99, r->rtt_max, r->bound,
		       r->over_bound, r->jump_p50, r->jump_max, verdict(r));
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	struct context c;
	struct result res[MAX_N];
	int rc = parse(&o, argc, argv);

	if (rc != 0)
		return rc;
	char spec[MAX_URL + MAX_KEY + 64];
	snprintf(spec, sizeof(spec), "redis:url=%s,key=%s.1,flush_ms=1", o.url,
		 o.key);
	if ((rc = tally_backend_check(spec, 0)) != 0) {
		fprintf(stderr, "redis_lag: %s: %s\n",
			tally_backend_redact(spec, spec, sizeof(spec)),
			tally_explain(rc));
		return rc == TALLY_ENOTBUILT ? 3 : 2;
	}
	rng = o.seed * 0x9E3779B97F4A7C15u | 1;
	context(&c, &o);

	size_t table = (size_t)o.max_samples * sizeof(uint64_t);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	void *sent = mmap(NULL, table, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	void *seen = mmap(NULL, table, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint64_t *add_ns = malloc(table), *tmp = malloc(table);
	if (sh == MAP_FAILED || sent == MAP_FAILED || seen == MAP_FAILED ||
	    add_ns == NULL || tmp == NULL) {
		fprintf(stderr, "redis_lag: no memory for %ld samples\n",
			o.max_samples);
		return 3;
	}
	sent_ns = sent;
	seen_ns = seen;
	sh->writer = getpid();

	/* The reader is forked before any handle exists: its client is its
	 * own from the start. */
	fflush(NULL);
	pid_t pid = fork();
	child = pid;
	if (pid < 0) {
		perror("redis_lag: fork");
		return 3;
	}
	if (pid == 0)
		reader(&o);
	for (int i = 0; i < o.n && rc == 0; i++)
		rc = writer_round(&o, i + 1, add_ns, tmp, &res[i]);
	if (rc != 0) {
		atomic_store(&sh->abort_all, 1);
		kill(pid, SIGKILL);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		fprintf(stderr, "redis_lag: the reader ended with status %d\n",
			status);
		rc = 3;
	}
	if (rc != 0)
		return rc;
	loadavg(c.load1, sizeof(c.load1));
	if (o.json)
		print_json(&c, &o, res, o.n);
	else
		print_text(&c, res, o.n);
	return 0;
}
