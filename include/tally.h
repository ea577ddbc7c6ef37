/*
 * tally: one shared-counter interface in front of pluggable synchronization
 * backends (mutex, spinlocks, ticket lock, C11 atomics, semaphores, ...).
 *
 *     tally *t;
 *     int rc = tally_create(&t, NULL, 0, 0);  // $TALLY_BACKEND, else atomic
 *     if (rc != 0)
 *             fprintf(stderr, "tally: %s\n", tally_strerror(rc));
 *     tally_add(t, 1);                        // from any thread
 *     int64_t v;
 *     tally_get(t, &v);
 *     tally_destroy(t);
 *
 * Build: cc prog.c $(pkg-config --cflags --libs tally), or in CMake
 * find_package(tally CONFIG REQUIRED) and link tally::tally (shared) or
 * tally::tally_static.  The manual is tally(3).
 *
 * Conventions, for every function below:
 *   - A return value of 0 is success; a negative TALLY_E* code is an error.
 *     tally_add() may also return the positive TALLY_RECOVERED (success, see
 *     there).  Test for errors with `rc < 0`.
 *   - Output parameters are written only on success.
 *   - Ownership: the library allocates every handle and the caller releases
 *     it with tally_destroy().  Every string the library returns is static:
 *     never free or modify it; it stays valid while the library is loaded.
 *   - Threads: every function may be called from any number of threads at
 *     once, and a handle is safe to use from all of them at once, and, when
 *     created with TALLY_PSHARED or by tally_open(), from processes forked
 *     after creation.  The exceptions: tally_destroy() must not race with
 *     any other call on the same handle, and the "none" backend
 *     (TALLY_CAP_RACY) loses updates by design.
 *   - Signals: no function is async-signal-safe.
 *   - Arguments are validated at the edge: a NULL handle or output pointer
 *     is TALLY_EINVAL, never a crash (tally_destroy(NULL) does nothing,
 *     tally_backend_name(NULL) is NULL).
 *   - Only tally_* symbols (and TALLY_* macros) are exported or defined.
 */
#ifndef TALLY_H
#define TALLY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the library's exported functions; the library is built with
 * -fvisibility=hidden, so nothing else leaves libtally.so.  Defining
 * TALLY_STATIC_DEFINE (optional, for libtally.a) leaves it empty. */
#if defined(__GNUC__) && !defined(TALLY_STATIC_DEFINE)
#define TALLY_API __attribute__((visibility("default")))
#else
#define TALLY_API
#endif

/*
 * TALLY_INLINE (define it before including this header; C only, not C++):
 * tally_add() becomes an inline function that, for a backend whose add is a
 * single atomic instruction (atomic), does that instruction in the caller,
 * and calls the library for every other backend.  A call costs what the
 * add itself costs on x86 (the return address is a store that the locked
 * instruction must wait for), so this halves an uncontended atomic add.
 * The price: the program depends on the layout of the handle's first
 * members (struct tally__hot), so it links to tally_create_inline1 and
 * tally_open_inline1 (what tally_create and tally_open are renamed to), which
 * only a library with this layout exports; a program built so against this
 * header will not load against a library with another layout, rather than
 * misread it.  Everything else is unchanged, backends chosen at run time
 * included.
 */
#if defined(TALLY_INLINE) && !defined(__cplusplus)
#define TALLY__INLINE_ADD 1
#define tally_create	  tally_create_inline1
#define tally_open	  tally_open_inline1
#endif

/* The first members of every handle, in this order (layout 1): what the
 * TALLY_INLINE add reads.  Not an API: never use it otherwise. */
struct tally__hot {
	int (*add)(void *state, int64_t delta, const void *knobs);
	void *state;
	void *word; /* _Atomic uint64_t * when add is an atomic add to it */
};

/* The version of this header.  The library's own version, which may be newer
 * when a program runs against a newer libtally.so.0, is tally_version(). */
#define TALLY_VERSION_MAJOR  0
#define TALLY_VERSION_MINOR  1
#define TALLY_VERSION_PATCH  0
#define TALLY_VERSION_STRING "0.1.0"
/* One number that compares correctly: 0x00MMmmpp. */
#define TALLY_VERSION_HEX                                                      \
	((TALLY_VERSION_MAJOR << 16) | (TALLY_VERSION_MINOR << 8) |            \
	 TALLY_VERSION_PATCH)

/*
 * Every error the library returns: X(NAME, value, message).  The enum, the
 * message table behind tally_strerror() and tally_errname() are all generated
 * from this one list.
 */
#define TALLY_ERRNO_MAP(X)                                                     \
	X(EINVAL, -1, "invalid argument")                                      \
	X(ENOBACKEND, -2, "unknown backend name")                              \
	X(ENOTBUILT, -3, "backend is known but was not built into this tally") \
	X(EUNSUPPORTED, -4, "backend does not support the requested flags")    \
	X(ENOMEM, -5, "out of memory")                                         \
	X(ESYSTEM, -6, "a system call failed")                                 \
	X(EOPTION, -7, "invalid backend option")                               \
	X(ENOTFOUND, -8, "no shared counter by that name")                     \
	X(EEXIST, -9, "a shared counter by that name already exists")          \
	X(EBADOBJECT, -10,                                                     \
	  "shared object is not a tally counter, or is truncated or "          \
	  "from an incompatible version")                                      \
	X(ENOTRECOVERABLE, -11,                                                \
	  "the lock is unusable: a holder died and it could not be recovered") \
	X(EREMOTE, -12, "the remote counter server failed or is unreachable")  \
	X(EUNTRUSTED, -13,                                                     \
	  "the shared counter could have been written by another user (it "    \
	  "is not this user's, or others may write it); not joined")           \
	X(EMISMATCH, -14,                                                      \
	  "the shared counter exists with another backend or other options")   \
	X(EUNFINISHED, -15,                                                    \
	  "the shared counter was never finished: its creator died while "     \
	  "creating it")                                                       \
	X(ENOSPACE, -16,                                                       \
	  "no space for the shared counter (the shared-memory file system "    \
	  "is full, or a file-size limit)")                                    \
	X(EWRONGTYPE, -17,                                                     \
	  "the remote key holds something other than a 64-bit integer")        \
	X(EUNKNOWN, -18,                                                       \
	  "outcome unknown: the server did not confirm the add before the "    \
	  "deadline; it may or may not have been applied")                     \
	X(ETIMEDOUT, -19,                                                      \
	  "the lock was not taken within the wait bound; nothing was added")

enum tally_error {
#define TALLY__ERR_ENUM(name, value, msg) TALLY_##name = (value),
	TALLY_ERRNO_MAP(TALLY__ERR_ENUM)
#undef TALLY__ERR_ENUM
};

/*
 * Returned by tally_add() (a success, not an error) when the process that held
 * a robust lock died while holding it, and this call made the lock consistent
 * again before applying its own delta.  The counter's value is what the dead
 * holder left: its own in-flight delta may or may not be in it.
 */
#define TALLY_RECOVERED 1

/* Flags for tally_create() and tally_open(). */
enum tally_flags {
	/* The counter, lock included, lives in memory shared with processes
	 * forked after creation. */
	TALLY_PSHARED = 1u << 0,
	/* tally_open(): create the named counter if it does not exist. */
	TALLY_CREATE = 1u << 1,
	/* tally_open(), with TALLY_CREATE: fail with TALLY_EEXIST if it does.
	 */
	TALLY_EXCL = 1u << 2,
};

/*
 * Every capability bit a backend may have: X(NAME, bit, name, meaning).  The
 * enum (TALLY_CAP_NAME = 1u << bit), the names `tally list` prints, the Python
 * module's CAP_NAME constants and the test that tally(1), tally(3) and the
 * README list every name are all derived from this one list.  A bit keeps its
 * number forever: callers compiled against an older tally test the same bits.
 */
#define TALLY_CAPS_MAP(X)                                                      \
	X(LOCKFREE, 0, "lockfree", "no lock: an atomic add or an rseq")        \
	X(PSHARED, 1, "pshared", "can live in process-shared memory")          \
	X(FAIR, 2, "fair", "waiters are served in FIFO order")                 \
	X(BLOCKING, 3, "blocking", "waiters sleep in the kernel")              \
	X(SPINNING, 4, "spinning", "waiters busy-wait on the CPU")             \
	X(RACY, 5, "racy", "deliberately unsynchronized")                      \
	X(REMOTE, 6, "remote", "counter lives in a server")                    \
	X(THREADS_ONLY, 7, "threads-only", "one process only")                 \
	X(ROBUST, 8, "robust", "survives a holder that dies")                  \
	X(NAMED, 9, "named", "can back a tally_open() counter")                \
	X(LOCKED, 10, "locked", "has a lock: tally_add_cs() works")

/* Capability bits of a backend.  Branch on these, never on names. */
enum tally_caps {
#define TALLY__CAP_ENUM(name, bit, str, meaning) TALLY_CAP_##name = 1u << (bit),
	TALLY_CAPS_MAP(TALLY__CAP_ENUM)
#undef TALLY__CAP_ENUM
};

typedef struct tally tally;

/* What tally_backend_at() describes.  Strings are static. */
typedef struct tally_backend_info {
	const char *name;    /* lower case, e.g. "ticket" */
	const char *summary; /* one line, no trailing period */
	unsigned caps;	     /* TALLY_CAP_* bits */
	int built_in; /* 0 when its dependency was absent at build time */
} tally_backend_info;

/* How long, in milliseconds, an add on a shared or named counter waits for
 * its lock unless the option wait_ms says otherwise (see tally_create()):
 * long enough for any live holder on a loaded machine, short enough that a
 * program whose peer died holding the lock hears of it in seconds. */
#define TALLY_DEFAULT_WAIT_MS 10000

/* The default backend when neither an argument nor $TALLY_BACKEND names one. */
#define TALLY_DEFAULT_BACKEND "atomic"
/* The environment variable read when tally_create() is given NULL. */
#define TALLY_ENV_BACKEND "TALLY_BACKEND"

/*
 * Create a counter holding `initial`, and store its handle in *out.
 *   backend: a name ("mutex"), "NAME:OPTIONS" for backends that take options,
 *            or NULL for $TALLY_BACKEND if set and non-empty, else
 *            TALLY_DEFAULT_BACKEND.  Names match case-insensitively.  A
 *            program that passes NULL runs on whatever backend its user
 *            chose, and its code does not change.
 *   flags:   0, or TALLY_PSHARED: the counter (lock included) lives in an
 *            anonymous shared mapping, and processes forked after this call
 *            use the same counter through their copy of the handle.
 * Waiting for a lock: every backend with TALLY_CAP_LOCKED takes the option
 * wait_ms=N (0 to 86400000), the longest an add on this handle waits for
 * the lock before it gives up with TALLY_ETIMEDOUT, adding nothing; 0 waits
 * without bound.  The default is TALLY_DEFAULT_WAIT_MS for a counter that
 * other processes share (TALLY_PSHARED, or tally_open()), where a holder
 * can be killed while it holds the lock, and no bound for a private one,
 * whose holder lives as long as the waiter does.  wait_ms is the handle's
 * own choice: it is not part of what tally_open() compares.  A backend
 * without a lock refuses it (TALLY_EOPTION).
 * Options: a repeated option, two that contradict each other, or one that
 * has no effect without another are refused with TALLY_EOPTION, and
 * tally_explain() names them.
 * Ownership: the caller owns *out and releases it with tally_destroy(); with
 * TALLY_PSHARED, each forked child may destroy its own copy, and the creating
 * process destroys the counter itself (see tally_destroy()).
 * Threads: safe to call concurrently (with NULL it reads the environment, so
 * not concurrently with setenv()).
 * Errors:
 *   TALLY_EINVAL       out is NULL, or flags has bits other than
 *                      TALLY_PSHARED
 *   TALLY_ENOBACKEND   no backend by that name (see tally_backend_count())
 *   TALLY_ENOTBUILT    the backend is known, but its library was absent when
 *                      this tally was built
 *   TALLY_EUNSUPPORTED TALLY_PSHARED on a backend without TALLY_CAP_PSHARED
 *                      (never a counter that silently is not shared)
 *   TALLY_EOPTION      options given to a backend that takes none, or
 *                      options the backend does not understand
 *   TALLY_ENOMEM       out of memory, or the shared mapping failed
 *   TALLY_ESYSTEM      the backend's lock could not be initialized (errno
 *                      says why)
 *   TALLY_EREMOTE      a remote backend's server is unreachable or failed
 *   TALLY_EWRONGTYPE   a remote backend's key holds something other than an
 *                      integer, and the options do not ask to reset it
 *                      (tally_explain() names the key and what it holds)
 */
TALLY_API int tally_create(tally **out, const char *backend, int64_t initial,
			   unsigned flags);

/*
 * Open, or with TALLY_CREATE create, a counter named `name` in POSIX shared
 * memory, which separate programs share ("/tally.NAME", mode 0600), and
 * store its handle in *out.
 *   name:    1 to 200 characters of [A-Za-z0-9._-], not starting with '.'.
 *   backend, initial: used only when the counter is created; backend must
 *            have TALLY_CAP_NAMED.  NULL means as in tally_create().  With
 *            TALLY_CREATE the backend is resolved (and its errors returned)
 *            even when the counter turns out to exist already.
 *   flags:   0 (open an existing counter), TALLY_CREATE (open, or create
 *            when absent), or TALLY_CREATE | TALLY_EXCL (create only).
 * Trust: an existing object is joined only when no user this process does
 * not trust could have written it: it must be owned by the effective uid
 * and have no group or other permission bits (checked with fstat() on the
 * open descriptor), else TALLY_EUNTRUSTED, also with TALLY_CREATE (never a
 * silent join of someone else's object).  Another user's bytes could hold a
 * lock whose pointers this process would follow.
 * Opening an existing counter validates its header (magic, layout version,
 * backend, size) and refuses anything else with TALLY_EBADOBJECT.  It never
 * waits: a counter is made under no name (O_TMPFILE), filled in, its space
 * reserved, and only then linked under its name, so a name always holds a
 * complete counter (a full file system or a creator that dies leaves no
 * name behind).
 * When `backend` is not NULL and the counter exists, its backend and options
 * must be the ones named ("spin" is not "spin:backoff=exp"), else
 * TALLY_EMISMATCH; NULL joins whatever backend the counter has.
 * Ownership: the caller owns *out; tally_destroy() only unmaps it: the
 * counter stays until tally_unlink() and the last handle are gone.  The
 * handle also works in processes forked after this call.
 * Threads: safe to call concurrently, also from separate programs racing to
 * create the same name (exactly one creates it).
 * Errors:
 *   TALLY_EINVAL       out is NULL, name invalid, unknown flag bits, or
 *                      TALLY_EXCL without TALLY_CREATE
 *   TALLY_ENOBACKEND, TALLY_ENOTBUILT, TALLY_EOPTION
 *                      as in tally_create() (TALLY_CREATE only); also
 *                      TALLY_ENOTBUILT when an existing counter's backend is
 *                      not built into this library
 *   TALLY_EUNSUPPORTED the backend lacks TALLY_CAP_NAMED
 *   TALLY_ENOTFOUND    no counter by that name, and no TALLY_CREATE
 *   TALLY_EEXIST       TALLY_CREATE | TALLY_EXCL, and the name exists
 *   TALLY_EBADOBJECT   the object is not a tally counter of this layout
 *                      (foreign, truncated, or from another version)
 *   TALLY_EUNFINISHED  a counter of this layout whose creator died before
 *                      it was complete (only older versions of tally could
 *                      leave one); remove it with tally_unlink()
 *   TALLY_EUNTRUSTED   owned by another user, or group/other may write it
 *   TALLY_EMISMATCH    `backend` named another backend or other options
 *   TALLY_ENOSPACE     creating: no space in /dev/shm, or RLIMIT_FSIZE is
 *                      below the counter's size (never a SIGBUS or SIGXFSZ)
 *   TALLY_ENOMEM, TALLY_ESYSTEM
 *                      a system call failed; errno says why, and
 *                      tally_explain() names the call
 * tally_explain() says more for each error: the call and strerror, the
 * owner and mode of an untrusted object, the backend of a mismatched one.
 */
TALLY_API int tally_open(tally **out, const char *name, const char *backend,
			 int64_t initial, unsigned flags);

/*
 * Remove the named counter.  Handles already open keep working; the memory
 * goes away when the last one is destroyed.  A later tally_open() with
 * TALLY_CREATE makes a new, separate counter under the same name.
 * Threads: safe to call concurrently.
 * Errors: TALLY_EINVAL (name invalid), TALLY_ENOTFOUND, TALLY_ESYSTEM
 * (shm_unlink() failed; errno says why).
 */
TALLY_API int tally_unlink(const char *name);

/*
 * Add `delta` (which may be negative) to the counter.  Arithmetic wraps
 * modulo 2^64 on every backend (no undefined behaviour on overflow).
 * Threads: any number of threads (and processes, when shared) at once; every
 * add is counted exactly once, except on the deliberately racy "none"
 * backend.  Blocks or spins while another caller holds the backend's lock,
 * for at most the handle's wait bound (tally_wait_limit()); a signal does
 * not interrupt it.
 * Dead holders: on a shared counter, who holds a lock and who waits for it
 * is known by an open-file-description lock that each process holds on the
 * counter's file, which the kernel drops when the process dies, in any PID
 * namespace, and which no other process can ever hold; never by a process
 * id alone.  A waiter that finds the holder dead takes the lock over
 * (TALLY_RECOVERED); one that finds a dead waiter ahead of it in a FIFO
 * lock's queue passes it; where a dead process left a queue that cannot be
 * passed, it fails at once with TALLY_ENOTRECOVERABLE.  A process that died
 * in the instant after taking the lock (or its place in the queue), before
 * recording itself, cannot be known: the wait bound then ends the wait.
 * Returns 0, or TALLY_RECOVERED (> 0, also a success: the lock's holder
 * died and this call recovered the lock, then added delta), or:
 *   TALLY_EINVAL          t is NULL
 *   TALLY_ETIMEDOUT       the lock was not taken within the handle's wait
 *                         bound: nothing was added.  tally_explain() says
 *                         how long it waited and what is known of the
 *                         holder (alive, or not known)
 *   TALLY_ENOTRECOVERABLE a lock's holder died and it could not be
 *                         recovered: the counter is unusable
 *   TALLY_EREMOTE         a remote backend's server failed, or refused the
 *                         add: the add was not applied
 *   TALLY_EWRONGTYPE      a remote backend's key holds something other than
 *                         an integer (not applied; tally_explain() names
 *                         the key and what it holds)
 *   TALLY_EUNKNOWN        a remote backend sent the add, but no reply came
 *                         before its deadline: it may have been applied
 *                         (once at most) or not.  Count it as neither done
 *                         nor lost.
 */
TALLY_API int tally_add(tally *t, int64_t delta);

/*
 * Like tally_add(), waiting at most wait_ms milliseconds for the lock (0: only
 * if it is free at once) instead of the handle's bound: for a caller that
 * must answer something else meanwhile (a signal, a user), or that only
 * tries.  On a backend without a lock the add never waits and wait_ms only
 * has to be valid.
 * Returns what tally_add() returns, or TALLY_EINVAL (t NULL, wait_ms below 0
 * or above 86400000).
 */
TALLY_API int tally_add_wait(tally *t, int64_t delta, int64_t wait_ms);

/* The handle's wait bound in milliseconds (see tally_create()): how long
 * tally_add() waits for the lock; 0 when it waits without bound or the
 * backend has no lock; -1 when t is NULL. */
TALLY_API int64_t tally_wait_limit(const tally *t);

/*
 * Like tally_add(), and on success store in *after the counter's value just
 * after this delta was applied (as a fetch-and-add would): two calls never
 * see the same *after for a non-zero delta, so it can hand out tickets.
 * Errors: those of tally_add(), and TALLY_EINVAL (after NULL),
 * TALLY_EUNSUPPORTED (the backend has no such operation: today only the
 * remote backend, redis, has it, and not on a counter of several shards,
 * shards=N, whose sum no one call can fetch atomically).
 */
TALLY_API int tally_add_fetch(tally *t, int64_t delta, int64_t *after);

/*
 * Like tally_add(), and call inside(arg) while the backend's lock is held,
 * after the add: work in the critical section, for benchmarks (what a lock
 * costs as the section grows) and stress tests (stretching the section to
 * widen races).  Only backends with TALLY_CAP_LOCKED have a lock to hold.
 * inside must not add to the same counter (tally_add or tally_add_cs: it
 * would deadlock) and must return; tally_get() is safe there (it never
 * waits for the lock, and sees the add just made).
 * Returns what tally_add() returns, or TALLY_EINVAL (t or inside NULL),
 * TALLY_EUNSUPPORTED (no TALLY_CAP_LOCKED: lock-free, racy or remote).
 */
TALLY_API int tally_add_cs(tally *t, int64_t delta, void (*inside)(void *arg),
			   void *arg);

/*
 * Read the counter into *value.  With adds running concurrently, the value
 * includes every add that returned before this call began and may include
 * any of those that overlap it (so it may be stale on return).
 * Never waits for a lock: a backend with a lock keeps the value in one word
 * that only the holder writes, and tally_get() reads that word, so it
 * answers while the lock is held by a slow holder, or by a process that died
 * holding it (and never takes a place in a FIFO lock's queue).
 * Threads: as tally_add().  Never returns TALLY_RECOVERED.
 * Errors: TALLY_EINVAL (t or value NULL), TALLY_EREMOTE and TALLY_EWRONGTYPE
 * (as in tally_add()).
 */
TALLY_API int tally_get(tally *t, int64_t *value);

/*
 * Wait until every add this process made through t before the call is
 * applied.  A backend whose adds are applied by the time tally_add() returns
 * (every built-in one but a `redis` counter that sends its adds later) has
 * nothing to wait for, and tally_flush() returns 0 at once.  An add is never
 * dropped silently: when some cannot be applied, the error says how much is
 * unapplied or of unknown outcome (tally_explain()).
 * Threads: any number at once, while adds run; each waits only for the adds
 * made before it began.
 * Errors: TALLY_EINVAL (t NULL), TALLY_EUNKNOWN and TALLY_EREMOTE (as in
 * tally_add(), for the adds still outstanding).
 */
TALLY_API int tally_flush(tally *t);

/*
 * Release the handle; NULL is a no-op.  Afterwards the handle is invalid.
 * It flushes first (tally_flush(), in every process, its result lost: call
 * tally_flush() before it to learn that every add was applied).
 * Threads: no other call on the same handle may run concurrently or follow.
 * TALLY_PSHARED: a forked child's tally_destroy() (or exit) releases only its
 * copy.  The creating process's call also destroys the lock, so it must come
 * after every other process has stopped using the counter (e.g. after
 * waitpid()).  tally_open() handles: only unmapped; the counter stays.
 */
TALLY_API void tally_destroy(tally *t);

/* The name of the backend a handle runs on, e.g. "ticket" (lower case,
 * without options), or NULL when t is NULL.  Static storage. */
TALLY_API const char *tally_backend_name(const tally *t);

/* For a backend with more than one way to add, the one that adds on this
 * handle take in the calling thread: "rseq" or "atomic" for percpu (the
 * restartable sequence, or its atomic fallback: no rseq registered, as with
 * GLIBC_TUNABLES=glibc.pthread.rseq=0 or under valgrind, another
 * architecture, a ThreadSanitizer build, or the option path=atomic).  NULL
 * for every other backend, or when t is NULL.  Static storage. */
TALLY_API const char *tally_backend_path(const tally *t);

/* What tally_describe() says of one handle.  backend and path are static;
 * name and options live as long as the handle. */
typedef struct tally_handle_info {
	const char *backend; /* its backend's name, as tally_backend_name() */
	unsigned caps;	     /* that backend's TALLY_CAP_* bits */
	/* TALLY_PSHARED when other processes may use the counter: created
	 * with it, or opened by tally_open() (then named is 1 too). */
	unsigned flags;
	int named;	  /* a tally_open() counter */
	int64_t wait_ms;  /* the add's wait bound, as tally_wait_limit() */
	const char *path; /* tally_backend_path() in this thread, or NULL */
	const char *name; /* a tally_open() counter's name, else NULL */
	/* The counter's backend options, the text after "backend:" less the
	 * handle's own wait_ms (which is wait_ms above); "" for none.  For a
	 * tally_open() counter, the options its creator recorded. */
	const char *options;
} tally_handle_info;

/*
 * Describe the handle t in *info: what a caller would otherwise piece
 * together from tally_backend_name() and a registry lookup by that name.
 * Branch on info->caps, as on tally_backend_info's.  Thread-safe, as
 * tally_get() is; never waits, allocates or makes a system call.
 * Errors: TALLY_EINVAL (t or info NULL).
 */
TALLY_API int tally_describe(const tally *t, tally_handle_info *info);

/* A one-line English description of any return value: "success" for 0, a
 * line for TALLY_RECOVERED and each TALLY_E*, "unknown error" otherwise.
 * Never NULL; static storage; thread-safe. */
TALLY_API const char *tally_strerror(int err);
/* The return value's symbolic name, e.g. "TALLY_ENOTBUILT" ("TALLY_OK" for 0,
 * "TALLY_E?" when unknown).  Never NULL; static storage; thread-safe. */
TALLY_API const char *tally_errname(int err);

/*
 * A one-line description of err for a person: what this thread's last
 * failing call recorded about it when that call failed with err (e.g.
 * "redis key 'jobs' holds a list, not an integer counter"), else
 * tally_strerror(err).  Never NULL; valid until this thread's next tally
 * call; thread-safe (the record is per thread).
 */
TALLY_API const char *tally_explain(int err);

/*
 * Backend enumeration.  tally_backend_count() backends are known, built in
 * or not (info.built_in says which); tally_backend_at(i, &info) describes
 * number i, for i from 0 to count - 1, in registry order (the order of
 * `tally list`).  Pick backends by info.caps bits, never by name.  The list
 * is fixed when the library is built; thread-safe.
 * Errors: TALLY_EINVAL (i out of range, info NULL).
 */
TALLY_API size_t tally_backend_count(void);
TALLY_API int tally_backend_at(size_t i, tally_backend_info *info);
/* Describe the backend called `name`, case-insensitively; no "NAME:OPTIONS".
 * A backend that is not built in is found (info.built_in is 0).
 * Errors: TALLY_EINVAL (name or info NULL), TALLY_ENOBACKEND. */
TALLY_API int tally_backend_find(const char *name, tally_backend_info *info);

/*
 * Check a backend spec ("NAME" or "NAME:OPTIONS", or NULL as in
 * tally_create()) and flags exactly as tally_create() would, without
 * creating a counter, allocating shared memory or contacting a server: for
 * validating input before any work starts.  Returns 0, or what
 * tally_create() would return for the same spec and flags: TALLY_EINVAL,
 * TALLY_ENOBACKEND, TALLY_ENOTBUILT, TALLY_EUNSUPPORTED, TALLY_EOPTION (a
 * remote backend's address is checked for form, not reached).
 * Thread-safe.
 */
TALLY_API int tally_backend_check(const char *backend, unsigned flags);

/*
 * backend as a program may show it: the same text with the password of
 * every URL in it (the PASSWORD of scheme://USER:PASSWORD@HOST) written as
 * "***", e.g. "redis:url=redis://:***@db:6379,key=jobs".  Written to buf
 * (size bytes; cut short to fit, and always terminated when size > 0);
 * NULL reads as "".  Returns buf.  The library itself never shows a
 * password: tally_describe(), tally_explain() and its messages already
 * use this; a program that prints or logs a backend spec it was given
 * should too.  Thread-safe.
 */
TALLY_API char *tally_backend_redact(const char *backend, char *buf,
				     size_t size);

/* The library's version string, e.g. "0.1.0" (may differ from the header's
 * TALLY_VERSION_STRING when a program runs against a newer library).  Never
 * NULL; static storage; thread-safe. */
TALLY_API const char *tally_version(void);

#ifdef TALLY__INLINE_ADD
#include <stdatomic.h>
#include <string.h>

/* tally_add() for TALLY_INLINE programs; see the top of this header.  Same
 * results, errors and memory order (acq_rel) as the library's. */
static inline int tally__add_inline(tally *t, int64_t delta)
{
	void *word = NULL;

	if (t != NULL)
		memcpy(&word,
		       (const char *)t + offsetof(struct tally__hot, word),
		       sizeof(word));
	if (word == NULL)
		return (tally_add)(t, delta);
	atomic_fetch_add_explicit((_Atomic uint64_t *)word, (uint64_t)delta,
				  memory_order_acq_rel);
	return 0;
}
#define tally_add(t, delta) tally__add_inline((t), (delta))
#endif

#ifdef __cplusplus
}
#endif
#endif /* TALLY_H */
