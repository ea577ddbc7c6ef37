#!/bin/sh
# The standard sweep: every backend, and the lock variants that are not a
# backend's default (spin:backoff=none, ticket:backoff=prop), workers 1, 2,
# 4, 8, threads and processes; JSON, CSV and a plot (throughput, fairness,
# latency) under bench/results/ with the machine's context, plus the
# interface-cost, latency-sampling-cost and spin-against-CK checks.
#
# usage: bench/run-standard.sh [BUILD_DIR]   (default: build/bench)
# environment: DURATION (0.5), REPEAT (3), ROUNDS (21: interface_cost)
# Run it on a quiet machine: the load average is recorded, not subtracted.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build/bench}" 2>/dev/null && pwd) || {
	echo "run-standard.sh: no build directory ${1:-$root/build/bench}" >&2
	exit 2
}
cd "$root" # the output paths in the recorded command line stay relative
tally=$build/tools/tally
cost=$build/bench/interface_cost
out=bench/results
duration=${DURATION:-0.5}
repeat=${REPEAT:-3}
rounds=${ROUNDS:-21}

if [ ! -x "$tally" ]; then
	echo "run-standard.sh: no $tally; build first:" >&2
	echo "  cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release &&" \
		"cmake --build build/bench" >&2
	exit 2
fi
mkdir -p "$out"
start=$(date +%s)

# Every built-in backend but the remote ones (as --backend all), each
# followed by its non-default variants.  A backend with options takes the
# rest of its --backend argument, so each gets a --backend of its own (no
# spec holds a space).
backends=$("$tally" list --format csv | awk -F, '
	NR > 1 && $2 == "yes" && $3 !~ /remote/ {
		printf " --backend %s", $1
		if ($1 == "spin") printf " --backend spin:backoff=none"
		if ($1 == "ticket") printf " --backend ticket:backoff=prop"
	}')
echo "== standard sweep (${duration} s x ${repeat}):$backends" >&2
set +e
# shellcheck disable=SC2086 # one word per --backend and spec, on purpose
"$tally" bench $backends --workers 1,2,4,8 --mode threads,processes \
	--duration "$duration" --repeat "$repeat" --format json \
	--out "$out/standard.json" --plot "$out/standard.png"
status=$?
set -e
swept=$(date +%s)

# The same results as CSV, for spreadsheets, from the JSON just written.
python3 - "$out/standard.json" "$out/standard.csv" <<'EOF'
import csv, json, sys
doc = json.load(open(sys.argv[1]))
cols = ["backend", "mode", "workers", "oversubscribed", "ops_per_sec",
        "ops_per_sec_min", "ops_per_sec_max", "ns_per_op", "fairness",
        "min_share", "max_share", "cpu_per_wall", "stop_lag_ms_max",
        "correct", "racy"]
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(cols + ["p50_ns", "p99_ns", "p999_ns", "max_ns"])
    for r in doc["results"]:
        lat = r["latency_ns"]
        w.writerow([r[c] for c in cols] +
                   [lat["p50"], lat["p99"], lat["p999"], lat["max"]])
EOF

echo "== latency sampling cost (atomic, 1 worker, off vs auto)" >&2
python3 - "$tally" > "$out/sampling_cost.txt" <<'EOF'
import json, statistics, subprocess, sys
# Adds per CPU-second, so that time stolen by other work on the machine
# does not count against whichever side happened to run then.
def rate(sample):
    p = subprocess.run([sys.argv[1], "bench", "--backend", "atomic",
                        "--workers", "1", "--duration", "0.3", "--repeat",
                        "1", "--sample-every", sample, "--format", "json"],
                       capture_output=True, text=True, check=True)
    r = json.loads(p.stdout)["results"][0]
    return sum(r["per_worker_ops"]) / r["cpu_s"], r["latency_ns"]
ratios = []
for i in range(11):
    order = ["off", "auto"] if i % 2 == 0 else ["auto", "off"]
    got = {s: rate(s) for s in order}
    ratios.append(got["off"][0] / got["auto"][0])
ratios.sort()
print("latency sampling cost, atomic backend, 1 worker, 11 interleaved "
      "pairs of 0.3 s")
print("slowdown with sampling on (adds per CPU-second, off / auto): "
      "median %.4f, range %.4f..%.4f (target <= 1.05: %s)" % (
          statistics.median(ratios), ratios[0], ratios[-1],
          "ok" if statistics.median(ratios) <= 1.05 else "ABOVE"))
print("last sampled run: sample_every %d, %d samples" % (
    got["auto"][1]["sample_every"], got["auto"][1]["samples"]))
EOF
cat "$out/sampling_cost.txt" >&2

if [ -x "$cost" ]; then
	echo "== interface cost ($rounds rounds)" >&2
	"$cost" "$rounds" 20 > "$out/interface_cost.txt"
	cat "$out/interface_cost.txt" >&2
fi
if [ -x "$build/bench/ck_fas_eb" ]; then
	echo "== spin against a hand-written ck_spinlock_fas_lock_eb loop" >&2
	"$root/bench/spin-vs-ck.sh" "$build" > "$out/spin_vs_ck.txt"
	cat "$out/spin_vs_ck.txt" >&2
fi
end=$(date +%s)

# The machine and build the numbers came from, for people.
python3 - "$out/standard.json" "$((swept - start))" "$((end - start))" \
	> "$out/context.md" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
c = doc["context"]
print("# Context of the recorded benchmark run\n")
for k in ("date", "cpu_model", "online_cpus", "kernel", "compiler",
          "c_flags", "build_type", "tally_version", "loadavg_before",
          "duration_s", "warmup_s", "repeat", "sample_every",
          "timer_overhead_ns", "command_line"):
    print("- **%s**: `%s`" % (k, c.get(k)))
print("- **sweep wall time**: %s s (all steps: %s s)" % (sys.argv[2],
                                                        sys.argv[3]))
print("- **load average after** (1, 5, 15 min): `%s`" %
      " ".join(open("/proc/loadavg").read().split()[:3]))
one = sorted(r["cpu_per_wall"] for r in doc["results"] if r["workers"] == 1)
print("- **quiet?** median cpu_per_wall of the 1-worker runs: %.2f (1.00: "
      "each worker had a CPU to itself; lower: other work took CPU time)"
      % one[len(one) // 2])
bad = [r for r in doc["results"] if not r["correct"] and not r["racy"]]
print("- **results**: %d configurations, %d with a wrong count" % (
    len(doc["results"]), len(bad)))
print("\nFiles: `standard.json` (every field), `standard.csv`, "
      "`standard.png`, `interface_cost.txt`, `sampling_cost.txt`, "
      "`spin_vs_ck.txt`.")
EOF
echo "== wrote $out (sweep $((swept - start)) s, all $((end - start)) s)" >&2
exit $status
