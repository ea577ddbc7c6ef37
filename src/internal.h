/* The handle, and what the core's files share with each other. */
#ifndef TALLY_INTERNAL_H
#define TALLY_INTERNAL_H

#include "backend.h"
#include "life.h"

#include <stddef.h>
#include <sys/types.h>

/*
 * The handle.  The hot pair (add, state) comes first so that tally_add() reads
 * one cache line and makes one indirect call.  The backend's state never
 * shares a cache line with the handle or with anything else (see place.c).
 */
struct tally {
	int (*add)(void *state, int64_t delta, const struct tally__knobs *k);
	void *state;
	/* = state when ops->add_is_word: a TALLY_INLINE program's tally_add()
	 * then does the atomic add itself (see struct tally__hot). */
	void *word;
	/* This handle's own choices, handed to every add: on the same line. */
	struct tally__knobs knobs;
	const struct tally_backend *ops;
	unsigned flags;
	/* Where the state lives.  map != NULL: a shared mapping of map_size
	 * bytes (anonymous, or a named object); pool_lines != 0: that many
	 * lines of a shared pool (src/arena.h), the creator's to give back;
	 * else state is inside this handle's own allocation.  A shared
	 * counter with a lock also has this process's claim in the counter's
	 * life table, allocated apart (knobs.life), so that the handles of
	 * the many counters without one stay small. */
	unsigned pool_lines;
	void *map;
	size_t map_size;
	pid_t creator; /* only the creating process runs ops->destroy */
	int named; /* a tally_open() counter: never destroyed, only unmapped */
	/* What tally_describe() says of the handle's origin, or NULL when it
	 * has neither: "NAME\0OPTIONS" (NAME empty for a tally_create()
	 * counter), this handle's own copy (tally__keep_about()). */
	char *about;
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

/* src/tally.c: keep name ("" for none) and the counter's options (NULL or
 * "" for none) as the handle's about; either may point into the old one.
 * TALLY_ENOMEM leaves the old one in place. */
int tally__keep_about(tally *t, const char *name, const char *options);

/* The options kept by tally__keep_about(), "" for none. */
const char *tally__about_options(const tally *t);

/* src/tally.c: parse "NAME[:OPTIONS]" (NULL: environment, then default). */
int tally__resolve(const char *spec, const struct tally_backend **ops,
		   const char **options);

/*
 * src/tally.c: split a backend's options into the handle's (wait_ms, and
 * the backend's own knob options), set in *k, and the counter's, copied
 * into buf (size bytes) in their order: what init sees and a named
 * counter stores and compares.  Refuses, with TALLY_EOPTION and an
 * explanation, an option given twice, a handle option with a bad value, and
 * wait_ms on a backend without a lock.  *counter is NULL when none is
 * left.  k->wait_ns is TALLY__WAIT_UNSET when wait_ms is not given:
 * tally__knobs_default() then fills it in.
 */
int tally__split_options(const struct tally_backend *ops, const char *options,
			 struct tally__knobs *k, char *buf, size_t size,
			 const char **counter);

/* The default wait bound, where wait_ms was not given (k->wait_ns is still
 * TALLY__WAIT_UNSET): TALLY_DEFAULT_WAIT_MS for a shared counter, no bound
 * for a private one. */
#define TALLY__WAIT_UNSET INT64_MIN
/* The longest options a spec may carry, with its NUL. */
#define TALLY__OPTIONS_MAX 1024
void tally__knobs_default(struct tally__knobs *k, int shared);

/* src/place.c: give a shared counter whose backend has a lock its side of
 * the life table (table in the mapping, fd: a descriptor of the file). */
void tally__life_attach(tally *t, struct tally__life_table *table, int fd);

/* src/tally.c: forget this thread's last explained error (see
 * tally__explain_set() in backend.h). */
void tally__explain_clear(void);

/* src/place.c */
size_t tally__round_up(size_t n, size_t to);
/* The bytes of a backend's state on this host for init's flags (its size
 * op, or state_size). */
size_t tally__state_size(const struct tally_backend *ops, unsigned flags);
/* Where a backend's state may start: a multiple of this.  A whole cache
 * line, so that the state shares its lines with nothing else, or the
 * backend's state_align when that is wider. */
size_t tally__state_align(const struct tally_backend *ops);
int tally__place_private(tally **out, const struct tally_backend *ops);
int tally__place_shared(tally **out, const struct tally_backend *ops);
void tally__unplace(tally *t);

#endif /* TALLY_INTERNAL_H */
