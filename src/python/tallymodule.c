/* tally._tally, the C half of the `tally` Python package: tally's counters
 * from Python, over the C API (it includes tally.h and nothing else of
 * tally's).  src/python/tally/__init__.py is what users import. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "tally.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#ifdef Py_GIL_DISABLED
#include <stdatomic.h>
#endif

/*
 * Who uses a handle: the calls in flight on it, and USE_CLOSED once close()
 * took it away.  Under the GIL a plain word, changed only with the GIL held.
 * A free-threaded CPython (Py_GIL_DISABLED) runs adds on many threads at
 * once with no GIL: there it is atomic, so that close() on one thread never
 * frees the handle under an add on another, and concurrent adds take no
 * lock, only an atomic increment and decrement of this word each (the add's
 * own exactness is the library's: tally_add() is safe from any number of
 * threads).
 */
#define USE_CLOSED 0x80000000u
#ifdef Py_GIL_DISABLED
typedef _Atomic unsigned use_word;
#else
typedef unsigned use_word;
#endif

/*
 * One Python object per handle.  The handle is created in __init__ and
 * destroyed by close() or the deallocator, never while a call is using it
 * (use_begin() .. use_end()).
 */
typedef struct {
	PyObject_HEAD tally *t;
	PyObject *name;	     /* str for a named counter, else NULL */
	PyObject *auto_name; /* shared=True under an automatic name, or NULL */
	int shared;	 /* TALLY_PSHARED or named: other processes share it */
	int release_gil; /* drop the GIL around add (see counter_init) */
	int remote;	 /* and around get: TALLY_CAP_REMOTE */
	int locked;	 /* TALLY_CAP_LOCKED: an add may wait (add_locked) */
	int64_t wait_limit; /* tally_wait_limit(): add's default bound, ms */
	unsigned caps;	    /* its backend's TALLY_CAP_* (tally_describe()) */
	use_word use;	    /* see USE_CLOSED */
} CounterObject;

static PyObject *TallyError;	    /* tally.Error */
static PyObject *TallyTimeoutError; /* tally.TimeoutError */

/*
 * Raise tally.Error for a tally return code (tally.TimeoutError for
 * TALLY_ETIMEDOUT): str(e) is the library's message with the detail and the
 * error's name, e.errname its name ("TALLY_ENOBACKEND"), e.code the
 * negative code.
 */
static PyObject *raise_tally(int rc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static PyObject *raise_tally(int rc, const char *fmt, ...)
{
	PyObject *cls = rc == TALLY_ETIMEDOUT ? TallyTimeoutError : TallyError;
	char detail[1024] = "";
	PyObject *msg, *exc, *v;
	va_list ap;

	if (fmt != NULL) {
		va_start(ap, fmt);
		PyOS_vsnprintf(detail, sizeof(detail), fmt, ap);
		va_end(ap);
	}
	msg = PyUnicode_FromFormat("%s%s%s (%s)", tally_strerror(rc),
				   detail[0] ? ": " : "", detail,
				   tally_errname(rc));
	if (msg == NULL)
		return NULL;
	exc = PyObject_CallOneArg(cls, msg);
	Py_DECREF(msg);
	if (exc == NULL)
		return NULL;
	v = PyUnicode_FromString(tally_errname(rc));
	if (v == NULL || PyObject_SetAttrString(exc, "errname", v) < 0)
		goto fail;
	Py_DECREF(v);
	v = PyLong_FromLong(rc);
	if (v == NULL || PyObject_SetAttrString(exc, "code", v) < 0)
		goto fail;
	Py_DECREF(v);
	PyErr_SetObject(cls, exc);
	Py_DECREF(exc);
	return NULL;
fail:
	Py_XDECREF(v);
	Py_DECREF(exc);
	return NULL;
}

/* What the library says beyond tally_strerror(rc) (the system call, the
 * option, the holder), or "" when nothing more: read it right after the call
 * that failed, in its thread, before any other call into the library. */
static const char *explained(int rc)
{
	const char *d = tally_explain(rc);
	return d == tally_strerror(rc) ? "" : d;
}

/*
 * A user's string as a message repeats it: quoted, and past ECHO_CHARS
 * characters cut there and followed by its length, "'aaa...' (100000
 * characters)", so that no input makes a message unreadable.  Every string
 * the module echoes (a backend spec, a counter name) goes through here.  s is
 * UTF-8 from PyUnicode_AsUTF8AndSize, so characters are counted as Python's
 * len() does and the cut never splits one.
 */
#define ECHO_CHARS 64
#define ECHO_SIZE  (ECHO_CHARS * 4 + 48)
static const char *echo(char buf[ECHO_SIZE], const char *s)
{
	size_t chars = 0, cut = 0, i;

	for (i = 0; s[i] != '\0'; i++) {
		if (((unsigned char)s[i] & 0xC0) == 0x80)
			continue; /* a continuation byte */
		if (chars == ECHO_CHARS)
			cut = i;
		chars++;
	}
	if (chars <= ECHO_CHARS)
		snprintf(buf, ECHO_SIZE, "'%s'", s);
	else
		snprintf(buf, ECHO_SIZE, "'%.*s...' (%zu characters)", (int)cut,
			 s, chars);
	return buf;
}

/* "none, mutex, ..." for the message of an unknown backend. */
static void known_backends(char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < tally_backend_count() && used < size; i++) {
		tally_backend_info b;
		if (tally_backend_at(i, &b) != 0)
			continue;
		int n = snprintf(buf + used, size - used, "%s%s",
				 used ? ", " : "", b.name);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static void use_end(CounterObject *self)
{
#ifdef Py_GIL_DISABLED
	atomic_fetch_sub_explicit(&self->use, 1, memory_order_release);
#else
	self->use--;
#endif
}

/* Start a call that uses self->t: 0, or -1 with ValueError when the counter
 * is closed (or was never initialized), as Python's files do.  Acquire: the
 * handle that __init__ stored is seen whole. */
static int use_begin(CounterObject *self)
{
#ifdef Py_GIL_DISABLED
	unsigned was =
		atomic_fetch_add_explicit(&self->use, 1, memory_order_acquire);
#else
	unsigned was = self->use++;
#endif
	if (!(was & USE_CLOSED) && self->t != NULL)
		return 0;
	use_end(self);
	PyErr_SetString(PyExc_ValueError,
			"operation on a closed tally.Counter");
	return -1;
}

/* close()'s side: take the handle away when no call uses it.  1: taken
 * (destroy it now), 0: closed already, -1: a call is using it. */
static int use_close(CounterObject *self)
{
#ifdef Py_GIL_DISABLED
	unsigned idle = 0;

	if (atomic_compare_exchange_strong_explicit(
		    &self->use, &idle, USE_CLOSED, memory_order_acq_rel,
		    memory_order_acquire))
		return 1;
	return (idle & USE_CLOSED) ? 0 : -1;
#else
	if (self->use & USE_CLOSED)
		return 0;
	if (self->use != 0)
		return -1;
	self->use = USE_CLOSED;
	return 1;
#endif
}

/* A check only: the counter is open. */
static int check_open(CounterObject *self)
{
	if (use_begin(self) < 0)
		return -1;
	use_end(self);
	return 0;
}

/* `delta` or `initial`: any int that fits in int64, never a float or bool
 * (True would silently add 1). */
static int to_i64(PyObject *o, const char *what, int64_t *out)
{
	long long v;
	int overflow = 0;

	if (!PyLong_Check(o) || PyBool_Check(o)) {
		PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s",
			     what, Py_TYPE(o)->tp_name);
		return -1;
	}
	v = PyLong_AsLongLongAndOverflow(o, &overflow);
	if (overflow != 0) {
		PyErr_Format(PyExc_OverflowError,
			     "%s must fit in a signed 64-bit integer", what);
		return -1;
	}
	if (v == -1 && PyErr_Occurred())
		return -1;
	*out = (int64_t)v;
	return 0;
}

/* shared=, create=, exclusive=: True or False only.  Anything else is
 * refused rather than judged by truth: create="False" must not create. */
static int to_flag(PyObject *o, const char *what, int *out)
{
	if (!PyBool_Check(o)) {
		PyErr_Format(PyExc_TypeError,
			     "%s must be a bool (True or False), not %.100s",
			     what, Py_TYPE(o)->tp_name);
		return -1;
	}
	*out = o == Py_True;
	return 0;
}

/* A str argument (or None, handled by the caller) as UTF-8 without NULs. */
static int to_cstr(PyObject *o, const char *what, const char **out)
{
	Py_ssize_t len;
	const char *s;

	if (!PyUnicode_Check(o)) {
		PyErr_Format(PyExc_TypeError,
			     "%s must be a str or None, not %.100s", what,
			     Py_TYPE(o)->tp_name);
		return -1;
	}
	s = PyUnicode_AsUTF8AndSize(o, &len);
	if (s == NULL)
		return -1;
	if (strlen(s) != (size_t)len) {
		PyErr_Format(PyExc_ValueError, "%s contains a NUL character",
			     what);
		return -1;
	}
	*out = s;
	return 0;
}

/* How __init__ reports a counter it could not make or open: the library's
 * message, what was asked for, and what the library says more (owner and
 * mode, the other backend, the system call), read in the thread, right after
 * the call that failed. */
static void raise_init(int rc, const char *backend, const char *name,
		       const char *auto_name, int create, int shared)
{
	char known[512], b[ECHO_SIZE], n[ECHO_SIZE], shown[ECHO_SIZE];
	const char *d = explained(rc), *sep = d[0] ? ": " : "";
	/* Never a password (tally_backend_redact()); a spec without a URL
	 * as it is, so that echo() counts all of it. */
	const char *bs = backend == NULL ? "(default)"
			 : strstr(backend, "://") == NULL
				 ? echo(b, backend)
				 : echo(b, tally_backend_redact(backend, shown,
								sizeof(shown)));

	if (rc == TALLY_ENOBACKEND) {
		known_backends(known, sizeof(known));
		raise_tally(rc, "%s (known: %s)",
			    backend ? bs : "(from $TALLY_BACKEND)", known);
	} else if (auto_name != NULL && !create) {
		raise_tally(
			rc,
			"the shared counter '%s' (made by another process of this program, and removed when it closed the counter or exited)%s%s",
			auto_name, sep, d);
	} else if (name != NULL && !create) {
		raise_tally(rc, "counter %s%s%s", echo(n, name), sep, d);
	} else if (name != NULL) {
		raise_tally(rc, "counter %s, backend %s%s%s", echo(n, name), bs,
			    sep, d);
	} else {
		raise_tally(rc, "backend %s%s%s%s", bs,
			    shared ? ", shared=True" : "", sep, d);
	}
}

/*
 * shared=True under an automatic name (tally/__init__.py chooses it), so that
 * the counter reaches every process it is pickled to: spawn and forkserver
 * children, pool workers.  create: made, exclusively; or, for a backend that
 * cannot be named (a queue lock whose nodes are pointers, a server), the
 * anonymous shared counter that tally_create(TALLY_PSHARED) makes, which
 * only forked children share: *named says which.  !create: joined (the
 * unpickling side).
 */
static int open_auto(tally **t, const char *auto_name, const char *backend,
		     int64_t initial, int create, int *named)
{
	PyThreadState *ts = PyEval_SaveThread();
	int rc;

	*named = 1;
	rc = tally_open(t, auto_name, backend, initial,
			create ? TALLY_CREATE | TALLY_EXCL : 0u);
	if (rc == TALLY_EUNSUPPORTED && create) {
		*named = 0;
		rc = tally_create(t, backend, initial, TALLY_PSHARED);
	}
	PyEval_RestoreThread(ts);
	return rc;
}

/* What Counter.__init__ was given, checked. */
struct init_args {
	PyObject *name_o, *auto_o;		/* Py_None when not given */
	const char *backend, *name, *auto_name; /* NULL when not given */
	int64_t initial;
	int shared, create, exclusive;
};

/* Counter(backend=None, initial=0, shared=False, name=None, create=True,
 *         exclusive=False, *, _auto=None): the arguments into *a, checked
 * against each other.  0, or -1 with an exception set. */
static int parse_init_args(PyObject *args, PyObject *kwds, struct init_args *a)
{
	static char *kwlist[] = {"backend", "initial",	 "shared", "name",
				 "create",  "exclusive", "_auto",  NULL};
	PyObject *backend_o = Py_None, *initial_o = NULL;
	PyObject *shared_o = Py_False, *create_o = Py_True;
	PyObject *exclusive_o = Py_False;

	*a = (struct init_args){.name_o = Py_None, .auto_o = Py_None};
	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOOOOO$O:Counter",
					 kwlist, &backend_o, &initial_o,
					 &shared_o, &a->name_o, &create_o,
					 &exclusive_o, &a->auto_o))
		return -1;
	if (to_flag(shared_o, "shared", &a->shared) < 0 ||
	    to_flag(create_o, "create", &a->create) < 0 ||
	    to_flag(exclusive_o, "exclusive", &a->exclusive) < 0)
		return -1;
	if (backend_o != Py_None &&
	    to_cstr(backend_o, "backend", &a->backend) < 0)
		return -1;
	if (initial_o != NULL && to_i64(initial_o, "initial", &a->initial) < 0)
		return -1;
	if (a->name_o != Py_None && to_cstr(a->name_o, "name", &a->name) < 0)
		return -1;
	if (a->auto_o != Py_None &&
	    to_cstr(a->auto_o, "_auto", &a->auto_name) < 0)
		return -1;
	if (a->auto_name != NULL &&
	    (!a->shared || a->name != NULL || a->exclusive)) {
		PyErr_SetString(
			PyExc_ValueError,
			"_auto (the tally package's own) needs shared=True, no name and no exclusive");
		return -1;
	}
	if (a->exclusive && !a->create) {
		PyErr_SetString(PyExc_ValueError,
				"exclusive=True needs create=True");
		return -1;
	}
	if (a->name == NULL && a->auto_name == NULL &&
	    (!a->create || a->exclusive)) {
		PyErr_SetString(
			PyExc_ValueError,
			"create and exclusive apply to named counters only (pass name=)");
		return -1;
	}
	return 0;
}

/* Make or join the counter *a asks for: by name, under the package's
 * automatic name (*named: whether it could be named), or anonymous.  0, or
 * -1 with an exception set. */
static int open_counter(const struct init_args *a, tally **t, int *named)
{
	int rc;

	*named = 0;
	if (a->name != NULL) {
		unsigned flags = (a->create ? TALLY_CREATE : 0u) |
				 (a->exclusive ? TALLY_EXCL : 0u);
		PyThreadState *ts = PyEval_SaveThread();

		/* A named counter is never waited for, but the open makes
		 * system calls: let other threads run. */
		rc = tally_open(t, a->name, a->backend, a->initial, flags);
		PyEval_RestoreThread(ts);
	} else if (a->auto_name != NULL) {
		rc = open_auto(t, a->auto_name, a->backend, a->initial,
			       a->create, named);
	} else {
		rc = tally_create(t, a->backend, a->initial,
				  a->shared ? TALLY_PSHARED : 0u);
	}
	if (rc < 0) {
		raise_init(rc, a->backend, a->name, a->auto_name, a->create,
			   a->shared);
		return -1;
	}
	return 0;
}

/* The handle t becomes self's, with what its description says it can do.
 * 0, or -1 with an exception set (t is destroyed). */
static int adopt(CounterObject *self, tally *t, const struct init_args *a,
		 int named)
{
	tally_handle_info info;

	/* The handle's own description: what it can do, by its bits. */
	if (tally_describe(t, &info) != 0) {
		tally_destroy(t);
		PyErr_SetString(PyExc_SystemError,
				"tally_describe() refused a handle it made");
		return -1;
	}
	self->t = t;
#ifdef Py_GIL_DISABLED
	atomic_store_explicit(&self->use, 0, memory_order_release);
#else
	self->use = 0; /* closed before, and initialized again */
#endif
	self->shared = (info.flags & TALLY_PSHARED) != 0;
	Py_CLEAR(self->name); /* an earlier __init__'s, closed since */
	Py_CLEAR(self->auto_name);
	Py_XINCREF(a->name != NULL ? a->name_o : NULL);
	self->name = a->name != NULL ? a->name_o : NULL;
	Py_XINCREF(named ? a->auto_o : NULL);
	self->auto_name = named ? a->auto_o : NULL;
	/*
	 * A lock-free or racy add is one instruction or a few nanoseconds:
	 * keep the GIL, since dropping and taking it again would cost more
	 * than the add (bench/python_counter.py measures both).  Any other
	 * backend may wait for a lock, a peer process or a server: drop the
	 * GIL so that the process's other threads run meanwhile.
	 */
	self->wait_limit = info.wait_ms;
	self->caps = info.caps;
	self->remote = (info.caps & TALLY_CAP_REMOTE) != 0;
	self->locked = (info.caps & TALLY_CAP_LOCKED) != 0;
	self->release_gil =
		!(info.caps & (TALLY_CAP_LOCKFREE | TALLY_CAP_RACY)) ||
		self->remote;
	return 0;
}

static int counter_init(CounterObject *self, PyObject *args, PyObject *kwds)
{
	struct init_args a;
	tally *t = NULL;
	int named;

	if (self->t != NULL) {
		PyErr_SetString(PyExc_RuntimeError,
				"tally.Counter is already initialized");
		return -1;
	}
	if (parse_init_args(args, kwds, &a) != 0 ||
	    open_counter(&a, &t, &named) != 0)
		return -1;
	return adopt(self, t, &a, named);
}

static void counter_dealloc(CounterObject *self)
{
	/* No call is in flight here: every one holds a reference. */
	if (use_close(self) == 1)
		tally_destroy(self->t);
	self->t = NULL;
	Py_CLEAR(self->name);
	Py_CLEAR(self->auto_name);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* add()'s arguments: delta=1 positional or by keyword, timeout= by keyword
 * only (add(1, 2) stays an error).  Vectorcall, not PyArg_Parse*: add is the
 * call a program makes millions of times. */
static int add_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
		    PyObject **delta, PyObject **timeout)
{
	Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;

	if (nargs > 1) {
		PyErr_Format(
			PyExc_TypeError,
			"add() takes at most 1 positional argument (%zd given)",
			nargs);
		return -1;
	}
	*delta = nargs == 1 ? args[0] : NULL;
	*timeout = NULL;
	for (Py_ssize_t i = 0; i < nkw; i++) {
		PyObject *k = PyTuple_GET_ITEM(kwnames, i), **slot;

		if (PyUnicode_CompareWithASCIIString(k, "delta") == 0) {
			slot = delta;
		} else if (PyUnicode_CompareWithASCIIString(k, "timeout") ==
			   0) {
			slot = timeout;
		} else {
			/* The keyword is not echoed: it could be any size. */
			PyErr_SetString(
				PyExc_TypeError,
				"add() takes only delta and timeout= as keywords");
			return -1;
		}
		if (*slot != NULL) {
			PyErr_SetString(PyExc_TypeError,
					"add() got delta twice");
			return -1;
		}
		*slot = args[nargs + i];
	}
	return 0;
}

/* timeout=: None (-1 here: the handle's own bound) or seconds > 0, in ms. */
static int to_timeout_ms(PyObject *o, double *ms)
{
	double s;

	*ms = -1;
	if (o == NULL || o == Py_None)
		return 0;
	if (PyBool_Check(o) || !(PyFloat_Check(o) || PyLong_Check(o))) {
		PyErr_Format(
			PyExc_TypeError,
			"timeout must be a number of seconds or None, not %.100s",
			Py_TYPE(o)->tp_name);
		return -1;
	}
	s = PyFloat_AsDouble(o);
	if (s == -1.0 && PyErr_Occurred())
		return -1;
	if (!(s > 0) || !isfinite(s)) {
		PyErr_SetString(
			PyExc_ValueError,
			"timeout must be a finite number of seconds above 0, or None (the counter's own bound)");
		return -1;
	}
	*ms = s * 1000.0;
	return 0;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/*
 * How long one wait for a lock lasts before add() takes the GIL again to
 * run signal handlers: Ctrl-C is answered within this.  Short enough to feel
 * immediate, long enough that a waiter costs nothing noticeable.
 */
#define ADD_SLICE_MS 100
/* add_locked()'s return when a signal handler raised (KeyboardInterrupt). */
#define ADD_INTERRUPTED INT32_MIN

/*
 * The add on a backend with a lock.  First one try that only takes a free
 * lock (tally_add_wait(t, delta, 0)), the GIL dropped or kept as
 * _release_gil says, as tally_add() did: an uncontended add costs what it
 * did, where a wait bound would make some backends take a timed path (a
 * mutex's timedlock, a clock read).  Only when that finds the lock taken:
 * tally_add_wait() in slices of ADD_SLICE_MS with the GIL released, and
 * between slices the GIL taken to run signal handlers, until the lock is
 * taken, an error, a handler raises (nothing added: a slice that times out
 * adds nothing), or limit_ms (0: no bound) has passed, which returns
 * TALLY_ETIMEDOUT with *waited_ms.
 * The caller's use_begin() covers every slice and handler: close() from a
 * handler, or another thread, refuses while this call uses the handle.
 */
static int add_locked(CounterObject *self, int64_t delta, double limit_ms,
		      double *waited_ms)
{
	tally *t = self->t;
	double start, left = limit_ms;
	int64_t wait;
	PyThreadState *ts;
	int rc;

	*waited_ms = 0;
	if (self->release_gil) {
		ts = PyEval_SaveThread();
		rc = tally_add_wait(t, delta, 0);
		PyEval_RestoreThread(ts);
	} else {
		rc = tally_add_wait(t, delta, 0);
	}
	start = rc == TALLY_ETIMEDOUT ? now_ms() : 0;
	while (rc == TALLY_ETIMEDOUT) {
		if (PyErr_CheckSignals() < 0) {
			rc = ADD_INTERRUPTED;
			break;
		}
		wait = ADD_SLICE_MS;
		if (limit_ms > 0 && left < ADD_SLICE_MS)
			wait = (int64_t)ceil(left);
		ts = PyEval_SaveThread();
		rc = tally_add_wait(t, delta, wait);
		PyEval_RestoreThread(ts);
		if (rc != TALLY_ETIMEDOUT)
			break;
		*waited_ms = now_ms() - start;
		left = limit_ms - *waited_ms;
		if (limit_ms > 0 && left <= 0)
			break; /* tally_explain() is still this slice's */
	}
	return rc;
}

/*
 * The library explains a timeout by the wait it was given ("the spin lock
 * was not taken in 0.100 s; ...  It is held by a live process"): the last
 * slice's.  Say the whole wait instead: the first " in N.NNN s" becomes the
 * total; a text without one is kept whole after the total.
 */
static void timeout_text(char *buf, size_t size, const char *d,
			 double waited_ms)
{
	const char *p = d;

	while ((p = strstr(p, " in ")) != NULL) {
		const char *q = p + 4;
		size_t n = strspn(q, "0123456789.");
		if (n > 0 && strncmp(q + n, " s", 2) == 0) {
			snprintf(buf, size, "%.*s in %.3f s%s", (int)(p - d), d,
				 waited_ms / 1e3, q + n + 2);
			return;
		}
		p = q;
	}
	snprintf(buf, size, "waited %.3f s in all%s%s", waited_ms / 1e3,
		 d[0] ? ": " : "", d);
}

/* tally.Error for a failed add: what the library says of it (the server's
 * reply, the key and what it holds, the lock's holder), read right after the
 * call, in its thread. */
static void add_failed(CounterObject *self, int rc, int64_t delta,
		       double waited_ms)
{
	const char *d = explained(rc);

	if (rc == TALLY_ETIMEDOUT) {
		char text[400];

		timeout_text(text, sizeof(text), d, waited_ms);
		raise_tally(rc, "add(%lld) on backend '%s': %s",
			    (long long)delta, tally_backend_name(self->t),
			    text);
		return;
	}
	raise_tally(rc, "add(%lld) on backend '%s'%s%s", (long long)delta,
		    tally_backend_name(self->t), d[0] ? ": " : "", d);
}

static PyObject *counter_add(CounterObject *self, PyObject *const *args,
			     Py_ssize_t nargs, PyObject *kwnames)
{
	PyObject *delta_o, *timeout_o;
	double limit_ms, waited_ms = 0;
	int64_t delta = 1;
	int rc;

	if (add_args(args, nargs, kwnames, &delta_o, &timeout_o) < 0)
		return NULL;
	if (delta_o != NULL && to_i64(delta_o, "delta", &delta) < 0)
		return NULL;
	if (to_timeout_ms(timeout_o, &limit_ms) < 0)
		return NULL;
	if (use_begin(self) < 0)
		return NULL;
#ifdef TALLY_PY_BUSTED_ADD
	/* The must-fail build only (tests/python.cmake): every 1000th add
	 * returns as done, having added nothing, to show that the Python
	 * suite's exact counts catch a module that loses adds. */
	static unsigned busted;
	if (++busted % 1000 == 0) {
		use_end(self);
		Py_RETURN_NONE;
	}
#endif
	if (self->locked) {
		if (limit_ms < 0)
			limit_ms = (double)self->wait_limit;
		rc = add_locked(self, delta, limit_ms, &waited_ms);
	} else if (self->release_gil) { /* no lock: a server, maybe */
		tally *t = self->t;
		PyThreadState *ts = PyEval_SaveThread();

		rc = tally_add(t, delta);
		PyEval_RestoreThread(ts);
	} else {
		rc = tally_add(self->t, delta);
	}
	if (rc >= 0) {
		use_end(self);
		Py_RETURN_NONE;
	}
	if (rc != ADD_INTERRUPTED)
		add_failed(self, rc, delta, waited_ms);
	use_end(self);
	return NULL;
}

static PyObject *counter_get_value(CounterObject *self, void *closure)
{
	int64_t v = 0;
	int rc;

	(void)closure;
	if (use_begin(self) < 0)
		return NULL;
	if (self->remote) { /* never waits for a lock; a server, maybe */
		tally *t = self->t;
		PyThreadState *ts = PyEval_SaveThread();

		rc = tally_get(t, &v);
		PyEval_RestoreThread(ts);
	} else {
		rc = tally_get(self->t, &v);
	}
	if (rc < 0) {
		const char *d = explained(rc);

		raise_tally(rc, "reading the counter on backend '%s'%s%s",
			    tally_backend_name(self->t), d[0] ? ": " : "", d);
		use_end(self);
		return NULL;
	}
	use_end(self);
	return PyLong_FromLongLong((long long)v);
}

/* Counter.flush(): tally_flush(), without the GIL where it may wait. */
static PyObject *counter_flush(CounterObject *self, PyObject *unused)
{
	int rc;

	(void)unused;
	if (use_begin(self) < 0)
		return NULL;
	if (self->remote) {
		tally *t = self->t;
		PyThreadState *ts = PyEval_SaveThread();

		rc = tally_flush(t);
		PyEval_RestoreThread(ts);
	} else {
		rc = tally_flush(self->t);
	}
	if (rc < 0) {
		const char *d = explained(rc);

		raise_tally(rc, "flushing the counter on backend '%s'%s%s",
			    tally_backend_name(self->t), d[0] ? ": " : "", d);
		use_end(self);
		return NULL;
	}
	use_end(self);
	Py_RETURN_NONE;
}

static PyObject *counter_close(CounterObject *self, PyObject *unused)
{
	int taken = use_close(self);

	(void)unused;
	if (taken < 0) {
		PyErr_SetString(
			PyExc_RuntimeError,
			"tally.Counter.close() while another thread is still using it");
		return NULL;
	}
	if (taken > 0)
		tally_destroy(self->t);
	self->t = NULL;
	Py_RETURN_NONE;
}

static PyObject *counter_enter(CounterObject *self, PyObject *unused)
{
	(void)unused;
	if (check_open(self) < 0)
		return NULL;
	return Py_NewRef((PyObject *)self);
}

static PyObject *counter_exit(CounterObject *self, PyObject *args)
{
	(void)args;
	return counter_close(self, NULL);
}

/*
 * Pickling, which multiprocessing's spawn and forkserver start methods use
 * to hand a counter to a child: a named counter travels as its name and is
 * opened again there; any other would arrive as a separate, unshared copy,
 * so it refuses, and says what to do instead.
 */
static PyObject *counter_reduce(CounterObject *self, PyObject *unused)
{
	(void)unused;
	if (check_open(self) < 0)
		return NULL;
	if (self->auto_name != NULL) { /* tally.Counter.__reduce__'s */
		PyErr_SetString(PyExc_TypeError,
				"pickle a tally.Counter, not its C base");
		return NULL;
	}
	if (self->name == NULL && self->shared &&
	    (self->caps & TALLY_CAP_NAMED)) { /* made by the C base itself */
		PyErr_SetString(
			PyExc_TypeError,
			"this shared counter was made without a name (by tally._tally.Counter): make it with tally.Counter(..., shared=True), which names it so that it can be pickled");
		return NULL;
	}
	if (self->name == NULL && self->shared) {
		PyErr_Format(
			PyExc_TypeError,
			"this shared tally.Counter (backend '%s', which cannot be named) reaches only processes forked from this one, by inheritance: pass it to multiprocessing.Process under the 'fork' start method.  It cannot be pickled, as the spawn and forkserver start methods do with a Process's arguments, and pools with every task's.  A backend that can be named (tally.backends() lists 'named' among its capabilities, e.g. 'mutex') makes shared=True counters that reach every process",
			tally_backend_name(self->t));
		return NULL;
	}
	if (self->name == NULL) {
		PyErr_SetString(
			PyExc_TypeError,
			"a tally.Counter that is not shared cannot be pickled: the other process would get a separate counter.  Make it with shared=True (it then reaches processes of every start method, and pool workers) or name=... (other programs too)");
		return NULL;
	}
	/* Counter(None, 0, True, name, create=False) */
	return Py_BuildValue("(O(OiOOO))", (PyObject *)Py_TYPE(self), Py_None,
			     0, Py_True, self->name, Py_False);
}

static PyObject *counter_get_backend(CounterObject *self, void *closure)
{
	PyObject *r;

	(void)closure;
	if (use_begin(self) < 0)
		return NULL;
	r = PyUnicode_FromString(tally_backend_name(self->t));
	use_end(self);
	return r;
}

/* (backend, caps, shared, named, wait_ms, path, name, options):
 * tally_describe(), for
 * tally.Counter.describe(). */
static PyObject *counter_describe(CounterObject *self, PyObject *unused)
{
	tally_handle_info d;
	int rc;

	(void)unused;
	if (use_begin(self) < 0)
		return NULL;
	rc = tally_describe(self->t, &d);
	use_end(self);
	if (rc < 0)
		return raise_tally(rc, "describing the counter");
	return Py_BuildValue("(sIOOLzzs)", d.backend, d.caps,
			     (d.flags & TALLY_PSHARED) ? Py_True : Py_False,
			     d.named ? Py_True : Py_False, (long long)d.wait_ms,
			     d.path, d.name, d.options);
}

static PyObject *counter_get_auto_name(CounterObject *self, void *closure)
{
	(void)closure;
	return Py_NewRef(self->auto_name != NULL ? self->auto_name : Py_None);
}

static PyObject *counter_get_name(CounterObject *self, void *closure)
{
	(void)closure;
	return Py_NewRef(self->name != NULL ? self->name : Py_None);
}

static PyObject *counter_get_closed(CounterObject *self, void *closure)
{
	(void)closure;
	if (use_begin(self) < 0) {
		PyErr_Clear();
		Py_RETURN_TRUE;
	}
	use_end(self);
	Py_RETURN_FALSE;
}

static PyObject *counter_get_shared(CounterObject *self, void *closure)
{
	(void)closure;
	return PyBool_FromLong(self->shared);
}

static PyObject *counter_get_release_gil(CounterObject *self, void *closure)
{
	(void)closure;
	return PyBool_FromLong(self->release_gil);
}

static int counter_set_release_gil(CounterObject *self, PyObject *v,
				   void *closure)
{
	(void)closure;
	if (v == NULL || !PyBool_Check(v)) {
		PyErr_SetString(PyExc_TypeError, "_release_gil must be a bool");
		return -1;
	}
	self->release_gil = v == Py_True;
	return 0;
}

static PyObject *counter_repr(CounterObject *self)
{
	PyObject *r;

	if (use_begin(self) < 0) {
		PyErr_Clear();
		return PyUnicode_FromString("<tally.Counter closed>");
	}
	if (self->name != NULL)
		r = PyUnicode_FromFormat("<tally.Counter backend='%s' name=%R>",
					 tally_backend_name(self->t),
					 self->name);
	else
		r = PyUnicode_FromFormat("<tally.Counter backend='%s'%s>",
					 tally_backend_name(self->t),
					 self->shared ? " shared" : "");
	use_end(self);
	return r;
}

static PyMethodDef counter_methods[] = {
	{"add", (PyCFunction)(void (*)(void))counter_add,
	 METH_FASTCALL | METH_KEYWORDS,
	 "add(delta=1, *, timeout=None)\n--\n\n"
	 "Add delta (an int that fits in 64 bits; negative subtracts).  Wraps modulo 2**64.\n"
	 "On a backend with a lock, waits for it at most timeout seconds (a number above 0), or with None the counter's own bound: the backend option wait_ms=N (0: no bound), else tally.DEFAULT_WAIT_MS on a shared or named counter and no bound on a private one.  Past it, raises tally.TimeoutError (also a TimeoutError) and adds nothing.  The GIL is released while it waits, and signal handlers run every 0.1 s: Ctrl-C raises KeyboardInterrupt, and nothing was added.  A lock whose holder died is taken over (the add succeeds) or reported with tally.Error (TALLY_ENOTRECOVERABLE).  Lock-free backends never wait.  Raises tally.Error when the backend fails; str(e) carries the library's explanation."},
	{"flush", (PyCFunction)counter_flush, METH_NOARGS,
	 "flush()\n--\n\nWait until every add this process made before the call is applied (tally_flush(3)); raises tally.Error when some could not be, saying how much."},
	{"close", (PyCFunction)counter_close, METH_NOARGS,
	 "close()\n--\n\nRelease the counter (a named one stays until tally.unlink()).  Calling it again does nothing.  Refused with RuntimeError while another thread is inside add() on it."},
	{"_describe", (PyCFunction)counter_describe, METH_NOARGS,
	 "_describe()\n--\n\ntally_describe() as (backend, caps, shared, named, wait_ms, path, name, options); tally.Counter.describe() names them."},
	{"__enter__", (PyCFunction)counter_enter, METH_NOARGS,
	 "__enter__()\n--\n\nThe counter itself, for a with block that closes it."},
	{"__exit__", (PyCFunction)counter_exit, METH_VARARGS,
	 "__exit__(*exc_info)\n--\n\nclose() the counter."},
	{"__reduce__", (PyCFunction)counter_reduce, METH_NOARGS,
	 "__reduce__()\n--\n\nPickling: a named counter travels as its name and is opened again where it is unpickled; a counter that other processes could not reach so refuses, saying what to do."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef counter_getset[] = {
	{"value", (getter)counter_get_value, NULL,
	 "The counter's current value (an int).", NULL},
	{"backend", (getter)counter_get_backend, NULL,
	 "The backend's name, e.g. 'atomic'.", NULL},
	{"name", (getter)counter_get_name, NULL,
	 "The named counter's name, or None.", NULL},
	{"shared", (getter)counter_get_shared, NULL,
	 "Whether processes forked after creation share it.", NULL},
	{"closed", (getter)counter_get_closed, NULL,
	 "Whether close() was called.", NULL},
	{"_auto_name", (getter)counter_get_auto_name, NULL,
	 "Internal: the name under a shared=True counter, or None.", NULL},
	{"_release_gil", (getter)counter_get_release_gil,
	 (setter)counter_set_release_gil,
	 "Internal, for benchmarks: drop the GIL around add.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(
	counter_doc,
	"Counter(backend=None, initial=0, shared=False, name=None, create=True, exclusive=False)\n--\n\n"
	"A tally counter.  backend: a name such as 'atomic' or 'mutex', or 'NAME:OPTIONS' (e.g. 'spin:wait_ms=2000', how long an add waits for the lock); None means $TALLY_BACKEND, else 'atomic'.\n"
	"shared=True: processes forked after creation (multiprocessing's fork start method) share it.\n"
	"name='jobs': a named counter in POSIX shared memory that separate processes open by name (the spawn start method, or another program); create=False only opens an existing one, exclusive=True only creates.\n"
	"shared, create and exclusive take only True or False (TypeError otherwise).  Use as a context manager, or call close().");

static PyTypeObject CounterType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tally._tally.Counter",
	.tp_basicsize = sizeof(CounterObject),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = counter_doc,
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)counter_init,
	.tp_dealloc = (destructor)counter_dealloc,
	.tp_repr = (reprfunc)counter_repr,
	.tp_methods = counter_methods,
	.tp_getset = counter_getset,
};

static PyObject *mod_unlink(PyObject *mod, PyObject *arg)
{
	const char *name;
	int rc;

	(void)mod;
	if (to_cstr(arg, "name", &name) < 0)
		return NULL;
	rc = tally_unlink(name);
	if (rc < 0) {
		char n[ECHO_SIZE];
		const char *d = explained(rc);

		return raise_tally(rc, "counter %s%s%s", echo(n, name),
				   d[0] ? ": " : "", d);
	}
	Py_RETURN_NONE;
}

/* [(name, summary, caps, built_in), ...] in registry order. */
static PyObject *mod_backends(PyObject *mod, PyObject *unused)
{
	PyObject *list = PyList_New(0);

	(void)mod;
	(void)unused;
	if (list == NULL)
		return NULL;
	for (size_t i = 0; i < tally_backend_count(); i++) {
		tally_backend_info b;
		if (tally_backend_at(i, &b) != 0)
			continue;
		PyObject *item =
			Py_BuildValue("(ssIO)", b.name, b.summary, b.caps,
				      b.built_in ? Py_True : Py_False);
		if (item == NULL || PyList_Append(list, item) < 0) {
			Py_XDECREF(item);
			Py_DECREF(list);
			return NULL;
		}
		Py_DECREF(item);
	}
	return list;
}

static PyMethodDef module_methods[] = {
	{"unlink", mod_unlink, METH_O,
	 "unlink(name)\n--\n\nRemove the named counter; open handles keep working."},
	{"backends", mod_backends, METH_NOARGS,
	 "backends()\n--\n\nEvery known backend as (name, summary, caps, built_in)."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef tally_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "tally._tally",
	.m_doc = "The C half of the tally package (import tally, not this).",
	.m_size = -1,
	.m_methods = module_methods,
};

static int add_constants(PyObject *m)
{
#define TALLY__PY_ERR(name, value, msg)                                        \
	if (PyModule_AddIntConstant(m, #name, value) < 0)                      \
		return -1;
	TALLY_ERRNO_MAP(TALLY__PY_ERR)
#undef TALLY__PY_ERR
#define TALLY__PY_CAP(name, bit, str, meaning)                                 \
	if (PyModule_AddIntConstant(m, "CAP_" #name, TALLY_CAP_##name) < 0)    \
		return -1;
	TALLY_CAPS_MAP(TALLY__PY_CAP)
#undef TALLY__PY_CAP
	if (PyModule_AddIntConstant(m, "DEFAULT_WAIT_MS",
				    TALLY_DEFAULT_WAIT_MS) < 0)
		return -1;
	return PyModule_AddStringConstant(m, "version", tally_version());
}

PyMODINIT_FUNC PyInit__tally(void);
PyMODINIT_FUNC PyInit__tally(void)
{
	PyObject *m, *bases;

	if (PyType_Ready(&CounterType) < 0)
		return NULL;
	m = PyModule_Create(&tally_module);
	if (m == NULL)
		return NULL;
#ifdef Py_GIL_DISABLED
	/* A free-threaded CPython runs this module without the GIL: nothing
	 * in it relies on the GIL for correctness (a handle's users are
	 * counted atomically, see use_word; the library is thread-safe; the
	 * module's objects are made here, once). */
	if (PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED) < 0)
		goto fail;
#endif
	TallyError = PyErr_NewExceptionWithDoc(
		"tally.Error",
		"A tally library error: str(e) says what failed, e.errname is the error's name (e.g. 'TALLY_ENOBACKEND'), e.code its negative number (tally.ENOBACKEND).",
		NULL, NULL);
	if (TallyError == NULL ||
	    PyModule_AddObjectRef(m, "Error", TallyError) < 0)
		goto fail;
	/* Both a tally.Error (e.errname, e.code) and the builtin
	 * TimeoutError, which code that bounds waits already catches. */
	bases = PyTuple_Pack(2, TallyError, PyExc_TimeoutError);
	if (bases == NULL)
		goto fail;
	TallyTimeoutError = PyErr_NewExceptionWithDoc(
		"tally.TimeoutError",
		"An add that did not take the counter's lock within its wait bound (Counter.add's timeout, or the handle's own): nothing was added.  A tally.Error (e.errname 'TALLY_ETIMEDOUT') and a builtin TimeoutError.",
		bases, NULL);
	Py_DECREF(bases);
	if (TallyTimeoutError == NULL ||
	    PyModule_AddObjectRef(m, "TimeoutError", TallyTimeoutError) < 0 ||
	    PyModule_AddObjectRef(m, "Counter", (PyObject *)&CounterType) < 0 ||
	    add_constants(m) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
