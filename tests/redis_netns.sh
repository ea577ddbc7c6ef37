#!/usr/bin/env bash
# Two client "hosts" and a Redis server in network namespaces that this test
# creates and joins with veth pairs (addresses only on those links):
#   1. a joined run (--participants 2) across both hosts ends exact;
#   2. a client's link down and up again within the deadline: exact;
#   3. a client's link down past the deadline: exit 3, the add in flight
#      reported as of unknown outcome, and the server agrees;
#   4. the server SIGKILLed and restarted (appendonly yes, appendfsync
#      always) under a run: no acknowledged add lost, none doubled.
# Usage: redis_netns.sh PATH/TO/tally.  Needs root, ip(8) and redis-server;
# otherwise it exits 77 (skipped) and says why.  Bounded: about 15 s (every
# command has a time limit).
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

# Every add is fsynced (appendfsync always): a few ms each, so few adds.
# 1. One joined run across both hosts: 2 x 3 x 400 adds, one verdict.
ip netns exec $A timeout 60 "$T" run --backend "redis:url=$url_a,key=joint" \
	--workload inc --iters 400 --participants 2 --join-timeout 20 \
	--format json >"$TMP/a.json" 2>"$TMP/a.err" &
pa=$!
ip netns exec $B timeout 60 "$T" run --backend "redis:url=$url_b,key=joint" \
	--workload inc --iters 400 --participants 2 --join-timeout 20 \
	--format json >"$TMP/out" 2>"$TMP/err"
rb=$?
wait $pa
ra=$?
if [ $ra = 0 ] && [ $rb = 0 ] &&
	python3 -c "import json,sys; a=json.load(open('$TMP/a.json')); b=json.load(open('$TMP/out')); sys.exit(0 if a['lost'] == b['lost'] == 0 and a['actual'] == b['actual'] == 2400 else 1)" &&
	[ "$(rcli get joint)" = 2400 ]; then
	ok
else
	bad "joined run across two hosts: exits $ra and $rb"
fi

# 2. Host A's link goes down for 1.5 s mid-run, within an 8 s deadline.
ip netns exec $A timeout 60 "$T" run --workload inc --workers 2 --iters 600 \
	--sleep-us 4000 --format json \
	--backend "redis:url=$url_a,key=flap,timeout_ms=300,deadline_ms=8000" \
	>"$TMP/out" 2>"$TMP/err" &
p=$!
sleep 0.5
ip -n $A link set v231c-$id down
sleep 1.5
ip -n $A link set v231c-$id up
wait $p
r=$?
if [ $r = 0 ] && [ "$(rcli get flap)" = 1800 ] &&
	python3 -c "import json,sys; d=json.load(open('$TMP/out')); sys.exit(0 if d['exact'] and d['actual'] == 1800 else 1)"; then
	ok
else
	bad "link down and up within the deadline: exit $r, server $(rcli get flap)"
fi

# 3. Host A's link goes down for good, past a 1 s deadline: exit 3, the add
# in flight is of unknown outcome (not lost), and the server holds the
# completed adds plus that one add, or not.
ip netns exec $A timeout 60 "$T" run --workload inc --workers 1 --iters 100000 \
	--sleep-us 2000 --format json \
	--backend "redis:url=$url_a,key=cut,timeout_ms=200,deadline_ms=1000" \
	>"$TMP/out" 2>"$TMP/err" &
p=$!
sleep 0.5
ip -n $A link set v231c-$id down
wait $p
r=$?
ip -n $A link set v231c-$id up
if [ $r = 3 ] && grep -q "1 add of unknown outcome" "$TMP/err" &&
	python3 -c "
import json, sys
d = json.load(open('$TMP/out'))
server = int(sys.argv[1])
done = d['per_worker_ops'][0]
sys.exit(0 if d['unknown'] == 1 and d['actual'] is None and server in (done, done + 1) else 1)" "$(rcli get cut)"; then
	ok
else
	bad "link down past the deadline: exit $r, server $(rcli get cut)"
fi

# 4. The server is SIGKILLed mid-run and restarted 0.5 s later from its
# append-only file (fsynced before every reply): exact, no add lost or
# doubled.
ip netns exec $A timeout 60 "$T" run --workload inc --workers 4 --iters 300 \
	--sleep-us 2000 --format json \
	--backend "redis:url=$url_a,key=crash,timeout_ms=300,deadline_ms=10000" \
	>"$TMP/out" 2>"$TMP/err" &
p=$!
sleep 0.4
kill -KILL "$(cat "$TMP/pid")"
sleep 0.5
start_server
wait $p
r=$?
if [ $r = 0 ] && [ "$(rcli get crash)" = 3000 ] &&
	python3 -c "import json,sys; d=json.load(open('$TMP/out')); sys.exit(0 if d['exact'] and d['actual'] == 3000 else 1)"; then
	ok
else
	bad "server SIGKILL and restart: exit $r, server $(rcli get crash)"
fi

echo "$passes passed, $fails failed"
[ $fails = 0 ]
