/* shm_holder NAME SECONDS: open the named counter and hold its lock for
 * SECONDS (inside tally_add_cs, adding 100), so that the CLI tests can see
 * what `tally shm` does while another process holds the lock. */
#include "tally.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void hold(void *arg)
{
	sleep(*(const unsigned *)arg);
}

int main(int argc, char **argv)
{
	unsigned seconds;
	tally *t;
	int rc;

	if (argc != 3 || (seconds = (unsigned)atoi(argv[2])) == 0) {
		fprintf(stderr, "usage: shm_holder NAME SECONDS\n");
		return 2;
	}
	if ((rc = tally_open(&t, argv[1], NULL, 0, 0)) != 0 ||
	    (rc = tally_add_cs(t, 100, hold, &seconds)) < 0) {
		fprintf(stderr, "shm_holder: %s\n", tally_strerror(rc));
		return 1;
	}
	tally_destroy(t);
	return 0;
}
