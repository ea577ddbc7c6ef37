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

/*
 * The state in an anonymous shared mapping: page-aligned, so alone on its
 * lines and aligned for any state_align up to a page (backend.h).  The
 * handle itself stays private; a forked child gets a copy of it that points
 * at the same mapping.
 */
int tally__place_shared(tally **out, const struct tally_backend *ops)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t size = tally__round_up(ops->state_size, page);
	tally *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return TALLY_ENOMEM;
	void *map = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		free(t);
		return TALLY_ENOMEM;
	}
	t->map = map;
	t->map_size = size;
	t->state = map;
	*out = t;
	return 0;
}

void tally__unplace(tally *t)
{
	if (t->map != NULL)
		munmap(t->map, t->map_size);
	free(t);
}
