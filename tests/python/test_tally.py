"""The tally Python module: counts, sharing across processes, errors.

Run by CTest (tests/python.cmake) with the module's build directory on
PYTHONPATH:  python3 -m unittest -v test_tally
"""
import multiprocessing as mp
import os
import pickle
import threading
import unittest

import tally

ADDS = 2000  # per worker: enough to interleave, seconds in total


def usable_backends():
    """Built-in backends that need no server, as (name, caps)."""
    return [(n, caps) for n, _, caps, built in tally.backends()
            if built and not caps & tally.CAP_REMOTE]


def racy(caps):
    return bool(caps & tally.CAP_RACY)


_serial = [0]


def unique_name():
    _serial[0] += 1
    return f"pytest-{os.getpid()}-{_serial[0]}"


def add_many(counter, delta, n, start=None):
    """Add delta n times; with a barrier, only once every worker is there,
    so that their adds overlap instead of running one after another."""
    if start is not None:
        start.wait(60)
    for _ in range(n):
        counter.add(delta)


def add_many_by_name(name, delta, n, start=None):
    with tally.Counter(name=name, create=False) as c:
        add_many(c, delta, n, start)


class Basics(unittest.TestCase):
    def test_add_and_value(self):
        with tally.Counter("atomic", 500) as c:
            c.add()
            c.add(10)
            c.add(delta=-6)
            self.assertEqual(c.value, 505)
            self.assertEqual(c.backend, "atomic")
            self.assertFalse(c.shared)
            self.assertIsNone(c.name)
        self.assertTrue(c.closed)

    def test_default_backend_is_the_environment_or_atomic(self):
        old = os.environ.pop("TALLY_BACKEND", None)
        try:
            with tally.Counter() as c:
                self.assertEqual(c.backend, "atomic")
            os.environ["TALLY_BACKEND"] = "mutex"
            with tally.Counter() as c:
                self.assertEqual(c.backend, "mutex")
        finally:
            os.environ.pop("TALLY_BACKEND", None)
            if old is not None:
                os.environ["TALLY_BACKEND"] = old

    def test_wraps_modulo_2_64(self):
        with tally.Counter("mutex", 2**63 - 1) as c:
            c.add(1)
            self.assertEqual(c.value, -2**63)

    def test_every_backend_exact_in_threads(self):
        for name, caps in usable_backends():
            if racy(caps):
                continue
            with self.subTest(backend=name), tally.Counter(name) as c:
                start = threading.Barrier(3)
                ts = [threading.Thread(target=add_many,
                                       args=(c, d, ADDS, start))
                      for d in (1, 2, 3)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                self.assertEqual(c.value, 6 * ADDS)

    def test_gil_is_kept_only_for_lock_free_adds(self):
        for name, caps in usable_backends():
            with self.subTest(backend=name), tally.Counter(name) as c:
                kept = bool(caps & (tally.CAP_LOCKFREE | tally.CAP_RACY))
                self.assertEqual(c._release_gil, not kept)

    def test_close_twice_and_repr(self):
        c = tally.Counter("sem", 3)
        self.assertIn("sem", repr(c))
        c.close()
        c.close()
        self.assertIn("closed", repr(c))


class Processes(unittest.TestCase):
    def run_workers(self, ctx, target, args_list):
        ps = [ctx.Process(target=target, args=a) for a in args_list]
        for p in ps:
            p.start()
        for p, a in zip(ps, args_list):
            p.join(120)
            self.assertEqual(p.exitcode, 0,
                             f"{target.__name__}{a!r}: exit {p.exitcode}")

    def test_fork_shared_every_pshared_backend(self):
        ctx = mp.get_context("fork")
        for name, caps in usable_backends():
            if racy(caps) or not caps & tally.CAP_PSHARED:
                continue
            with self.subTest(backend=name), \
                    tally.Counter(name, 500, shared=True) as c:
                self.assertTrue(c.shared)
                # Worker k adds k + 1: no loss can hide behind another.
                start = ctx.Barrier(3)
                self.run_workers(ctx, add_many,
                                 [(c, d, ADDS, start) for d in (1, 2, 3)])
                self.assertEqual(c.value, 500 + 6 * ADDS)

    def test_fork_unshared_is_a_private_copy(self):
        ctx = mp.get_context("fork")
        with tally.Counter("atomic", 7) as c:
            self.run_workers(ctx, add_many, [(c, 1, 10)])
            self.assertEqual(c.value, 7)

    def test_spawn_by_name(self):
        ctx = mp.get_context("spawn")
        name = unique_name()
        try:
            with tally.Counter("atomic", 0, name=name,
                               exclusive=True) as c:
                self.assertTrue(c.shared)
                self.assertEqual(c.name, name)
                # The counter itself travels: pickled as its name.
                self.run_workers(ctx, add_many, [(c, 1, ADDS)])
                start = ctx.Barrier(2)
                self.run_workers(ctx, add_many_by_name,
                                 [(name, 2, ADDS, start),
                                  (name, 3, ADDS, start)])
                self.assertEqual(c.value, 6 * ADDS)
        finally:
            tally.unlink(name)

    def test_spawn_refuses_an_unnamed_counter(self):
        ctx = mp.get_context("spawn")
        with tally.Counter("atomic", shared=True) as c:
            p = ctx.Process(target=add_many, args=(c, 1, 1))
            with self.assertRaisesRegex(TypeError, "name="):
                p.start()
            self.assertEqual(c.value, 0)

    def test_pickle_reopens_a_named_counter(self):
        name = unique_name()
        try:
            with tally.Counter("mutex", 41, name=name) as c:
                with pickle.loads(pickle.dumps(c)) as d:
                    d.add()
                    self.assertEqual(d.backend, "mutex")
                self.assertEqual(c.value, 42)
        finally:
            tally.unlink(name)


class Errors(unittest.TestCase):
    def assertTallyError(self, errname, fn, *args, **kw):
        with self.assertRaises(tally.Error) as cm:
            fn(*args, **kw)
        e = cm.exception
        self.assertEqual(e.errname, "TALLY_" + errname)
        self.assertEqual(e.code, getattr(tally, errname))
        self.assertIn("TALLY_" + errname, str(e))
        return e

    def test_unknown_backend_lists_the_known_ones(self):
        e = self.assertTallyError("ENOBACKEND", tally.Counter, "frob")
        self.assertIn("'frob'", str(e))
        self.assertIn("known: none, mutex", str(e))

    def test_bad_options(self):
        self.assertTallyError("EOPTION", tally.Counter, "mutex:x=1")
        self.assertTallyError("EOPTION", tally.Counter, "none:window_us=x")

    def test_not_built_in(self):
        missing = [n for n, _, _, built in tally.backends() if not built]
        if not missing:
            self.skipTest("every backend is built in")
        self.assertTallyError("ENOTBUILT", tally.Counter, missing[0])

    def test_shared_on_a_backend_that_cannot_be(self):
        names = [n for n, _, caps, built in tally.backends()
                 if built and not caps & tally.CAP_PSHARED]
        if not names:
            self.skipTest("every built-in backend can be shared")
        self.assertTallyError("EUNSUPPORTED", tally.Counter, names[0],
                              shared=True)

    def test_named_errors(self):
        name = unique_name()
        self.assertTallyError("ENOTFOUND", tally.Counter, name=name,
                              create=False)
        self.assertTallyError("EINVAL", tally.Counter, name="no/slash")
        self.assertTallyError("ENOTFOUND", tally.unlink, name)
        try:
            with tally.Counter(name=name):
                self.assertTallyError("EEXIST", tally.Counter, name=name,
                                      exclusive=True)
        finally:
            tally.unlink(name)

    def test_another_users_or_open_counter_is_not_joined(self):
        name = unique_name()
        tally.Counter(name=name, backend="atomic").close()
        try:
            os.chmod("/dev/shm/tally." + name, 0o666)
            e = self.assertTallyError("EUNTRUSTED", tally.Counter, name=name,
                                      create=False)
            self.assertIn("mode 0666", str(e))
            self.assertTallyError("EUNTRUSTED", tally.Counter, name=name)
        finally:
            tally.unlink(name)

    def test_wrong_types(self):
        for kw in ({"backend": 5}, {"initial": "5"}, {"initial": 1.0},
                   {"initial": True}, {"name": b"x"}):
            with self.subTest(**kw), self.assertRaises(TypeError):
                tally.Counter(**kw)
        with self.assertRaises(OverflowError):
            tally.Counter(initial=2**63)
        with self.assertRaises(ValueError):
            tally.Counter("mut\0ex")
        with self.assertRaises(ValueError):
            tally.Counter(create=False)  # create= needs name=
        with self.assertRaises(TypeError):
            tally.unlink(3)

    def test_bad_add_changes_nothing(self):
        with tally.Counter("mutex", 10) as c:
            for bad in (1.5, "1", None, True, [1]):
                with self.subTest(delta=bad), self.assertRaises(TypeError):
                    c.add(bad)
            for bad in (2**63, -2**63 - 1):
                with self.assertRaises(OverflowError):
                    c.add(bad)
            with self.assertRaises(TypeError):
                c.add(1, 2)
            with self.assertRaises(TypeError):
                c.add(step=1)
            self.assertEqual(c.value, 10)

    def test_use_after_close(self):
        c = tally.Counter("atomic", 1)
        c.close()
        for use in (lambda: c.add(), lambda: c.value, lambda: c.backend,
                    lambda: c.__enter__(), lambda: pickle.dumps(c)):
            with self.assertRaisesRegex(ValueError, "closed"):
                use()

    def test_error_is_an_exception_with_a_docstring(self):
        self.assertTrue(issubclass(tally.Error, Exception))
        self.assertIn("errname", tally.Error.__doc__)


if __name__ == "__main__":
    unittest.main()
