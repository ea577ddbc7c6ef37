#!/usr/bin/env python3
"""The lesson's `inc` from Python: tally.Counter against what Python offers
for a shared counter, side by side in one run.

  inc: two processes (fork), 1,000,000 iterations each; the first adds 1,
  the second adds 2; the answer is 3,000,000.
    value_lock    the lesson:  `with lock: val.value += d`  on Value('i')
                  with a Lock, as the lesson wrote it
    raw_value     `val.value += d` on RawValue('i'), no lock: racy, it loses
                  updates (its count is reported, not required); the floor
    manager_value the lesson's server: `with lock: val.value += d` on a
                  Manager().Value('i') and Manager().Lock(), every access a
                  round trip to the manager's process; --manager-iters
                  iterations (it is thousands of times slower)
    tally_atomic  the same program on tally.Counter("atomic", shared=True):
                  `total.add(d)`
  Each is run --repeat times, alternating; the median wall time is kept
  (first start to last join), with ns per add (wall time over both
  processes' adds) to compare runs of different lengths, and every run's
  final value is checked (raw_value's loss is reported).

Also, in one process, what dropping the GIL around an add would cost the
atomic backend (the module keeps it for lock-free backends and drops it for
every other): ns per add with the GIL kept and with it dropped.

usage: PYTHONPATH=<dir of the tally package> bench/python_counter.py
           [--iters N] [--manager-iters N] [--repeat R] [--format text|json]
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


def raw_worker(val, delta, iters):
    for _ in range(iters):
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


def run_raw_value(ctx, iters):
    val = ctx.RawValue("i", 0)
    procs = [ctx.Process(target=raw_worker, args=(val, d, iters))
             for d in (1, 2)]
    return timed(procs), val.value


def run_manager_value(ctx, iters):
    with ctx.Manager() as m:
        val = m.Value("i", 0)
        lock = m.Lock()
        procs = [ctx.Process(target=value_lock_worker,
                             args=(val, lock, d, iters)) for d in (1, 2)]
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
    ap.add_argument("--manager-iters", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--format", choices=("text", "json"), default="text")
    a = ap.parse_args()
    if min(a.iters, a.manager_iters, a.repeat) < 1:
        ap.error("--iters, --manager-iters and --repeat take 1 or more")
    ctx = mp.get_context("fork")
    expected = 3 * a.iters
    load0 = os.getloadavg()
    # name: (run, iterations per process, exact required)
    contenders = {
        "value_lock": (run_value_lock, a.iters, True),
        "raw_value": (run_raw_value, a.iters, False),
        "manager_value": (run_manager_value, a.manager_iters, True),
        "tally_atomic": (lambda c, n: run_tally(c, "atomic", n), a.iters,
                         True),
    }
    times = {k: [] for k in contenders}
    lost = {k: [] for k in contenders}
    exact = True
    for _ in range(a.repeat):
        for k, (run, iters, must) in contenders.items():
            s, v = run(ctx, iters)
            times[k].append(s)
            lost[k].append(3 * iters - v)
            exact &= v == 3 * iters or not must
    med = {k: statistics.median(v) for k, v in times.items()}
    ns = {k: med[k] * 1e9 / (2 * contenders[k][1]) for k in med}
    out = {
        "workload": f"inc: 2 processes (fork) x {a.iters} iterations, "
                    f"+1 and +2, expected {expected} (manager_value: "
                    f"{a.manager_iters} iterations)",
        "iters": {k: c[1] for k, c in contenders.items()},
        "seconds_median": {k: round(v, 3) for k, v in med.items()},
        "seconds_all": {k: [round(x, 3) for x in v]
                        for k, v in times.items()},
        "ns_per_add": {k: round(v, 1) for k, v in ns.items()},
        "lost": lost,
        "speedup": round(med["value_lock"] / med["tally_atomic"], 1),
        "speedup_by_ns_per_add": {k: round(ns[k] / ns["tally_atomic"], 1)
                                  for k in ns if k != "tally_atomic"},
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
            print(f"  {k:13s} median {med[k]:7.3f} s  {ns[k]:9.1f} ns/add"
                  f"  lost {max(lost[k])}  (runs: "
                  f"{', '.join(f'{x:.3f}' for x in times[k])})")
        vs = out["speedup_by_ns_per_add"]
        print(f"  per add, tally atomic is {vs['value_lock']}x faster than "
              f"Value + Lock and {vs['manager_value']}x faster than a "
              f"Manager's Value; the racy RawValue takes {vs['raw_value']}x "
              f"its time; {'every' if exact else 'NOT every'} run that "
              f"must be exact was")
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
