#!/usr/bin/env python3
"""The lesson's second program on tally: two processes, a million
iterations each; the first adds 1, the second adds 2.  Prints 3000000.

    python3 inc.py [BACKEND] [--start fork|spawn|forkserver]

BACKEND defaults to "atomic" (one lock-free instruction per add; the
lesson's Value + Lock takes a lock and releases it twice per add).
--start picks multiprocessing's start method (--spawn is --start spawn):
the same shared=True counter reaches the workers under each of them, by
inheritance under fork, and by pickling (its automatic name) under spawn
and forkserver, which cannot inherit memory.
"""
import multiprocessing as mp
import sys

import tally

ITERS = 1_000_000


def worker(total: tally.Counter, delta: int) -> None:
    add = total.add
    for _ in range(ITERS):
        add(delta)


def main(argv: list[str]) -> None:
    start = "fork"
    args = []
    it = iter(argv)
    for a in it:
        if a == "--spawn":
            start = "spawn"
        elif a == "--start":
            start = next(it, "")
        else:
            args.append(a)
    if start not in mp.get_all_start_methods():
        sys.exit(f"inc.py: --start {start!r}: not one of "
                 f"{', '.join(mp.get_all_start_methods())}")
    mp.set_start_method(start)
    backend = args[0] if args else "atomic"
    with tally.Counter(backend, 0, shared=True) as total:
        procs = [mp.Process(target=worker, args=(total, d)) for d in (1, 2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        print(total.value)


if __name__ == "__main__":
    main(sys.argv[1:])
