#!/usr/bin/env python3
"""Did a change move the numbers?  The same `tally bench` sweep from two
builds of tally, alternated round by round (which goes first alternates too,
so that slow drift favours neither), then each configuration's median
throughput over the rounds, before and after, and their ratio.

usage: compare-builds.py BEFORE_TALLY AFTER_TALLY [--rounds N] [--out DIR]
                         [-- BENCH_ARGS...]

BENCH_ARGS replace the default sweep (mutex, spin, ticket, atomic, sharded
and percpu; 1 and 2 workers; threads and processes; 0.5 s x 3 repeats).
Each run's JSON, with its machine context, is kept in DIR (default: a
temporary folder); the table goes to stdout.  Ratios within a few percent
of 1 are noise on a shared machine: look at the spread (min and max of the
rounds) before reading anything into one.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

DEFAULT_SWEEP = [
    "--backend", "mutex,spin,ticket,atomic,sharded,percpu",
    "--workers", "1,2", "--mode", "threads,processes",
    "--duration", "0.5", "--warmup", "0.1", "--repeat", "3",
]


def run(tally, args, out):
    subprocess.run([tally, "bench", *args, "--format", "json", "--out", out],
                   check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def main():
    argv = sys.argv[1:]
    extra = None
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--out")
    a = p.parse_args(argv)
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    out = a.out or tempfile.mkdtemp(prefix="tally-compare-")
    os.makedirs(out, exist_ok=True)
    sweep = extra or DEFAULT_SWEEP
    rates = {"before": {}, "after": {}}
    for i in range(1, a.rounds + 1):
        order = ("before", "after") if i % 2 else ("after", "before")
        for which in order:
            tally = a.before if which == "before" else a.after
            j = run(tally, sweep, os.path.join(out, f"{which}-{i}.json"))
            for r in j["results"]:
                key = (r["backend"], r["mode"], r["workers"])
                rates[which].setdefault(key, []).append(r["ops_per_sec"])
    print(f"{'backend':10} {'mode':10} {'w':>2} {'before Mops/s':>14} "
          f"{'after Mops/s':>13} {'after/before':>12}  range before; after")
    ratios = []
    for key in sorted(rates["before"]):
        b, af = rates["before"][key], rates["after"].get(key)
        if not af:
            continue
        mb, ma = statistics.median(b), statistics.median(af)
        ratios.append(ma / mb)
        print(f"{key[0]:10} {key[1]:10} {key[2]:>2} {mb / 1e6:14.2f} "
              f"{ma / 1e6:13.2f} {ma / mb:12.3f}  "
              f"{min(b) / 1e6:.1f}-{max(b) / 1e6:.1f}; "
              f"{min(af) / 1e6:.1f}-{max(af) / 1e6:.1f}")
    print(f"geometric mean of after/before: "
          f"{statistics.geometric_mean(ratios):.3f} over {len(ratios)} "
          f"configurations, {a.rounds} rounds; runs in {out}")


if __name__ == "__main__":
    main()
