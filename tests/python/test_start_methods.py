"""A shared=True counter under every start method (fork, spawn,
forkserver), in the patterns a user writes: multiprocessing.Process,
multiprocessing.Pool, and concurrent.futures.ProcessPoolExecutor with the
counter in its initializer or in every task.  The workers start together at
a barrier, and the count is exact.  The automatic name is removed by its
creator, and by the resource tracker when the creator is killed; a process
that joins it removes nothing.
"""
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

import tally

METHODS = [m for m in ("fork", "spawn", "forkserver")
           if m in mp.get_all_start_methods()]
WORKERS = 3
ADDS = 2000  # per worker
INITIAL = 500


def by_bits(want, without=0):
    """The first built-in backend with every bit of want and none of
    without: chosen by capabilities, never by name."""
    for b in tally.backends():
        if b.built_in and b.caps & want == want and not b.caps & without:
            return b.name
    return None


# One lock-free and one locked backend that can be named.
BACKENDS = [b for b in (by_bits(tally.CAP_LOCKFREE | tally.CAP_NAMED),
                        by_bits(tally.CAP_LOCKED | tally.CAP_NAMED))
            if b is not None]


def expect_exact(counter, deltas):
    want = INITIAL + ADDS * sum(deltas)
    got = counter.value
    assert got == want, (f"{counter.backend}: counted {got}, expected "
                         f"{want} (lost {want - got})")


# ---- what the workers run (module level: spawn and forkserver import it)

def adds(counter, delta, barrier):
    barrier.wait(60)
    for _ in range(ADDS):
        counter.add(delta)


_worker = {}


def init_worker(barrier, counter=None):
    """A pool worker's initializer: every worker waits here for the rest,
    so that all have started before the first task (which any of them may
    take: the count, not the spread, is what is checked)."""
    _worker["counter"] = counter
    barrier.wait(60)


def task(delta):
    c = _worker["counter"]
    for _ in range(ADDS):
        c.add(delta)


def task_with(counter, delta):
    for _ in range(ADDS):
        counter.add(delta)


def deltas():
    return list(range(1, WORKERS + 1))  # worker k adds k: no loss hides


# ---- the patterns --------------------------------------------------------

def run_processes(ctx, c):
    barrier = ctx.Barrier(WORKERS)
    ps = [ctx.Process(target=adds, args=(c, d, barrier)) for d in deltas()]
    for p in ps:
        p.start()
    for p in ps:
        p.join(120)
        assert p.exitcode == 0


def run_pool(ctx, c):
    barrier = ctx.Barrier(WORKERS)
    with ctx.Pool(WORKERS, init_worker, (barrier,)) as pool:
        pool.starmap(task_with, [(c, d) for d in deltas()])


def run_executor_initializer(ctx, c):
    barrier = ctx.Barrier(WORKERS)
    with ProcessPoolExecutor(WORKERS, mp_context=ctx,
                             initializer=init_worker,
                             initargs=(barrier, c)) as ex:
        list(ex.map(task, deltas()))


def run_executor_tasks(ctx, c):
    barrier = ctx.Barrier(WORKERS)
    with ProcessPoolExecutor(WORKERS, mp_context=ctx,
                             initializer=init_worker,
                             initargs=(barrier,)) as ex:
        list(ex.map(task_with, [c] * WORKERS, deltas()))


PATTERNS = [run_processes, run_pool, run_executor_initializer,
            run_executor_tasks]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.__name__[4:])
@pytest.mark.parametrize("method", METHODS)
def test_exact_under_every_start_method(method, pattern, backend):
    ctx = mp.get_context(method)
    with tally.Counter(backend, INITIAL, shared=True) as c:
        auto = c._auto_name
        assert auto is not None and c.name is None and c.shared
        pattern(ctx, c)
        expect_exact(c, deltas())
        # Every worker that joined it has exited: the name is still there.
        assert os.path.exists("/dev/shm/tally." + auto)
    assert not os.path.exists("/dev/shm/tally." + auto)


def test_fork_only_backend_shares_by_inheritance():
    name = by_bits(tally.CAP_PSHARED | tally.CAP_LOCKED,
                   tally.CAP_NAMED | tally.CAP_REMOTE)
    if name is None:
        pytest.skip("every shared backend with a lock can be named")
    ctx = mp.get_context("fork")
    with tally.Counter(name, INITIAL, shared=True) as c:
        assert c._auto_name is None and c.shared
        run_processes(ctx, c)
        expect_exact(c, deltas())
        # A pool pickles its tasks, even under fork: refused, with why.
        with ProcessPoolExecutor(1, mp_context=ctx) as ex:
            with pytest.raises(TypeError, match="'fork' start method"):
                ex.submit(task_with, c, 1).result()


def test_collected_counter_removes_its_name():
    c = tally.Counter("atomic", shared=True)
    path = "/dev/shm/tally." + c._auto_name
    assert os.path.exists(path)
    del c
    assert not os.path.exists(path)


KILLED_CREATOR = r"""
import os, signal, tally
c = tally.Counter("atomic", shared=True)
print(c._auto_name, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_creator_name_is_removed_by_the_resource_tracker():
    p = subprocess.run([sys.executable, "-c", KILLED_CREATOR],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGKILL
    path = "/dev/shm/tally." + p.stdout.strip()
    deadline = time.monotonic() + 10
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    exists = os.path.exists(path)
    if exists:
        tally.unlink(p.stdout.strip())
    assert not exists, f"{path} outlived its killed creator"


def test_a_closed_shared_counter_says_so_where_it_is_unpickled():
    import pickle

    c = tally.Counter("atomic", shared=True)
    data = pickle.dumps(c)
    c.close()
    with pytest.raises(tally.Error) as e:
        pickle.loads(data)
    assert e.value.errname == "TALLY_ENOTFOUND"
    assert "removed when it closed the counter or exited" in str(e.value)
    with pytest.raises(ValueError, match="closed"):
        pickle.dumps(c)
