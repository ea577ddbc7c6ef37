/* Where a counter's state lives: private memory, or a shared mapping that
 * processes forked later inherit. */
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

/*
 * One allocation: the handle on its own line(s), then the state starting on
 * a fresh line (at its own alignment, when wider) and padded to whole
 * lines, so that neither the handle's read-mostly words nor a neighbouring
 * heap object sit on the state's lines.
 */
int tally__place_private(tally **out, const struct tally_backend *ops)
{
	size_t align = tally__state_align(ops);
	size_t head = tally__round_up(sizeof(struct tally), align);
	size_t body = tally__round_up(ops->state_size, align);
	char *p = aligned_alloc(align, head + body);

	if (p == NULL)
		return TALLY_ENOMEM;
	memset(p, 0, head + body);
	tally *t = (tally *)p;
	t->state = p + head;
	*out = t;
	return 0;
}

void tally__life_attach(tally *t, struct tally__life_table *table, int fd)
{
	tally__life_start(&t->life, table, fd);
	t->knobs.life = &t->life;
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
 * The state in a shared mapping that forked children inherit: page-aligned,
 * so alone on its lines and aligned for any state_align up to a page
 * (backend.h).  A backend with a lock gets the life table after its state,
 * in an anonymous file (memfd); others a plain anonymous mapping.  The
 * handle itself stays private; a forked child gets a copy of it that points
 * at the same mapping.
 */
int tally__place_shared(tally **out, const struct tally_backend *ops)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int locked = (ops->caps & TALLY_CAP_LOCKED) != 0;
	size_t at = tally__round_up(ops->state_size, TALLY_CACHELINE);
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
	if (fd >= 0)
		tally__life_attach(
			t, (struct tally__life_table *)((char *)map + at), fd);
	*out = t;
	return 0;
}

void tally__unplace(tally *t)
{
	if (t->knobs.life != NULL)
		tally__life_stop(t->knobs.life);
	if (t->map != NULL)
		munmap(t->map, t->map_size);
	free(t);
}
