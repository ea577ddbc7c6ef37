/*
 * tally: one shared-counter interface in front of pluggable synchronization
 * backends (mutex, spinlocks, ticket lock, C11 atomics, semaphores, ...).
 *
 * Conventions, for every function below:
 *   - A return value of 0 is success; a negative TALLY_E* code is an error.
 *     tally_add() may also return the positive TALLY_RECOVERED (success, see
 *     there).
 *   - Output parameters are written only on success.
 *   - A tally handle is safe to use from any number of threads at once, and,
 *     when created with TALLY_PSHARED, from processes forked after creation.
 *     tally_destroy() must not race with any other call on the same handle.
 */
#ifndef TALLY_H
#define TALLY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(TALLY_STATIC_DEFINE)
#define TALLY_API __attribute__((visibility("default")))
#else
#define TALLY_API
#endif

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
	X(ESYSTEM, -6, "a system call failed (see errno)")                     \
	X(EOPTION, -7, "invalid backend option")                               \
	X(ENOTFOUND, -8, "no shared counter by that name")                     \
	X(EEXIST, -9, "a shared counter by that name already exists")          \
	X(EBADOBJECT, -10,                                                     \
	  "shared object is not a tally counter, or is truncated or "          \
	  "from an incompatible version")                                      \
	X(ENOTRECOVERABLE, -11,                                                \
	  "the lock is unusable: a holder died and it could not be recovered") \
	X(EREMOTE, -12, "the remote counter server failed or is unreachable")

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

/* Capability bits of a backend.  Branch on these, never on names. */
enum tally_caps {
	TALLY_CAP_LOCKFREE = 1u << 0, /* no lock: one atomic instruction */
	TALLY_CAP_PSHARED = 1u << 1,  /* can live in process-shared memory */
	TALLY_CAP_FAIR = 1u << 2,     /* waiters are served in FIFO order */
	TALLY_CAP_BLOCKING = 1u << 3, /* waiters sleep in the kernel */
	TALLY_CAP_SPINNING = 1u << 4, /* waiters busy-wait on the CPU */
	TALLY_CAP_RACY = 1u << 5,     /* deliberately unsynchronized */
	TALLY_CAP_REMOTE = 1u << 6,   /* counter lives in a server */
	TALLY_CAP_THREADS_ONLY = 1u << 7, /* one process only */
	TALLY_CAP_ROBUST = 1u << 8,	  /* survives a holder that dies */
	TALLY_CAP_NAMED = 1u << 9,	  /* can back a tally_open() counter */
};

typedef struct tally tally;

/* What tally_backend_at() describes.  Strings are static. */
typedef struct tally_backend_info {
	const char *name;    /* lower case, e.g. "ticket" */
	const char *summary; /* one line, no trailing period */
	unsigned caps;	     /* TALLY_CAP_* bits */
	int built_in; /* 0 when its dependency was absent at build time */
} tally_backend_info;

/* The default backend when neither an argument nor $TALLY_BACKEND names one. */
#define TALLY_DEFAULT_BACKEND "atomic"
/* The environment variable read when tally_create() is given NULL. */
#define TALLY_ENV_BACKEND "TALLY_BACKEND"

/*
 * Create a counter holding `initial`.
 *   backend: a name ("mutex"), "NAME:OPTIONS" for backends that take options,
 *            or NULL for $TALLY_BACKEND if set and non-empty, else
 *            TALLY_DEFAULT_BACKEND.  Names match case-insensitively.
 *   flags:   0 or TALLY_PSHARED.
 * The handle is owned by the caller and released with tally_destroy().
 * Errors: TALLY_EINVAL (out is NULL, unknown flag bits), TALLY_ENOBACKEND,
 * TALLY_ENOTBUILT, TALLY_EUNSUPPORTED (TALLY_PSHARED on a backend without
 * TALLY_CAP_PSHARED), TALLY_EOPTION, TALLY_ENOMEM, TALLY_ESYSTEM,
 * TALLY_EREMOTE.
 */
TALLY_API int tally_create(tally **out, const char *backend, int64_t initial,
			   unsigned flags);

/*
 * Open, or with TALLY_CREATE create, a counter named `name` in POSIX shared
 * memory, which separate programs share ("/tally.NAME", mode 0600).
 *   name:    1 to 200 characters of [A-Za-z0-9._-], not starting with '.'.
 *   backend, initial: used only when the counter is created; backend must
 *            have TALLY_CAP_NAMED.  NULL means as in tally_create().
 *   flags:   TALLY_CREATE, TALLY_EXCL.
 * Opening an existing counter validates its header (magic, layout version,
 * backend, size) and refuses anything else with TALLY_EBADOBJECT.
 * Errors: those of tally_create(), TALLY_ENOTFOUND, TALLY_EEXIST,
 * TALLY_EBADOBJECT.
 */
TALLY_API int tally_open(tally **out, const char *name, const char *backend,
			 int64_t initial, unsigned flags);

/*
 * Remove the named counter.  Handles already open keep working; the memory
 * goes away when the last one is destroyed.
 * Errors: TALLY_EINVAL (bad name), TALLY_ENOTFOUND, TALLY_ESYSTEM.
 */
TALLY_API int tally_unlink(const char *name);

/*
 * Add `delta` (which may be negative) to the counter.  Arithmetic wraps
 * modulo 2^64 on every backend.  Thread-safe (process-safe when shared),
 * except on the deliberately racy "none" backend.
 * Returns 0, TALLY_RECOVERED, or TALLY_EINVAL (t is NULL),
 * TALLY_ENOTRECOVERABLE, TALLY_EREMOTE.
 */
TALLY_API int tally_add(tally *t, int64_t delta);

/*
 * Read the counter into *value.
 * Errors: TALLY_EINVAL (t or value NULL), TALLY_ENOTRECOVERABLE,
 * TALLY_EREMOTE.
 */
TALLY_API int tally_get(tally *t, int64_t *value);

/* Release the handle (NULL is allowed).  A shared counter lives on until the
 * last process using it destroys its handle or exits. */
TALLY_API void tally_destroy(tally *t);

/* The backend a handle runs on, e.g. "ticket".  Static storage. */
TALLY_API const char *tally_backend_name(const tally *t);

/* A one-line English description of an error code; never NULL. */
TALLY_API const char *tally_strerror(int err);
/* The error's symbolic name, e.g. "TALLY_ENOTBUILT"; never NULL. */
TALLY_API const char *tally_errname(int err);

/*
 * Backend enumeration.  tally_backend_count() backends are known (built in
 * or not); tally_backend_at(i, &info) describes number i, in registry order.
 * Errors: TALLY_EINVAL (i out of range, info NULL).
 */
TALLY_API size_t tally_backend_count(void);
TALLY_API int tally_backend_at(size_t i, tally_backend_info *info);
/* Describe the backend called `name` (no options).  Errors: TALLY_EINVAL,
 * TALLY_ENOBACKEND. */
TALLY_API int tally_backend_find(const char *name, tally_backend_info *info);

/* The library's version string, e.g. "0.1.0" (may differ from the header's
 * TALLY_VERSION_STRING when a program runs against a newer library). */
TALLY_API const char *tally_version(void);

#ifdef __cplusplus
}
#endif
#endif /* TALLY_H */
