/* The one list of backends, and lookup by name (case-insensitive). */
#include "backend.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

extern const struct tally_backend tally_backend_none;
extern const struct tally_backend tally_backend_mutex;
extern const struct tally_backend tally_backend_spin;
extern const struct tally_backend tally_backend_ticket;
extern const struct tally_backend tally_backend_mcs;
extern const struct tally_backend tally_backend_clh;
extern const struct tally_backend tally_backend_atomic;
extern const struct tally_backend tally_backend_sem;
extern const struct tally_backend tally_backend_sharded;

/*
 * Registry order is the order of `tally list`, the demo and `--backend all`:
 * from no synchronization, through locks, to lock-free.  Backends that need
 * an optional library are always listed; when it was absent at build time
 * their file still exports the identity with NULL operations, so that the
 * name is known and answers TALLY_ENOTBUILT rather than TALLY_ENOBACKEND
 * (see backends/spin.c).
 */
static const struct tally_backend *const registry[] = {
	&tally_backend_none,	&tally_backend_mutex,
	&tally_backend_sem,	&tally_backend_spin,
	&tally_backend_ticket,	&tally_backend_mcs,
	&tally_backend_clh,	&tally_backend_atomic,
	&tally_backend_sharded, NULL,
};

size_t tally__backend_count(void)
{
	return sizeof(registry) / sizeof(registry[0]) - 1;
}

const struct tally_backend *tally__backend_at(size_t i)
{
	return i < tally__backend_count() ? registry[i] : NULL;
}

const struct tally_backend *tally__backend_lookup(const char *name, size_t len)
{
	for (const struct tally_backend *const *b = registry; *b; b++) {
		if (strlen((*b)->name) == len &&
		    strncasecmp((*b)->name, name, len) == 0)
			return *b;
	}
	return NULL;
}
