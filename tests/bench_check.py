#!/usr/bin/env python3
"""Checks of `tally bench` for CTest (tests/bench.cmake).

usage: bench_check.py CASE TALLY [OUTDIR]

Never asserts absolute speeds: only completeness, correctness, labels, exit
codes and how long a run takes against its own duration.
"""
import json
import os
import subprocess
import sys
import time

REQUIRED = ["backend", "mode", "workers", "ops_per_sec", "ops_per_sec_min",
            "ops_per_sec_max", "ns_per_op", "per_worker_ops", "fairness",
            "latency_ns", "oversubscribed", "correct"]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def bench(tally, args, env=None):
    t0 = time.monotonic()
    p = subprocess.run([tally, "bench"] + args, capture_output=True,
                       text=True, env=env, timeout=120)
    return p, time.monotonic() - t0


def check_result(r, backend=None):
    missing = [k for k in REQUIRED if k not in r]
    if missing:
        fail("result %s lacks %s" % (r.get("backend"), missing))
    if len(r["per_worker_ops"]) != r["workers"]:
        fail("%s/%d: %d per-worker counts" % (r["backend"], r["workers"],
                                              len(r["per_worker_ops"])))
    if not 0 < r["fairness"] <= 1.0:
        fail("%s/%d: fairness %s not in (0, 1]" % (r["backend"], r["workers"],
                                                    r["fairness"]))
    lat = r["latency_ns"]
    for k in ("p50", "p99", "p999", "max"):
        if k not in lat:
            fail("latency_ns lacks " + k)
    if not lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]:
        fail("%s/%d: percentiles out of order: %s" % (r["backend"],
                                                      r["workers"], lat))
    if not r["ops_per_sec_min"] <= r["ops_per_sec"] <= r["ops_per_sec_max"]:
        fail("%s/%d: median outside min..max" % (r["backend"], r["workers"]))
    if r["ops_per_sec"] <= 0:
        fail("%s/%d: no adds measured" % (r["backend"], r["workers"]))


def synchronized(tally):
    """The backends `tally list` says are built in, synchronize (not racy)
    and need no server (not remote): the registry decides, not a list."""
    p = subprocess.run([tally, "list", "--format", "json"],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        fail("tally list: exit %d: %s" % (p.returncode, p.stderr))
    names = [b["name"] for b in json.loads(p.stdout)
             if b["built_in"] and not {"racy", "remote"} & set(b["caps"])]
    if "atomic" not in names:
        fail("tally list names no synchronized backend: %s" % names)
    return names


def pick(tally, want):
    """The first backend in registry order that is built in, needs no
    server and has every capability in `want`: picked by capability, never
    by name, so that a build without an optional library passes."""
    p = subprocess.run([tally, "list", "--format", "json"],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        fail("tally list: exit %d: %s" % (p.returncode, p.stderr))
    for b in json.loads(p.stdout):
        caps = set(b["caps"])
        if b["built_in"] and "remote" not in caps and set(want) <= caps:
            return b["name"]
    fail("tally list names no built-in backend with %s" % want)


def fifo(tally):
    """A FIFO spinlock: Concurrency Kit's ticket lock, or where tally was
    built without CK (the i386 preset) the CLH lock, which is always built
    in."""
    return "ticket" if "ticket" in synchronized(tally) else "clh"


def case_json(tally):
    backends = synchronized(tally)
    p, _ = bench(tally, ["--backend", ",".join(backends), "--workers", "1,2",
                         "--duration", "0.3", "--repeat", "3",
                         "--format", "json"])
    if p.returncode != 0:
        fail("exit %d: %s" % (p.returncode, p.stderr))
    doc = json.loads(p.stdout)
    for k in ("cpu_model", "online_cpus", "kernel", "compiler", "build_type",
              "tally_version", "date", "command_line"):
        if k not in doc["context"]:
            fail("context lacks " + k)
    got = {(r["backend"], r["workers"]) for r in doc["results"]}
    want = {(b, w) for b in backends for w in (1, 2)}
    if got != want or len(doc["results"]) != len(want):
        fail("results for %s, wanted %s" % (sorted(got), sorted(want)))
    for r in doc["results"]:
        check_result(r)
        if r["correct"] is not True or r["repeats"] != 3:
            fail("%s/%d: correct=%s repeats=%s" % (
                r["backend"], r["workers"], r["correct"], r["repeats"]))
        # Which way the adds went: only a backend with two ways says.
        want_path = ("rseq", "atomic") if r["backend"] == "percpu" else (None,)
        if r.get("path") not in want_path:
            fail("%s/%d: path %r" % (r["backend"], r["workers"],
                                     r.get("path")))
        # A 0.3 s run plus warm-up ends well within a second.
        if r["run_s_max"] > 0.3 + 0.1 + 2.0:
            fail("%s/%d took %.2f s" % (r["backend"], r["workers"],
                                        r["run_s_max"]))


def case_oversubscribed(tally):
    cpus = os.cpu_count() or 1
    workers = max(8, 4 * cpus)
    # Every queued ticket waiter still takes the lock once as the run
    # drains; a CLH waiter may leave the queue, so some of 4 per CPU often
    # add nothing (fairness 0): without ticket there is no lock to check.
    lock = fifo(tally)
    if lock != "ticket":
        print("skipped: ticket is not built in (no Concurrency Kit)")
        sys.exit(0)
    p, took = bench(tally, ["--backend", lock, "--workers", str(workers),
                            "--mode", "threads,processes", "--duration",
                            "0.3", "--repeat", "1", "--format", "json"])
    if p.returncode != 0:
        fail("exit %d: %s" % (p.returncode, p.stderr))
    doc = json.loads(p.stdout)
    if len(doc["results"]) != 2:
        fail("wanted a threads and a processes result")
    for r in doc["results"]:
        check_result(r)
        if r["oversubscribed"] is not True or r["correct"] is not True:
            fail("%s: oversubscribed=%s correct=%s" % (
                r["mode"], r["oversubscribed"], r["correct"]))
        # The drain (each queued waiter still takes the lock once) costs
        # scheduler time slices; on a busy machine that is up to seconds.
        if r["run_s_max"] > 0.4 + 6.0:
            fail("%s: a run took %.2f s for 0.4 s of work" % (
                r["mode"], r["run_s_max"]))
    # Two runs of 0.4 s, calibration, start-up: seconds, not minutes.
    if took > 30:
        fail("the oversubscribed %s sweep took %.1f s" % (lock, took))
    t, _ = bench(tally, ["--backend", lock, "--workers", str(workers),
                         "--duration", "0.1", "--repeat", "1"])
    if t.returncode != 0 or "oversubscribed" not in t.stdout:
        fail("the table does not say oversubscribed:\n" + t.stdout)


BAD = [
    ["--workers", "0"], ["--workers", "1025"], ["--workers", "1,,2"],
    ["--workers", "99999999999999999999999"], ["--workers", "2,2"],
    ["--workers", "-1"], ["--workers", "1x"], ["--workers", ""],
    ["--duration", "0"], ["--duration", "-1"], ["--duration", "abc"],
    ["--duration", "1e3"], ["--duration", "3601"], ["--duration", "nan"],
    ["--repeat", "0"], ["--repeat", "1001"], ["--backend", "nope"],
    ["--backend", "atomic,nope"], ["--backend", ""], ["--format", "xml"],
    ["--plot", "out.jpg"], ["--cs-ns", "5", "--backend", "atomic"],
    ["--cs-ns", "-5"], ["--think-ns", "-3"],
    ["--sample-every", "3"], ["--mode", "fibers"], ["--mode", "threads,threads"],
    ["--warmup", "0"], ["--bogus"], ["extra"], ["--workers"],
]


def case_bad_input(tally):
    for args in BAD:
        p, took = bench(tally, args + ["--duration", "0.01"]
                        if "--duration" not in args else args)
        if p.returncode != 2 or p.stdout != "" or "tally bench" not in p.stderr:
            fail("%s: exit %d, stdout %r, stderr %r" % (
                args, p.returncode, p.stdout, p.stderr))
        if took > 2:
            fail("%s: refused only after %.1f s (work started?)" % (args, took))


def case_racy(tally):
    p, _ = bench(tally, ["--backend", "none", "--workers", "1,2",
                         "--duration", "0.1", "--repeat", "1",
                         "--format", "json"])
    if p.returncode != 0:
        fail("racy 'none' set exit %d: %s" % (p.returncode, p.stderr))
    for r in json.loads(p.stdout)["results"]:
        check_result(r)
        if r.get("racy") is not True:
            fail("'none' is not labelled racy")


def case_plot(tally, outdir):
    out = os.path.join(outdir, "bench_plot_test.png")
    if os.path.exists(out):
        os.unlink(out)
    lock = pick(tally, ["fair", "spinning"])
    p, _ = bench(tally, ["--backend", "atomic," + lock, "--workers", "1,2,4",
                         "--duration", "0.05", "--repeat", "1",
                         "--plot", out, "--format", "csv"])
    if p.returncode != 0:
        fail("exit %d: %s" % (p.returncode, p.stderr))
    with open(out, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            fail(out + " is not a PNG")
    lines = p.stdout.strip().split("\n")
    if len(lines) != 1 + 6 or not lines[0].startswith("backend,mode,workers"):
        fail("CSV: %r" % p.stdout)


def case_no_gnuplot(tally):
    env = dict(os.environ, PATH="/nonexistent")
    p, took = bench(tally, ["--backend", "atomic", "--workers", "1",
                            "--plot", "x.png"], env=env)
    if p.returncode not in (2, 3) or p.stdout or "gnuplot" not in p.stderr:
        fail("exit %d, stderr %r" % (p.returncode, p.stderr))
    if took > 2:
        fail("gnuplot was looked for only after the sweep")


def main():
    case, tally = sys.argv[1], sys.argv[2]
    if case == "plot":
        case_plot(tally, sys.argv[3])
    else:
        {"json": case_json, "oversubscribed": case_oversubscribed,
         "bad_input": case_bad_input, "racy": case_racy,
         "no_gnuplot": case_no_gnuplot}[case](tally)
    print("ok")


if __name__ == "__main__":
    main()
