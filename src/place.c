/* Where a counter's state lives: private memory, or shared memory that
 * processes forked later inherit (a few lines of a shared pool, or a
 * mapping of its own for a state with a lock). */
#include "arena.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

size_t tally__round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

size_t tally__state_align(const struct tally_backend *ops)
{
	return ops->state_align > TALLY_CACHELINE ? ops->state_align
						  : TALLY_CACHELINE;
}

size_t tally__state_size(const struct tally_backend *ops, unsigned flags)
{
	return ops->size != NULL ? ops->size(flags) : ops->state_size;
}

/*
 * A descriptor (backend.h): the handle and the state in one small
 * allocation, the state right after the handle, not padded to lines.  Both
 * are read-only after creation, so adds never write their lines; a heap
 * neighbour that the program writes often can cost an add a cache miss, the
 * price of a counter in a few dozen bytes where whole lines would be 256.
 */
static int place_descriptor(tally **out, const struct tally_backend *ops)
{
	size_t align = ops->state_align > _Alignof(struct tally)
			       ? ops->state_align
			       : _Alignof(struct tally);
	size_t head = tally__round_up(sizeof(struct tally), align);
	char *p = aligned_alloc(
		align,
		tally__round_up(head + tally__state_size(ops, 0), align));

	if (p == NULL)
		return TALLY_ENOMEM;
	memset(p, 0, head + tally__state_size(ops, 0));
	tally *t = (tally *)(void *)p; /* p is aligned for a handle */
	t->state = p + head;
	t->creator = getpid();
	*out = t;
	return 0;
}

/*
 * One allocation: the handle on its own line(s), then the state starting on
 * a fresh line (at its own alignment, when wider) and padded to whole
 * lines, so that neither the handle's read-mostly words nor a neighbouring
 * heap object sit on the state's lines.
 */
int tally__place_private(tally **out, const struct tally_backend *ops)
{
	if (ops->descriptor)
		return place_descriptor(out, ops);
	size_t align = tally__state_align(ops);
	size_t head = tally__round_up(sizeof(struct tally), align);
	size_t body = tally__round_up(tally__state_size(ops, 0), align);
	char *p = aligned_alloc(align, head + body);

	if (p == NULL)
		return TALLY_ENOMEM;
	memset(p, 0, head + body);
	tally *t = (tally *)(void *)p; /* p is aligned for a handle */
	t->state = p + head;
	t->creator = getpid();
	*out = t;
	return 0;
}

/* The claim lives apart from the handle (see struct tally); without memory
 * for it the process has no token, as without a descriptor. */
void tally__life_attach(tally *t, struct tally__life_table *table, int fd)
{
	struct tally__life *l = calloc(1, sizeof(*l));

	if (l == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	tally__life_start(l, table, fd);
	t->knobs.life = l;
}

/* An anonymous file for a shared counter with a lock: the life table's
 * locks need a file (src/life.h).  -1 when none can be had (no memfd, no
 * descriptor left): the counter then works the same, without knowing
 * whether its lock's holder lives. */
static int life_file(size_t size)
{
	int fd = memfd_create("tally", MFD_CLOEXEC);

	if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/*
 * A shared counter without a lock, whose state fits a few lines: those
 * lines of a shared pool (src/arena.h), MAP_SHARED memory that processes
 * forked later inherit, rather than a page of its own.  The state starts on
 * a line of its own and is padded to whole lines.
 */
static int place_pooled(tally **out, const struct tally_backend *ops)
{
	size_t lines = tally__round_up(tally__state_size(ops, TALLY_PSHARED),
				       TALLY_CACHELINE) /
		       TALLY_CACHELINE;
	tally *t = calloc(1, sizeof(*t));
	size_t stride;

	if (t == NULL)
		return TALLY_ENOMEM;
	t->state = tally__pool_alloc(lines * TALLY_CACHELINE, 1, 1, &stride);
	if (t->state == NULL) {
		free(t);
		return TALLY_ENOMEM;
	}
	t->pool_lines = (unsigned)lines;
	t->creator = getpid();
	*out = t;
	return 0;
}

/* The most lines a pooled state takes: past that, a page of its own costs
 * no more. */
#define POOLED_LINES_MAX 8

/*
 * The state in shared memory that forked children inherit.  A descriptor
 * stays private (the backend shares what it points to); a state without a
 * lock comes from a shared pool; a backend with a lock gets a page-aligned
 * mapping of its own, with the life table after its state, in an anonymous
 * file (memfd).  The handle itself stays private; a forked child gets a
 * copy of it that points at the same memory.
 */
int tally__place_shared(tally **out, const struct tally_backend *ops)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int locked = (ops->caps & TALLY_CAP_LOCKED) != 0;
	size_t at = tally__round_up(tally__state_size(ops, TALLY_PSHARED),
				    TALLY_CACHELINE);

	if (ops->descriptor)
		return place_descriptor(out, ops);
	if (!locked && ops->state_align <= TALLY_CACHELINE &&
	    at <= POOLED_LINES_MAX * TALLY_CACHELINE)
		return place_pooled(out, ops);

	size_t size = tally__round_up(
		at + (locked ? sizeof(struct tally__life_table) : 0), page);
	int fd = locked ? life_file(size) : -1;
	tally *t = calloc(1, sizeof(*t));

	if (t == NULL) {
		if (fd >= 0)
			close(fd);
		return TALLY_ENOMEM;
	}
	void *map =
		mmap(NULL, size, PROT_READ | PROT_WRITE,
		     fd >= 0 ? MAP_SHARED : MAP_SHARED | MAP_ANONYMOUS, fd, 0);
	if (map == MAP_FAILED) {
		if (fd >= 0)
			close(fd);
		free(t);
		return TALLY_ENOMEM;
	}
	t->map = map;
	t->map_size = size;
	t->state = map;
	t->creator = getpid();
	if (fd >= 0)
		tally__life_attach(
			t,
			(struct tally__life_table *)(void *)((char *)map + at),
			fd);
	*out = t;
	return 0;
}

void tally__unplace(tally *t)
{
	if (t->knobs.life != NULL) {
		tally__life_stop(t->knobs.life);
		free(t->knobs.life);
	}
	if (t->map != NULL)
		munmap(t->map, t->map_size);
	/* A forked child's copy leaves its parent's lines alone. */
	if (t->pool_lines != 0 && t->creator == getpid())
		tally__pool_free(t->state,
				 (size_t)t->pool_lines * TALLY_CACHELINE, 1, 1);
	free(t->about);
	free(t);
}
