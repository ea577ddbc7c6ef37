/* The handle, and what the core's files share with each other. */
#ifndef TALLY_INTERNAL_H
#define TALLY_INTERNAL_H

#include "backend.h"

#include <sys/types.h>

/*
 * The handle.  The hot pair (add, state) comes first so that tally_add() reads
 * one cache line and makes one indirect call.  The backend's state never
 * shares a cache line with the handle or with anything else (see place.c).
 */
struct tally {
	int (*add)(void *state, int64_t delta);
	void *state;
	const struct tally_backend *ops;
	unsigned flags;
	/* Where the state lives.  map != NULL: a shared mapping of map_size
	 * bytes (anonymous, or a named object); else state is inside this
	 * handle's own allocation. */
	void *map;
	size_t map_size;
	pid_t creator; /* only the creating process runs ops->destroy */
	int named; /* a tally_open() counter: never destroyed, only unmapped */
};

/* src/tally.c: parse "NAME[:OPTIONS]" (NULL: environment, then default). */
int tally__resolve(const char *spec, const struct tally_backend **ops,
		   const char **options);

/* src/place.c */
size_t tally__round_up(size_t n, size_t to);
int tally__place_private(tally **out, const struct tally_backend *ops);
int tally__place_shared(tally **out, const struct tally_backend *ops);
void tally__unplace(tally *t);

#endif /* TALLY_INTERNAL_H */
