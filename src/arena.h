/* Memory for many counters: the host's possible CPUs, and pools of equal
 * items laid out CPU-major (one region per CPU, item i at the same offset in
 * every region), private to the process or shared with its forked children. */
#ifndef TALLY_ARENA_H
#define TALLY_ARENA_H

#include <stddef.h>

/*
 * The CPUs this host can have while it runs: one more than the highest
 * number in /sys/devices/system/cpu/possible (CPUs that may come online
 * later included; sysconf(_SC_NPROCESSORS_CONF) where that file cannot be
 * read), read once.  Never 0.
 */
unsigned tally__possible_cpus(void);

/*
 * A pool is named by what its items are: `item` bytes (a multiple of 8, at
 * most a page) in each of `regions` regions, and whether its memory is
 * shared (MAP_SHARED, so that processes forked later see the same bytes) or
 * private.  Items are handed out of chunks that are never unmapped; a freed
 * item goes on the pool's free list and is handed out again first.
 *
 * alloc  an item, zero in every region: its address in region 0, and in
 *        *stride the bytes from one region to the next (the same for every
 *        item of the pool; a power of two and a multiple of the page size,
 *        so that no two regions share a line).  NULL when no memory can be had.
 * A reused item is cleared here, before it is handed out: a new counter never
 *        starts from an old one's counts.
 * free   give back what alloc returned, with the same item, regions and
 *        shared; only the process that allocated it.
 *
 * Both take one mutex: any thread, any time, never on a counter's add path.
 * After a fork the child allocates shared items from chunks of its own (the
 * ones it inherited stay mapped, for the counters it inherited, but are its
 * parent's to hand out).
 */
void *tally__pool_alloc(size_t item, unsigned regions, int shared,
			size_t *stride);
void tally__pool_free(void *p, size_t item, unsigned regions, int shared);

#endif /* TALLY_ARENA_H */
