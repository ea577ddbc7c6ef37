/* The `tally` Python module: tally's counters from Python, over the C API. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "tally.h"

#include <stdint.h>
#include <string.h>

/*
 * One Python object per handle.  The handle is created in __init__ and
 * destroyed by close() or the deallocator, never while an add or get that
 * released the GIL is still running in another thread (`busy` counts them,
 * and is only touched with the GIL held).
 */
typedef struct {
	PyObject_HEAD tally *t;
	PyObject *name;	 /* str for a named counter, else NULL */
	int shared;	 /* TALLY_PSHARED or named: forked children share it */
	int release_gil; /* drop the GIL around add (see counter_init) */
	int remote;	 /* and around get: TALLY_CAP_REMOTE */
	unsigned busy;	 /* calls running without the GIL */
} CounterObject;

static PyObject *TallyError; /* tally.Error */

/*
 * Raise tally.Error for a tally return code: str(e) is the library's
 * message with the detail and the error's name, e.errname its name
 * ("TALLY_ENOBACKEND"), e.code the negative code.
 */
static PyObject *raise_tally(int rc, const char *fmt, ...)
{
	char detail[512] = "";
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
	exc = PyObject_CallOneArg(TallyError, msg);
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
	PyErr_SetObject(TallyError, exc);
	Py_DECREF(exc);
	return NULL;
fail:
	Py_XDECREF(v);
	Py_DECREF(exc);
	return NULL;
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

/* ValueError for a counter used after close(), as Python's files do. */
static int check_open(CounterObject *self)
{
	if (self->t != NULL)
		return 0;
	PyErr_SetString(PyExc_ValueError,
			"operation on a closed tally.Counter");
	return -1;
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

/* Counter(backend=None, initial=0, shared=False, name=None, create=True,
 *         exclusive=False) */
static int counter_init(CounterObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"backend", "initial",	 "shared", "name",
				 "create",  "exclusive", NULL};
	PyObject *backend_o = Py_None, *initial_o = NULL, *name_o = Py_None;
	int shared = 0, create = 1, exclusive = 0, rc;
	const char *backend = NULL, *name = NULL;
	int64_t initial = 0;
	tally *t = NULL;
	tally_backend_info info;

	if (self->t != NULL) {
		PyErr_SetString(PyExc_RuntimeError,
				"tally.Counter is already initialized");
		return -1;
	}
	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOpOpp:Counter", kwlist,
					 &backend_o, &initial_o, &shared,
					 &name_o, &create, &exclusive))
		return -1;
	if (backend_o != Py_None && to_cstr(backend_o, "backend", &backend) < 0)
		return -1;
	if (initial_o != NULL && to_i64(initial_o, "initial", &initial) < 0)
		return -1;
	if (name_o != Py_None && to_cstr(name_o, "name", &name) < 0)
		return -1;
	if (exclusive && !create) {
		PyErr_SetString(PyExc_ValueError,
				"exclusive=True needs create=True");
		return -1;
	}
	if (name == NULL && (!create || exclusive)) {
		PyErr_SetString(PyExc_ValueError,
				"create and exclusive apply to named counters "
				"only (pass name=)");
		return -1;
	}

	if (name != NULL) {
		unsigned flags = (create ? TALLY_CREATE : 0u) |
				 (exclusive ? TALLY_EXCL : 0u);
		PyThreadState *ts = PyEval_SaveThread();

		/* A named counter is never waited for, but the open makes
		 * system calls: let other threads run. */
		rc = tally_open(&t, name, backend, initial, flags);
		PyEval_RestoreThread(ts);
	} else {
		rc = tally_create(&t, backend, initial,
				  shared ? TALLY_PSHARED : 0u);
	}
	if (rc < 0) {
		char known[512];
		/* What the library says more (owner and mode, the other
		 * backend, the system call): same thread, set by the call. */
		const char *d = tally_explain(rc), *sep = ": ";
		if (d == tally_strerror(rc))
			d = sep = ""; /* nothing more than the message */
		if (rc == TALLY_ENOBACKEND) {
			known_backends(known, sizeof(known));
			raise_tally(rc, "'%s' (known: %s)",
				    backend ? backend : "(from $TALLY_BACKEND)",
				    known);
		} else if (name != NULL && !create) {
			raise_tally(rc, "counter '%s'%s%s", name, sep, d);
		} else if (name != NULL) {
			raise_tally(rc, "counter '%s', backend '%s'%s%s", name,
				    backend ? backend : "(default)", sep, d);
		} else {
			raise_tally(rc, "backend '%s'%s%s%s",
				    backend ? backend : "(default)",
				    shared ? ", shared=True" : "", sep, d);
		}
		return -1;
	}
	self->t = t;
	self->shared = shared || name != NULL;
	Py_XINCREF(name != NULL ? name_o : NULL);
	self->name = name != NULL ? name_o : NULL;
	/*
	 * A lock-free or racy add is one instruction or a few nanoseconds:
	 * keep the GIL, since dropping and taking it again would cost more
	 * than the add (bench/python_counter.py measures both).  Any other
	 * backend may wait for a lock, a peer process or a server: drop the
	 * GIL so that the process's other threads run meanwhile.
	 */
	self->release_gil = 1;
	if (tally_backend_find(tally_backend_name(t), &info) == 0) {
		self->remote = (info.caps & TALLY_CAP_REMOTE) != 0;
		if ((info.caps & (TALLY_CAP_LOCKFREE | TALLY_CAP_RACY)) &&
		    !self->remote)
			self->release_gil = 0;
	}
	return 0;
}

static void counter_dealloc(CounterObject *self)
{
	/* busy is 0 here: every call in flight holds a reference. */
	tally_destroy(self->t);
	self->t = NULL;
	Py_CLEAR(self->name);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *counter_add(CounterObject *self, PyObject *const *args,
			     Py_ssize_t nargs, PyObject *kwnames)
{
	int64_t delta = 1;
	int rc;

	if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
		if (nargs != 0 || PyTuple_GET_SIZE(kwnames) != 1 ||
		    !PyUnicode_Check(PyTuple_GET_ITEM(kwnames, 0)) ||
		    PyUnicode_CompareWithASCIIString(
			    PyTuple_GET_ITEM(kwnames, 0), "delta") != 0) {
			PyErr_SetString(PyExc_TypeError,
					"add() takes one argument, delta");
			return NULL;
		}
		nargs = 1;
	}
	if (nargs > 1) {
		PyErr_Format(PyExc_TypeError,
			     "add() takes at most 1 argument (%zd given)",
			     nargs);
		return NULL;
	}
	if (nargs == 1 && to_i64(args[0], "delta", &delta) < 0)
		return NULL;
	if (check_open(self) < 0)
		return NULL;
	if (self->release_gil) {
		tally *t = self->t;
		PyThreadState *ts;

		self->busy++;
		ts = PyEval_SaveThread();
		rc = tally_add(t, delta);
		PyEval_RestoreThread(ts);
		self->busy--;
	} else {
		rc = tally_add(self->t, delta);
	}
	if (rc < 0)
		return raise_tally(rc, "add(%lld) on backend '%s'",
				   (long long)delta,
				   tally_backend_name(self->t));
	Py_RETURN_NONE;
}

static PyObject *counter_get_value(CounterObject *self, void *closure)
{
	int64_t v = 0;
	int rc;

	(void)closure;
	if (check_open(self) < 0)
		return NULL;
	if (self->remote) { /* never waits for a lock; a server, maybe */
		tally *t = self->t;
		PyThreadState *ts;

		self->busy++;
		ts = PyEval_SaveThread();
		rc = tally_get(t, &v);
		PyEval_RestoreThread(ts);
		self->busy--;
	} else {
		rc = tally_get(self->t, &v);
	}
	if (rc < 0)
		return raise_tally(rc, "reading the counter on backend '%s'",
				   tally_backend_name(self->t));
	return PyLong_FromLongLong((long long)v);
}

static PyObject *counter_close(CounterObject *self, PyObject *unused)
{
	(void)unused;
	if (self->busy != 0) {
		PyErr_SetString(PyExc_RuntimeError,
				"tally.Counter.close() while another thread "
				"is still using it");
		return NULL;
	}
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
	if (self->name == NULL) {
		PyErr_SetString(PyExc_TypeError,
				"a tally.Counter without a name cannot be "
				"pickled (a spawned process would get a "
				"separate counter): create it with name=... "
				"to share it with spawned processes, or use "
				"shared=True with the fork start method");
		return NULL;
	}
	/* Counter(None, 0, True, name, create=False) */
	return Py_BuildValue("(O(OiOOO))", (PyObject *)Py_TYPE(self), Py_None,
			     0, Py_True, self->name, Py_False);
}

static PyObject *counter_get_backend(CounterObject *self, void *closure)
{
	(void)closure;
	if (check_open(self) < 0)
		return NULL;
	return PyUnicode_FromString(tally_backend_name(self->t));
}

static PyObject *counter_get_name(CounterObject *self, void *closure)
{
	(void)closure;
	return Py_NewRef(self->name != NULL ? self->name : Py_None);
}

static PyObject *counter_get_closed(CounterObject *self, void *closure)
{
	(void)closure;
	return PyBool_FromLong(self->t == NULL);
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
	if (self->t == NULL)
		return PyUnicode_FromString("<tally.Counter closed>");
	if (self->name != NULL)
		return PyUnicode_FromFormat("<tally.Counter backend='%s' "
					    "name=%R>",
					    tally_backend_name(self->t),
					    self->name);
	return PyUnicode_FromFormat("<tally.Counter backend='%s'%s>",
				    tally_backend_name(self->t),
				    self->shared ? " shared" : "");
}

static PyMethodDef counter_methods[] = {
	{"add", (PyCFunction)(void (*)(void))counter_add,
	 METH_FASTCALL | METH_KEYWORDS,
	 "add(delta=1)\n--\n\nAdd delta (an int that fits in 64 bits; "
	 "negative subtracts).  Wraps modulo 2**64.  Raises tally.Error "
	 "when the backend fails."},
	{"close", (PyCFunction)counter_close, METH_NOARGS,
	 "close()\n--\n\nRelease the counter (a named one stays until "
	 "tally.unlink()).  Calling it again does nothing."},
	{"__enter__", (PyCFunction)counter_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)counter_exit, METH_VARARGS, NULL},
	{"__reduce__", (PyCFunction)counter_reduce, METH_NOARGS, NULL},
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
	{"_release_gil", (getter)counter_get_release_gil,
	 (setter)counter_set_release_gil,
	 "Internal, for benchmarks: drop the GIL around add.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(
	counter_doc,
	"Counter(backend=None, initial=0, shared=False, name=None, "
	"create=True, exclusive=False)\n--\n\n"
	"A tally counter.  backend: a name such as 'atomic' or 'mutex', or "
	"'NAME:OPTIONS'; None means $TALLY_BACKEND, else 'atomic'.\n"
	"shared=True: processes forked after creation (multiprocessing's "
	"fork start method) share it.\n"
	"name='jobs': a named counter in POSIX shared memory that separate "
	"processes open by name (the spawn start method, or another "
	"program); create=False only opens an existing one, exclusive=True "
	"only creates.  Use as a context manager, or call close().");

static PyTypeObject CounterType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tally.Counter",
	.tp_basicsize = sizeof(CounterObject),
	.tp_flags = Py_TPFLAGS_DEFAULT,
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
	if (rc < 0)
		return raise_tally(
			rc, "counter '%s'%s%s", name,
			tally_explain(rc) != tally_strerror(rc) ? ": " : "",
			tally_explain(rc) != tally_strerror(rc)
				? tally_explain(rc)
				: "");
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
	 "unlink(name)\n--\n\nRemove the named counter; open handles keep "
	 "working."},
	{"backends", mod_backends, METH_NOARGS,
	 "backends()\n--\n\nEvery known backend as (name, summary, caps, "
	 "built_in)."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef tally_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "tally",
	.m_doc = "tally's shared counters: one interface, many locks, "
		 "shared across threads and processes.",
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
	static const struct {
		const char *name;
		unsigned bit;
	} caps[] = {
		{"CAP_LOCKFREE", TALLY_CAP_LOCKFREE},
		{"CAP_PSHARED", TALLY_CAP_PSHARED},
		{"CAP_FAIR", TALLY_CAP_FAIR},
		{"CAP_BLOCKING", TALLY_CAP_BLOCKING},
		{"CAP_SPINNING", TALLY_CAP_SPINNING},
		{"CAP_RACY", TALLY_CAP_RACY},
		{"CAP_REMOTE", TALLY_CAP_REMOTE},
		{"CAP_THREADS_ONLY", TALLY_CAP_THREADS_ONLY},
		{"CAP_ROBUST", TALLY_CAP_ROBUST},
		{"CAP_NAMED", TALLY_CAP_NAMED},
		{"CAP_LOCKED", TALLY_CAP_LOCKED},
	};
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		if (PyModule_AddIntConstant(m, caps[i].name,
					    (long)caps[i].bit) < 0)
			return -1;
	return PyModule_AddStringConstant(m, "version", tally_version());
}

PyMODINIT_FUNC PyInit_tally(void);
PyMODINIT_FUNC PyInit_tally(void)
{
	PyObject *m;

	if (PyType_Ready(&CounterType) < 0)
		return NULL;
	m = PyModule_Create(&tally_module);
	if (m == NULL)
		return NULL;
	TallyError = PyErr_NewExceptionWithDoc(
		"tally.Error",
		"A tally library error: str(e) says what failed, e.errname is "
		"the error's name (e.g. 'TALLY_ENOBACKEND'), e.code its "
		"negative number (tally.ENOBACKEND).",
		NULL, NULL);
	if (TallyError == NULL ||
	    PyModule_AddObjectRef(m, "Error", TallyError) < 0 ||
	    PyModule_AddObjectRef(m, "Counter", (PyObject *)&CounterType) < 0 ||
	    add_constants(m) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
