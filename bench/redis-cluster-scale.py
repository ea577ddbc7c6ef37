#!/usr/bin/env python3
"""What one sharded counter costs a Redis Cluster, per mode, on one shard
and on three (issue 23, requirement 4), and how many shards a deployment
needs.

    bench/redis-cluster-scale.py TALLY [--workers 6] [--adds N]
                                 [--sleep-us 200] [--repeats 3]
                                 [--flush-ms 10] [--label TEXT] [--out DIR]

Starts a private three-primary cluster on loopback (tests/redis_cluster.sh,
ports from --base-port) and, for each mode (sync, async, write-behind
flush_ms=N) and each shard count (1, 3), runs `tally run --workload
inc --sleep-us U` (paced adds, as hosts make them) with --workers
threads over 3 connections (each connection a client of its
own, pinned to a shard: with shards=3 the three clients take one shard
each).  Around each run it resets and reads every node's INFO commandstats
and INFO cpu: server microseconds per add (EVALSHA's own time, and the
node's whole CPU time), adds per server command, and each node's share of
the EVALSHAs.  Repeats are interleaved (mode x shards, then again).
Writes DIR/scale.json (every number, with the machine's context and load)
and DIR/scale.md (the tables and the shard arithmetic from the measured
server time per request).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

from redis_common import cli, commandstats, context, server_cpu

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER = os.path.join(HERE, "..", "tests", "redis_cluster.sh")


def build_of(tally):
    """The compiler and build type of the tree tally was built in (its
    CMakeCache.txt, one folder above tools/)."""
    cache = os.path.join(os.path.dirname(os.path.abspath(tally)), "..",
                         "CMakeCache.txt")
    f = {}
    try:
        with open(cache) as c:
            for line in c:
                if ":" in line and "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    f[k.split(":")[0]] = v
    except OSError:
        return {}
    cc = f.get("CMAKE_C_COMPILER", "cc")
    ver = subprocess.run([cc, "--version"], capture_output=True,
                         text=True).stdout.splitlines()
    return {"compiler": ver[0] if ver else cc,
            "build_type": f.get("CMAKE_BUILD_TYPE", "?")}


def nodes_stats(ports):
    out = {}
    for p in ports:
        st = commandstats(p)
        out[p] = {"evalsha": st.get("evalsha", (0, 0)),
                  "get": st.get("get", (0, 0)),
                  "all_calls": sum(c for c, _ in st.values()),
                  "cpu_s": server_cpu(p)}
    return out


def idle_cpu_per_s(ports, seconds=2.0):
    """What the nodes spend idle (their timers), CPU s per wall s, to take
    off a run's CPU time."""
    cpu0 = sum(server_cpu(p) for p in ports)
    t0 = time.monotonic()
    time.sleep(seconds)
    return (sum(server_cpu(p) for p in ports) - cpu0) / (time.monotonic() - t0)


def one_run(a, ports, mode, shards, key, idle):
    opts = {"sync": "", "async": ",mode=async",
            "behind": f",flush_ms={a.flush_ms}"}[mode]
    backend = (f"redis:cluster=127.0.0.1:{ports[0]};127.0.0.1:{ports[1]},"
               f"key={key},shards={shards},connections=3{opts}")
    for p in ports:
        cli(p, "config", "resetstat")
    cpu0 = {p: server_cpu(p) for p in ports}
    iters = a.adds // a.workers
    t0 = time.monotonic()
    r = subprocess.run([a.tally, "run", "--workload", "inc", "--workers",
                        str(a.workers), "--iters", str(iters), "--sleep-us",
                        str(a.sleep_us), "--backend", backend, "--format",
                        "json"], capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"tally run failed ({r.returncode}): {r.stderr}")
    res = json.loads(r.stdout)
    st = nodes_stats(ports)
    calls = sum(s["evalsha"][0] for s in st.values())
    usec = sum(s["evalsha"][1] for s in st.values())
    cpu = max(0.0, sum(st[p]["cpu_s"] - cpu0[p] for p in ports) - idle * wall)
    adds = res["total_ops"]
    return {
        "mode": mode, "shards": shards, "adds": adds,
        "exact": res["exact"], "seconds": res["seconds"],
        "adds_per_s": adds / res["seconds"],
        "requests": calls,
        "adds_per_request": adds / calls if calls else None,
        "server_us_per_request": usec / calls if calls else None,
        "server_us_per_add": usec / adds,
        "server_cpu_us_per_add": cpu * 1e6 / adds,
        "server_cpu_us_per_request": cpu * 1e6 / calls if calls else None,
        "per_node_requests": {str(p): st[p]["evalsha"][0] for p in ports},
        "per_node_evalsha_usec": {str(p): st[p]["evalsha"][1]
                                  for p in ports},
    }


def med(rows, k):
    v = [r[k] for r in rows if r[k] is not None]
    return statistics.median(v) if v else None


def spread(rows, k):
    v = [r[k] for r in rows if r[k] is not None]
    return (min(v), max(v)) if v else (None, None)


def tables(d):
    c = d["context"]
    lines = [
        f"# One sharded counter on a Redis Cluster: what it costs the "
        f"servers",
        "",
        f"{c['cpu_model']}, {c['online_cpus']} CPUs, {c['kernel']}; "
        f"{c.get('compiler', '?')} ({c.get('build_type', '?')}); "
        f"{c['redis_server']}; three primaries on loopback, no replicas, "
        f"no persistence. Load average {c['loadavg_before']:.2f} before, "
        f"{c['loadavg_after']:.2f} after"
        + (f"; {c['label']}" if c.get("label") else "") + ".",
        "",
        f"`tally run --workload inc --workers {d['workers']} "
        f"--sleep-us {d['sleep_us']}` over 3 connections (3 clients; "
        f"write-behind flush_ms={d['flush_ms']}), {d['adds']} adds a run, "
        f"{d['repeats']} repeats interleaved; medians, with min-max. "
        "Server µs: EVALSHA's own time from INFO commandstats (the "
        "script); CPU µs: the nodes' whole CPU time (INFO cpu: parsing, "
        "I/O, the script), less what they spend idle in as long.",
        "",
        "| mode | shards | adds/s | adds per request | server µs per "
        "request | server µs per add | server CPU µs per request | "
        "server CPU µs per add | EVALSHAs per node |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in d["modes"]:
        for shards in (1, 3):
            rows = [r for r in d["runs"]
                    if r["mode"] == mode and r["shards"] == shards]
            lo, hi = spread(rows, "server_us_per_add")
            last = rows[-1]["per_node_requests"]
            share = " / ".join(str(last[p]) for p in sorted(last))
            lines.append(
                f"| {mode} | {shards} | {med(rows, 'adds_per_s'):,.0f} | "
                f"{med(rows, 'adds_per_request'):.1f} | "
                f"{med(rows, 'server_us_per_request'):.1f} | "
                f"{med(rows, 'server_us_per_add'):.3f} "
                f"({lo:.3f}-{hi:.3f}) | "
                f"{med(rows, 'server_cpu_us_per_request'):.1f} | "
                f"{med(rows, 'server_cpu_us_per_add'):.3f} | {share} |")
    return lines


def arithmetic(d):
    """Shards needed: hosts x requests/s per host against the measured
    server CPU per request, with half of each node's core as headroom."""
    def cost(mode):
        return statistics.median(r["server_cpu_us_per_request"]
                                 for r in d["runs"] if r["mode"] == mode)
    plans = [("sync, 100 adds/s a host, one request each", 100, "sync"),
             ("write-behind, flush_ms=100", 10, "behind"),
             ("write-behind, flush_ms=1000", 1, "behind")]
    lines = [
        "",
        "## How many shards a deployment needs",
        "",
        "A node runs commands on one core; plan on half of it (500,000 "
        "µs of server CPU a second). A write-behind host sends one "
        "request per client every flush interval, whatever its add rate; "
        "a sync host at a low rate sends about one per add. So requests/s "
        "= hosts x requests/s per host, and shards = requests/s x server "
        "CPU µs per request / 500,000 µs (at least 1), with the cost per "
        f"request measured above for that mode: {cost('sync'):.1f} µs for "
        f"sync (requests back to back), {cost('behind'):.1f} µs for "
        "write-behind (each request alone, so each pays the node's wakeup "
        "and a cold cache).",
        "",
        "| hosts | " + " | ".join(p for p, _, _ in plans) + " |",
        "|---|" + "---|" * len(plans),
    ]
    for hosts in (10, 1000, 100000):
        cells = []
        for _, rate, mode in plans:
            rps = hosts * rate
            need = max(1, math.ceil(rps * cost(mode) / 500000))
            cells.append(f"{rps:,} req/s: {need:,} shard"
                         + ("s" if need > 1 else ""))
        lines.append(f"| {hosts:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Shards spread only over primaries: a shard per primary at most "
        "is useful, so the shards needed is also the primaries needed. "
        "A read (`tally_get()`) costs one GET per shard, pipelined per "
        "node: read a counter of many shards no more often than needed. "
        "The batching of a real host depends on its threads and round "
        "trip: measure one host with `tally run`, then scale.",
    ]
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tally")
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--adds", type=int, default=60000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--flush-ms", type=int, default=10)
    ap.add_argument("--sleep-us", type=int, default=200)
    ap.add_argument("--base-port", type=int, default=15600)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default="bench/results/redis-cluster")
    a = ap.parse_args()
    ports = [a.base_port + i for i in range(3)]
    cdir = f"/tmp/tally-cluster-scale-{os.getpid()}"
    subprocess.run([CLUSTER, "start", cdir, str(a.base_port), "3", "0"],
                   check=True)
    try:
        ctx = context(a.tally)
        ctx.update(build_of(a.tally))
        ctx["label"] = a.label
        modes = ["sync", "async", "behind"]
        idle = idle_cpu_per_s(ports)
        ctx["idle_cpu_s_per_s"] = idle
        runs = []
        n = 0
        for rep in range(a.repeats):
            for mode in modes:
                for shards in (1, 3):
                    n += 1
                    r = one_run(a, ports, mode, shards, f"scale{n}", idle)
                    r["repeat"] = rep
                    runs.append(r)
                    print(f"{mode:6} shards={shards} "
                          f"{r['adds_per_s']:>10,.0f} adds/s "
                          f"{r['server_us_per_add']:.3f} us/add "
                          f"{r['per_node_requests']}", file=sys.stderr)
        ctx["loadavg_after"] = os.getloadavg()[0]
        d = {"context": ctx, "workers": a.workers, "adds": a.adds,
             "repeats": a.repeats, "flush_ms": a.flush_ms,
             "sleep_us": a.sleep_us, "modes": modes,
             "runs": runs}
    finally:
        subprocess.run([CLUSTER, "stop", cdir])
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "scale.json"), "w") as f:
        json.dump(d, f, indent=1)
    text = "\n".join(tables(d) + arithmetic(d)) + "\n"
    with open(os.path.join(a.out, "scale.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
