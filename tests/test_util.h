/* What the C unit tests share: which backends a test runs on, taken from the
 * registry (tally_backend_at()) by capability bits, never by name, so that a
 * build without an optional library (Concurrency Kit, hiredis) passes its own
 * suite.  Header-only: each test includes it after tally.h. */
#ifndef TALLY_TEST_UTIL_H
#define TALLY_TEST_UTIL_H

#include "tally.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

/* Whether this kernel keeps a robust futex list for each thread, which a
 * robust mutex needs to be recovered from a holder that died.  qemu-user
 * does not (set_robust_list is ENOSYS there: it cannot walk a list in guest
 * memory when a thread dies), so under it a robust mutex is not robust. */
static inline int robust_futexes(void)
{
	void *head;
	size_t len;

	return syscall(SYS_get_robust_list, 0, &head, &len) == 0;
}

/* $TALLY_TEST_BACKEND=NAME: that backend alone (the must-fail runs on the
 * test-only backend busted, tests/unit.cmake); unset: every one. */
static inline int selected(const tally_backend_info *b)
{
	const char *only = getenv("TALLY_TEST_BACKEND");

	return only == NULL || strcmp(only, b->name) == 0;
}

/* Every built-in backend that needs no server (unit_redis tests the remote
 * one against a server of its own), as $TALLY_TEST_BACKEND selects. */
#define FOR_EACH_BACKEND(info)                                                 \
	for (size_t i_ = 0; i_ < tally_backend_count(); i_++)                  \
		if (tally_backend_at(i_, &(info)) == 0 && (info).built_in &&   \
		    !((info).caps & TALLY_CAP_REMOTE) && selected(&(info)))

/* Whether the backend of spec ("NAME" or "NAME:OPTIONS") is built in. */
static inline int built_in(const char *spec)
{
	char name[32];
	tally_backend_info b;

	snprintf(name, sizeof(name), "%.*s", (int)strcspn(spec, ":"), spec);
	return tally_backend_find(name, &b) == 0 && b.built_in;
}

/* The first backend in registry order that is built in, needs no server and
 * has every TALLY_CAP_* bit of `want` and none of `avoid`, in *out.
 * Returns 0, or TALLY_ENOBACKEND when this build has none. */
static inline int find_backend(unsigned want, unsigned avoid,
			       tally_backend_info *out)
{
	tally_backend_info b;

	for (size_t i = 0; i < tally_backend_count(); i++) {
		if (tally_backend_at(i, &b) != 0 || !b.built_in ||
		    (b.caps & TALLY_CAP_REMOTE) || (b.caps & want) != want ||
		    (b.caps & avoid))
			continue;
		*out = b;
		return 0;
	}
	return TALLY_ENOBACKEND;
}

/* In a test: find_backend(), or skip the test, saying why, when this build
 * has no such backend. */
#define PICK_OR_SKIP(want, avoid, info)                                        \
	do {                                                                   \
		if (find_backend((want), (avoid), &(info)) != 0) {             \
			print_message("skipped: no backend built in with "     \
				      "capabilities 0x%x and none of 0x%x\n",  \
				      (unsigned)(want), (unsigned)(avoid));    \
			skip();                                                \
		}                                                              \
	} while (0)

/* In a test about one backend by name: skip it, saying why, when that
 * backend was not built in (its library was absent at build time). */
#define SKIP_UNLESS_BUILT(spec)                                                \
	do {                                                                   \
		if (!built_in(spec)) {                                         \
			print_message("skipped: backend of '%s' is not built " \
				      "into this tally\n",                     \
				      (spec));                                 \
			skip();                                                \
		}                                                              \
	} while (0)

#endif
