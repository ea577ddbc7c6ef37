/* Tell ThreadSanitizer where a Concurrency Kit lock is taken and released,
 * and say what TSan checks.  Compiled to nothing unless the build is
 * instrumented with TSan. */
#ifndef TALLY_TSAN_H
#define TALLY_TSAN_H

/*
 * What ThreadSanitizer checks in tally, and what it takes on trust.
 *
 * Checked, through their own memory orders, with no annotation that would
 * hide a wrong one: every lock written with C11 atomics -- adaptive (its
 * futex waits and wakes need none: the lock word's acquire and release
 * make the edge, the futex only sleeps), clh, ticket on a shared counter
 * (tally's own ticket lock) -- and the locks TSan intercepts: pthread
 * mutexes (mutex) and semaphores (sem).  The stress rounds write a plain
 * word inside every critical section (tools/harness/stress_round.c), so a
 * lock among these that stops excluding, or that releases before its
 * section's writes, is reported as a data race; the tsan preset proves it
 * on two test-only backends that must be reported (tests/sanitize.cmake:
 * busted, which takes no lock, and relaxed, whose unlock is relaxed).
 *
 * Trusted, through the annotations below: Concurrency Kit's locks (spin,
 * ticket on a private counter, mcs), which are inline assembly and
 * volatile accesses that TSan cannot see as synchronization.  The mutex
 * annotations (not plain __tsan_acquire/__tsan_release) both create the
 * happens-before edge at lock and unlock, whatever the lock really does,
 * and make TSan ignore the lock word's own spinning reads between pre_lock
 * and post_lock; so for these, TSan checks the code around the lock, and
 * exclusion is checked by the stress rounds' atomic probe and the counts.
 * percpu's restartable sequence is not compiled in TSan builds (every add
 * takes its atomic path), and the value word itself is atomic everywhere
 * (tally_get reads it without the lock): its arithmetic is checked by the
 * counts.
 */
#if defined(__SANITIZE_THREAD__)
#define TALLY_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TALLY_TSAN 1
#endif
#endif

#ifdef TALLY_TSAN
#include <sanitizer/tsan_interface.h>
#define tally__tsan_pre_lock(a)	 __tsan_mutex_pre_lock((a), 0)
#define tally__tsan_post_lock(a) __tsan_mutex_post_lock((a), 0, 0)
/* After pre_lock, when the lock was not taken (a bound passed). */
#define tally__tsan_lock_failed(a)                                             \
	__tsan_mutex_post_lock((a), __tsan_mutex_try_lock_failed, 0)
#define tally__tsan_pre_unlock(a)  __tsan_mutex_pre_unlock((a), 0)
#define tally__tsan_post_unlock(a) __tsan_mutex_post_unlock((a), 0)
#define tally__tsan_destroy(a)	   __tsan_mutex_destroy((a), 0)
#else
#define tally__tsan_pre_lock(a)	   ((void)(a))
#define tally__tsan_post_lock(a)   ((void)(a))
#define tally__tsan_lock_failed(a) ((void)(a))
#define tally__tsan_pre_unlock(a)  ((void)(a))
#define tally__tsan_post_unlock(a) ((void)(a))
#define tally__tsan_destroy(a)	   ((void)(a))
#endif

#endif /* TALLY_TSAN_H */
