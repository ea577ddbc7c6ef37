#!/usr/bin/env python3
"""How late another process sees a write-behind add (issue 21, requirement
4: "the lag another process sees <= N ms + one round trip").

    bench/redis-lag.py REDIS_LAG [--flush-ms 1,10,100] [--seconds S]
                       [--poll-us P] [--label TEXT] [--out DIR]

Starts a private redis-server on loopback (no persistence) and runs the
redis_lag program (bench/redis_lag.c, built as build/.../bench/redis_lag)
on it once for every N: a writer adds 1 at random moments to
`redis:...,flush_ms=N`, a reader process polls a sync `keep` handle on the
same key, and each add's lag is from the writer's tally_add() to the return
of the reader's first tally_get() that shows it; the round trip is the
reader's own tally_get().  Writes DIR/lag.json (every number, the
program's context and the machine's, the load before and after) and
DIR/lag.txt (the summary it prints).  A run that fails is recorded
with its message and the others still run; the exit status is then 1.  --label (e.g. "draft: load 1.9")
is stored in the JSON as is.
"""
import argparse
import json
import os
import subprocess

from redis_common import context, private_server


def summary(d):
    c = d["context"]
    lines = [
        f"redis_lag on {c['cpu_model']}, {c['online_cpus']} CPUs, "
        f"{c['kernel']}; {c.get('compiler', '?')} ({c.get('build_type', '?')}); "
        f"{c['redis_server']}",
        f"load average {c['loadavg_before']:.2f} before, "
        f"{c['loadavg_after']:.2f} after"
        + (f"; {c['label']}" if c.get("label") else ""),
        "ms; lag: the writer's tally_add() to the return of the reader's "
        "first tally_get() showing it; rtt: the reader's tally_get(); "
        "interval: between the value changes the reader saw",
        f"{'N':>5} {'samples':>7} {'lag p50':>8} {'p99':>8} {'max':>8} "
        f"{'rtt p50':>8} {'p99':>6} {'max':>6} {'interval p50':>12} "
        f"{'max':>8}  max <= N + rtt p99?",
    ]
    for r in d["results"]:
        lag, rtt, iv = r["lag_ms"], r["rtt_ms"], r["seen_interval_ms"]
        verdict = ("yes" if r["max_within_bound"] else
                   f"NO: max is N + {r['max_over_n_ms']:.3f}, "
                   f"{r['over_bound']} of {r['samples']} samples over "
                   f"{r['bound_ms']:.3f}"
                   + (" (p99 within)" if r["p99_within_bound"] else ""))
        lines.append(
            f"{r['flush_ms']:>5} {r['samples']:>7} {lag['p50']:>8.3f} "
            f"{lag['p99']:>8.3f} {lag['max']:>8.3f} {rtt['p50']:>8.3f} "
            f"{rtt['p99']:>6.3f} {rtt['max']:>6.3f} {iv['p50']:>12.3f} "
            f"{iv['max']:>8.3f}  {verdict}")
    for f in d["failed"]:
        lines.append(f"{f['flush_ms']:>5} failed (exit {f['exit_status']}): "
                     + f["stderr"].replace("\n", " / "))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("redis_lag")
    ap.add_argument("--flush-ms", default="1,10,100")
    ap.add_argument("--seconds", default="20",
                    help="of adds for each N (default 20)")
    ap.add_argument("--poll-us", default="0",
                    help="the reader's pause between gets (default 0: "
                    "as fast as it can)")
    ap.add_argument("--label")
    ap.add_argument("--out")
    a = ap.parse_args()

    # One run of the program per N, so that a run that fails (its message
    # is kept) does not take the others with it.
    results, failed, prog = [], [], None
    with private_server() as port:
        ctx = context()
        ctx["redis_lag"] = a.redis_lag
        for n in a.flush_ms.split(","):
            out = subprocess.run(
                [a.redis_lag, "--url", f"redis://127.0.0.1:{port}",
                 "--flush-ms", n, "--seconds", a.seconds, "--poll-us",
                 a.poll_us, "--format", "json"],
                capture_output=True, text=True)
            if out.returncode != 0:
                failed.append({"flush_ms": int(n),
                               "exit_status": out.returncode,
                               "stderr": out.stderr.strip()})
                continue
            d = json.loads(out.stdout)
            prog = prog or d["context"]
            r = d["results"][0]
            r["loadavg_start"] = d["context"]["loadavg_start"]
            results.append(r)
        ctx["loadavg_after"] = os.getloadavg()[0]
    # The program's own context (compiler, build, load at its start) and
    # the machine's (redis-server, hiredis, commit) side by side.
    prog = {k: v for k, v in (prog or {}).items()
            if k not in ("loadavg_start", "loadavg_end")}  # per N instead
    d = {"context": {**ctx, **prog}, "results": results, "failed": failed}
    if a.label:
        d["context"]["label"] = a.label
    text = summary(d)
    if a.out:
        with open(os.path.join(a.out, "lag.json"), "w") as f:
            json.dump(d, f, indent=1)
            f.write("\n")
        with open(os.path.join(a.out, "lag.txt"), "w") as f:
            f.write(text + "\n")
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
