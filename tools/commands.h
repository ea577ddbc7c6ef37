/* The subcommands of `tally`, one file each. */
#ifndef TALLY_COMMANDS_H
#define TALLY_COMMANDS_H

int cmd_list(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_stress(int argc, char **argv);
int cmd_shm(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Shared by run, demo and stress (tools/run.c). */
#include "workload.h"
/* Create the counter, run, destroy.  Returns -1 when the run happened (the
 * verdict is in *res), else an exit code after printing why. */
int run_one(const char *cmd, const char *backend, const struct wl_config *cfg,
	    struct wl_result *res);
/* Exit code for a completed run. */
int run_verdict(const struct wl_result *res);
/* Warn on stderr when a spinning backend gets more workers than CPUs. */
void run_warn_oversubscribed(const char *cmd, const tally_backend_info *b,
			     unsigned workers);

/* tools/participants.c */
/* Say on stderr what adds of unknown outcome (TALLY_EUNKNOWN) mean for the
 * count: neither done nor lost. */
void run_explain_unknown(const struct wl_result *res);
/* `tally run --participants N`: join N runs on one remote counter, run the
 * workload, print the joint verdict; returns the exit code.  timeout_s: how
 * long to wait for the others, at each barrier. */
#include "cli.h"
int run_participants(const char *backend, const struct wl_config *cfg,
		     unsigned n, double timeout_s, enum cli_format format);
#endif
