/* `tally run --participants N`: several runs that join one remote counter
 * for one verdict. */
#include "participants.h"
#include "cli.h"
#include "clock.h"
#include "run_core.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * --participants N: several runs, on any machines, on one remote counter.
 *
 * Everything they share lives in counters on the same server, beside the
 * counter itself (KEY.tally-run.NAME), all joined with `keep` so that no run
 * ever resets what another uses:
 *   tickets   each run takes one with tally_add_fetch(): ticket t (from 1)
 *             is participant (t-1) % N + 1 of joint run (t-1) / N, and the
 *             joint run is complete when tickets reaches its last ticket
 *   ready     the second barrier: between the two, every participant reads
 *             the starting values (nobody adds before all have read them)
 *   sum       what each participant's completed adds sum to
 *   unknown, unknown_sum
 *             adds of unknown outcome, and their deltas
 *   finished  counts participants done adding (after adding to sum)
 *   mask      bit i for participant i+1 finished: who never did
 * The verdict: the counter went from its starting value to actual; the
 * participants' adds sum to `sum`; lost = start + sum - actual.
 * One joint run per key at a time: the next may begin when one ends.
 */
enum { C_MAIN, C_TICKETS, C_READY, C_SUM, C_UNK, C_UNKSUM, C_FIN, C_MASK, C_N };
static const char *const counter_names[C_N] = {
	NULL,	   "tickets",	  "ready",    "sum",
	"unknown", "unknown_sum", "finished", "mask"};

struct joint {
	const char *backend;
	unsigned n, index; /* index from 0 */
	uint64_t run;	   /* which joint run on this key */
	int64_t last_ticket;
	double timeout_s;
	tally *c[C_N];
	int64_t start[C_N]; /* each counter's value between the barriers */
	char *spec[C_N];
};

/*
 * spec joined with "keep" (and the key of counter `name`, when not NULL):
 * the user's options without their own key= and keep, which the library
 * would refuse given twice, then keep and the key.
 */
static char *derived(const char *spec, const char *name)
{
	const char *opt = strchr(spec, ':');
	const char *key = "tally";
	size_t klen = 5, used;
	size_t size = strlen(spec) + 2 * strlen(spec) + 64 +
		      (name ? strlen(name) : 0);
	char *out = malloc(size);

	if (out == NULL)
		return NULL;
	used = (size_t)snprintf(
		out, size,
		"%.*s:", (int)(opt ? (size_t)(opt - spec) : strlen(spec)),
		spec);
	for (const char *p = opt; p != NULL && p[1] != '\0';
	     p = strchr(p + 1, ',')) {
		size_t len = strcspn(p + 1, ",");
		if (strncmp(p + 1, "key=", 4) == 0) {
			key = p + 5;
			klen = len - 4;
		} else if (!(len == 4 && strncmp(p + 1, "keep", 4) == 0)) {
			used += (size_t)snprintf(out + used, size - used,
						 "%.*s,", (int)len, p + 1);
		}
	}
	if (name == NULL)
		snprintf(out + used, size - used, "keep,key=%.*s", (int)klen,
			 key);
	else
		snprintf(out + used, size - used, "keep,key=%.*s.tally-run.%s",
			 (int)klen, key, name);
	return out;
}

static void joint_close(struct joint *j)
{
	for (int i = 0; i < C_N; i++) {
		tally_destroy(j->c[i]);
		free(j->spec[i]);
	}
}

static int joint_open(struct joint *j, int64_t initial)
{
	for (int i = 0; i < C_N; i++) {
		j->spec[i] = derived(j->backend, counter_names[i]);
		if (j->spec[i] == NULL)
			return TALLY_ENOMEM;
		int rc = tally_create(&j->c[i], j->spec[i],
				      i == C_MAIN ? initial : 0, 0);
		if (rc != 0) {
			cli_error("run", "cannot create the '%s' counter: %s",
				  cli_shown(j->spec[i]), tally_explain(rc));
			return rc;
		}
	}
	return 0;
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000};

	nanosleep(&ts, NULL);
}

/* Wait until counter i reaches at least `until`, at most timeout_s; 0, or
 * -1 with *seen its last value (or the error, on a failed read). */
static int wait_for(struct joint *j, int i, int64_t until, int64_t *seen)
{
	uint64_t end = harness_now_ns() + (uint64_t)(j->timeout_s * 1e9);

	for (;;) {
		int rc = tally_get(j->c[i], seen);
		if (rc < 0) {
			cli_error("run", "cannot read the '%s' counter: %s",
				  cli_shown(j->spec[i]), tally_explain(rc));
			return -1;
		}
		if (*seen >= until)
			return 0;
		if (harness_now_ns() >= end || cli_interrupted())
			return -1;
		pause_ms(10);
	}
}

/* A barrier that timed out is closed, so that the next joint run on this
 * key starts on a fresh one (whoever arrives late waits for that one). */
static void close_barrier(struct joint *j, int i, int64_t seen)
{
	if (seen < j->last_ticket)
		tally_add(j->c[i], j->last_ticket - seen);
}

/* The first barrier: take a ticket, wait for the other N-1. */
static int arrive(struct joint *j)
{
	int64_t ticket, seen;
	int rc = tally_add_fetch(j->c[C_TICKETS], 1, &ticket);

	if (rc < 0) {
		cli_error("run", "cannot take a ticket: %s", tally_explain(rc));
		return -1;
	}
	j->run = (uint64_t)(ticket - 1) / j->n;
	j->index = (unsigned)((uint64_t)(ticket - 1) % j->n);
	j->last_ticket = (int64_t)((j->run + 1) * j->n);
	fprintf(stderr,
		"tally run: participant %u of %u (joint run %llu); waiting for the others\n",
		j->index + 1, j->n, (unsigned long long)j->run);
	if (wait_for(j, C_TICKETS, j->last_ticket, &seen) != 0) {
		int64_t came = seen - (j->last_ticket - j->n);
		if (cli_interrupted())
			cli_error("run",
				  "interrupted while waiting for the others");
		else
			cli_error(
				"run",
				"participants %lld to %u of %u never arrived within %g s (%lld arrived)",
				(long long)came + 1, j->n, j->n, j->timeout_s,
				(long long)came);
		close_barrier(j, C_TICKETS, seen);
		return -1;
	}
	for (int i = 0; i < C_N; i++)
		if (i != C_TICKETS && i != C_READY &&
		    tally_get(j->c[i], &j->start[i]) < 0) {
			cli_error("run", "cannot read the '%s' counter",
				  cli_shown(j->spec[i]));
			return -1;
		}
	/* Nobody adds until everyone has read the starting values. */
	if (tally_add(j->c[C_READY], 1) < 0)
		return -1;
	if (wait_for(j, C_READY, j->last_ticket, &seen) != 0) {
		cli_error("run", "not every participant got ready within %g s",
			  j->timeout_s);
		close_barrier(j, C_READY, seen);
		return -1;
	}
	return 0;
}

/* What this participant did, for the others; then wait for all of them. */
static int finish(struct joint *j, const struct wl_result *res,
		  int64_t *missing_mask)
{
	int64_t mine =
		(int64_t)((uint64_t)res->expected - (uint64_t)j->start[C_MAIN]);
	int64_t seen;

	if (tally_add(j->c[C_SUM], mine) < 0 ||
	    tally_add(j->c[C_UNK], (int64_t)res->unknown) < 0 ||
	    tally_add(j->c[C_UNKSUM], res->unknown_sum) < 0 ||
	    tally_add(j->c[C_MASK], (int64_t)(1ull << j->index)) < 0 ||
	    tally_add(j->c[C_FIN], 1) < 0) {
		cli_error("run", "cannot record what this participant added");
		return -1;
	}
	if (wait_for(j, C_FIN, j->last_ticket, &seen) == 0)
		return 0;
	close_barrier(j, C_FIN, seen);
	int64_t mask = 0;
	if (tally_get(j->c[C_MASK], &mask) == 0)
		*missing_mask = ~(int64_t)((uint64_t)mask -
					   (uint64_t)j->start[C_MASK]) &
				(int64_t)((1ull << j->n) - 1);
	return -1;
}

static int64_t since_start(struct joint *j, int i, int *failed)
{
	int64_t v = 0;

	if (tally_get(j->c[i], &v) < 0)
		*failed = 1;
	return (int64_t)((uint64_t)v - (uint64_t)j->start[i]);
}

static void print_joint(const struct joint *j, const struct wl_config *cfg,
			const struct wl_result *res, enum cli_format format,
			int64_t sum, int64_t actual, int64_t lost,
			int64_t unknown)
{
	int64_t expected =
		(int64_t)((uint64_t)j->start[C_MAIN] + (uint64_t)sum);

	if (format == FORMAT_JSON) {
		printf("{\"backend\": ");
		json_string(stdout, cli_shown(j->backend));
		printf(", \"workload\": \"%s\", \"mode\": \"%s\", \"workers\": %u, \"iters\": %" PRIu64
		       ", \"initial\": %" PRId64
		       ", \"participants\": %u, \"participant\": %u, \"joint_run\": %" PRIu64
		       ", \"own_sum\": %" PRId64 ", \"own_ops\": %" PRIu64
		       ", \"expected\": %" PRId64 ", \"actual\": %" PRId64
		       ", \"lost\": %" PRId64 ", \"unknown\": %" PRId64
		       ", \"seconds\": %.6f, \"ns_per_op\": %.2f, \"exact\": %s}\n",
		       wl_kind_name(cfg->kind), crew_mode_name(cfg->mode),
		       cfg->workers, cfg->iters, j->start[C_MAIN], j->n,
		       j->index + 1, j->run,
		       (int64_t)((uint64_t)res->expected -
				 (uint64_t)j->start[C_MAIN]),
		       res->total_ops, expected, actual, lost, unknown,
		       res->seconds,
		       res->total_ops
			       ? res->seconds * 1e9 / (double)res->total_ops
			       : 0.0,
		       lost == 0 && unknown == 0 ? "true" : "false");
		return;
	}
	static const char *const head[] = {"backend",  "participants", "start",
					   "expected", "actual",       "lost",
					   "own adds", "own seconds"};
	char b[8][32];
	struct table t;

	table_init(&t, 8, head, "lrrrrrrr");
	table_row(&t, cli_shown(j->backend), fmt_u64(b[0], 32, j->n),
		  fmt_i64(b[1], 32, j->start[C_MAIN]),
		  fmt_i64(b[2], 32, expected), fmt_i64(b[3], 32, actual),
		  fmt_i64(b[4], 32, lost), fmt_u64(b[5], 32, res->total_ops),
		  fmt_f(b[6], 32, 3, res->seconds));
	table_emit(&t, format, stdout);
	table_free(&t);
}

/* The joint verdict over all participants, printed by each. */
static int verdict(struct joint *j, const struct wl_config *cfg,
		   struct wl_result *res, enum cli_format format)
{
	int failed = 0;
	int64_t sum = since_start(j, C_SUM, &failed);
	int64_t unknown = since_start(j, C_UNK, &failed);
	int64_t unknown_sum = since_start(j, C_UNKSUM, &failed);
	int64_t actual = 0;

	if (tally_get(j->c[C_MAIN], &actual) < 0 || failed) {
		cli_error("run", "cannot read the joint result");
		return EXIT_RUNTIME;
	}
	int64_t lost = (int64_t)((uint64_t)j->start[C_MAIN] + (uint64_t)sum -
				 (uint64_t)actual);
	print_joint(j, cfg, res, format, sum, actual, lost, unknown);
	fprintf(stderr,
		"tally run: joint verdict over %u participants: adds sum to %" PRId64
		", the counter went from %" PRId64 " to %" PRId64 ": %s\n",
		j->n, sum, j->start[C_MAIN], actual,
		lost == 0 ? "exact" : "they differ");
	if (unknown != 0) {
		run_explain_unknown(
			(uint64_t)unknown, unknown_sum, &actual,
			(int64_t)((uint64_t)j->start[C_MAIN] + (uint64_t)sum),
			res->unknown_why);
		return EXIT_RUNTIME;
	}
	if (lost != 0)
		return EXIT_LOST;
	/* This participant's own failures; its own "lost" is meaningless,
	 * as the counter holds the others' adds too. */
	return wl_faulted(res) ? EXIT_RUNTIME : EXIT_EXACT;
}

int run_participants(const char *backend, const struct wl_config *given,
		     unsigned n, double timeout_s, enum cli_format format)
{
	struct joint j = {.backend = backend, .n = n, .timeout_s = timeout_s};
	struct wl_config cfg = *given;
	int64_t missing = 0;
	int rc = EXIT_RUNTIME;

	struct wl_result *res = calloc(1, sizeof(*res));
	if (res == NULL)
		return EXIT_RUNTIME;
	int err = joint_open(&j, cfg.initial);
	if (err != 0) {
		rc = err == TALLY_EOPTION || err == TALLY_EWRONGTYPE
			     ? EXIT_USAGE
			     : EXIT_RUNTIME;
		goto out;
	}
	if (arrive(&j) != 0)
		goto out;
	/* Each participant's own count starts from the joint start. */
	cfg.initial = j.start[C_MAIN];
	int one = run_one("run", j.spec[C_MAIN], &cfg, res);
	if (one != RUN_RAN) {
		/* Could not run: still finish, adding nothing, so that the
		 * others are not kept waiting. */
		memset(res, 0, sizeof(*res));
		res->expected = cfg.initial;
		res->add_error = TALLY_EREMOTE;
	}
	if (finish(&j, res, &missing) != 0) {
		cli_error(
			"run",
			"not every participant finished within %g s of this one:",
			timeout_s);
		for (unsigned i = 0; i < n; i++)
			if (missing & (int64_t)(1ull << i))
				fprintf(stderr,
					"tally run: participant %u of %u never finished\n",
					i + 1, n);
		goto out;
	}
	rc = verdict(&j, &cfg, res, format);
	if (one != RUN_RAN && rc == EXIT_EXACT)
		rc = one;
out:
	joint_close(&j);
	free(res);
	return rc;
}
