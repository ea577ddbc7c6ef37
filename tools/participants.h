/* `tally run --participants N` (tools/participants.c). */
#ifndef TALLY_PARTICIPANTS_H
#define TALLY_PARTICIPANTS_H

#include "cli.h"
#include "workload.h"

/* Join N runs on one remote counter, run the workload, print the joint
 * verdict; returns the exit code.  timeout_s: how long to wait for the
 * others, at each barrier. */
int run_participants(const char *backend, const struct wl_config *cfg,
		     unsigned n, double timeout_s, enum cli_format format);

#endif
