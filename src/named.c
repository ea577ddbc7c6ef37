/* Named counters in POSIX shared memory that separate programs share:
 * "/tally.NAME", mode 0600, with a validated header in front of the state. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NAMED_MAGIC  "TALLYCNT"
#define NAMED_LAYOUT 1u
#define NAMED_MAX    200
#define READY_VALUE  0x52454459u /* "REDY" */

/*
 * The header.  Fixed-width fields only, so that the layout is the same for
 * every compiler; `ready` is published last, with release order, after the
 * backend's state is initialized, so that an opener that sees it also sees a
 * complete lock.  The state starts on its own cache line after the header.
 */
struct named_header {
	char magic[8];
	uint32_t layout;
	uint32_t header_size;
	char backend[32];
	uint64_t state_size;
	uint64_t total_size;
	_Atomic uint32_t ready;
};

#define HEADER_SIZE                                                            \
	((sizeof(struct named_header) + TALLY_CACHELINE - 1) /                 \
	 TALLY_CACHELINE * TALLY_CACHELINE)

static int valid_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > NAMED_MAX || name[0] == '.')
		return 0;
	return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "abcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static void object_name(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "/tally.%s", name);
}

static int map_object(int fd, size_t size, void **map)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		return errno == ENOMEM ? TALLY_ENOMEM : TALLY_ESYSTEM;
	*map = p;
	return 0;
}

/* The creator's half: size the new object, lay out header and state. */
static int create_object(tally *t, int fd, const struct tally_backend *ops,
			 const char *options, int64_t initial)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t size = tally__round_up(HEADER_SIZE + ops->state_size, page);
	struct named_header *h;
	int rc;

	/* umask may have narrowed the mode; it must not have widened it. */
	if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0)
		return TALLY_ESYSTEM;
	rc = map_object(fd, size, &t->map);
	if (rc != 0)
		return rc;
	t->map_size = size;
	t->state = (char *)t->map + HEADER_SIZE;
	rc = ops->init(t->state, initial, TALLY_PSHARED, options);
	if (rc != 0)
		return rc;
	h = t->map;
	memcpy(h->magic, NAMED_MAGIC, sizeof(h->magic));
	h->layout = NAMED_LAYOUT;
	h->header_size = HEADER_SIZE;
	snprintf(h->backend, sizeof(h->backend), "%s", ops->name);
	h->state_size = ops->state_size;
	h->total_size = size;
	atomic_store_explicit(&h->ready, READY_VALUE, memory_order_release);
	t->ops = ops;
	return 0;
}

/* Wait up to a second for a creator that is still laying the object out. */
static int wait_ready(int fd, struct stat *st)
{
	for (int i = 0; i < 100; i++) {
		if (fstat(fd, st) != 0)
			return TALLY_ESYSTEM;
		if ((size_t)st->st_size >= HEADER_SIZE) {
			void *p = mmap(NULL, HEADER_SIZE, PROT_READ, MAP_SHARED,
				       fd, 0);
			if (p == MAP_FAILED)
				return TALLY_ESYSTEM;
			uint32_t r = atomic_load_explicit(
				&((struct named_header *)p)->ready,
				memory_order_acquire);
			munmap(p, HEADER_SIZE);
			if (r == READY_VALUE)
				return 0;
		}
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000},
			  NULL);
	}
	return TALLY_EBADOBJECT; /* truncated, foreign, or its creator died */
}

/* The opener's half: refuse anything that is not a complete tally counter
 * of this layout whose backend is built into this library. */
static int attach_object(tally *t, int fd)
{
	struct stat st;
	struct named_header *h;
	const struct tally_backend *ops;
	int rc = wait_ready(fd, &st);

	if (rc != 0)
		return rc;
	rc = map_object(fd, (size_t)st.st_size, &t->map);
	if (rc != 0)
		return rc;
	t->map_size = (size_t)st.st_size;
	h = t->map;
	if (memcmp(h->magic, NAMED_MAGIC, sizeof(h->magic)) != 0 ||
	    h->layout != NAMED_LAYOUT || h->header_size != HEADER_SIZE ||
	    h->total_size != (uint64_t)st.st_size ||
	    memchr(h->backend, '\0', sizeof(h->backend)) == NULL)
		return TALLY_EBADOBJECT;
	ops = tally__backend_lookup(h->backend, strlen(h->backend));
	if (ops == NULL || !(ops->caps & TALLY_CAP_NAMED))
		return TALLY_EBADOBJECT;
	if (ops->add == NULL)
		return TALLY_ENOTBUILT;
	if (h->state_size != ops->state_size ||
	    HEADER_SIZE + ops->state_size > h->total_size)
		return TALLY_EBADOBJECT;
	t->state = (char *)t->map + HEADER_SIZE;
	t->ops = ops;
	return 0;
}

int tally_open(tally **out, const char *name, const char *backend,
	       int64_t initial, unsigned flags)
{
	const struct tally_backend *ops = NULL;
	const char *options = NULL;
	char path[NAMED_MAX + 16];
	int fd = -1, rc, created = 0;
	tally *t;

	if (out == NULL || !valid_name(name) ||
	    (flags & ~(unsigned)(TALLY_CREATE | TALLY_EXCL)) != 0 ||
	    ((flags & TALLY_EXCL) && !(flags & TALLY_CREATE)))
		return TALLY_EINVAL;
	if (flags & TALLY_CREATE) {
		rc = tally__resolve(backend, &ops, &options);
		if (rc != 0)
			return rc;
		if (!(ops->caps & TALLY_CAP_NAMED))
			return TALLY_EUNSUPPORTED;
	}
	object_name(path, sizeof(path), name);
	if (flags & TALLY_CREATE) {
		fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
		created = fd >= 0;
		if (fd < 0 && (errno != EEXIST || (flags & TALLY_EXCL)))
			return errno == EEXIST ? TALLY_EEXIST : TALLY_ESYSTEM;
	}
	if (fd < 0)
		fd = shm_open(path, O_RDWR, 0);
	if (fd < 0)
		return errno == ENOENT ? TALLY_ENOTFOUND : TALLY_ESYSTEM;

	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		rc = TALLY_ENOMEM;
		goto fail;
	}
	rc = created ? create_object(t, fd, ops, options, initial)
		     : attach_object(t, fd);
	if (rc != 0)
		goto fail;
	close(fd);
	tally__arm(t);
	t->flags = TALLY_PSHARED;
	t->named = 1;
	t->creator = getpid();
	*out = t;
	return 0;

fail:
	if (created)
		shm_unlink(path); /* nothing half-made stays behind */
	if (t != NULL)
		tally__unplace(t);
	close(fd);
	return rc;
}

int tally_unlink(const char *name)
{
	char path[NAMED_MAX + 16];

	if (!valid_name(name))
		return TALLY_EINVAL;
	object_name(path, sizeof(path), name);
	if (shm_unlink(path) == 0)
		return 0;
	return errno == ENOENT ? TALLY_ENOTFOUND : TALLY_ESYSTEM;
}
