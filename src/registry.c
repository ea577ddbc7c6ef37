/* The one list of backends, and lookup by name (case-insensitive). */
#include "backend.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

/*
 * The registry: one line per backend, in the order of `tally list`, the demo
 * and `--backend all` -- from no synchronization, through locks, to
 * lock-free.  Adding a backend is one new file, backends/NAME.c exporting
 * tally_backend_NAME, and one line here.
 *
 * Backends that need an optional library are always listed: when it was
 * absent at build time their file still exports the identity with NULL
 * operations, so that the name is known and answers TALLY_ENOTBUILT rather
 * than TALLY_ENOBACKEND (see backends/spin.c).  That keeps the #if beside
 * the code it guards instead of around the entry here.
 */
#define TALLY_BACKENDS(X)                                                      \
	X(none)                                                                \
	X(mutex)                                                               \
	X(sem)                                                                 \
	X(spin)                                                                \
	X(ticket)                                                              \
	X(mcs)                                                                 \
	X(clh)                                                                 \
	X(adaptive)                                                            \
	X(atomic)                                                              \
	X(sharded)                                                             \
	X(percpu)                                                              \
	X(redis)                                                               \
	TALLY_TEST_BACKENDS(X)

/*
 * The test copy of the library (tests/unit.cmake) compiles this file again
 * with TALLY_TEST_BUSTED, adding tests/busted.c's backend, which claims a
 * lock and takes none: the exclusion tests must fail on it; and
 * tests/relaxed.c's, a C11 lock whose unlock is too weak, which
 * ThreadSanitizer must report.  libtally and `tally list` never have them.
 */
#ifdef TALLY_TEST_BUSTED
#define TALLY_TEST_BACKENDS(X) X(busted) X(relaxed)
#else
#define TALLY_TEST_BACKENDS(X)
#endif

#define DECLARE(name) extern const struct tally_backend tally_backend_##name;
TALLY_BACKENDS(DECLARE)
#undef DECLARE

static const struct tally_backend *const registry[] = {
#define ENTRY(name) &tally_backend_##name,
	TALLY_BACKENDS(ENTRY)
#undef ENTRY
		NULL,
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
