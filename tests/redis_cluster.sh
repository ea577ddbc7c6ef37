#!/bin/sh
# Start or stop a private Redis Cluster on loopback for the cluster tests:
#   redis_cluster.sh start DIR BASEPORT PRIMARIES REPLICAS
#   redis_cluster.sh stop DIR
# Nodes listen on BASEPORT, BASEPORT+1, ... (their cluster bus on port +
# 10000), one folder each in DIR, no persistence.  start returns once every
# node says cluster_state:ok and knows every other node (30 s at most);
# a start that fails stops what it started.  stop kills every node, waits
# until each is gone and removes DIR.  Exit 77 (CTest's skip) without
# redis-server or redis-cli.  $TALLY_CLUSTER_NODE_TIMEOUT (ms, default
# 3000): how long a node may be silent before the others count it failed.
# $TALLY_CLUSTER_PASSWORD, when set: every node requires it (requirepass,
# and masterauth for its replicas), and this script's redis-cli gives it.
set -eu
pw=${TALLY_CLUSTER_PASSWORD:-}
if [ -n "$pw" ]; then
	export REDISCLI_AUTH="$pw" # every redis-cli below, --cluster too
fi
usage() {
	echo "usage: redis_cluster.sh start DIR BASEPORT PRIMARIES REPLICAS | stop DIR" >&2
	exit 2
}
[ $# -ge 2 ] || usage
op=$1 dir=$2
for p in redis-server redis-cli timeout; do
	if ! command -v "$p" >/dev/null 2>&1; then
		echo "redis_cluster: $p not found, skipped (Debian: apt-get install redis-server)" >&2
		exit 77
	fi
done

# Every node's pid, gone before stop returns: a node still shutting down
# holds its ports, and the next start would meet it.  DIR goes only when it
# is one this script made (its mark), so that a wrong argument removes
# nothing else.
stop() {
	[ -f "$dir/.tally-cluster" ] || return 0
	for f in "$dir"/*/pid; do
		[ -f "$f" ] || continue
		kill "$(cat "$f")" 2>/dev/null || true
	done
	for f in "$dir"/*/pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	done
	# A file a node was still writing as it went: once more.
	rm -rf "$dir" 2>/dev/null || {
		sleep 0.5
		rm -rf "$dir"
	}
}

# Each node's log, for a start that failed.
logs() {
	for f in "$dir"/*/log; do
		[ -f "$f" ] || continue
		echo "--- $f" >&2
		tail -n 20 "$f" >&2
	done
}

# 0 when every node serves with the whole cluster in view: its state ok,
# every node known, and every node in its CLUSTER SLOTS (one 40-hex id
# line each: each primary serves one range).  Redis 7.0 leaves out of
# CLUSTER SLOTS a replica whose replication offset is still 0, which the
# first replication ping moves (hence --repl-ping-replica-period 1; and
# no 5 s wait for more replicas before a primary's first full sync).
all_ok() {
	for port in $ports; do
		info=$(redis-cli -p "$port" cluster info 2>/dev/null) || return 1
		case $info in
		*cluster_state:ok*) ;;
		*) return 1 ;;
		esac
		case $info in
		*"cluster_known_nodes:$n"*) ;;
		*) return 1 ;;
		esac
		ids=$(redis-cli -p "$port" cluster slots 2>/dev/null |
			grep -cE '^[0-9a-f]{40}$') || return 1
		[ "$ids" -eq "$n" ] || return 1
	done
}

start() {
	[ $# -eq 3 ] || usage
	base=$1 primaries=$2 replicas=$3
	n=$((primaries * (1 + replicas)))
	if [ "$primaries" -lt 3 ] || [ $((base + n - 1 + 10000)) -gt 65535 ]; then
		echo "redis_cluster: need 3 primaries at least, and BASEPORT+nodes+10000 <= 65535" >&2
		exit 2
	fi
	stop # a cluster a killed run left behind
	deadline=$(($(date +%s) + 30))
	mkdir -p "$dir"
	: >"$dir/.tally-cluster"
	trap 'logs; stop' EXIT
	trap 'exit 1' HUP INT TERM
	ports="" addrs=""
	for i in $(seq 0 $((n - 1))); do
		port=$((base + i))
		mkdir "$dir/$port"
		redis-server --bind 127.0.0.1 --port "$port" \
			--cluster-enabled yes \
			--cluster-config-file "$dir/$port/nodes.conf" \
			--cluster-node-timeout "${TALLY_CLUSTER_NODE_TIMEOUT:-3000}" \
			--repl-ping-replica-period 1 --repl-diskless-sync-delay 0 \
			--save '' --appendonly no --daemonize yes \
			${pw:+--requirepass "$pw" --masterauth "$pw"} \
			--pidfile "$dir/$port/pid" --logfile "$dir/$port/log" \
			--dir "$dir/$port"
		ports="$ports $port" addrs="$addrs 127.0.0.1:$port"
	done
	echo "$ports" >"$dir/ports"
	for port in $ports; do
		for _ in $(seq 1 50); do
			redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
			sleep 0.1
		done
	done
	left=$((deadline - $(date +%s)))
	[ "$left" -gt 0 ] || left=1 # timeout 0 would wait for ever
	# shellcheck disable=SC2086 # one address per word
	if ! timeout "$left" redis-cli --cluster create $addrs \
		--cluster-replicas "$replicas" --cluster-yes >"$dir/create.log" 2>&1; then
		echo "redis_cluster: redis-cli --cluster create failed:" >&2
		cat "$dir/create.log" >&2
		exit 1
	fi
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if all_ok; then
			trap - EXIT HUP INT TERM
			return 0
		fi
		sleep 0.1
	done
	echo "redis_cluster: not every node of$ports said cluster_state:ok within 30 s" >&2
	exit 1
}

case $op in
start)
	shift 2
	start "$@"
	;;
stop)
	stop
	;;
*) usage ;;
esac
