#!/usr/bin/env python3
"""The redis backend against redis-benchmark, side by side in one run.

    bench/redis-throughput.py TALLY [--old OLD_TALLY] [--rounds R] [--out DIR]
                              [--connections 1,2,4,8]

Starts a private redis-server on loopback (no persistence), then repeats R
times, interleaved: redis-benchmark -t incr -c 1, `tally run` with 1 thread
(sync, and mode=async), redis-benchmark -c 8 and -c 8 -P 16, `tally run`
with 8 threads once per connections= value, with mode=async and with
flush_ms=10 (write-behind) (and the same 1- and 8-thread runs with
OLD_TALLY, e.g. a build from before adds were combined, when given).  A
run's time ends when its last worker's final flush returns: acknowledged
adds.  For every tally run it reads the server's command statistics before
and after, so it reports adds per server command and the server's
microseconds per add.  sync runs are compared with redis-benchmark at as
many connections, async and write-behind with -c 8 -P 16.  Writes DIR/redis.json (every number
and the machine context) and prints a summary (medians).
"""
import argparse
import json
import os
import statistics
import subprocess

from redis_common import commandstats, context, private_server


def redis_benchmark(port, clients, n, pipeline=1):
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "incr", "-c",
         str(clients), "-n", str(n), "-P", str(pipeline), "--csv"],
        capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells[0] == "INCR":
            return float(cells[1])
    raise RuntimeError("no INCR line from redis-benchmark: " + out)


def tally_run(tally, port, threads, iters, key, extra=""):
    before = commandstats(port)
    out = subprocess.run(
        [tally, "run", "--backend",
         f"redis:url=redis://127.0.0.1:{port},key={key}{extra}", "--workload",
         "inc", "--workers", str(threads), "--iters", str(iters),
         "--format", "json"],
        capture_output=True, text=True, check=True).stdout
    after = commandstats(port)
    d = json.loads(out)
    # Requests: EVALSHA (the commands a script runs are counted too, and
    # inside its time, so not those), else INCRBY (a tally from before
    # scripts).
    def delta(k, i):
        return after.get(k, (0, 0))[i] - before.get(k, (0, 0))[i]
    calls = delta("evalsha", 0) or delta("incrby", 0)
    usec = delta("evalsha", 1) or delta("incrby", 1)
    # seconds: first worker's start to the last one's end, the final
    # flush included (async, write-behind): acknowledged adds.
    return {"adds_per_sec": d["total_ops"] / d["seconds"],
            "adds": d["total_ops"], "server_commands": calls,
            "adds_per_command": d["total_ops"] / max(calls, 1),
            "server_usec_per_add": usec / max(d["total_ops"], 1),
            "exact": d["exact"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tally")
    ap.add_argument("--old")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    ap.add_argument("--connections", default="1,2,4,8",
                    help="the redis backend's connections= values to "
                    "measure at 8 threads")
    a = ap.parse_args()
    a.connections = [int(c) for c in a.connections.split(",")]

    with private_server() as port:
        ctx = context(a.tally)
        runs = {}

        def add(name, value):
            runs.setdefault(name, []).append(value)

        for r in range(a.rounds):
            add("redis-benchmark -c 1", redis_benchmark(port, 1, 20000))
            add("tally 1 thread", tally_run(a.tally, port, 1, 15000, "t1"))
            add("tally 1 thread, mode=async",
                tally_run(a.tally, port, 1, 300000, "t1a", ",mode=async"))
            if a.old:
                add("old tally 1 thread",
                    tally_run(a.old, port, 1, 15000, "o1"))
            add("redis-benchmark -c 8", redis_benchmark(port, 8, 60000))
            add("redis-benchmark -c 8 -P 16",
                redis_benchmark(port, 8, 600000, 16))
            for c in a.connections:
                add(f"tally 8 threads, connections={c}",
                    tally_run(a.tally, port, 8, 10000, f"t8c{c}",
                              f",connections={c}"))
            add("tally 8 threads, mode=async",
                tally_run(a.tally, port, 8, 1000000, "t8a", ",mode=async"))
            add("tally 8 threads, flush_ms=10",
                tally_run(a.tally, port, 8, 1000000, "t8w", ",flush_ms=10"))
            if a.old:
                add("old tally 8 threads",
                    tally_run(a.old, port, 8, 10000, "o8"))
        ctx["loadavg_after"] = os.getloadavg()[0]

    def med(name, field=None):
        v = [x[field] if field else x for x in runs[name]]
        return statistics.median(v)

    summary = {}
    for name in runs:
        rate = med(name, "adds_per_sec" if "tally" in name else None)
        summary[name] = {"ops_per_sec_median": rate}
        if "tally" in name:
            summary[name]["adds_per_command_median"] = med(
                name, "adds_per_command")
            summary[name]["server_usec_per_add_median"] = med(
                name, "server_usec_per_add")
            summary[name]["all_exact"] = all(x["exact"] for x in runs[name])
    for name, v in summary.items():
        if "tally" in name:
            c = "1" if " 1 thread" in name else "8"
            if "async" in name or "flush_ms" in name:
                c = "8 -P 16"  # the goals of those modes
            v["ratio_to_redis_benchmark"] = v["ops_per_sec_median"] / summary[
                f"redis-benchmark -c {c}"]["ops_per_sec_median"]
            v["compared_with"] = f"redis-benchmark -c {c}"
    result = {"context": ctx, "summary": summary, "runs": runs}
    if a.out:
        with open(os.path.join(a.out, "redis.json"), "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    for name, s in summary.items():
        extra = ""
        if "ratio_to_redis_benchmark" in s:
            extra += f"  x{s['ratio_to_redis_benchmark']:.2f} of {s['compared_with']}"
        if "adds_per_command_median" in s:
            extra += (f"  {s['adds_per_command_median']:.2f} adds/command"
                      f"  {s['server_usec_per_add_median']:.3f} server us/add")
        print(f"{name:36s} {s['ops_per_sec_median']:10.0f} /s{extra}")
    print(f"load average {ctx['loadavg_before']:.2f} before, "
          f"{ctx['loadavg_after']:.2f} after; {ctx['online_cpus']} CPUs")


if __name__ == "__main__":
    main()
