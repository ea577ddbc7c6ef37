#!/bin/sh
# `tally bench --backend spin` against a hand-written loop around Concurrency
# Kit's ck_spinlock_fas_lock_eb (bench/ck_fas_eb.c) on the same shared
# counter, interleaved in one sitting, so that the machine's load falls on
# both alike.  Prints each round and the median ratio (goal: >= 0.7).
#
# usage: bench/spin-vs-ck.sh [BUILD_DIR]   (default: build/release)
# environment: WORKERS (2), ROUNDS (7), MS (500 per run), SPEC (spin)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build/release}" && pwd)
workers=${WORKERS:-2}
rounds=${ROUNDS:-7}
ms=${MS:-500}
spec=${SPEC:-spin}
echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs, load:$(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $workers workers, $rounds rounds of $ms ms; adds/s; spec '$spec'"
python3 - "$build" "$workers" "$rounds" "$ms" "$spec" <<'PY'
import json, statistics, subprocess, sys
build, workers, rounds, ms, spec = sys.argv[1:]
def hand():
    return float(subprocess.run([build + "/bench/ck_fas_eb", workers, ms],
                 capture_output=True, text=True, check=True).stdout)
def tally():
    p = subprocess.run([build + "/tools/tally", "bench", "--backend", spec,
                        "--workers", workers, "--duration", str(int(ms) / 1000),
                        "--repeat", "1", "--format", "json"],
                       capture_output=True, text=True, check=True)
    r = json.loads(p.stdout)["results"][0]
    assert r["correct"]
    return r["ops_per_sec"]
print("%5s %14s %14s %7s" % ("round", "ck_fas_eb", spec, "ratio"))
ratios = []
for i in range(int(rounds)):
    a, b = (hand(), tally()) if i % 2 == 0 else reversed((tally(), hand()))
    ratios.append(b / a)
    print("%5d %14.0f %14.0f %7.3f" % (i, a, b, b / a))
m = statistics.median(ratios)
print("median ratio %.3f (range %.3f..%.3f); goal >= 0.7: %s" % (
    m, min(ratios), max(ratios), "met" if m >= 0.7 else "NOT met"))
PY
