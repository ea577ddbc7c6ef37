#!/bin/sh
# The redis backend over a Redis Cluster on loopback, end to end through
# the command line:
#   redis_cluster_test.sh TALLY BASEPORT DIR
# Three primaries (ports BASEPORT..+2) for the everyday cases: a sharded
# counter from 2 processes x 8 threads in every mode, a slot migrated
# mid-run, the whole cluster stopped mid-run.  Then three primaries and
# three replicas (BASEPORT..+5) for failover: CLUSTER FAILOVER mid-run, a
# primary paused past the node timeout with durability=replicas:1, and a
# failover to a replica that had fallen behind, with and without it.
# Every cluster is stopped on exit (trap).  Exit 77 (skip) without
# redis-server, redis-cli or python3.
set -eu
T=$1 base=$2 dir=$3
here=$(cd "$(dirname "$0")" && pwd)
cluster=$here/redis_cluster.sh
for p in redis-server redis-cli python3; do
	if ! command -v "$p" >/dev/null 2>&1; then
		echo "redis_cluster_test: $p not found, skipped" >&2
		exit 77
	fi
done
mkdir -p "$dir"
c3=$dir/c3 c6=$dir/c6 ca=$dir/ca
bg=""
cleanup() {
	for p in $bg; do kill -CONT "$p" 2>/dev/null || true; done
	for d in "$c3" "$c6" "$ca"; do
		for f in "$d"/*/pid; do
			[ -f "$f" ] && kill -CONT "$(cat "$f")" 2>/dev/null
		done
		"$cluster" stop "$d" || true
	done
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

fail() {
	echo "FAIL: $*" >&2
	for f in "$dir"/err "$dir"/out "$dir"/e1 "$dir"/e2; do
		[ -s "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }
	done
	exit 1
}
ok() { echo "ok - $*"; }

seeds="127.0.0.1:$base;127.0.0.1:$((base + 1))"
# A key's slot; the primary serving a slot, and a primary's replica (their
# client ports, from CLUSTER NODES' host:port@bus fields).
slot_of() { redis-cli -p "$base" cluster keyslot "$1"; }
owner() {
	redis-cli -p "$base" cluster nodes | awk -v s="$1" '
	$3 ~ /master/ && $3 !~ /fail/ {
		for (i = 9; i <= NF; i++) {
			n = split($i, r, "-"); if (n == 1) r[2] = r[1]
			if (s >= r[1] + 0 && s <= r[2] + 0) {
				split($2, a, "[:@]"); print a[2]; exit
			}
		}
	}'
}
replica_of() {
	id=$(redis-cli -p "$1" cluster myid)
	redis-cli -p "$1" cluster nodes | awk -v m="$id" '$4 == m {
		split($2, a, "[:@]"); print a[2]; exit }'
}
pid_of() { cat "$1/$2/pid"; }
# Three primaries, each with a replica, none failed, and every node of
# the same view of who serves what: a primary resumed after a failover
# takes a moment to rejoin as a replica and to learn the new map (asked
# first, it would name itself).  Waited for (30 s at most) before each
# failover.
view() {
	redis-cli -p "$1" cluster nodes 2>/dev/null |
		awk '{ sub(/myself,/, "", $3); print $1, $3, $4, $9, $10, $11 }' | sort
}
replicated() {
	view "$base" >"$dir/nodes"
	[ -s "$dir/nodes" ] || return 1
	grep -q fail "$dir/nodes" && return 1
	[ "$(grep -c master "$dir/nodes")" -eq 3 ] || return 1
	[ "$(grep -c slave "$dir/nodes")" -eq 3 ] || return 1
	for p in $(seq "$base" $((base + 5))); do
		[ "$(view "$p")" = "$(cat "$dir/nodes")" ] || return 1
	done
	# shellcheck disable=SC2013 # a port per line, one word each
	for p in $(redis-cli -p "$base" cluster nodes | awk '/master/ { split($2, a, "[:@]"); print a[2] }'); do
		[ -n "$(replica_of "$p")" ] || return 1
	done
}
settle() { wait_for replicated 300 || fail "the cluster did not settle: $(cat "$dir/nodes")"; }
# What a JSON result says (python3: no jq on a fresh machine).
field() {
	python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(str(v).lower() if isinstance(v,bool) else v)' "$1" "$2"
}
# The counter's value: every shard's key ({KEY#i}, or {KEY#i.J}, which
# spreads the shards over the slots), found on every primary and summed
# (printed, and in $sum); how many there are in $nkeys.
total() {
	sum=0 nkeys=0
	for p in $(seq "$base" $((base + 5))); do
		is_master "$p" || continue
		for k in $(redis-cli -p "$p" --scan --pattern "{$1#*}"); do
			case $k in
			*.tally-*) continue ;;
			esac
			v=$(redis-cli -p "$p" get "$k")
			sum=$((sum + ${v:-0}))
			nkeys=$((nkeys + 1))
		done
	done
	echo "$sum"
}
# Wait (at most $2 tenths of a second) for a command to succeed.
wait_for() {
	cond=$1 n=$2
	while [ "$n" -gt 0 ]; do
		eval "$cond" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}
is_master() { redis-cli -p "$1" role 2>/dev/null | head -n 1 | grep -qx master; }
# A run in the background, its pid in $run; finish_run waits for it, at
# most 120 s (a run that hangs fails the case, and is killed), its exit
# status in $rc.
start_run() {
	"$T" run "$@" --format json >"$dir/out" 2>"$dir/err" &
	run=$!
	bg="$bg $run"
}
finish_run() {
	n=1200
	while kill -0 "$run" 2>/dev/null && [ "$n" -gt 0 ]; do
		sleep 0.1
		n=$((n - 1))
	done
	if [ "$n" -eq 0 ]; then
		kill -9 "$run" 2>/dev/null || true
		fail "the run did not end within 120 s"
	fi
	rc=0
	wait "$run" || rc=$?
}

# A key whose shard 0 is on one of its primary's first 50 slots (those a
# reshard of 50 slots moves), found by trying names.
low_key() {
	i=0
	while :; do
		s=$(slot_of "{$1$i#0}")
		o=$(owner "$s")
		lo=$(redis-cli -p "$o" cluster nodes | awk '/myself/ {
			split($9, r, "-"); print r[1]; exit }')
		if [ "$s" -ge "$lo" ] && [ "$s" -lt $((lo + 50)) ]; then
			echo "$1$i"
			return
		fi
		i=$((i + 1))
	done
}
# The runs of addsub that last through an event take three workers: two
# add, one subtracts, so that write-behind's sum is never 0 for long (a
# flush with nothing to send sends nothing).
modes="sync async behind"
opts_of() {
	case $1 in
	sync) echo "" ;;
	async) echo ",mode=async" ;;
	behind) echo ",flush_ms=5" ;;
	esac
}

# --- options: refused before anything is done (exit 2) -------------------
case_options() {
	for bad in "cluster=127.0.0.1" "cluster=127.0.0.1:0" "cluster=a:1;" \
		"cluster=a:1,url=redis://a" "shards=2" "cluster=a:1,shards=0" \
		"cluster=a:1,shards=1025" "cluster=a:1,key={x}" \
		"durability=replicas:0" "durability=all" "confirm_ms=10" \
		"durability=replicas:1,confirm_ms=2000"; do
		rc=0
		"$T" run --workload inc --iters 1 --backend "redis:$bad" \
			>/dev/null 2>"$dir/err" || rc=$?
		[ "$rc" -eq 2 ] || fail "redis:$bad: exit $rc, not 2"
		grep -q "invalid backend option" "$dir/err" ||
			fail "redis:$bad: no reason given"
	done
	ok "bad cluster options refused with exit 2"
}

# A cluster that is not there: a bounded failure, exit 3.
case_absent() {
	rc=0
	"$T" run --workload inc --iters 1 \
		--backend "redis:cluster=127.0.0.1:1,timeout_ms=300" >/dev/null 2>"$dir/err" || rc=$?
	[ "$rc" -eq 3 ] || fail "no cluster: exit $rc, not 3"
	grep -q "node 127.0.0.1:1" "$dir/err" || fail "no cluster: the node is not named"
	ok "no cluster: exit 3, naming the node"
}

# --- 2 processes x 8 threads, one counter of 3 shards, every mode ----------
case_both() {
	for m in $modes; do
		b="redis:cluster=$seeds,key=both-$m,shards=3$(opts_of "$m")"
		"$T" run --workload inc --workers 8 --iters 2000 --participants 2 \
			--join-timeout 60 --backend "$b" --format json >"$dir/p1" 2>"$dir/e1" &
		p1=$!
		rc=0
		"$T" run --workload inc --workers 8 --iters 2000 --participants 2 \
			--join-timeout 60 --backend "$b" --format json >"$dir/p2" 2>"$dir/e2" || rc=$?
		rc1=0
		wait "$p1" || rc1=$?
		{ [ "$rc" -eq 0 ] && [ "$rc1" -eq 0 ]; } || {
			cat "$dir/e1" "$dir/e2" >&2
			fail "$m: 2 x 8 threads: exit $rc1 and $rc"
		}
		{ [ "$(field "$dir/p1" exact)" = true ] && [ "$(field "$dir/p2" exact)" = true ]; } ||
			fail "$m: 2 x 8 threads: not exact"
		total "both-$m" >/dev/null # in this shell: $sum and $nkeys
		got=$sum
		[ "$got" -eq 144000 ] || fail "$m: 2 x 8 threads: the shards sum to $got, not 144000"
		[ "$nkeys" -eq 3 ] || fail "$m: $nkeys shard keys, not 3"
		# One shard on each primary: they split the slots evenly.
		for p in $base $((base + 1)) $((base + 2)); do
			[ "$(redis-cli -p "$p" --scan --pattern "{both-$m#*}" | grep -vc tally-)" -eq 1 ] ||
				fail "$m: node $p does not hold one shard"
		done
	done
	ok "2 processes x 8 threads on 3 shards, every mode: exact, the shards sum to it"
}

# --- a slot migrated mid-run (redis-cli --cluster reshard) ----------------
case_reshard() {
	for m in $modes; do
		key=$(low_key "move-$m-")
		slot=$(slot_of "{$key#0}")
		from=$(owner "$slot")
		to=$base
		[ "$from" -eq "$base" ] && to=$((base + 1))
		start_run --workload addsub --workers 3 --iters 600 --sleep-us 5000 \
			--backend "redis:cluster=$seeds,key=$key$(opts_of "$m")"
		sleep 1
		redis-cli --cluster reshard "127.0.0.1:$from" \
			--cluster-from "$(redis-cli -p "$from" cluster myid)" \
			--cluster-to "$(redis-cli -p "$to" cluster myid)" \
			--cluster-slots 50 --cluster-yes >"$dir/reshard" 2>&1 ||
			fail "$m: reshard failed: $(tail -n 3 "$dir/reshard")"
		kill -0 "$run" 2>/dev/null || fail "$m: the run ended before the reshard did"
		[ "$(owner "$slot")" -eq "$to" ] || fail "$m: slot $slot did not move"
		finish_run
		{ [ "$rc" -eq 0 ] && [ "$(field "$dir/out" exact)" = true ]; } ||
			fail "$m: reshard mid-run: exit $rc, not exact"
		[ "$(total "$key")" -eq "$(field "$dir/out" expected)" ] ||
			fail "$m: reshard: the server holds $(total "$key")"
	done
	ok "a shard's slot migrated mid-run, every mode: exact"
}

# --- a slot migrated by hand, slowly: every step a client can meet ---------
# IMPORTING and MIGRATING set, the counter's key moved alone (the record
# still on the source: -ASK, then TRYAGAIN at the target), the rest moved
# (-ASK, served after ASKING), then the slot given to the target (-MOVED).
migrate_keys() { # from to [key...]
	mf=$1 mt=$2
	shift 2
	[ $# -eq 0 ] && return 0
	redis-cli -p "$mf" migrate 127.0.0.1 "$mt" "" 0 5000 keys "$@" >/dev/null
}
case_migrate() {
	for m in $modes; do
		key=slow-$m
		slot=$(slot_of "{$key#0}")
		from=$(owner "$slot")
		to=$base
		[ "$from" -eq "$base" ] && to=$((base + 1))
		asked0=$(redis-cli -p "$to" info commandstats | sed -n 's/^cmdstat_asking:calls=\([0-9]*\).*/\1/p')
		start_run --workload addsub --workers 3 --iters 800 --sleep-us 5000 \
			--backend "redis:cluster=$seeds,key=$key$(opts_of "$m")"
		sleep 1
		fid=$(redis-cli -p "$from" cluster myid)
		tid=$(redis-cli -p "$to" cluster myid)
		redis-cli -p "$to" cluster setslot "$slot" importing "$fid" >/dev/null
		redis-cli -p "$from" cluster setslot "$slot" migrating "$tid" >/dev/null
		migrate_keys "$from" "$to" "{$key#0}"
		sleep 0.5
		# shellcheck disable=SC2046 # one key per word
		migrate_keys "$from" "$to" $(redis-cli -p "$from" cluster getkeysinslot "$slot" 1000)
		sleep 0.5
		for p in 0 1 2; do
			redis-cli -p $((base + p)) cluster setslot "$slot" node "$tid" >/dev/null
		done
		kill -0 "$run" 2>/dev/null || fail "$m: the run ended before the migration did"
		finish_run
		{ [ "$rc" -eq 0 ] && [ "$(field "$dir/out" exact)" = true ]; } ||
			fail "$m: slot migrated by hand mid-run: exit $rc, not exact"
		asked=$(redis-cli -p "$to" info commandstats | sed -n 's/^cmdstat_asking:calls=\([0-9]*\).*/\1/p')
		[ "${asked:-0}" -gt "${asked0:-0}" ] || fail "$m: no client sent ASKING: the case did not happen"
		[ "$(total "$key")" -eq "$(field "$dir/out" expected)" ] ||
			fail "$m: migrated: the server holds $(total "$key")"
	done
	ok "a shard's slot migrated by hand, key by key, every mode: -ASK, TRYAGAIN and -MOVED followed, exact"
}

# --- a cluster whose nodes require a password ------------------------------
# Given in cluster=redis://:PASSWORD@...: exact, and the password in no
# output; a wrong one, or none, is bad input (exit 2), said.
case_auth() {
	pw=s3cret-pw
	b="redis:cluster=redis://:$pw@127.0.0.1:$base;127.0.0.1:$((base + 1)),key=auth,shards=3"
	for m in $modes; do
		start_run --workload inc --workers 4 --iters 500 --participants 1 \
			--backend "$b$(opts_of "$m")"
		finish_run
		{ [ "$rc" -eq 0 ] && [ "$(field "$dir/out" exact)" = true ]; } ||
			fail "auth, $m: exit $rc, not exact"
		if grep -q "$pw" "$dir/out" "$dir/err"; then
			fail "auth, $m: the password is shown"
		fi
		grep -q '\*\*\*@' "$dir/out" || fail "auth, $m: the spec is not shown redacted"
	done
	for bad in "redis://:wrong@127.0.0.1:$base" "127.0.0.1:$base"; do
		rc=0
		"$T" run --workload inc --iters 1 --backend "redis:cluster=$bad,key=auth-bad" \
			>/dev/null 2>"$dir/err" || rc=$?
		[ "$rc" -eq 2 ] || fail "auth: cluster=$bad: exit $rc, not 2"
		grep -q "WRONGPASS\|NOAUTH" "$dir/err" || fail "auth: cluster=$bad: no reason given"
	done
	ok "a cluster that requires a password: exact in every mode, the password never shown; a wrong one or none refused (exit 2)"
}

# --- the whole cluster stopped mid-run: a bounded failure -----------------
case_down() {
	start_run --workload inc --workers 2 --iters 100000000 \
		--backend "redis:cluster=$seeds,key=down,shards=3,timeout_ms=300,deadline_ms=1500"
	sleep 0.5
	for p in 0 1 2; do kill -STOP "$(pid_of "$c3" $((base + p)))"; done
	t0=$(date +%s)
	finish_run
	took=$(($(date +%s) - t0))
	for p in 0 1 2; do kill -CONT "$(pid_of "$c3" $((base + p)))"; done
	[ "$rc" -eq 3 ] || fail "cluster stopped: exit $rc, not 3"
	[ "$took" -le 20 ] || fail "cluster stopped: the run took $took s to give up"
	grep -q "unknown outcome\|127.0.0.1:" "$dir/err" || fail "cluster stopped: no reason given"
	ok "the whole cluster stopped mid-run: exit 3 within $took s, the adds of unknown outcome said"
}

# --- failover: three primaries, three replicas ----------------------------

# CLUSTER FAILOVER (graceful) on the replica of the key's primary, mid-run.
case_failover() {
	for m in $modes; do
		key=fo-$m
		settle
		prim=$(owner "$(slot_of "{$key#0}")")
		repl=$(replica_of "$prim")
		start_run --workload addsub --workers 3 --iters 600 --sleep-us 5000 \
			--backend "redis:cluster=$seeds,key=$key$(opts_of "$m")"
		sleep 1
		redis-cli -p "$repl" cluster failover >/dev/null
		wait_for "is_master $repl" 100 || fail "$m: $repl was not promoted"
		kill -0 "$run" 2>/dev/null || fail "$m: the run ended before the failover did"
		finish_run
		{ [ "$rc" -eq 0 ] && [ "$(field "$dir/out" exact)" = true ]; } ||
			fail "$m: CLUSTER FAILOVER mid-run: exit $rc, not exact"
	done
	ok "CLUSTER FAILOVER mid-run, every mode: exact"
}

# A primary paused (SIGSTOP) past the node timeout: its replica promoted,
# then the old one resumed (it rejoins as a replica).  With
# durability=replicas:1, and a deadline that covers the failover and the
# rejoining (until a replica confirms them, the adds meanwhile wait):
# exact.  Without it (sync, "plain"): never a double count, and any
# acknowledged add lost is said.
pause_once() { # mode name options
	key=pause-$1-$2
	settle
	prim=$(owner "$(slot_of "{$key#0}")")
	repl=$(replica_of "$prim")
	start_run --workload addsub --workers 3 --iters 1500 --sleep-us 5000 \
		--backend "redis:cluster=$seeds,key=$key$3$(opts_of "$1")"
	sleep 1
	kill -STOP "$(pid_of "$c6" "$prim")"
	wait_for "is_master $repl" 200 || fail "$1: $repl was not promoted"
	kill -CONT "$(pid_of "$c6" "$prim")"
	kill -0 "$run" 2>/dev/null || fail "$1: the run ended before the failover"
	finish_run
}
case_pause() {
	for m in sync async; do
		pause_once "$m" replicas ",durability=replicas:1,deadline_ms=30000"
		{ [ "$rc" -eq 0 ] && [ "$(field "$dir/out" exact)" = true ]; } ||
			fail "$m: primary paused past the node timeout, replicas:1: exit $rc, not exact"
	done
	pause_once sync plain ",deadline_ms=30000"
	actual=$(field "$dir/out" actual)
	applied=$(field "$dir/out" expected)
	if [ "$rc" -ne 0 ]; then
		lost=$(sed -n 's/.* \([0-9]*\) acknowledged requests\{0,1\} carrying \([0-9-]*\) lost by the server.*/\2/p' "$dir/err")
		[ -n "$lost" ] || fail "plain pause: exit $rc, and no loss said"
		echo "# plain pause: $lost acknowledged lost, said"
	fi
	[ "$(total "$key")" -eq "$actual" ] || fail "plain pause: the server holds $(total "$key"), the run read $actual"
	[ "$rc" -ne 0 ] || [ "$actual" -eq "$applied" ] || fail "plain pause: exit 0 but not exact"
	ok "a primary paused past the node timeout: exact with durability=replicas:1, and without it exact or its loss said"
}

# A failover to a replica that fell behind: the replica stopped first, so
# that its primary drops it (its output buffer limit, made small) and goes
# on acknowledging adds only it holds; then the primary stopped and the
# replica resumed and promoted.  Without durability those adds are lost:
# the client says exactly which (the run fails, exit 3), and nothing is
# counted twice.  With replicas:1 no acknowledged add is lost: the adds no
# replica confirmed are reported, of unknown outcome.
behind() {
	key=$1 extra=$2 must_drop=$3
	settle
	prim=$(owner "$(slot_of "{$key#0}")")
	repl=$(replica_of "$prim")
	redis-cli -p "$prim" config set client-output-buffer-limit "replica 16kb 16kb 0" >/dev/null
	start_run --workload inc --workers 4 --iters 100000000 \
		--backend "redis:cluster=$seeds,key=$key$extra"
	sleep 1
	kill -STOP "$(pid_of "$c6" "$repl")"
	# With replicas:1 the adds stop at the first one not confirmed, and
	# the primary need not drop its replica for the case to hold.
	if ! wait_for "redis-cli -p $prim info replication | grep -q connected_slaves:0" 50 &&
		[ "$must_drop" = yes ]; then
		fail "$key: $prim kept its replica"
	fi
	sleep 0.5
	kill -STOP "$(pid_of "$c6" "$prim")"
	kill -CONT "$(pid_of "$c6" "$repl")"
	wait_for "is_master $repl" 300 || fail "$key: $repl was not promoted"
	kill -CONT "$(pid_of "$c6" "$prim")"
	sleep 1
	kill -INT "$run" 2>/dev/null || true
	finish_run
}

case_lag() {
	behind lag-primary "" yes
	[ "$rc" -eq 3 ] || fail "lagging replica, no durability: exit $rc, not 3"
	lost=$(sed -n 's/.* \([0-9]*\) acknowledged requests\{0,1\} carrying \([0-9]*\) lost by the server.*/\2/p' "$dir/err")
	[ -n "$lost" ] || fail "lagging replica, no durability: the loss is not said"
	done_sum=$(field "$dir/out" expected)
	actual=$(field "$dir/out" actual)
	[ "$actual" -le "$done_sum" ] || fail "counted twice: $actual > $done_sum"
	[ $((actual + lost)) -eq "$done_sum" ] ||
		fail "lagging replica: the server holds $actual, the client says $lost lost, of $done_sum applied"
	ok "a failover to a replica behind it: $lost acknowledged adds lost, said exactly; none counted twice"
}

case_lag_replicas() {
	behind lag-replicas ",durability=replicas:1,confirm_ms=200" no
	grep -q "lost by the server" "$dir/err" && fail "replicas:1: acknowledged adds lost"
	[ "$(field "$dir/out" lost)" -eq 0 ] || fail "replicas:1: the run lost adds"
	known=$(field "$dir/out" expected)
	unknown=$(field "$dir/out" unknown_sum)
	now=$(total lag-replicas)
	{ [ "$now" -ge "$known" ] && [ "$now" -le $((known + unknown)) ]; } ||
		fail "replicas:1: the server holds $now after the failover, of $known confirmed and $unknown unconfirmed"
	ok "a failover to a replica behind it, durability=replicas:1: every confirmed add kept, the rest reported"
}

# $TALLY_CLUSTER_CASES (default: all of them, in this order) names the
# cases to run, each started with the cluster it needs.
up=""
for c in ${TALLY_CLUSTER_CASES:-options absent both reshard migrate down auth failover pause lag lag_replicas}; do
	case $c in
	options | absent) want="" ;;
	both | reshard | migrate | down) want=c3 ;;
	auth) want=ca ;;
	failover | pause | lag | lag_replicas) want=c6 ;;
	*) fail "no case '$c'" ;;
	esac
	if [ -n "$want" ] && [ "$want" != "$up" ]; then
		[ -n "$up" ] && "$cluster" stop "$dir/$up"
		if [ "$want" = c3 ]; then
			"$cluster" start "$c3" "$base" 3 0
		elif [ "$want" = ca ]; then
			TALLY_CLUSTER_PASSWORD=s3cret-pw "$cluster" start "$ca" "$base" 3 0
		else
			"$cluster" start "$c6" "$base" 3 1
		fi
		up=$want
	fi
	rm -f "$dir/out" "$dir/err" "$dir/e1" "$dir/e2" "$dir/p1" "$dir/p2"
	"case_$c"
done
