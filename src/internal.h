/* The handle, and what the core's files share with each other. */
#ifndef TALLY_INTERNAL_H
#define TALLY_INTERNAL_H

#include "backend.h"

#include <stddef.h>
#include <sys/types.h>

/*
 * The handle.  The hot pair (add, state) comes first so that tally_add() reads
 * one cache line and makes one indirect call.  The backend's state never
 * shares a cache line with the handle or with anything else (see place.c).
 */
struct tally {
	int (*add)(void *state, int64_t delta);
	void *state;
	/* = state when ops->add_is_word: a TALLY_INLINE program's tally_add()
	 * then does the atomic add itself (see struct tally__hot). */
	void *word;
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

#ifdef TALLY_INLINE
#error "the library itself is built without TALLY_INLINE"
#endif

/* What tally_create and tally_open are called in TALLY_INLINE programs: only
 * a library whose handles begin as struct tally__hot does (layout 1). */
TALLY_API int tally_create_inline1(tally **out, const char *backend,
				   int64_t initial, unsigned flags);
TALLY_API int tally_open_inline1(tally **out, const char *name,
				 const char *backend, int64_t initial,
				 unsigned flags);

/* The layout that TALLY_INLINE programs read (include/tally.h). */
_Static_assert(offsetof(struct tally, add) ==
			       offsetof(struct tally__hot, add) &&
		       offsetof(struct tally, state) ==
			       offsetof(struct tally__hot, state) &&
		       offsetof(struct tally, word) ==
			       offsetof(struct tally__hot, word),
	       "struct tally must begin as struct tally__hot does");

/* Arm a handle whose ops and state are set: the hot members. */
static inline void tally__arm(tally *t)
{
	t->add = t->ops->add;
	t->word = t->ops->add_is_word ? t->state : NULL;
}

/* src/tally.c: parse "NAME[:OPTIONS]" (NULL: environment, then default). */
int tally__resolve(const char *spec, const struct tally_backend **ops,
		   const char **options);

/* src/tally.c: forget this thread's last explained error (see
 * tally__explain_set() in backend.h). */
void tally__explain_clear(void);

/* src/place.c */
size_t tally__round_up(size_t n, size_t to);
/* Where a backend's state may start: a multiple of this.  A whole cache
 * line, so that the state shares its lines with nothing else, or the
 * backend's state_align when that is wider. */
size_t tally__state_align(const struct tally_backend *ops);
int tally__place_private(tally **out, const struct tally_backend *ops);
int tally__place_shared(tally **out, const struct tally_backend *ops);
void tally__unplace(tally *t);

#endif /* TALLY_INTERNAL_H */
