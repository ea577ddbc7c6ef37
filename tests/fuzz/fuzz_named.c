/* libFuzzer: the bytes of a named counter as another program of this user
 * could leave them in /dev/shm.  tally_open() must refuse them with an error
 * or return a counter that works (get, and add where no lock's state is
 * trusted: a lock-free backend); never crash, never hang. */
#include "tally.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char name[64], path[80];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tally_backend_info info;
	tally *t;

	if (name[0] == '\0') {
		snprintf(name, sizeof(name), "fuzz-%ld", (long)getpid());
		snprintf(path, sizeof(path), "/tally.%s", name);
	}
	if (size > 1 << 20)
		return 0;
	int fd = shm_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	if (fchmod(fd, 0600) != 0 ||
	    (size && write(fd, data, size) != (ssize_t)size))
		abort();
	close(fd);
	int rc = tally_open(&t, name, NULL, 0, 0);
	if (rc == 0) {
		int64_t a, b;
		if (tally_get(t, &a) != 0)
			abort();
		if (tally_backend_find(tally_backend_name(t), &info) != 0)
			abort();
		if ((info.caps & TALLY_CAP_LOCKFREE) &&
		    (tally_add(t, 3) != 0 || tally_get(t, &b) != 0 ||
		     (uint64_t)b - (uint64_t)a != 3))
			abort();
		tally_destroy(t);
	} else if (rc > 0 || *tally_strerror(rc) == '\0') {
		abort();
	}
	shm_unlink(path);
	return 0;
}
