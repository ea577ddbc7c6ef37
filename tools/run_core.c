/* One run of a workload and its verdict, shared by `tally run`, its
 * --participants and `tally demo`. */
#include "run_core.h"
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int stop_on_sigint(void *arg)
{
	(void)arg;
	return cli_interrupted();
}

static void show_progress(void *arg, const struct wl_progress *p)
{
	const char *label = arg;
	double pct =
		p->total ? 100.0 * (double)p->done / (double)p->total : 100;

	fprintf(stderr, "\r%s: %5.1f%% of %llu adds, %.1f s%s",
		label ? label : "running", pct, (unsigned long long)p->total,
		p->seconds, p->final ? "\r\033[K" : "");
	fflush(stderr);
}

void run_hooks(struct wl_config *cfg, const char *label, int show)
{
	cfg->stop = stop_on_sigint;
	cfg->progress = show ? show_progress : NULL;
	cfg->hook_arg = (void *)label; /* only read: show_progress() */
}

int run_verdict(const struct wl_result *res)
{
	switch (res->verdict) {
	case HARNESS_EXACT:
		return EXIT_EXACT;
	case HARNESS_LOST:
		return EXIT_LOST;
	default:
		return EXIT_RUNTIME;
	}
}

/* Whether t is a counter that others write too: a remote one joined with
 * `keep` (its options hold the word), which a run judges by its own adds. */
static int joins_others(const tally *t)
{
	tally_handle_info d;

	if (tally_describe(t, &d) != 0 || !(d.caps & TALLY_CAP_REMOTE))
		return 0;
	for (const char *p = d.options; *p != '\0';) {
		size_t len = strcspn(p, ",");
		if (len == 4 && strncmp(p, "keep", 4) == 0)
			return 1;
		p += len + (p[len] == ',');
	}
	return 0;
}

int run_one(const char *cmd, const char *backend, const struct wl_config *given,
	    struct wl_result *res)
{
	tally *t;
	struct wl_config cfg_copy = *given, *cfg = &cfg_copy;
	unsigned flags = cfg->mode == CREW_PROCESSES ? TALLY_PSHARED : 0;
	int rc = tally_create(&t, backend, cfg->initial, flags);

	if (rc != 0) {
		cli_error(cmd, "cannot create a '%s' counter: %s",
			  cli_shown(backend), tally_explain(rc));
		/* Refused options, or a key that is no counter: nothing was
		 * done, and it was the input. */
		return rc == TALLY_EOPTION || rc == TALLY_EINVAL ||
				       rc == TALLY_EWRONGTYPE
			       ? EXIT_USAGE
			       : EXIT_RUNTIME;
	}
	cfg->joined = joins_others(t);
	if (wl_run(t, cfg, res) == HARNESS_ERROR) {
		cli_error(cmd, "%s", res->reason);
		tally_destroy(t);
		return EXIT_RUNTIME;
	}
	/* Abandoned threads spinning on a dead lock still use it. */
	if (!(res->stalled && cfg->mode == CREW_THREADS))
		tally_destroy(t);
	return RUN_RAN;
}

void run_warn_oversubscribed(const char *cmd, const tally_backend_info *b,
			     unsigned workers)
{
	unsigned cpus = cli_online_cpus();

	if ((b->caps & TALLY_CAP_SPINNING) && workers > cpus)
		cli_warn(
			cmd,
			"%u workers on %u online CPUs: '%s' spins while it waits, and a waiter whose lock holder is descheduled burns its whole time slice; this can run thousands of times slower than with %u workers",
			workers, cpus, b->name, cpus);
}

void run_explain_unknown(uint64_t n, int64_t sum, const int64_t *actual,
			 int64_t expected, const char *why)
{
	fprintf(stderr,
		"tally run: %" PRIu64
		" add%s of unknown outcome (deltas summing to %" PRId64
		"): %s\n",
		n, n == 1 ? "" : "s", sum,
		why && why[0] ? why : tally_strerror(TALLY_EUNKNOWN));
	if (actual == NULL)
		return;
	/* Each such add was applied once or not at all: the count may exceed
	 * the sure adds by up to their sum, and that is no loss. */
	int64_t over = (int64_t)((uint64_t)*actual - (uint64_t)expected);
	fprintf(stderr,
		"tally run: accounting: final value %" PRId64
		", the adds known to be applied sum to %" PRId64 ": %s\n",
		*actual, expected,
		over == 0 ? "none of the unknown adds was applied"
		: over == sum
			? "all of the unknown adds were applied"
			: "the difference is not what the unknown adds account for (lost updates?)");
}
