#!/usr/bin/env bash
# Two client "hosts" and a Redis server in network namespaces that this test
# creates and joins with veth pairs (addresses only on those links):
#   1. a joined run (--participants 2) across both hosts ends exact;
#   2. a client's link down and up again within the deadline: exact;
#   3. a client's link down past the deadline: exit 3, the adds not
#      applied and those of unknown outcome reported (sync: the add in
#      flight; async, write-behind: the final flush's figures), and the
#      server agrees;
#   4. the server SIGKILLed and restarted (appendonly yes, appendfsync
#      always) under a run: no acknowledged add lost, none doubled;
# each in sync, async (mode=async) and write-behind (flush_ms=10) mode.
# Usage: redis_netns.sh PATH/TO/tally.  Needs root, ip(8) and redis-server;
# otherwise it exits 77 (skipped) and says why.  Bounded: about 30 s, 90 s
# at most (every run has a time limit, see limit()).
set -u
T=$1
skip() {
	echo "redis_netns: skipped: $*"
	exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
command -v ip >/dev/null || skip "needs ip(8) (iproute2)"
command -v redis-server >/dev/null || skip "needs redis-server"
"$T" list | grep -Eq '^redis +yes' || skip "redis backend not built in"

id=$$
SRV=tally-srv-$id A=tally-a-$id B=tally-b-$id
TMP=$(mktemp -d)
fails=0 passes=0

cleanup() {
	[ -f "$TMP/pid" ] && kill -KILL "$(cat "$TMP/pid")" 2>/dev/null
	for ns in "$SRV" "$A" "$B"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { passes=$((passes + 1)); }
bad() {
	fails=$((fails + 1))
	echo "FAIL: $*"
	for f in out err; do
		[ -f "$TMP/$f" ] && echo "  $f: $(head -c 800 "$TMP/$f")"
	done
}

# A private /30 per link: server .1, client .2.
if ! { ip netns add "$SRV" && ip netns add "$A" && ip netns add "$B"; }; then
	skip "cannot create network namespaces here"
fi
for ns in "$SRV" "$A" "$B"; do
	ip -n "$ns" link set lo up
done
link() { # NS NET: a veth pair between the server and NS on 10.NET.0.0/30
	local s=v$2s-$id c=v$2c-$id
	ip link add "$s" type veth peer name "$c" &&
		ip link set "$s" netns "$SRV" &&
		ip link set "$c" netns "$1" &&
		ip -n "$SRV" addr add "10.$2.0.1/30" dev "$s" &&
		ip -n "$1" addr add "10.$2.0.2/30" dev "$c" &&
		ip -n "$SRV" link set "$s" up &&
		ip -n "$1" link set "$c" up
}
if ! { link "$A" 231 && link "$B" 232; }; then
	skip "cannot create veth pairs here"
fi

start_server() {
	ip netns exec $SRV redis-server --bind 10.231.0.1 10.232.0.1 \
		--port 6379 --protected-mode no --save '' --appendonly yes \
		--appendfsync always --dir "$TMP" --daemonize yes \
		--pidfile "$TMP/pid" --logfile "$TMP/log"
	for _ in $(seq 1 50); do
		ip netns exec $SRV redis-cli -h 10.231.0.1 ping 2>/dev/null |
			grep -q PONG && return 0
		sleep 0.1
	done
	echo "redis-server did not start:"
	cat "$TMP/log"
	exit 1
}
rcli() { ip netns exec $SRV redis-cli -h 10.231.0.1 "$@"; }
start_server

url_a=redis://10.231.0.1:6379 url_b=redis://10.232.0.1:6379

# A run's time limit: 30 s, and what is left of 90 s for the whole script
# (CTest's limit is 120 s), so that runs that hang cannot add up.
limit() {
	local left=$((90 - SECONDS))
	[ $left -gt 30 ] && left=30
	[ $left -lt 1 ] && left=1
	echo $left
}

# Each case runs in each contract: sync (the default), async (adds return
# at once, the run's final flush waits) and write-behind (flush_ms=10): key
# names end in the contract's tag.
tag() {
	case $1 in
	*async*) echo -async ;;
	*flush_ms*) echo -behind ;;
	esac
}

# Every add is fsynced (appendfsync always): a few ms each, so few adds.
# 1. One joined run across both hosts: 2 x 3 x 400 adds, one verdict.
joint() {
	local m=$1 k t ra rb
	k=joint$(tag "$1")
	ip netns exec "$A" timeout "$(limit)" "$T" run --workload inc --iters 400 \
		--backend "redis:url=$url_a,key=$k$m" --participants 2 \
		--join-timeout 20 --format json >"$TMP/a.json" 2>"$TMP/a.err" &
	t=$!
	ip netns exec "$B" timeout "$(limit)" "$T" run --workload inc --iters 400 \
		--backend "redis:url=$url_b,key=$k$m" --participants 2 \
		--join-timeout 20 --format json >"$TMP/out" 2>"$TMP/err"
	rb=$?
	wait $t
	ra=$?
	if [ $ra = 0 ] && [ $rb = 0 ] &&
		python3 -c "import json,sys; a=json.load(open('$TMP/a.json')); b=json.load(open('$TMP/out')); sys.exit(0 if a['lost'] == b['lost'] == 0 and a['actual'] == b['actual'] == 2400 else 1)" &&
		[ "$(rcli get "$k")" = 2400 ]; then
		ok
	else
		bad "joined run across two hosts ($k): exits $ra and $rb"
	fi
}

# 2. Host A's link goes down for 1.5 s mid-run, within an 8 s deadline:
# exact (async and write-behind: adds go on meanwhile, the final flush
# waits for them).
flap() {
	local m=$1 k p r
	k=flap$(tag "$1")
	ip netns exec "$A" timeout "$(limit)" "$T" run --workload inc --workers 2 \
		--iters 600 --sleep-us 4000 --format json \
		--backend "redis:url=$url_a,key=$k,timeout_ms=300,deadline_ms=8000$m" \
		>"$TMP/out" 2>"$TMP/err" &
	p=$!
	sleep 0.5
	ip -n "$A" link set "v231c-$id" down
	sleep 1.5
	ip -n "$A" link set "v231c-$id" up
	wait $p
	r=$?
	if [ $r = 0 ] && [ "$(rcli get "$k")" = 1800 ] &&
		python3 -c "import json,sys; d=json.load(open('$TMP/out')); sys.exit(0 if d['exact'] and d['actual'] == 1800 else 1)"; then
		ok
	else
		bad "link down and up within the deadline ($k): exit $r, server $(rcli get "$k")"
	fi
}

# 3. Host A's link goes down for good, past a 1 s deadline: exit 3.  sync:
# the add in flight is of unknown outcome (not lost), and the server holds
# the completed adds plus that one add, or not.  async and write-behind (a
# run of 1000 adds, 2 s): the final flush says how much was not applied
# and how much is of unknown outcome, and the server holds the 1000 less
# the first, less some part of the second.
cut() {
	local m=$1 k p r iters=100000
	k=cut$(tag "$1")
	[ -n "$m" ] && iters=1000
	ip netns exec "$A" timeout "$(limit)" "$T" run --workload inc --workers 1 \
		--iters $iters --sleep-us 2000 --format json \
		--backend "redis:url=$url_a,key=$k,timeout_ms=200,deadline_ms=1000$m" \
		>"$TMP/out" 2>"$TMP/err" &
	p=$!
	sleep 0.5
	ip -n "$A" link set "v231c-$id" down
	wait $p
	r=$?
	ip -n "$A" link set "v231c-$id" up
	local check=unknown_add
	[ -n "$m" ] && check=flush_says
	if [ $r = 3 ] && "$check" "$k"; then
		ok
	else
		bad "link down past the deadline ($k): exit $r, server $(rcli get "$k")"
	fi
}

# sync: the run's JSON has the one add of unknown outcome, and the server
# the completed adds plus that one, or not.
unknown_add() {
	grep -q "1 add of unknown outcome" "$TMP/err" && python3 -c "
import json, sys
d = json.load(open('$TMP/out'))
server = int(sys.argv[1])
done = d['per_worker_ops'][0]
sys.exit(0 if d['unknown'] == 1 and d['actual'] is None and server in (done, done + 1) else 1)" "$(rcli get "$1")"
}

# async, write-behind: the final flush says what it could not deliver,
# and the server holds 1000 less what was not applied, less some part of
# what is of unknown outcome.
flush_says() {
	python3 -c "
import re, sys
err = open('$TMP/err').read()
m = re.search(r'(\d+) requests? carrying (-?\d+) not applied, (\d+) carrying (-?\d+) of unknown outcome', err)
if m is None:
    sys.exit(1)
server = int(sys.argv[1])
lost, unknown = int(m.group(2)), int(m.group(4))
sys.exit(0 if lost + unknown > 0 and 1000 - lost - unknown <= server <= 1000 - lost else 1)" "$(rcli get "$1")"
}

# 4. The server is SIGKILLed mid-run and restarted 0.5 s later from its
# append-only file (fsynced before every reply): exact, no add lost or
# doubled.
crash() {
	local m=$1 k p r
	k=crash$(tag "$1")
	ip netns exec "$A" timeout "$(limit)" "$T" run --workload inc --workers 4 \
		--iters 300 --sleep-us 2000 --format json \
		--backend "redis:url=$url_a,key=$k,timeout_ms=300,deadline_ms=10000$m" \
		>"$TMP/out" 2>"$TMP/err" &
	p=$!
	sleep 0.4
	kill -KILL "$(cat "$TMP/pid")"
	sleep 0.5
	start_server
	wait $p
	r=$?
	if [ $r = 0 ] && [ "$(rcli get "$k")" = 3000 ] &&
		python3 -c "import json,sys; d=json.load(open('$TMP/out')); sys.exit(0 if d['exact'] and d['actual'] == 3000 else 1)"; then
		ok
	else
		bad "server SIGKILL and restart ($k): exit $r, server $(rcli get "$k")"
	fi
}

for m in "" ",mode=async" ",flush_ms=10"; do
	for c in joint flap cut crash; do
		t0=$EPOCHREALTIME
		"$c" "$m"
		awk -v c="$c$(tag "$m")" -v a="$t0" -v b="$EPOCHREALTIME" \
			'BEGIN { printf "redis_netns: %s: %.1f s\n", c, b - a }' 
	done
done

echo "$passes passed, $fails failed"
[ $fails = 0 ]
