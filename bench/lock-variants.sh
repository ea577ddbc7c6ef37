#!/bin/sh
# The lock variants side by side in one `tally bench` run, and the goals of
# the adaptive lock checked from it (issue 13): how each backend's default
# variant was chosen, and what `adaptive` reaches.  Writes
# bench/results/lock_variants.{json,txt}.
#
# usage: bench/lock-variants.sh [BUILD_DIR]   (default: build/release)
# environment: DURATION (0.5), REPEAT (5)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build/release}" && pwd)
cd "$root"
out=bench/results
"$build/tools/tally" bench \
	--backend spin:backoff=exp --backend spin:backoff=none \
	--backend ticket:backoff=none --backend ticket:backoff=prop \
	--backend mutex,adaptive \
	--workers 1,2,8 --mode threads,processes --duration "${DURATION:-0.5}" \
	--repeat "${REPEAT:-5}" --format json --out "$out/lock_variants.json"
python3 - "$out/lock_variants.json" > "$out/lock_variants.txt" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
c = doc["context"]
print("# lock variants, one `tally bench` run: %s, %s CPUs, load %s before, "
      "%s s x %s repeats (median)" % (c["date"], c["online_cpus"],
                                      c["loadavg_before"], c["duration_s"],
                                      c["repeat"]))
print("# load average after: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
r = {(x["backend"], x["mode"], x["workers"]): x for x in doc["results"]}
print("%-20s %-9s %3s %12s %8s %9s %10s %10s" % ("backend", "mode", "w", "adds/s",
      "fair", "cpu/wall", "p50 ns", "p99 ns"))
for x in doc["results"]:
    print("%-20s %-9s %3d %12.0f %8.3f %9.2f %10d %10d" % (
        x["backend"], x["mode"], x["workers"], x["ops_per_sec"],
        x["fairness"], x["cpu_per_wall"], x["latency_ns"]["p50"],
        x["latency_ns"]["p99"]))
def ops(b, w, m="threads"):
    return r[(b, m, w)]["ops_per_sec"]
spin2 = max(ops("spin:backoff=exp", 2), ops("spin:backoff=none", 2))
goals = [
    ("2 workers >= 0.8x spin at its best", ops("adaptive", 2) / spin2, 0.8),
    ("8 workers >= 1.0x mutex", ops("adaptive", 8) / ops("mutex", 8), 1.0),
    ("1 worker >= 1.0x mutex", ops("adaptive", 1) / ops("mutex", 1), 1.0),
    ("Jain fairness at 8 workers >= 0.9",
     r[("adaptive", "threads", 8)]["fairness"], 0.9),
    ("8 processes >= 0.5x mutex in 8 threads",
     ops("adaptive", 8, "processes") / ops("mutex", 8), 0.5),
]
print("\n# adaptive's goals (threads unless said)")
for name, v, want in goals:
    print("%-42s %7.3f  %s" % (name, v, "met" if v >= want else "NOT met"))
print("all counts correct: %s" % all(x["correct"] for x in doc["results"]))
PY
cat "$out/lock_variants.txt"
