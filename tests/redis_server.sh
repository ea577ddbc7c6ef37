#!/bin/sh
# Start or stop the private Redis server that the redis tests talk to:
#   redis_server.sh start|stop PORT DIR
# Loopback only, no persistence, its pid and log in DIR.
set -eu
op=$1 port=$2 dir=$3
mkdir -p "$dir"
case $op in
start)
	if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
		kill "$(cat "$dir/pid")"
		sleep 0.2
	fi
	redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
		--daemonize yes --pidfile "$dir/pid" --logfile "$dir/log" \
		--dir "$dir"
	# Wait (5 s at most) until it answers.
	for _ in $(seq 1 50); do
		redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && exit 0
		sleep 0.1
	done
	echo "redis-server did not answer on port $port; log:" >&2
	cat "$dir/log" >&2
	exit 1
	;;
stop)
	# Gone before the next start: a server still shutting down holds the
	# port, and would answer the next start's ping, then vanish.
	if [ -f "$dir/pid" ]; then
		pid=$(cat "$dir/pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/pid"
	;;
*)
	echo "usage: redis_server.sh start|stop PORT DIR" >&2
	exit 2
	;;
esac
