/* Pools of equal items in CPU-major chunks (see arena.h): how percpu keeps a
 * counter in a few bytes per CPU, and shared counters in a few lines. */
#include "arena.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The most CPUs counted: Linux's own limit (NR_CPUS) is at most 8192. */
#define CPUS_MAX 8192u

static _Atomic unsigned possible; /* 0: not read yet */

/* One more than the highest CPU number in a list such as "0-3,8-11\n";
 * 0 when the text holds none. */
static unsigned cpus_in_list(const char *s)
{
	unsigned most = 0;

	while (*s != '\0') {
		if (*s < '0' || *s > '9') {
			s++;
			continue;
		}
		unsigned long n = strtoul(s, (char **)&s, 10);
		if (n >= CPUS_MAX)
			return CPUS_MAX;
		if (n + 1 > most)
			most = (unsigned)n + 1;
	}
	return most;
}

static unsigned read_possible(void)
{
	char buf[4096];
	unsigned n = 0;
	int fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		ssize_t len = read(fd, buf, sizeof(buf) - 1);

		close(fd);
		if (len > 0) {
			buf[len] = '\0';
			n = cpus_in_list(buf);
		}
	}
	if (n == 0) {
		long conf = sysconf(_SC_NPROCESSORS_CONF);

		n = conf < 1		    ? 1
		    : conf > (long)CPUS_MAX ? CPUS_MAX
					    : (unsigned)conf;
	}
	return n;
}

unsigned tally__possible_cpus(void)
{
	unsigned n = atomic_load_explicit(&possible, memory_order_relaxed);

	if (n == 0) {
		/* Two threads may both read the file: same answer. */
		n = read_possible();
		atomic_store_explicit(&possible, n, memory_order_relaxed);
	}
	return n;
}

/*
 * One pool.  Its chunks are `regions` regions of `stride` bytes, each region
 * holding `per_chunk` items; items are handed out of the newest chunk in
 * order, after the free list.  What the pool knows of itself is private
 * memory: nothing here is read from a shared chunk, where a forked child
 * could have written.
 */
struct pool {
	size_t item;
	unsigned regions;
	int shared;
	size_t stride, per_chunk;
	char *chunk; /* the newest chunk, NULL before the first */
	size_t used; /* items of it handed out */
	void **free;
	size_t nfree, cap;
};

/* One pool per kind of item in use: percpu's private and shared, and a
 * shared one per size of a shared counter's state. */
#define POOLS 32

static struct pool pools[POOLS];
static unsigned npools;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void before_fork(void)
{
	pthread_mutex_lock(&lock);
}

static void after_fork_parent(void)
{
	pthread_mutex_unlock(&lock);
}

/* The child's shared pools start again: their chunks and free items are
 * its parent's to hand out (the parent may give the same item to a new
 * counter that this child would then share by mistake). */
static void after_fork_child(void)
{
	for (unsigned i = 0; i < npools; i++)
		if (pools[i].shared) {
			pools[i].chunk = NULL;
			pools[i].used = 0;
			pools[i].nfree = 0;
		}
	pthread_mutex_unlock(&lock);
}

static void register_fork(void)
{
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* Bytes of one region per chunk: 64 KiB privately, where a CPU that never
 * writes leaves its region's pages unpopulated; 16 KiB shared, where a read
 * populates them.  Powers of two: with an item of at most a page, the
 * region (these items, rounded up to pages) is then this target, or one
 * page where a page is larger, a power of two either way. */
static size_t region_target(int shared)
{
	return shared ? (size_t)16 << 10 : (size_t)64 << 10;
}

static struct pool *find_pool(size_t item, unsigned regions, int shared)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	for (unsigned i = 0; i < npools; i++)
		if (pools[i].item == item && pools[i].regions == regions &&
		    pools[i].shared == shared)
			return &pools[i];
	if (npools == POOLS)
		return NULL;
	struct pool *p = &pools[npools++];
	size_t per = region_target(shared) / item;

	memset(p, 0, sizeof(*p));
	p->item = item;
	p->regions = regions;
	p->shared = shared;
	p->per_chunk = per == 0 ? 1 : per;
	p->stride = (p->per_chunk * item + page - 1) / page * page;
	return p;
}

static int new_chunk(struct pool *p)
{
	int how = (p->shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS;
	void *m = mmap(NULL, p->stride * p->regions, PROT_READ | PROT_WRITE,
		       how, -1, 0);

	if (m == MAP_FAILED)
		return -1;
	p->chunk = m;
	p->used = 0;
	return 0;
}

/*
 * Zero a freed item in every region.  Only words that are not zero are
 * written, so that the pages of CPUs that never added stay unpopulated.
 * Atomic accesses: a counter's words are atomics (a handle that outlived
 * its counter is the caller's bug, but must not be undefined behaviour
 * here).
 */
static void clear_item(const struct pool *p, char *item)
{
	for (unsigned r = 0; r < p->regions; r++) {
		_Atomic uint64_t *w =
			(_Atomic uint64_t *)(void *)(item + r * p->stride);

		for (size_t i = 0; i < p->item / sizeof(*w); i++)
			if (atomic_load_explicit(&w[i], memory_order_relaxed))
				atomic_store_explicit(&w[i], 0,
						      memory_order_relaxed);
	}
}

void *tally__pool_alloc(size_t item, unsigned regions, int shared,
			size_t *stride)
{
	char *got = NULL;
	struct pool *p;

	pthread_once(&fork_once, register_fork);
	pthread_mutex_lock(&lock);
	p = find_pool(item, regions, shared != 0);
	if (p == NULL)
		goto out;
	if (p->nfree > 0) {
		got = p->free[--p->nfree];
		clear_item(p, got);
	} else if ((p->chunk != NULL && p->used < p->per_chunk) ||
		   new_chunk(p) == 0) {
		/* Fresh from mmap: already zero everywhere. */
		got = p->chunk + p->used++ * p->item;
	}
	if (got != NULL)
		*stride = p->stride;
out:
	pthread_mutex_unlock(&lock);
	return got;
}

void tally__pool_free(void *item, size_t size, unsigned regions, int shared)
{
	struct pool *p;

	pthread_mutex_lock(&lock);
	p = find_pool(size, regions, shared != 0);
	if (p != NULL && p->nfree == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		void **grown = realloc(p->free, cap * sizeof(*grown));

		if (grown != NULL) {
			p->free = grown;
			p->cap = cap;
		}
	}
	/* Without room on the list (no memory) the item is lost, never
	 * handed out twice. */
	if (p != NULL && p->nfree < p->cap)
		p->free[p->nfree++] = item;
	pthread_mutex_unlock(&lock);
}
