#!/usr/bin/env python3
"""How long CPython's `total.value += 5` takes on a multiprocessing.Value.

The lesson's addsub workers run `total.value += 5` (and `-= 5`) with no lock
of their own.  A synchronized Value still takes its internal RLock twice:
once to read the value and once to write it, with the interpreter's add in
between.  Another process can write between that read and that write, and
its write is then lost.  The statement's duration is the window that
`none:window_us=N` stands in for in `tally demo`.

Measured two ways:
  after_sleep  as in the lesson: one statement right after each 10 ms sleep
               (cold caches and branch predictors, a CPU that may have
               clocked down); the median of --steps steps.  This is the
               lesson's window.
  hot_loop     back to back in a tight loop (the empty loop subtracted); the
               fastest it can be, for comparison.
With --lesson-runs N it also runs the lesson's unlocked addsub program (two
processes, +5 and -5, 100 steps of 10 ms) N times and counts how many runs
ended other than 500, to compare with `bench/lesson_drift.sh`.

usage: bench/python_rmw.py [--steps N] [--iters N] [--lesson-runs N]
                           [--format text|json]
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
from multiprocessing import Process, Value


def after_sleep(steps):
    total = Value("i", 500)  # synchronized, with an RLock, as in the lesson
    ns = []
    for _ in range(steps):
        time.sleep(0.01)
        t0 = time.perf_counter_ns()
        total.value += 5
        ns.append(time.perf_counter_ns() - t0)
    ns.sort()
    return {"median_ns": statistics.median(ns), "p10_ns": ns[len(ns) // 10],
            "p90_ns": ns[len(ns) * 9 // 10], "min_ns": ns[0],
            "max_ns": ns[-1], "steps": steps}


def rmw(total, n):
    for _ in range(n):
        total.value += 5


def empty(total, n):
    for _ in range(n):
        pass


def hot_loop(iters, repeat=5):
    total = Value("i", 500)

    def per_op(fn):
        t0 = time.perf_counter_ns()
        fn(total, iters)
        return (time.perf_counter_ns() - t0) / iters

    loop = statistics.median(per_op(empty) for _ in range(repeat))
    ops = [per_op(rmw) - loop for _ in range(repeat)]
    return {"median_ns": statistics.median(ops), "min_ns": min(ops),
            "max_ns": max(ops), "iters": iters, "repeat": repeat}


def add_500_no_lock(total):
    for _ in range(100):
        time.sleep(0.01)
        total.value += 5


def sub_500_no_lock(total):
    for _ in range(100):
        time.sleep(0.01)
        total.value -= 5


def lesson_runs(n):
    finals = []
    for _ in range(n):
        total = Value("i", 500)
        procs = [Process(target=f, args=(total,))
                 for f in (add_500_no_lock, sub_500_no_lock)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        finals.append(total.value)
    return {"runs": n, "drifted": sum(v != 500 for v in finals),
            "finals": finals}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--iters", type=int, default=200000)
    ap.add_argument("--lesson-runs", type=int, default=0)
    ap.add_argument("--format", choices=("text", "json"), default="text")
    a = ap.parse_args()
    load0 = os.getloadavg()
    out = {
        "statement": "total.value += 5 on multiprocessing.Value('i', 500) "
                     "(its RLock taken for the read, again for the write)",
        "after_sleep": after_sleep(a.steps),
        "hot_loop": hot_loop(a.iters),
    }
    if a.lesson_runs:
        out["lesson_addsub_no_lock"] = lesson_runs(a.lesson_runs)
    out["window_us"] = round(out["after_sleep"]["median_ns"] / 1000)
    out["context"] = {
        "python": sys.version.split()[0], "executable": sys.executable,
        "machine": platform.machine(), "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if a.format == "json":
        print(json.dumps(out, indent=2))
        return
    s, h = out["after_sleep"], out["hot_loop"]
    print(f"total.value += 5 right after a 10 ms sleep (the lesson): median "
          f"{s['median_ns'] / 1000:.1f} us (p10 {s['p10_ns'] / 1000:.1f}, "
          f"p90 {s['p90_ns'] / 1000:.1f}, {s['steps']} steps)")
    print(f"total.value += 5 in a hot loop: median {h['median_ns']:.0f} ns "
          f"(min {h['min_ns']:.0f}, max {h['max_ns']:.0f})")
    if a.lesson_runs:
        r = out["lesson_addsub_no_lock"]
        print(f"the lesson's unlocked addsub: {r['drifted']}/{r['runs']} "
              f"runs ended other than 500: {r['finals']}")
    print(f"the lesson's window: none:window_us={out['window_us']}")
    c = out["context"]
    print(f"python {c['python']} ({c['executable']}), {c['cpus']} CPUs, "
          f"{c['kernel']}, load {c['loadavg_before']} -> "
          f"{c['loadavg_after']}, {c['when_utc']}")


if __name__ == "__main__":
    main()
