/* One run of a workload and its verdict: what `tally run`, its
 * --participants and `tally demo` share (tools/run_core.c). */
#ifndef TALLY_RUN_CORE_H
#define TALLY_RUN_CORE_H

#include "tally.h"
#include "workload.h"

/* run_one's answer when the workload ran.  Any other answer is the exit
 * code (EXIT_USAGE or EXIT_RUNTIME, never 0) for a run that could not
 * start, and why was printed. */
enum { RUN_RAN = 0 };

/* Create the counter, run the workload on it, destroy it.  Returns RUN_RAN
 * with the result in *res (run_verdict() judges it), else the exit code
 * after printing why, prefixed by cmd.  A remote counter joined with `keep`
 * is run as wl_config's `joined` (judged by its own adds). */
int run_one(const char *cmd, const char *backend, const struct wl_config *cfg,
	    struct wl_result *res);
/*
 * Give cfg the command's hooks (wl_config): Ctrl-C (cli_install_sigint())
 * stops the run, and when `show` the progress line "LABEL: 42.0% of N adds,
 * 1.2 s" is redrawn on stderr and erased at the end.  label is kept, not
 * copied: it must outlive the run.
 */
void run_hooks(struct wl_config *cfg, const char *label, int show);
/* Exit code for a run that ran: its verdict (res->verdict) as
 * EXIT_EXACT, EXIT_LOST or EXIT_RUNTIME. */
int run_verdict(const struct wl_result *res);
/* Warn on stderr when a spinning backend gets more workers than CPUs. */
void run_warn_oversubscribed(const char *cmd, const tally_backend_info *b,
			     unsigned workers);
/* Say on stderr what n adds of unknown outcome (TALLY_EUNKNOWN), their
 * deltas summing to sum, mean for the count: neither done nor lost; why is
 * tally_explain() of one of them, or NULL.  With the final value (actual,
 * or NULL when it could not be read) and the sum of the adds known to be
 * applied, say which way they went. */
void run_explain_unknown(uint64_t n, int64_t sum, const int64_t *actual,
			 int64_t expected, const char *why);

#endif
