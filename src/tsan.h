/* Tell ThreadSanitizer where a Concurrency Kit lock is taken and released.
 * Compiled to nothing unless the build is instrumented with TSan. */
#ifndef TALLY_TSAN_H
#define TALLY_TSAN_H

/*
 * Concurrency Kit locks are inline assembly and volatile accesses that TSan
 * cannot see as synchronization, so the counter they protect looks racy.  The
 * mutex annotations (not plain __tsan_acquire/__tsan_release) both create the
 * happens-before edge and make TSan ignore the lock word's own spinning reads
 * between pre_lock and post_lock.  pthread mutexes, semaphores and C11
 * atomics are intercepted by TSan already and need nothing.
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
