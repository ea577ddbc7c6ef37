"""tally's shared counters: one interface, many locks, shared across threads,
processes (every multiprocessing start method, and pools) and, through
Redis, machines.

    import tally

    with tally.Counter("mutex", 500, shared=True) as total:
        total.add(5)
        print(total.value)          # 505

Counter is the counter; backends() lists the locks it can run on, with
their capabilities; Error (and TimeoutError) is what fails.  The package is
a thin client of the C library (its manual is tally(3)); tally._tally is
its C half.
"""
from __future__ import annotations

import os
import secrets
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

from . import _tally
from ._tally import (  # noqa: F401 (re-exported)
    CAP_BLOCKING,
    CAP_FAIR,
    CAP_LOCKED,
    CAP_LOCKFREE,
    CAP_NAMED,
    CAP_PSHARED,
    CAP_RACY,
    CAP_REMOTE,
    CAP_ROBUST,
    CAP_SPINNING,
    CAP_THREADS_ONLY,
    DEFAULT_WAIT_MS,
    EBADOBJECT,
    EEXIST,
    EINVAL,
    EMISMATCH,
    ENOBACKEND,
    ENOMEM,
    ENOSPACE,
    ENOTBUILT,
    ENOTFOUND,
    ENOTRECOVERABLE,
    EOPTION,
    EREMOTE,
    ESYSTEM,
    ETIMEDOUT,
    EUNFINISHED,
    EUNKNOWN,
    EUNSUPPORTED,
    EUNTRUSTED,
    EWRONGTYPE,
    Error,
    TimeoutError,
    unlink,
    version,
)

#: The library's version, which is the package's: one version, set in the
#: project's CMakeLists.txt.
__version__: str = version

__all__ = [
    "Backend", "Counter", "Description", "Error", "TimeoutError",
    "backends", "capability_names", "unlink", "version", "DEFAULT_WAIT_MS",
] + [n for n in dir(_tally) if n.startswith(("CAP_", "E")) and n.isupper()]

# Capability bits and their names ("lockfree", "threads_only", ...), in bit
# order: the C module's CAP_* constants, which it expands from tally.h's
# TALLY_CAPS_MAP.
_CAPS: Tuple[Tuple[int, str], ...] = tuple(sorted(
    (getattr(_tally, n), n[len("CAP_"):].lower())
    for n in dir(_tally) if n.startswith("CAP_")))


def capability_names(caps: int) -> Tuple[str, ...]:
    """The names of the capability bits set in caps, in bit order:
    capability_names(tally.CAP_LOCKFREE | tally.CAP_NAMED) is
    ('lockfree', 'named')."""
    return tuple(name for bit, name in _CAPS if caps & bit)


class Backend(NamedTuple):
    """One backend of the library's registry, as backends() lists it:
    name, one-line summary, capability bits (tally.CAP_*), and whether it
    was built into this library.  Branch on caps, never on names."""

    name: str
    summary: str
    caps: int
    built_in: bool

    @property
    def capabilities(self) -> Tuple[str, ...]:
        """The names of its capability bits, e.g. ('lockfree', 'pshared',
        'named')."""
        return capability_names(self.caps)


def backends() -> List[Backend]:
    """Every backend the library knows, built in or not, in registry order
    (that of `tally list`)."""
    return [Backend(*b) for b in _tally.backends()]


class Description(NamedTuple):
    """What Counter.describe() says of one counter (the C library's
    tally_describe()): its backend's name and capability bits, whether other
    processes may share it, whether it is a named counter (which an
    automatically named shared=True one is too), its add's wait bound in
    milliseconds (0: none), the backend's path in this thread (percpu's
    'rseq' or 'atomic'; None for the others), the named counter's name
    (None for an unnamed one), and the counter's backend options (the text
    after 'backend:' less wait_ms; '' for none)."""

    backend: str
    caps: int
    shared: bool
    named: bool
    wait_ms: int
    path: Optional[str]
    name: Optional[str]
    options: str

    @property
    def capabilities(self) -> Tuple[str, ...]:
        """The names of its capability bits."""
        return capability_names(self.caps)


def _remove(name: str, creator: int) -> None:
    """Remove an automatically named counter: in its creating process
    only, once (close(), garbage collection, or exit)."""
    if os.getpid() != creator:
        return
    try:
        unlink(name)
    except Error:
        pass  # removed by hand already (tally.unlink, `tally shm rm`)
    from multiprocessing import resource_tracker

    resource_tracker.unregister("/tally." + name, "shared_memory")


class Counter(_tally.Counter):
    """A tally counter, holding initial to begin with.

    backend: a name such as 'atomic' or 'mutex', or 'NAME:OPTIONS' (e.g.
    'spin:wait_ms=2000', how long an add waits for the lock); None means
    $TALLY_BACKEND, else 'atomic'.  tally.backends() lists them.

    shared=True: every process of this program that gets the counter shares
    it: processes forked after it was made, and those it is pickled to (the
    spawn and forkserver start methods pickle a Process's arguments; pools,
    ProcessPoolExecutor's too, pickle every task's).  On a backend that can
    be named (capability 'named') it is a named counter under an automatic
    name, which the creating process removes when it closes the counter, when
    the counter is garbage-collected, or when it exits (multiprocessing's
    resource tracker removes it should that process be killed).  On a backend
    that cannot be named (mcs, clh, redis) it reaches forked processes only,
    and pickling it raises TypeError, saying what to do.

    name='jobs': a named counter in POSIX shared memory that separate
    programs open by name; create=False only opens an existing one,
    exclusive=True only creates.  It stays until tally.unlink('jobs').

    shared, create and exclusive take only True or False (TypeError
    otherwise).  Use it as a context manager, or call close().
    """

    __slots__ = ("_finalizer", "__weakref__")

    def __init__(self, backend: Optional[str] = None, initial: int = 0,
                 shared: bool = False, name: Optional[str] = None,
                 create: bool = True, exclusive: bool = False) -> None:
        """Make or open the counter: see help(tally.Counter)."""
        self._finalizer: Optional[Callable[[], Any]] = None
        if (shared is not True or name is not None or create is not True
                or exclusive is not False):
            super().__init__(backend, initial, shared, name, create,
                             exclusive)
            return
        for _ in range(8):  # a name already taken: 64 random bits again
            auto = f"py-{os.getpid()}-{secrets.token_hex(8)}"
            try:
                super().__init__(backend, initial, True, _auto=auto)
            except Error as e:
                if e.code != EEXIST:
                    raise
                continue
            break
        else:
            raise Error(f"no free name for a shared counter (last: {auto})")
        if self._auto_name is not None:
            self._own(self._auto_name)

    def _own(self, name: str) -> None:
        from multiprocessing import resource_tracker, util

        # Only the creator registers it: a process that joins it never
        # does, so that its exit removes nothing another still opens.
        resource_tracker.register("/tally." + name, "shared_memory")
        self._finalizer = util.Finalize(self, _remove, (name, os.getpid()),
                                        exitpriority=0)

    def close(self) -> None:
        """Release the counter (a named one stays until tally.unlink(); an
        automatically named shared=True one is removed when its creator
        closes it: processes that have it open keep using it).  Calling it
        again does nothing.  Refused with RuntimeError while another thread
        is inside add() on it."""
        super().close()
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def __exit__(self, *exc_info: object) -> None:
        """close() the counter."""
        self.close()

    def __reduce__(self) -> Tuple[Any, ...]:
        """Pickling: a shared or named counter travels as its name and is
        opened again where it is unpickled; one that the other process could
        not reach refuses with TypeError, saying what to do."""
        auto = self._auto_name
        if auto is None:
            return super().__reduce__()
        if self.closed:
            raise ValueError("operation on a closed tally.Counter")
        return (_join, (auto,))

    def describe(self) -> Description:
        """What the library says of this counter (tally_describe()): its
        backend, capabilities, sharing, wait bound, path, name and
        options."""
        return Description(*self._describe())


def _join(auto: str) -> Counter:
    """Unpickling a shared=True counter: open it by its automatic name."""
    c = Counter.__new__(Counter)
    c._finalizer = None
    _tally.Counter.__init__(c, None, 0, True, create=False, _auto=auto)
    return c
