/* lock_peer: one add to a named counter, for the lock-liveness tests
 * (tests/liveness.sh), from a process the test can put in another PID
 * namespace or kill.
 *   lock_peer add NAME WAIT_MS [LINGER_MS]
 *                     one tally_add_wait(); prints the outcome, then stays
 *                     alive LINGER_MS more (a waiter that gave up and lives
 *                     on, as a program that only tried does)
 *   lock_peer hold NAME MS       hold the lock MS milliseconds (add_cs, +1)
 * Exit: 0 added, 1 added after recovering the lock from a dead holder,
 * 3 the bound passed (TALLY_ETIMEDOUT), 4 any other error. */
#include "tally.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void hold(void *arg)
{
	long ms = *(const long *)arg;
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
	tally *t;
	long ms, linger = 0;
	int rc;

	if (argc == 5 && strcmp(argv[1], "add") == 0)
		linger = strtol(argv[4], NULL, 10);
	if ((argc != 4 && argc != 5) || linger < 0 ||
	    (strcmp(argv[1], "add") != 0 && strcmp(argv[1], "hold") != 0) ||
	    (ms = strtol(argv[3], NULL, 10)) < 0) {
		fprintf(stderr, "usage: lock_peer add|hold NAME MS\n");
		return 2;
	}
	if ((rc = tally_open(&t, argv[2], NULL, 0, 0)) != 0) {
		fprintf(stderr, "lock_peer: open %s: %s\n", argv[2],
			tally_explain(rc));
		return 4;
	}
	rc = strcmp(argv[1], "add") == 0 ? tally_add_wait(t, 1, ms)
					 : tally_add_cs(t, 1, hold, &ms);
	printf("%s\n", rc >= 0 ? tally_errname(rc) : tally_explain(rc));
	fflush(stdout);
	hold(&linger);
	tally_destroy(t);
	return rc == 0		       ? 0
	       : rc == TALLY_RECOVERED ? 1
	       : rc == TALLY_ETIMEDOUT ? 3
				       : 4;
}
