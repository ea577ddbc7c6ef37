"""The tally Python module: counts, sharing across processes, errors.

Run by pytest from CTest (tests/python.cmake), with the package's build
directory on PYTHONPATH:  python3 -m pytest tests/python
(the unittest classes here run under pytest as they are).
"""
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import unittest

import tally

ADDS = 2000  # per worker: enough to interleave, seconds in total


# tests/shm_holder.c, built beside the CLI (tests/python.cmake passes it):
# NAME SECONDS holds a named counter's lock that long, having added 100.
HOLDER = os.environ.get("TALLY_SHM_HOLDER")


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


def named_lock_backends():
    """Built-in backends whose named counters have a lock, by their bits."""
    return [n for n, _, caps, built in tally.backends()
            if built and caps & tally.CAP_NAMED and caps & tally.CAP_LOCKED]


def add_many_by_name(name, delta, n, start=None):
    with tally.Counter(name=name, create=False) as c:
        add_many(c, delta, n, start)


class Basics(unittest.TestCase):
    def test_add_and_value(self):
        with tally.Counter("atomic", 500) as c:
            c.add()
            c.add(10)
            c.add(delta=-6)
            self.assertIsNone(c.flush())  # every add here is applied
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

    def test_spawn_refuses_an_unshared_counter(self):
        ctx = mp.get_context("spawn")
        with tally.Counter("atomic") as c:
            p = ctx.Process(target=add_many, args=(c, 1, 1))
            with self.assertRaisesRegex(TypeError, "shared=True"):
                p.start()
            self.assertEqual(c.value, 0)

    def test_spawn_refuses_a_shared_counter_that_cannot_be_named(self):
        names = [n for n, _, caps, built in tally.backends()
                 if built and caps & tally.CAP_PSHARED
                 and not caps & (tally.CAP_NAMED | tally.CAP_REMOTE)]
        if not names:
            self.skipTest("every shared backend can be named")
        ctx = mp.get_context("spawn")
        with tally.Counter(names[0], shared=True) as c:
            self.assertIsNone(c._auto_name)
            p = ctx.Process(target=add_many, args=(c, 1, 1))
            with self.assertRaisesRegex(TypeError, "'fork' start method"):
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

    def test_flags_take_only_bool(self):
        name = unique_name()
        self.addCleanup(lambda: os.path.exists("/dev/shm/tally." + name)
                        and tally.unlink(name))  # were a flag misread
        for flag in ("shared", "create", "exclusive"):
            for bad in ("False", "", 0, 1, None, 1.0, [True]):
                kw = {flag: bad}
                if flag != "shared":
                    kw["name"] = name
                with self.subTest(**kw):
                    with self.assertRaises(TypeError) as cm:
                        tally.Counter("atomic", **kw)
                    self.assertIn(flag, str(cm.exception))
                    self.assertIn(type(bad).__name__, str(cm.exception))
        # create="False" above made nothing.
        self.assertTallyError("ENOTFOUND", tally.Counter, name=name,
                              create=False)
        for shared in (True, False):
            with tally.Counter("atomic", shared=shared) as c:
                self.assertEqual(c.shared, shared)

    def test_echoed_input_is_trimmed(self):
        big = 100000
        cases = [
            ("ENOBACKEND", "b", lambda s: tally.Counter(s)),
            ("EOPTION", "o", lambda s: tally.Counter("mutex:" + s + "=1")),
            ("EINVAL", "n", lambda s: tally.Counter("atomic", name=s)),
            ("EINVAL", "n", lambda s: tally.Counter(name=s, create=False)),
            ("EINVAL", "u", lambda s: tally.unlink(s)),
        ]
        for errname, ch, fn in cases:
            with self.subTest(errname=errname, char=ch):
                e = self.assertTallyError(errname, fn, ch * big)
                self.assertLess(len(str(e)), 1000, str(e)[:2000])
                if errname != "EOPTION":  # the spec is "mutex:ooo...=1"
                    self.assertIn(f"'{ch * 64}...' ({big} characters)",
                                  str(e))
        # Characters, not bytes: a cut never splits one.
        e = self.assertTallyError("ENOBACKEND", tally.Counter, "é" * 65)
        self.assertIn(f"'{'é' * 64}...' (65 characters)", str(e))
        e = self.assertTallyError("ENOBACKEND", tally.Counter, "é" * 64)
        self.assertIn(f"'{'é' * 64}' ", str(e))

    def test_bad_timeout_changes_nothing(self):
        with tally.Counter("mutex", 10) as c:
            for bad in ("1", True, [1]):
                with self.subTest(timeout=bad), \
                        self.assertRaises(TypeError):
                    c.add(1, timeout=bad)
            for bad in (0, 0.0, -1, float("nan"), float("inf")):
                with self.subTest(timeout=bad), \
                        self.assertRaises(ValueError):
                    c.add(1, timeout=bad)
            with self.assertRaises(TypeError):
                c.add(1, delta=2)
            self.assertEqual(c.value, 10)
            c.add(2, timeout=1)
            c.add(delta=3, timeout=0.5)
            c.add(timeout=None)
            self.assertEqual(c.value, 16)
        with tally.Counter("atomic") as c:  # no lock: timeout is checked
            with self.assertRaises(ValueError):
                c.add(1, timeout=-1)
            c.add(1, timeout=0.01)
            self.assertEqual(c.value, 1)

    def test_timeout_error_is_both_errors(self):
        self.assertTrue(issubclass(tally.TimeoutError, tally.Error))
        self.assertTrue(issubclass(tally.TimeoutError, TimeoutError))
        self.assertEqual(tally.ETIMEDOUT, -19)
        self.assertIn("TALLY_ETIMEDOUT", tally.TimeoutError.__doc__)

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
                    lambda: c.flush(), lambda: c.__enter__(),
                    lambda: pickle.dumps(c)):
            with self.assertRaisesRegex(ValueError, "closed"):
                use()

    def test_error_is_an_exception_with_a_docstring(self):
        self.assertTrue(issubclass(tally.Error, Exception))
        self.assertIn("errname", tally.Error.__doc__)


# A Python program blocked in add() on a counter that another program holds.
BLOCKED_ADD = r"""
import signal, sys, tally
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if ignored
c = tally.Counter(name=sys.argv[1], create=False)
print("adding", flush=True)
c.add(5)
print("added", flush=True)
"""

# One add on a counter whose holder was killed: what came of it, as
# "added BEFORE AFTER SECONDS" or "error ERRNAME BEFORE AFTER SECONDS".
ADD_PAST_THE_DEAD = r"""
import sys, time, tally
c = tally.Counter(name=sys.argv[1], create=False)
before = c.value
t0 = time.monotonic()
try:
    c.add(1)
    outcome = "added"
except tally.Error as e:
    outcome = "error " + e.errname
    print(e, file=sys.stderr)
print(outcome, before, c.value, time.monotonic() - t0)
"""


class HeldLocks(unittest.TestCase):
    """Named counters whose lock another program holds: tests/shm_holder.c,
    alive or killed inside the lock."""

    INITIAL = 7

    def setUp(self):
        if not HOLDER:
            self.skipTest("TALLY_SHM_HOLDER is not set (tests/python.cmake "
                          "sets it to the shm_holder program)")
        self.backends = named_lock_backends()
        if not self.backends:
            self.skipTest("no built-in backend has a lock and names")

    def counter(self, backend):
        name = unique_name()
        c = tally.Counter(backend, self.INITIAL, name=name, exclusive=True)
        self.addCleanup(tally.unlink, name)
        self.addCleanup(c.close)
        return c

    def hold(self, c, seconds):
        """Start a holder of c's lock, and return once it holds it: the
        holder adds 100 inside the lock, before it waits there."""
        p = subprocess.Popen([HOLDER, c.name, str(seconds)],
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.reap, p)
        deadline = time.monotonic() + 10
        while c.value != self.INITIAL + 100:
            if p.poll() is not None:
                self.fail(f"{c.backend}: shm_holder exited {p.returncode}: "
                          f"{p.stderr.read()}")
            if time.monotonic() > deadline:
                self.fail(f"{c.backend}: shm_holder never took the lock")
            time.sleep(0.01)
        return p

    @staticmethod
    def reap(p):
        if p.poll() is None:
            p.kill()
        p.wait()
        if p.stderr:
            p.stderr.close()

    def python(self, script, name, **kw):
        return subprocess.Popen([sys.executable, "-c", script, name],
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kw)

    def test_timeout_raises_and_adds_nothing(self):
        for backend in self.backends:
            with self.subTest(backend=backend):
                c = self.counter(backend)
                holder = self.hold(c, 30)
                t0 = time.monotonic()
                with self.assertRaises(tally.TimeoutError) as cm:
                    c.add(5, timeout=0.2)
                waited = time.monotonic() - t0
                e = cm.exception
                self.assertIsInstance(e, TimeoutError)
                self.assertEqual(e.errname, "TALLY_ETIMEDOUT")
                self.assertEqual(e.code, tally.ETIMEDOUT)
                self.assertIn("nothing was added", str(e))
                self.assertIn(f"add(5) on backend '{backend}'", str(e))
                self.assertGreaterEqual(waited, 0.19)
                self.assertLess(waited, 1.5)
                self.assertEqual(c.value, self.INITIAL + 100)
                self.reap(holder)

    def test_close_while_an_add_waits_is_refused(self):
        c = self.counter(self.backends[0])
        holder = self.hold(c, 2)
        done = []
        t = threading.Thread(target=lambda: done.append(c.add(5, timeout=20)))
        t.start()
        time.sleep(0.3)  # in add(), between or inside its waits
        with self.assertRaisesRegex(RuntimeError, "still using it"):
            c.close()
        t.join(30)
        self.assertEqual(done, [None])
        self.assertEqual(holder.wait(30), 0)
        self.assertEqual(c.value, self.INITIAL + 105)

    def test_a_blocked_add_answers_ctrl_c(self):
        waits = []
        for backend in self.backends:
            c = self.counter(backend)
            holder = self.hold(c, 4)
            child = self.python(BLOCKED_ADD, c.name)
            self.addCleanup(self.reap, child)
            waits.append((backend, c, holder, child))
        for backend, c, holder, child in waits:
            self.assertEqual(child.stdout.readline(), "adding\n", backend)
        time.sleep(0.5)  # well inside add() by now
        for backend, c, holder, child in waits:
            child.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        for backend, c, holder, child in waits:
            with self.subTest(backend=backend):
                try:
                    out, err = child.communicate(
                        timeout=max(0.1, t0 + 2 - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.fail(f"{backend}: add() did not answer SIGINT "
                              "within 2 s")
                self.assertNotEqual(child.returncode, 0)
                self.assertIn("KeyboardInterrupt", err)
                self.assertNotIn("added", out)
        for backend, c, holder, child in waits:
            with self.subTest(backend=backend):
                self.assertEqual(holder.wait(30), 0)
                # The holder's 100, and nothing of the interrupted 5.
                self.assertEqual(c.value, self.INITIAL + 100)
                c.add(1, timeout=5)
                self.assertEqual(c.value, self.INITIAL + 101)

    def test_a_killed_holder_is_recovered_or_reported_within_the_bound(self):
        bound = tally.DEFAULT_WAIT_MS / 1000  # a named counter's default
        runs = []
        for backend in self.backends:
            c = self.counter(backend)
            holder = self.hold(c, 60)
            holder.kill()  # SIGKILL, inside the lock
            holder.wait()
            runs.append((backend, c))
        # Together, so that backends that can only time out do so at once.
        children = [(b, c, self.python(ADD_PAST_THE_DEAD, c.name))
                    for b, c in runs]
        for _, _, child in children:
            self.addCleanup(self.reap, child)
        t0 = time.monotonic()
        for backend, c, child in children:
            with self.subTest(backend=backend):
                try:
                    out, err = child.communicate(
                        timeout=max(0.1, t0 + bound + 20 - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.fail(f"{backend}: an add past a dead holder hung")
                self.assertEqual(child.returncode, 0, err)
                words = out.split()
                before, after = int(words[-3]), int(words[-2])
                self.assertLess(float(words[-1]), bound + 2, out + err)
                if words[0] == "added":  # recovered, then added
                    self.assertEqual(after, before + 1, out)
                    c.add(1, timeout=5)  # and the lock works again
                    self.assertEqual(c.value, after + 1)
                else:
                    self.assertIn(words[1], ("TALLY_ENOTRECOVERABLE",
                                             "TALLY_ETIMEDOUT"), out + err)
                    self.assertEqual(after, before, out)


if __name__ == "__main__":
    unittest.main()
