#!/bin/sh
# The lesson's addsub drift, counted: RUNS runs of
#   tally run --backend B --workload addsub --mode M
# for each backend B and mode M, and how many ended other than 500.
# The goal (issue 15): with none:window_us=<CPython's read-modify-write>
# at least 15 of 20 drift, in threads and in processes; with a lock, none.
#
# usage: bench/lesson_drift.sh TALLY [RUNS] [BACKEND...]
#   default backends: none none:window_us=30 mutex atomic
set -eu
tally=$1
runs=${2:-20}
shift $(($# >= 2 ? 2 : 1))
[ $# -gt 0 ] || set -- none none:window_us=30 mutex atomic

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm), $(nproc) CPUs," \
	"load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %-10s %7s %s\n' backend mode drifted "final values"
for b in "$@"; do
	for m in threads processes; do
		n=0 vals=""
		i=0
		while [ $i -lt "$runs" ]; do
			i=$((i + 1))
			# exit 1 (lost updates) is the expected outcome for none
			v=$("$tally" run --backend "$b" --workload addsub \
				--mode "$m" --format csv 2>/dev/null |
				awk -F, 'NR == 2 { print $7 }') || true
			[ "$v" = 500 ] || n=$((n + 1))
			vals="$vals $v"
		done
		printf '%-22s %-10s %3d/%-3d%s\n' "$b" "$m" "$n" "$runs" "$vals"
	done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
