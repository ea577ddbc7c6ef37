/* Named counters in POSIX shared memory that separate programs share:
 * "/dev/shm/tally.NAME", mode 0600, with a validated header in front of the
 * state.  The object is input from another program: see attach_object(). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Layouts: 2 backend options; 3 the life table; 4 slots per possible CPU,
 * their count recorded in the state (percpu, sharded); 5 the build's shape
 * (byte order, word size, alignment of 64-bit words). */
#define NAMED_MAGIC  "TALLYCNT"
#define NAMED_LAYOUT 5u
#define NAMED_MAX    200
#define READY_VALUE  0x52454459u /* "REDY" */
/* Where glibc's shm_open() puts "/NAME": the directory that creating a
 * counter links into, and that `tally shm list` reads. */
#define SHM_DIR "/dev/shm"

/*
 * What a build that made a counter could differ in from one that opens it,
 * though both are this layout: the byte order of every field, the size of a
 * word (pointers and size_t in the locks' states: glibc's mutex and
 * semaphore are larger on a 64-bit host) and how 64-bit words are aligned
 * (4 bytes inside structures on i386, 8 on x86-64).  One byte each, so that
 * they read the same in every byte order.  The slot count of a state that
 * follows its host is in the state itself (the backend's join checks it).
 */
#define ORDER_LITTLE 'L'
#define ORDER_BIG    'B'
struct named_shape {
	uint8_t order;	      /* ORDER_LITTLE or ORDER_BIG */
	uint8_t word;	      /* sizeof(void *) */
	uint8_t align64;      /* _Alignof(uint64_t) */
	uint8_t align_atomic; /* _Alignof(_Atomic uint64_t) */
};

static struct named_shape this_shape(void)
{
	return (struct named_shape){
		.order = __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? ORDER_BIG
								: ORDER_LITTLE,
		.word = sizeof(void *),
		.align64 = _Alignof(uint64_t),
		.align_atomic = _Alignof(_Atomic uint64_t),
	};
}

/*
 * The header.  Fixed-width fields only, so that the layout is the same for
 * every compiler (the life table's are fixed-width too).  The shape sits
 * in the 4 bytes after `ready`, which a 64-bit build left as padding before
 * the life table; older layouts have zeros there.  `ready` is written
 * last, with release order, after the backend's state is initialized; an object
 * under its name is always complete (see publish()), so `ready` is a check, not
 * something to wait on. The state starts on its own cache line after the
 * header.
 */
struct named_header {
	char magic[8];
	uint32_t layout;
	uint32_t header_size;
	char backend[32];
	char options[96]; /* the text after "NAME:", "" for none */
	uint64_t state_size;
	uint64_t total_size;
	_Atomic uint32_t ready;
	struct named_shape shape;
	/* Who lives among the processes that use the counter (src/life.h):
	 * used only by backends with a lock. */
	struct tally__life_table life;
};

/* Every build lays the header out alike (the shape must be found before
 * anything else is read). */
_Static_assert(offsetof(struct named_header, shape) == 164 &&
		       offsetof(struct named_header, life) == 168,
	       "the named header's layout moved");

#define HEADER_SIZE                                                            \
	((sizeof(struct named_header) + TALLY_CACHELINE - 1) /                 \
	 TALLY_CACHELINE * TALLY_CACHELINE)

/* The state's place in the object: on the first line after the header, or
 * further at the backend's state_align (the mapping is page-aligned). */
static size_t state_offset(const struct tally_backend *ops)
{
	return tally__round_up(HEADER_SIZE, tally__state_align(ops));
}

static int valid_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > NAMED_MAX || name[0] == '.')
		return 0;
	return strspn(name,
		      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
	       n;
}

static void object_path(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, SHM_DIR "/tally.%s", name);
}

/* A failed system call: TALLY_ESYSTEM (or ENOMEM/ENOSPACE where errno says
 * so), with the call and strerror for tally_explain(). */
static int sys_fail(const char *call, const char *what, int err)
{
	int rc = err == ENOMEM ? TALLY_ENOMEM
		 : err == ENOSPC || err == EFBIG || err == EDQUOT
			 ? TALLY_ENOSPACE
			 : TALLY_ESYSTEM;

	tally__explain_set(rc, "%s%s(%s) failed: %s",
			   rc == TALLY_ENOSPACE ? "no space for the counter: "
						: "",
			   call, what, strerror(err));
	errno = err;
	return rc;
}

static int map_object(int fd, size_t size, const char *path, void **map)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		return sys_fail("mmap", path, errno);
	*map = p;
	return 0;
}

/*
 * Reserve the object's space before anything touches it.  On tmpfs an
 * ftruncate()d object has no pages yet: the first store to one that cannot
 * be had raises SIGBUS.  posix_fallocate() takes them now or fails with
 * ENOSPC.  Growing a file past RLIMIT_FSIZE raises SIGXFSZ, whose default
 * action kills the process, so that limit is checked first; a library must
 * not change the signal's disposition behind its caller's back.
 */
static int reserve(int fd, size_t size, const char *path)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)size > rl.rlim_cur) {
		tally__explain_set(
			TALLY_ENOSPACE,
			"no space for the counter: it needs %zu bytes, and the file-size limit (ulimit -f) is %llu bytes",
			size, (unsigned long long)rl.rlim_cur);
		return TALLY_ENOSPACE;
	}
	int err = posix_fallocate(fd, 0, (off_t)size);
	return err == 0 ? 0 : sys_fail("posix_fallocate", path, err);
}

/* The creator's half: size the new, still nameless object, lay out header
 * and state. */
static int create_object(tally *t, int fd, const struct tally_backend *ops,
			 const char *options, int64_t initial, const char *path)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t at = state_offset(ops);
	size_t state_size = tally__state_size(ops, TALLY__NAMED);
	size_t size = tally__round_up(at + state_size, page);
	struct named_header *h;
	int rc;

	if (options != NULL && strlen(options) >= sizeof(h->options)) {
		tally__explain_set(
			TALLY_EOPTION,
			"a named counter keeps at most %zu bytes of backend options",
			sizeof(h->options) - 1);
		return TALLY_EOPTION;
	}
	/* umask may have narrowed the mode; it must not have widened it. */
	if (fchmod(fd, 0600) != 0)
		return sys_fail("fchmod", path, errno);
	rc = reserve(fd, size, path);
	if (rc == 0)
		rc = map_object(fd, size, path, &t->map);
	if (rc != 0)
		return rc;
	t->map_size = size;
	t->state = (char *)t->map + at;
	rc = ops->init(t->state, initial, TALLY_PSHARED | TALLY__NAMED,
		       options);
	if (rc != 0)
		return rc;
	h = t->map;
	memcpy(h->magic, NAMED_MAGIC, sizeof(h->magic));
	h->layout = NAMED_LAYOUT;
	h->header_size = HEADER_SIZE;
	snprintf(h->backend, sizeof(h->backend), "%s", ops->name);
	snprintf(h->options, sizeof(h->options), "%s", options ? options : "");
	h->state_size = state_size;
	h->total_size = size;
	h->shape = this_shape();
	atomic_store_explicit(&h->ready, READY_VALUE, memory_order_release);
	t->ops = ops;
	return 0;
}

/*
 * Give the complete object its name, atomically and only if the name is
 * free: link() fails with EEXIST rather than replace.  Until then the object
 * has no name (O_TMPFILE), so nobody can open a half-made counter, and a
 * creator that dies or fails leaves nothing behind.  /proc/self/fd is how an
 * unprivileged process links an O_TMPFILE (AT_EMPTY_PATH needs
 * CAP_DAC_READ_SEARCH); the second form serves where /proc is not mounted.
 */
static int publish(int fd, const char *path)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	if (errno == ENOENT &&
	    linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno == EEXIST)
		return TALLY_EEXIST;
	return sys_fail("linkat", path, errno);
}

static const char *user_name(uid_t uid, char *buf, size_t size)
{
	struct passwd pw, *found = NULL;
	char tmp[1024];

	if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &found) == 0 &&
	    found != NULL)
		snprintf(buf, size, " (%s)", found->pw_name);
	else
		buf[0] = '\0';
	return buf;
}

/*
 * Could a user this process does not trust have written the object?  Only
 * its owner and those the mode lets in can write it; so it must be ours
 * (the effective uid's, which is whose objects shm_open creates) and closed
 * to group and others.  Checked on the open descriptor, so a name swapped
 * after the check cannot slip another object in.  Another user's bytes are
 * not just a wrong count: a lock's state holds pointers (glibc's robust
 * list) and kinds that this process would follow and act on.
 */
static int trusted(const struct stat *st, const char *path)
{
	char who[300];

	if (st->st_uid == geteuid() && (st->st_mode & 077) == 0)
		return 0;
	tally__explain_set(
		TALLY_EUNTRUSTED,
		"%s is owned by uid %lu%s with mode %04o: another user could have written it.  A named counter is joined only when it is this user's (uid %lu) and closed to group and others (0600)",
		path, (unsigned long)st->st_uid,
		user_name(st->st_uid, who, sizeof(who)),
		(unsigned)(st->st_mode & 07777), (unsigned long)geteuid());
	return TALLY_EUNTRUSTED;
}

/* A counter that exists must be the one the caller named, if it named one
 * (want != NULL).  Compared with the header as validated, not as the
 * mapping holds it now. */
static int same_backend(const struct named_header *h,
			const struct tally_backend *have,
			const struct tally_backend *want, const char *options)
{
	if (want == NULL ||
	    (want == have && strcmp(h->options, options ? options : "") == 0))
		return 0;
	char had[sizeof(h->options)], asked[TALLY__OPTIONS_MAX];

	tally__explain_set(TALLY_EMISMATCH,
			   "the counter exists with backend %s%s%s, not %s%s%s",
			   h->backend, h->options[0] ? ":" : "",
			   tally_backend_redact(h->options, had, sizeof(had)),
			   want->name, options ? ":" : "",
			   tally_backend_redact(options, asked, sizeof(asked)));
	return TALLY_EMISMATCH;
}

/* Does the recorded state fit the object, at its size on this host (or, for
 * a backend whose size follows the host, at least the least it can be)? */
static int state_fits(const struct named_header *h,
		      const struct tally_backend *ops, const char *path)
{
	size_t here = tally__state_size(ops, TALLY__NAMED);
	int sized = ops->join != NULL;

	if ((sized ? h->state_size >= ops->state_size
		   : h->state_size == here) &&
	    h->state_size <= h->total_size &&
	    state_offset(ops) + h->state_size <= h->total_size)
		return 0;
	tally__explain_set(
		TALLY_EBADOBJECT,
		"%s: its %s state is %llu bytes in a %llu-byte object; this tally's is %s%zu",
		path, h->backend, (unsigned long long)h->state_size,
		(unsigned long long)h->total_size, sized ? "at least " : "",
		sized ? ops->state_size : here);
	return TALLY_EBADOBJECT;
}

static const char *order_name(uint8_t order)
{
	return order == ORDER_BIG ? "big-endian" : "little-endian";
}

/* A header another build made, of a shape this one cannot read: refused,
 * saying how they differ (before the layout, which such a build's byte
 * order would garble).  Zeros, an older layout's padding, are no shape. */
static int same_shape(const struct named_header *h, const char *path)
{
	struct named_shape me = this_shape(), it = h->shape;

	if (it.order != ORDER_LITTLE && it.order != ORDER_BIG)
		return 0; /* not this layout: the layout check says so */
	if (it.order != me.order) {
		tally__explain_set(
			TALLY_EBADOBJECT,
			"%s was made by a %s build of tally, and this one is %s: a named counter is shared only by builds of one byte order",
			path, order_name(it.order), order_name(me.order));
		return TALLY_EBADOBJECT;
	}
	if (it.word != me.word) {
		tally__explain_set(
			TALLY_EBADOBJECT,
			"%s was made by a %u-bit build of tally, and this one is %u-bit: a named counter is shared only by builds of one word size",
			path, it.word * 8u, me.word * 8u);
		return TALLY_EBADOBJECT;
	}
	if (it.align64 != me.align64 || it.align_atomic != me.align_atomic) {
		tally__explain_set(
			TALLY_EBADOBJECT,
			"%s was made by a build of tally that aligns 64-bit words at %u bytes (atomic ones at %u), and this one at %u (%u): its fields are not where this one reads them",
			path, it.align64, it.align_atomic, me.align64,
			me.align_atomic);
		return TALLY_EBADOBJECT;
	}
	return 0;
}

/* The file under the name: ours, closed to others (trusted()), and a regular
 * file, whose size *st then gives. */
static int check_file(int fd, const char *path, struct stat *st)
{
	int rc;

	if (fstat(fd, st) != 0)
		return sys_fail("fstat", path, errno);
	if ((rc = trusted(st, path)) != 0)
		return rc;
	if (!S_ISREG(st->st_mode)) {
		tally__explain_set(TALLY_EBADOBJECT, "%s is not a regular file",
				   path);
		return TALLY_EBADOBJECT;
	}
	return 0;
}

/* Read the header into *h and refuse one that is not a finished counter of
 * this layout and shape, size bytes long. */
static int read_header(int fd, const char *path, off_t size,
		       struct named_header *h)
{
	struct named_shape shape = this_shape();
	int rc;

	/* Read the header with read(), not through a mapping: a short file
	 * is then a short read, not a SIGBUS. */
	ssize_t n = pread(fd, h, sizeof(*h), 0);
	if (n < 0)
		return sys_fail("pread", path, errno);
	if ((size_t)n == sizeof(*h) &&
	    memcmp(h->magic, NAMED_MAGIC, sizeof(h->magic)) == 0 &&
	    (rc = same_shape(h, path)) != 0)
		return rc;
	if ((size_t)n < sizeof(*h) ||
	    memcmp(h->magic, NAMED_MAGIC, sizeof(h->magic)) != 0 ||
	    h->layout != NAMED_LAYOUT || h->header_size != HEADER_SIZE ||
	    memcmp(&h->shape, &shape, sizeof(shape)) != 0 ||
	    h->total_size != (uint64_t)size ||
	    memchr(h->backend, '\0', sizeof(h->backend)) == NULL ||
	    memchr(h->options, '\0', sizeof(h->options)) == NULL) {
		tally__explain_set(
			TALLY_EBADOBJECT,
			"%s is not a tally counter of layout %u (%lld bytes)",
			path, NAMED_LAYOUT, (long long)size);
		return TALLY_EBADOBJECT;
	}
	if (atomic_load_explicit(&h->ready, memory_order_relaxed) !=
	    READY_VALUE) {
		tally__explain_set(TALLY_EUNFINISHED,
				   "%s was never finished: its creator is gone",
				   path);
		return TALLY_EUNFINISHED;
	}
	return 0;
}

/* The backend the header names, in *ops: one built into this library, able
 * to be named, whose state fits the object. */
static int header_backend(const struct named_header *h, const char *path,
			  const struct tally_backend **ops)
{
	const struct tally_backend *found;

	found = tally__backend_lookup(h->backend, strlen(h->backend));
	if (found == NULL || !(found->caps & TALLY_CAP_NAMED)) {
		tally__explain_set(
			TALLY_EBADOBJECT,
			"%s names no backend this tally knows as named-capable ('%s')",
			path, h->backend);
		return TALLY_EBADOBJECT;
	}
	if (found->add == NULL) {
		tally__explain_set(
			TALLY_ENOTBUILT,
			"the counter's backend, %s, was not built into this tally",
			h->backend);
		return TALLY_ENOTBUILT;
	}
	int rc = state_fits(h, found, path);
	if (rc == 0)
		*ops = found;
	return rc;
}

/* Map the whole object (size bytes) and find ops's state in it; a state
 * sized by its host is checked by the backend against what it recorded. */
static int map_state(tally *t, int fd, const char *path, size_t size,
		     const struct named_header *h,
		     const struct tally_backend *ops)
{
	int rc = map_object(fd, size, path, &t->map);

	if (rc != 0)
		return rc;
	t->map_size = size;
	t->state = (char *)t->map + state_offset(ops);
	if (ops->join != NULL &&
	    (rc = ops->join(t->state, (size_t)h->state_size)) != 0) {
		char why[320];

		snprintf(why, sizeof(why), "%s", tally_explain(rc));
		tally__explain_set(rc, "%s: %s", path, why);
		return rc;
	}
	return 0;
}

/* The opener's half: refuse anything that is not a complete tally counter
 * of this layout whose backend is built into this library. */
static int attach_object(tally *t, int fd, const char *path,
			 const struct tally_backend *want, const char *options)
{
	struct stat st;
	struct named_header h;
	const struct tally_backend *ops;
	int rc;

	if ((rc = check_file(fd, path, &st)) != 0 ||
	    (rc = read_header(fd, path, st.st_size, &h)) != 0 ||
	    (rc = header_backend(&h, path, &ops)) != 0 ||
	    (rc = same_backend(&h, ops, want, options)) != 0 ||
	    (rc = map_state(t, fd, path, (size_t)st.st_size, &h, ops)) != 0)
		return rc;
	t->ops = ops;
	return tally__keep_about(t, "", h.options);
}

/* A counter with a lock knows who holds it through its file: keep a
 * descriptor of it for the handle's side of the life table (a failed dup
 * only leaves this process without a token). */
static void attach_life(tally *t, int fd)
{
	if (!(t->ops->caps & TALLY_CAP_LOCKED))
		return;
	tally__life_attach(t, &((struct named_header *)t->map)->life,
			   fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

/* Make the counter with no name, then link it in.  EEXIST: someone else
 * published first (the caller then opens theirs, unless TALLY_EXCL). */
static int create_named(tally *t, const char *path,
			const struct tally_backend *ops, const char *options,
			int64_t initial)
{
	int fd = open(SHM_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	int rc;

	if (fd < 0)
		return sys_fail("open(O_TMPFILE)", SHM_DIR, errno);
	rc = create_object(t, fd, ops, options, initial, path);
	if (rc == 0)
		rc = publish(fd, path);
	if (rc == 0)
		attach_life(t, fd);
	if (rc != 0 && t->map != NULL) {
		if (ops->destroy != NULL && t->ops != NULL)
			ops->destroy(t->state);
		munmap(t->map, t->map_size);
		t->map = NULL;
		t->ops = NULL;
	}
	close(fd);
	return rc;
}

static int open_named(tally *t, const char *path,
		      const struct tally_backend *want, const char *options)
{
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	int rc;

	if (fd < 0) {
		struct stat st;
		int err = errno;

		if (err == ENOENT)
			return TALLY_ENOTFOUND;
		/* Not ours to open: say whose it is. */
		if (err == EACCES && lstat(path, &st) == 0 &&
		    trusted(&st, path) != 0)
			return TALLY_EUNTRUSTED;
		return sys_fail("open", path, err);
	}
	rc = attach_object(t, fd, path, want, options);
	if (rc == 0)
		attach_life(t, fd);
	close(fd);
	if (rc != 0 && t->map != NULL) {
		munmap(t->map, t->map_size);
		t->map = NULL;
	}
	return rc;
}

/* The spec of a named counter: a backend that can be named, its handle
 * options apart from the counter's (see tally__split_options()). */
static int resolve_named(const char *backend, const struct tally_backend **ops,
			 struct tally__knobs *k, char *buf, size_t size,
			 const char **options)
{
	const char *all;
	int rc = tally__resolve(backend, ops, &all);

	if (rc != 0)
		return rc;
	if (!((*ops)->caps & TALLY_CAP_NAMED))
		return TALLY_EUNSUPPORTED;
	if (all != NULL && strlen(all) >= size) {
		tally__explain_set(TALLY_EOPTION,
				   "backend options of at most %zu characters",
				   size - 1);
		return TALLY_EOPTION;
	}
	return tally__split_options(*ops, all, k, buf, size, options);
}

/* Open the counter at path, or, with TALLY_CREATE and none there, make it
 * with ops; want is the backend the caller named (NULL: whatever is there). */
static int open_or_create(tally *t, const char *path,
			  const struct tally_backend *ops,
			  const struct tally_backend *want, const char *options,
			  int64_t initial, unsigned flags)
{
	/* Open first: a counter that exists is the common case, and this way
	 * an untrusted object under the name is refused, not raced. */
	int rc = open_named(t, path, want, options);

	if (rc == TALLY_ENOTFOUND && (flags & TALLY_CREATE)) {
		rc = create_named(t, path, ops, options, initial);
		if (rc == 0) /* the options it recorded are ours */
			rc = tally__keep_about(t, "", options);
		if (rc == TALLY_EEXIST && !(flags & TALLY_EXCL))
			rc = open_named(t, path, want, options); /* join */
	} else if ((flags & TALLY_EXCL) &&
		   (rc == 0 || rc == TALLY_EBADOBJECT ||
		    rc == TALLY_EUNFINISHED || rc == TALLY_EMISMATCH ||
		    rc == TALLY_ENOTBUILT)) {
		/* Something is under the name: what it is does not matter.
		 * An untrusted object, or an open that failed (a system call,
		 * memory), keeps its own code. */
		rc = TALLY_EEXIST;
	}
	return rc;
}

/* Make the attached counter a named handle.  k: the handle's own choices,
 * kept only when they were made for the counter's backend (ops); whatever
 * that backend chooses by default fills in the rest, for handles that named
 * none too (a NULL backend joins whatever is there). */
static void arm_named(tally *t, const struct tally_backend *ops,
		      struct tally__knobs *k)
{
	if (ops != t->ops)
		*k = (struct tally__knobs){.wait_ns = TALLY__WAIT_UNSET};
	tally__knobs_default(k, 1);
	k->life = t->knobs.life;
	t->knobs = *k;
	tally__arm(t);
	t->flags = TALLY_PSHARED;
	t->named = 1;
	t->creator = getpid();
}

int tally_open(tally **out, const char *name, const char *backend,
	       int64_t initial, unsigned flags)
{
	const struct tally_backend *ops = NULL;
	const char *options = NULL;
	struct tally__knobs k = {.wait_ns = TALLY__WAIT_UNSET};
	char path[NAMED_MAX + 32], buf[TALLY__OPTIONS_MAX];
	tally *t;
	int rc;

	tally__explain_clear();
	if (out == NULL || !valid_name(name) ||
	    (flags & ~(unsigned)(TALLY_CREATE | TALLY_EXCL)) != 0 ||
	    ((flags & TALLY_EXCL) && !(flags & TALLY_CREATE)))
		return TALLY_EINVAL;
	if (flags & TALLY_CREATE || backend != NULL) {
		rc = resolve_named(backend, &ops, &k, buf, sizeof(buf),
				   &options);
		if (rc != 0)
			return rc;
	}
	object_path(path, sizeof(path), name);
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return TALLY_ENOMEM;
	const struct tally_backend *want = backend != NULL ? ops : NULL;
	rc = open_or_create(t, path, ops, want, options, initial, flags);
	if (rc == 0)
		rc = tally__keep_about(t, name, tally__about_options(t));
	if (rc != 0) {
		tally__unplace(t);
		return rc;
	}
	arm_named(t, ops, &k);
	*out = t;
	return 0;
}

/* What TALLY_INLINE programs call tally_open (internal.h).  Here, beside
 * tally_open, so that the core's files depend one way: named.c uses
 * tally.c's resolve and detail, and tally.c uses nothing of named.c. */
int tally_open_inline1(tally **out, const char *name, const char *backend,
		       int64_t initial, unsigned flags)
{
	return tally_open(out, name, backend, initial, flags);
}

int tally_unlink(const char *name)
{
	char path[NAMED_MAX + 32];

	tally__explain_clear();
	if (!valid_name(name))
		return TALLY_EINVAL;
	object_path(path, sizeof(path), name);
	if (unlink(path) == 0)
		return 0;
	return errno == ENOENT ? TALLY_ENOTFOUND
			       : sys_fail("unlink", path, errno);
}
