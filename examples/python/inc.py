#!/usr/bin/env python3
"""The lesson's second program on tally: two processes, a million
iterations each; the first adds 1, the second adds 2.  Prints 3000000.

    python3 inc.py [BACKEND] [--spawn]

BACKEND defaults to "atomic" (one lock-free instruction per add; the
lesson's Value + Lock takes a lock and releases it twice per add).
--spawn starts the workers with the spawn start method, which cannot
inherit memory: the counter is then a named one, which they open by name.
"""
import multiprocessing as mp
import os
import sys

import tally

ITERS = 1_000_000


def worker(total, delta):
    add = total.add
    for _ in range(ITERS):
        add(delta)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--spawn"]
    spawn = "--spawn" in sys.argv[1:]
    backend = args[0] if args else "atomic"
    if spawn:
        # A spawned process gets the counter by pickling, which sends its
        # name: it must have one.
        ctx = mp.get_context("spawn")
        name = f"lesson-inc-{os.getpid()}"
        total = tally.Counter(backend, 0, name=name, exclusive=True)
    else:
        ctx = mp.get_context("fork")
        name = None
        total = tally.Counter(backend, 0, shared=True)
    try:
        procs = [ctx.Process(target=worker, args=(total, d)) for d in (1, 2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        print(total.value)
    finally:
        total.close()
        if name is not None:
            tally.unlink(name)
