#!/usr/bin/env python3
"""A job counter for a process pool: every job adds 1 when it finishes, and
the main program reads how many are done while the pool works.

    python3 jobs.py [START_METHOD]       # fork, spawn or forkserver

The counter is passed to each job as an argument: a pool pickles every
task's arguments, under every start method, and a shared=True counter
travels as its automatic name, so each worker adds to the same counter.
Prints "100 of 100 jobs done".
"""
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import tally

JOBS = 100


def job(n: int, done: tally.Counter) -> int:
    time.sleep(0.001)  # the work
    done.add()
    return n * n


def main(start: str) -> None:
    with tally.Counter("atomic", shared=True) as done:
        with ProcessPoolExecutor(4, mp_context=get_context(start)) as pool:
            futures = [pool.submit(job, n, done) for n in range(JOBS)]
            while done.value < JOBS // 2 and not futures[-1].done():
                time.sleep(0.001)  # progress, read as the pool works
            squares = sum(f.result() for f in futures)
        assert squares == sum(n * n for n in range(JOBS))
        print(f"{done.value} of {JOBS} jobs done")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "forkserver")
