#!/usr/bin/env python3
"""The lesson's `inc` from Python: multiprocessing.Value + Lock against a
tally.Counter, side by side in one run.

  inc: two processes (fork), 1,000,000 iterations each; the first adds 1,
  the second adds 2; the answer is 3,000,000.
    value_lock   the lesson:  `with lock: val.value += d`  on Value('i')
                 with a Lock, as the lesson wrote it
    tally_atomic the same program on tally.Counter("atomic", shared=True):
                 `total.add(d)`
  Each is run --repeat times, alternating; the median wall time is kept
  (first start to last join), and every run's final value is checked.

Also, in one process, what dropping the GIL around an add would cost the
atomic backend (the module keeps it for lock-free backends and drops it for
every other): ns per add with the GIL kept and with it dropped.

usage: PYTHONPATH=<dir of the tally module> bench/python_counter.py
           [--iters N] [--repeat R] [--format text|json]
"""
import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time

import tally


def value_lock_worker(val, lock, delta, iters):
    for _ in range(iters):
        with lock:
            val.value += delta


def tally_worker(total, delta, iters):
    for _ in range(iters):
        total.add(delta)


def timed(procs):
    """Seconds from starting the processes to the last one's end."""
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return time.perf_counter() - t0


def run_value_lock(ctx, iters):
    val = ctx.Value("i", 0)
    lock = ctx.Lock()
    procs = [ctx.Process(target=value_lock_worker, args=(val, lock, d, iters))
             for d in (1, 2)]
    return timed(procs), val.value


def run_tally(ctx, backend, iters):
    with tally.Counter(backend, 0, shared=True) as total:
        procs = [ctx.Process(target=tally_worker, args=(total, d, iters))
                 for d in (1, 2)]
        return timed(procs), total.value


def gil_cost(n, repeat):
    out = {}
    with tally.Counter("atomic") as c:
        for label, release in (("gil_kept", False), ("gil_dropped", True)):
            c._release_gil = release
            runs = []
            for _ in range(repeat):
                t0 = time.perf_counter_ns()
                tally_worker(c, 1, n)
                runs.append((time.perf_counter_ns() - t0) / n)
            out[label + "_ns_per_add"] = round(statistics.median(runs), 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--format", choices=("text", "json"), default="text")
    a = ap.parse_args()
    ctx = mp.get_context("fork")
    expected = 3 * a.iters
    load0 = os.getloadavg()
    times = {"value_lock": [], "tally_atomic": []}
    exact = True
    for _ in range(a.repeat):
        s, v = run_value_lock(ctx, a.iters)
        times["value_lock"].append(s)
        exact &= v == expected
        s, v = run_tally(ctx, "atomic", a.iters)
        times["tally_atomic"].append(s)
        exact &= v == expected
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "workload": f"inc: 2 processes (fork) x {a.iters} iterations, "
                    f"+1 and +2, expected {expected}",
        "seconds_median": {k: round(v, 3) for k, v in med.items()},
        "seconds_all": {k: [round(x, 3) for x in v]
                        for k, v in times.items()},
        "speedup": round(med["value_lock"] / med["tally_atomic"], 1),
        "exact": exact,
        "single_process_atomic": gil_cost(a.iters, a.repeat),
        "repeat": a.repeat,
        "context": {
            "python": sys.version.split()[0], "executable": sys.executable,
            "tally": tally.version, "module": tally.__file__,
            "machine": platform.machine(), "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load0],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
    if a.format == "json":
        print(json.dumps(out, indent=2))
    else:
        print(out["workload"])
        for k in times:
            print(f"  {k:13s} median {med[k]:7.3f} s  (runs: "
                  f"{', '.join(f'{x:.3f}' for x in times[k])})")
        print(f"  tally atomic is {out['speedup']}x faster; every run "
              f"{'exact' if exact else 'NOT EXACT'}")
        g = out["single_process_atomic"]
        print(f"one process, atomic: {g['gil_kept_ns_per_add']} ns per add "
              f"with the GIL kept, {g['gil_dropped_ns_per_add']} ns with it "
              f"dropped around each add")
        c = out["context"]
        print(f"python {c['python']} ({c['executable']}), tally "
              f"{c['tally']}, {c['cpus']} CPUs, load {c['loadavg_before']} "
              f"-> {c['loadavg_after']}, {c['when_utc']}")
    sys.exit(0 if exact else 1)


if __name__ == "__main__":
    main()
