#!/usr/bin/env python3
"""The lesson's first program on tally: 500, one process adds 5 and another
subtracts 5, a hundred times each, 10 ms apart.

The lesson used multiprocessing.Value and a Lock; here one tally.Counter is
both.  With a lock (the default, "mutex") it prints 500.  With the racy
backend and the lesson's window it drifts, as the lesson's did:

    python3 addsub.py                       # 500
    python3 addsub.py none:window_us=30     # 455, 615, 505, ...
"""
import sys
import time
from multiprocessing import Process

import tally


def add_500(total: tally.Counter) -> None:
    for _ in range(100):
        time.sleep(0.01)
        total.add(5)


def sub_500(total: tally.Counter) -> None:
    for _ in range(100):
        time.sleep(0.01)
        total.add(-5)


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "mutex"
    # shared=True: the processes started from here on share the counter,
    # under every start method.
    with tally.Counter(backend, 500, shared=True) as total:
        add_proc = Process(target=add_500, args=(total,))
        sub_proc = Process(target=sub_500, args=(total,))
        add_proc.start()
        sub_proc.start()
        add_proc.join()
        sub_proc.join()
        print(total.value)
