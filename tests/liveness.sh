#!/usr/bin/env bash
# Locks shared across programs never wedge (issue 20): a holder killed inside
# the lock is recovered from; a waiter whose bound passes gets TALLY_ETIMEDOUT
# and the lock goes on working; an adaptive waiter that gives up -- in another
# PID namespace, or killed and its pid given to another process -- is never
# handed the lock.  Usage: liveness.sh TALLY LOCK_PEER
# Root only (PID namespaces, ns_last_pid): elsewhere it skips (exit 77).
set -u
T=$1
P=$2
fails=0
name=liveness-$$
TMP=$(mktemp -d)
trap 'for n in "$TMP"/names/*; do [ -e "$n" ] && "$T" shm rm "${n##*/}" 2>/dev/null; done; rm -rf "$TMP"' EXIT
mkdir "$TMP/names"

if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (PID namespaces, /proc/sys/kernel/ns_last_pid)"
	exit 77
fi

ok() { echo "ok: $*"; }
bad() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}
now_ms() { date +%s%3N; }

# A fresh named counter of backend $1 (value 0); prints its name.
fresh() {
	local n=$name-$RANDOM
	"$T" shm create "$n" --backend "$1" || return 1
	: >"$TMP/names/$n"
	echo "$n"
}

# Wait until the holder is inside the lock: its +1 is in the value.
inside() {
	local i
	for i in $(seq 200); do
		[ "$("$T" shm get "$1")" = "$2" ] && return 0
		sleep 0.01
	done
	return 1
}

# The backends with a lock that a named counter can have, from tally list.
mapfile -t backends < <("$T" list | awk 'NR > 1 && $2 == "yes" && $3 ~ /named/ && $3 ~ /locked/ {print $1}')
[ ${#backends[@]} -gt 0 ] || bad "no named backend with a lock is built in"
# Under a cross build's emulator (tests/CMakeLists.txt sets it) a robust
# mutex is not robust: qemu-user keeps no robust futex list.
if [ -n "${TALLY_TEST_EMULATOR:-}" ]; then
	echo "SKIP: mutex: no robust futex list under $TALLY_TEST_EMULATOR"
	mapfile -t backends < <(printf '%s\n' "${backends[@]}" | grep -vx mutex)
fi

for b in "${backends[@]}"; do
	# A holder killed inside the lock: the next add takes it over.
	n=$(fresh "$b") || { bad "$b: create"; continue; }
	"$P" hold "$n" 60000 >/dev/null &
	holder=$!
	inside "$n" 1 || bad "$b: the holder never got in"
	kill -9 $holder
	wait $holder 2>/dev/null
	t0=$(now_ms)
	out=$("$P" add "$n" 5000)
	rc=$?
	ms=$(($(now_ms) - t0))
	if [ $rc = 1 ] && [ $ms -lt 2000 ] && [ "$("$T" shm get "$n")" = 2 ]; then
		ok "$b: a killed holder is recovered in $ms ms ($out)"
	else
		bad "$b: after a killed holder: exit $rc in $ms ms, value $("$T" shm get "$n"): $out"
	fi

	# A live holder: waiters whose bound passes add nothing, and leave
	# nothing behind that stops the lock (a FIFO lock's gone tickets).
	n=$(fresh "$b") || { bad "$b: create"; continue; }
	"$P" hold "$n" 1500 >/dev/null &
	holder=$!
	inside "$n" 1 || bad "$b: the holder never got in"
	pids=()
	for i in 1 2 3; do
		"$P" add "$n" 200 >"$TMP/w$i" &
		pids+=($!)
	done
	for i in 1 2 3; do
		wait "${pids[$((i - 1))]}"
		rc=$?
		if ! { [ $rc = 3 ] && grep -q "not taken in 0.2" "$TMP/w$i"; }; then
			bad "$b: a waiter past its bound: exit $rc: $(cat "$TMP/w$i")"
		fi
	done
	[ "$("$T" shm get "$n")" = 1 ] || bad "$b: a timed-out add added something"
	wait $holder || bad "$b: the holder failed"
	out=$("$P" add "$n" 2000)
	rc=$?
	if [ $rc = 0 ] && [ "$("$T" shm get "$n")" = 2 ]; then
		ok "$b: three waiters timed out, then the lock still works"
	else
		bad "$b: after waiters timed out: exit $rc, value $("$T" shm get "$n"): $out"
	fi
done

# adaptive: a starving waiter claims the hand-over.  fair_us=1 makes every
# waiter that sleeps a starving one.
if printf '%s\n' "${backends[@]}" | grep -qx adaptive; then
	# It gives up (its bound) in another PID namespace, where it is pid
	# 1, and lives on: the unlock must not hand it the lock.
	n=$(fresh adaptive:fair_us=1)
	"$P" hold "$n" 1200 >/dev/null &
	holder=$!
	inside "$n" 1
	unshare --pid --fork "$P" add "$n" 300 3000 >"$TMP/ns" &
	waiter=$!
	wait $holder || bad "adaptive: the holder failed"
	t0=$(now_ms)
	out=$("$P" add "$n" 1000)
	rc=$?
	if [ $rc = 0 ] && grep -q "not taken" "$TMP/ns"; then
		ok "adaptive: a waiter that gave up in a PID namespace is not handed the lock"
	else
		bad "adaptive: after a waiter in a PID namespace gave up: exit $rc in $(($(now_ms) - t0)) ms: $out (the waiter: $(cat "$TMP/ns"))"
	fi
	wait $waiter

	# It is killed while it waits, in another PID namespace.
	n=$(fresh adaptive:fair_us=1)
	"$P" hold "$n" 1200 >/dev/null &
	holder=$!
	inside "$n" 1
	unshare --pid --fork "$P" add "$n" 10000 >/dev/null &
	waiter=$!
	sleep 0.3
	pkill -9 -P $waiter
	wait $waiter 2>/dev/null
	wait $holder || bad "adaptive: the holder failed"
	out=$("$P" add "$n" 1000)
	rc=$?
	if [ $rc = 0 ]; then
		ok "adaptive: a waiter killed in a PID namespace is not handed the lock"
	else
		bad "adaptive: after a waiter was killed in a PID namespace: exit $rc: $out"
	fi

	# It is killed while it waits, and its pid goes to another process
	# that the old kill(pid, 0) check took for the waiter.
	n=$(fresh adaptive:fair_us=1)
	"$P" hold "$n" 1500 >/dev/null &
	holder=$!
	inside "$n" 1
	"$P" add "$n" 10000 >/dev/null &
	waiter=$!
	sleep 0.3
	kill -9 $waiter
	wait $waiter 2>/dev/null
	reused=
	for _ in 1 2 3 4 5; do
		echo $((waiter - 1)) >/proc/sys/kernel/ns_last_pid
		sleep 30 &
		if [ $! = "$waiter" ]; then
			reused=$!
			break
		fi
		kill $!
	done
	if [ -z "$reused" ]; then
		bad "adaptive: could not give pid $waiter to another process"
	else
		wait $holder || bad "adaptive: the holder failed"
		out=$("$P" add "$n" 1000)
		rc=$?
		if [ $rc = 0 ]; then
			ok "adaptive: a dead waiter's reused pid is not handed the lock"
		else
			bad "adaptive: after a waiter's pid was reused: exit $rc: $out"
		fi
		kill "$reused"
	fi
fi

if [ $fails = 0 ]; then echo "all passed"; else echo "$fails failed"; fi
[ $fails = 0 ]
