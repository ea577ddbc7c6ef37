#!/usr/bin/env python3
"""How long CPython's `total.value += 5` takes on a multiprocessing.Value.

The lesson's addsub workers run `total.value += 5` (and `-= 5`) with no lock
of their own.  A synchronized Value still takes its internal RLock twice: once
to read the value and once to write it, with the interpreter's add in
between.  Between that read and that write another process can write too,
and its write is then lost.  This measures the whole statement, which is
the window `none:window_us=N` stands in for in `tally demo`.

usage: bench/python_rmw.py [--iters N] [--repeat R] [--format text|json]
Prints the median over R repeats of N statements each, with the parts.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
from multiprocessing import Value


def per_op_ns(stmt, total, iters):
    """Median-free single measurement: ns per statement minus the loop."""
    loop = stmt.__code__
    del loop
    t0 = time.perf_counter_ns()
    stmt(total, iters)
    return (time.perf_counter_ns() - t0) / iters


def rmw(total, n):
    for _ in range(n):
        total.value += 5


def read(total, n):
    for _ in range(n):
        total.value


def write(total, n):
    for _ in range(n):
        total.value = 500


def empty(total, n):
    for _ in range(n):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=200000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--format", choices=("text", "json"), default="text")
    a = ap.parse_args()
    total = Value("i", 500)  # as in the lesson: synchronized, with an RLock
    parts = {}
    for name, fn in (("empty_loop", empty), ("read", read), ("write", write),
                     ("rmw", rmw)):
        runs = [per_op_ns(fn, total, a.iters) for _ in range(a.repeat)]
        parts[name] = {"median_ns": statistics.median(runs),
                       "min_ns": min(runs), "max_ns": max(runs)}
    loop = parts["empty_loop"]["median_ns"]
    rmw_ns = parts["rmw"]["median_ns"] - loop
    out = {
        "statement": "total.value += 5  (multiprocessing.Value('i'), "
                     "its RLock taken for the read and again for the write)",
        "rmw_ns": round(rmw_ns, 1),
        "rmw_us": round(rmw_ns / 1000, 2),
        "parts_ns_per_op": {k: {kk: round(vv, 1) for kk, vv in v.items()}
                            for k, v in parts.items()},
        "iters": a.iters,
        "repeat": a.repeat,
        "context": {
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "kernel": platform.release(),
        },
    }
    if a.format == "json":
        print(json.dumps(out, indent=2))
        return
    print(f"total.value += 5: {out['rmw_us']} us per statement "
          f"(median of {a.repeat} x {a.iters}, loop subtracted)")
    for k, v in out["parts_ns_per_op"].items():
        print(f"  {k:10s} median {v['median_ns']:8.1f} ns  "
              f"min {v['min_ns']:8.1f}  max {v['max_ns']:8.1f}")
    c = out["context"]
    print(f"python {c['python']} ({c['executable']}), {c['cpus']} CPUs, "
          f"load {c['loadavg']}")


if __name__ == "__main__":
    main()
