/* The private contract between the library core and its backends. */
#ifndef TALLY_BACKEND_H
#define TALLY_BACKEND_H

#include "tally.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * Cache-line size used to pad shared state.  128 rather than 64: on x86 the
 * adjacent-line prefetcher pulls cache lines in pairs, so two hot words 64
 * bytes apart still interfere; 128 is also the line size on Apple M-series
 * and POWER.
 */
#define TALLY_CACHELINE 128

struct tally__opt;
struct tally__life;

/*
 * What one handle chose for itself, apart from the counter it shares with
 * other handles: the core keeps one in every handle and hands it to every
 * add.  Nothing here lives in shared memory.
 *   wait_ns  how long an add may wait for the lock: < 0 without bound, 0 not
 *            at all (one try), else at most this many nanoseconds (the
 *            option wait_ms, its default, or tally_add_wait()).
 *   path     a backend's own handle option (percpu: 1 = the atomic path).
 *   life     who this process is to the counter's other processes (see
 *            src/life.h); NULL for a private counter, whose lock no other
 *            process takes, so that no holder can die alone.
 */
struct tally__knobs {
	int64_t wait_ns;
	unsigned path;
	struct tally__life *life;
};

/*
 * One backend.  Each backends/NAME.c exports exactly one const object of this
 * type, tally_backend_NAME, and the registry (src/registry.c) lists them.  A
 * backend with several jobs is a folder, backends/NAME/, whose NAME.c
 * exports the object and whose other files are its own (backends/redis/).
 *
 * Identity (always present, also when the backend was not built in):
 *   name      lower case, equal to the file name.
 *   summary   one line for `tally list`.
 *   caps      TALLY_CAP_* bits; callers branch on these, never on names.
 *   state_size, state_align
 *             bytes the core allocates for the backend's state, and the
 *             alignment it needs (a power of two, at most a page).  The
 *             core places the state at the start of its own cache line(s),
 *             or at a multiple of state_align when that is wider (in private
 *             memory, an anonymous shared mapping for TALLY_PSHARED, or a
 *             POSIX shared-memory object for named counters; see
 *             tally__state_align() in src/internal.h) and pads it to whole
 *             lines.  state_size is 0 when not built in.
 *
 * Operations, in lifecycle order.  The core validates every argument first
 * (STYLE 6): a backend never sees NULL pointers or unknown flags.  When the
 * backend was not built in, all of them are NULL.
 *   init      called once, by the creating thread, before any other call; no
 *             concurrency.  `flags` has TALLY_PSHARED when the state lives in
 *             shared memory (create the lock process-shared).  `options` is
 *             the text after "NAME:", or NULL; a backend that takes none may
 *             leave this to the core, which refuses options for it.  Returns
 *             0 or a TALLY_E* code, and on failure leaves nothing to destroy.
 *   add, get  hot path: any number of threads (and processes, when shared)
 *             at once.  Arithmetic wraps modulo 2^64 (use uint64_t).  get
 *             never waits for a lock (see tally__word below).  add is given
 *             the calling handle's knobs (never NULL): a backend with a
 *             lock waits for it at most k->wait_ns (see struct
 *             tally__knobs), and records its holder for a shared counter.
 *   add_cs    as add, calling inside(arg) before releasing the lock; only
 *             backends with TALLY_CAP_LOCKED have it.
 *   add_fetch optional: as add, and store the value just after the add in
 *             *after (tally_add_fetch()); NULL when the backend has none.
 *   destroy   once, by the creating process, when no other call can run;
 *             may be NULL when there is nothing to release.
 *   check     optional: validate `options` (never NULL) as init would,
 *             with no side effect (no connection, nothing left allocated),
 *             for tally_backend_check().  NULL when init itself has no
 *             effect outside its state: the core then runs init and
 *             destroy on a private scratch state.  Remote backends need it.
 *   path      any thread, any time after init; may be NULL.
 *   knob      optional: the backend's handle options (see struct
 *             tally__knobs), called by the core for every handle, creator
 *             and joiners alike, with each option before init sees the
 *             rest: 1 when o is one (and k is set from it), 0 when it is
 *             not, TALLY_EOPTION when it is one with a bad value.  Handle
 *             options are not stored in the counter, and a named counter's
 *             openers do not compare them.
 */
struct tally_backend {
	const char *name;
	const char *summary;
	unsigned caps;
	size_t state_size;
	size_t state_align;
	int takes_options;
	/* Non-zero: the state begins with an _Atomic uint64_t and add is
	 * exactly atomic_fetch_add_explicit(it, delta, memory_order_acq_rel),
	 * so a TALLY_INLINE program may do that add itself. */
	int add_is_word;

	int (*init)(void *state, int64_t initial, unsigned flags,
		    const char *options);
	int (*add)(void *state, int64_t delta, const struct tally__knobs *k);
	int (*get)(void *state, int64_t *value);
	/* Optional (NULL without TALLY_CAP_LOCKED): add, then inside(arg),
	 * both under the lock.  Not on the hot path of tally_add(). */
	int (*add_cs)(void *state, int64_t delta, const struct tally__knobs *k,
		      void (*inside)(void *), void *arg);
	int (*add_fetch)(void *state, int64_t delta, int64_t *after);
	void (*destroy)(void *state);
	int (*check)(const char *options);
	/* Optional: for a backend with more than one way to add, the one the
	 * calling thread's adds on this counter take ("rseq", "atomic"), a
	 * static string; tally_backend_path() answers NULL without it. */
	const char *(*path)(const void *state, const struct tally__knobs *k);
	int (*knob)(const struct tally__opt *o, struct tally__knobs *k);
	/*
	 * Optional: states whose size follows the host (slots per possible
	 * CPU, src/arena.h), and states that keep their counts elsewhere.
	 *   size    the state's bytes on this host for init's flags (with
	 *           TALLY__NAMED for a named counter's), in place of
	 *           state_size, which is then the least a state has.  The
	 *           core calls it for every placement; a named counter
	 *           records it.
	 *   join    an opener's check of a named counter's state of `size`
	 *           bytes, which a library on another host shape may have
	 *           made: 0 when this one adds to it and reads it exactly,
	 *           else TALLY_EBADOBJECT, explained.  Reads only.
	 *   descriptor  non-zero: the state is read-only after init, which
	 *           places everything add writes itself (percpu's CPU-major
	 *           arenas), shared when flags has TALLY_PSHARED: the core
	 *           keeps the state in the handle's own allocation, for
	 *           TALLY_PSHARED too, without lines of its own.
	 */
	size_t (*size)(unsigned flags);
	int (*join)(const void *state, size_t size);
	int descriptor;
	/*
	 * Optional, for a backend whose add may return before the add is
	 * applied (a remote one that sends later): wait until every add the
	 * calling process made on this counter before the call is applied.
	 * 0, or an error explained (tally__explain) with the amount still
	 * unapplied or of unknown outcome.  NULL: every add is applied when
	 * it returns, and tally_flush() answers 0 at once.  The core calls
	 * it from tally_destroy() too, in every process, before destroy.
	 */
	int (*flush)(void *state);
};

/* init's flags, besides TALLY_PSHARED: the state is a named counter's, in an
 * object that unrelated programs map: all of the counter is inside its
 * state (ops->size(TALLY__NAMED) bytes), with no pointer in it. */
#define TALLY__NAMED (1u << 30)

/* src/tally.c: record, for this thread, a one-line description of the error
 * err that the call in progress is about to return (tally_explain()). */
void tally__explain_set(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* src/tally.c: TALLY_EOPTION, explained as "invalid backend option: " and
 * the text (what was wrong, and what is allowed). */
int tally__refuse_option(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* src/registry.c */
const struct tally_backend *tally__backend_lookup(const char *name, size_t len);
const struct tally_backend *tally__backend_at(size_t i);
size_t tally__backend_count(void);

/*
 * The value of a backend with a lock.  Only the lock holder writes it, with a
 * plain load and store (atomic only so that a reader may look: on x86-64 and
 * Arm these are ordinary moves, no locked instruction; on i386 an 8-byte x87
 * or SSE move, still not locked); get reads it without the
 * lock.  The value is one word, so whatever a reader sees is the value some
 * completed add left: a correct answer that never waits on, or (for FIFO
 * locks) takes a place in the queue of, a lock whose holder is slow or dead.
 */
typedef _Atomic uint64_t tally__word;
/*
 * Every 64-bit atomic in a structure -- a tally__word, a tally__owner, any
 * _Atomic uint64_t -- is declared _Alignas(8).  On i386 a uint64_t member is
 * only 4-aligned, and an _Atomic one is 8-aligned only from GCC 11 on (and in
 * clang): stated, a state's layout does not depend on the compiler that built
 * the program (two of them may share a named counter), and no 64-bit atomic
 * straddles a cache line, where its locked instructions would lock the bus.
 */

static inline void tally__word_init(tally__word *w, int64_t initial)
{
	atomic_init(w, (uint64_t)initial);
}

/* Only under the backend's lock. */
static inline void tally__word_add(tally__word *w, int64_t delta)
{
	uint64_t v = atomic_load_explicit(w, memory_order_relaxed);

	atomic_store_explicit(w, v + (uint64_t)delta, memory_order_release);
}

static inline int tally__word_get(tally__word *w, int64_t *value)
{
	*value = (int64_t)atomic_load_explicit(w, memory_order_acquire);
	return 0;
}

/* A lock's slow path, kept out of its add so that the fast path (one
 * atomic instruction) inlines into it with no registers to save. */
#define TALLY_NOINLINE __attribute__((noinline, cold))

/* Thread-local state of a backend, inside the shared library: the
 * initial-exec model reads it at a fixed offset from the thread pointer,
 * where the default (general-dynamic) calls __tls_get_addr on every use.
 * libtally is loaded with the program or by dlopen() into one that has
 * static TLS to spare (glibc reserves some for this), as libc's own is. */
#define TALLY_THREAD_LOCAL                                                     \
	_Thread_local __attribute__((tls_model("initial-exec")))

/* One turn of a spin-wait: the CPU's hint that this is one (x86 PAUSE,
 * Arm YIELD), so that a sibling hardware thread runs meanwhile. */
static inline void tally__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/*
 * Options of a backend that takes them (takes_options), "key=value,..."
 * after "NAME:".  A backend walks them with tally__opt_next() and answers
 * TALLY_EOPTION for a key or value it does not know.  What the options
 * chose is stored in the backend's state, never in the handle: the state is
 * what forked processes and the openers of a named counter share, so they
 * all run the lock the creator chose.
 */
struct tally__opt {
	const char *key, *val; /* val NULL: a bare word without '=' */
	size_t klen, vlen;
};

/* The next option from *p (advanced past it); 0 when none is left. */
static inline int tally__opt_next(const char **p, struct tally__opt *o)
{
	const char *s = *p;

	if (s == NULL || *s == '\0')
		return 0;
	size_t len = strcspn(s, ",");
	const char *eq = memchr(s, '=', len);

	o->key = s;
	o->klen = eq ? (size_t)(eq - s) : len;
	o->val = eq ? eq + 1 : NULL;
	o->vlen = eq ? len - o->klen - 1 : 0;
	/* An empty option (",,", a leading or trailing ',') comes back as
	 * an empty key, which no backend knows: a typo is refused. */
	if (len == 0)
		*p = s + 1;
	else if (s[len] == ',' && s[len + 1] != '\0')
		*p = s + len + 1;
	else
		*p = s + len; /* at the end, or at a trailing ',' */
	return 1;
}

static inline int tally__opt_is(const struct tally__opt *o, const char *key)
{
	return o->klen == strlen(key) && strncmp(o->key, key, o->klen) == 0;
}

/* The index of o's value in the NULL-terminated `words`, or -1. */
static inline int tally__opt_word(const struct tally__opt *o,
				  const char *const *words)
{
	for (int i = 0; o->val != NULL && words[i] != NULL; i++)
		if (o->vlen == strlen(words[i]) &&
		    strncmp(o->val, words[i], o->vlen) == 0)
			return i;
	return -1;
}

/* o's value as a decimal in [lo, hi]: 0, or TALLY_EOPTION. */
static inline int tally__opt_uint(const struct tally__opt *o, unsigned lo,
				  unsigned hi, unsigned *out)
{
	unsigned long v = 0;

	if (o->val == NULL || o->vlen == 0 || o->vlen > 9 ||
	    strspn(o->val, "0123456789") < o->vlen)
		return TALLY_EOPTION;
	for (size_t i = 0; i < o->vlen; i++)
		v = v * 10 + (unsigned long)(o->val[i] - '0');
	if (v < lo || v > hi)
		return TALLY_EOPTION;
	*out = (unsigned)v;
	return 0;
}

/* Modulo-2^64 addition without signed-overflow undefined behaviour. */
static inline int64_t tally__wrap_add(int64_t a, int64_t b)
{
	return (int64_t)((uint64_t)a + (uint64_t)b);
}

#endif /* TALLY_BACKEND_H */
