#!/usr/bin/env bash
# Drive the built `tally` binary: output, exit codes, and every bad-input
# case.  Usage: cli_test.sh PATH/TO/tally GROUP [PATH/TO/shm_holder]
# (GROUP: basic, input, processes, faults, shm, trust, demo; shm_holder: for shm)
set -u
T=$1
GROUP=$2
HOLDER=${3:-}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0 passes=0

ok() { passes=$((passes + 1)); }
# Under a cross build's emulator (tests/CMakeLists.txt sets it), a robust
# mutex is not robust: qemu-user keeps no robust futex list, so the kernel
# never tells a waiter that the holder died.  Those checks skip there.
robust_futexes() { [ -z "${TALLY_TEST_EMULATOR:-}" ]; }
bad() {
	fails=$((fails + 1))
	echo "FAIL: $*"
	echo "  stdout: $(head -c 600 "$TMP/out")"
	echo "  stderr: $(head -c 600 "$TMP/err")"
}

# run EXPECTED_EXIT CMD...: run with a time limit, keep stdout and stderr.
run() {
	local want=$1
	shift
	timeout "${LIMIT:-120}" "$@" >"$TMP/out" 2>"$TMP/err"
	local got=$?
	if [ "$got" -ne "$want" ]; then
		bad "exit $got, wanted $want: $*"
		return 1
	fi
	ok
}

# refused ERR_PATTERN ARGS...: exit 2, nothing on stdout, a message on
# stderr that matches the pattern.
refused() {
	local pattern=$1
	shift
	run 2 "$T" "$@" || return
	if [ -s "$TMP/out" ]; then
		bad "printed on stdout when refusing: $*"
	elif ! grep -Eq -- "$pattern" "$TMP/err"; then
		bad "stderr does not match /$pattern/: $*"
	else
		ok
	fi
}

# interrupted SECONDS ARGS...: Ctrl-C (SIGINT) after SECONDS must end the
# command with exit 3; its stdout and stderr are kept as run() keeps them.
interrupted() {
	local after=$1
	shift
	"$T" "$@" >"$TMP/out" 2>"$TMP/err" &
	local pid=$!
	sleep "$after"
	kill -INT $pid
	wait $pid
	local code=$?
	if [ $code = 3 ]; then ok; else bad "Ctrl-C: exit $code, wanted 3: $*"; fi
}

# Run as a second user (uid 65534), with NOBODY_T: a copy of tally and its
# library that this user can run whatever the permissions of the checkout
# (a clone under a private directory, as `mktemp -d` makes one).
# nobody_tally prepares it; it fails when the second user cannot run it.
as_nobody() { setpriv --reuid 65534 --regid 65534 --clear-groups env LD_LIBRARY_PATH="$TMP/u" "$@"; }
nobody_tally() {
	local lib line emu prog
	NOBODY_T=$TMP/u/tally
	chmod 711 "$TMP" && mkdir -p "$TMP/u" && chmod 755 "$TMP/u" || return 1
	if [ "$(head -c 2 "$T")" = "#!" ]; then
		# A cross build's wrapper (tests/CMakeLists.txt), one line
		# "exec EMULATOR PROGRAM "$@"": the program is copied too, as
		# the build tree may sit where only root may enter (mktemp -d),
		# and its library found beside it in the build tree.
		line=$(sed -n 's/^exec \(.*\) "\$@"$/\1/p' "$T")
		prog=${line##* }
		emu=${line% *}
		cp "$prog" "$TMP/u/tally.bin" || return 1
		printf '#!/bin/sh\nexec %s %s "$@"\n' "$emu" "$TMP/u/tally.bin" >"$NOBODY_T"
		chmod 755 "$NOBODY_T"
		lib=$(dirname "$prog")/../src/libtally.so.0
		[ -e "$lib" ] || lib=
	else
		cp "$T" "$NOBODY_T" || return 1
		lib=$(ldd "$T" | awk '/libtally/ { print $3 }')
	fi
	if [ -n "$lib" ]; then cp -L "$lib" "$TMP/u/" || return 1; fi
	as_nobody "$NOBODY_T" list >/dev/null 2>&1
}

contains() { # FILE PATTERN WHAT
	if grep -Eq -- "$2" "$TMP/$1"; then ok; else bad "$3: no /$2/ in $1"; fi
}

# not_died WHAT: stderr does not say that a lock's holder died (for a holder
# that is alive: only the library knows, and says so when it does).
not_died() {
	if grep -Eq -- "died holding|most likely died" "$TMP/err"; then
		bad "$1: says a live holder died"
	else
		ok
	fi
}

json() { # PYTHON-EXPRESSION over `d`, the parsed stdout; must be true
	if python3 -c "import json,sys; d=json.load(open('$TMP/out')); sys.exit(0 if ($1) else 1)"; then
		ok
	else
		bad "JSON check failed: $1"
	fi
}

# synchronized [CAP]: the backends that `tally list --format csv` says are
# built in, synchronize (not racy) and need no server (not remote); with
# CAP, only those that have it too.  The registry decides, so a new backend
# is tested here without anyone listing it.  Fails if there are none (an
# empty list would pass every loop over it): call it as
# `list=$(synchronized) || exit 1`.
synchronized() {
	local names
	names=$("$T" list --format csv | awk -F, -v need="${1:-}" '
		NR > 1 && $2 == "yes" {
			caps = " " $3 " "
			if (caps ~ / (racy|remote) /) next
			if (need != "" && index(caps, " " need " ") == 0) next
			names = names sep $1
			sep = " "
		}
		END { print names }')
	case " $names " in
	*" atomic "*) echo "$names" ;;
	*)
		echo "FAIL: no synchronized backends (atomic is always one) in" \
			"'tally list --format csv': '$names'" >&2
		exit 1
		;;
	esac
}

# pick WANT [AVOID]: the first backend in registry order that `tally list
# --format csv` says is built in and needs no server, with every capability
# in WANT and none in AVOID (space-separated names, as list prints them).
# Tests pick by capability, never by name, so that a build without an
# optional library passes its own suite.  Fails, printing nothing, if there
# is none.
pick() {
	"$T" list --format csv | awk -F, -v want="$1" -v avoid="${2:-}" '
		NR > 1 && $2 == "yes" {
			caps = " " $3 " "
			if (caps ~ / remote /) next
			n = split(want, w, " ")
			for (i = 1; i <= n; i++)
				if (index(caps, " " w[i] " ") == 0) next
			n = split(avoid, a, " ")
			for (i = 1; i <= n; i++)
				if (index(caps, " " a[i] " ") > 0) next
			print $1
			found = 1
			exit
		}
		END { exit !found }'
}

# built NAME: the backend NAME is built in; else say that what needs it is
# skipped, and why.
built() {
	if "$T" list --format csv | grep -q "^$1,yes,"; then
		return 0
	fi
	echo "skipped: the $1 tests ($1 is not built into this tally)"
	return 1
}

# loses MODE: the racy backend loses updates, says so with exit 1, and
# reports them in its JSON.  Whether two racers overlap is up to the
# scheduler (a loaded machine may keep one off the CPU), so a run that
# happened to lose nothing (exit 0) is tried again, a few times.
loses() {
	local code
	for _ in 1 2 3 4 5; do
		timeout 120 "$T" run --backend none --workload inc --iters 5000000 \
			--mode "$1" --format json >"$TMP/out" 2>"$TMP/err"
		code=$?
		[ $code = 0 ] || break
	done
	if [ $code = 1 ]; then
		ok
		json "d['lost'] > 0 and d['actual'] != d['expected'] == 15000000 and d['mode'] == '$1'"
	else
		bad "'none' in $1: exit $code, wanted 1 (lost updates) in 5 tries"
	fi
}

# drifts MODE: the lesson's addsub on 'none' with a window between its load
# and its store: one step each, the two workers waking at the same 10 ms
# tick, and a 100 ms window, far wider than any wake-up jitter.  Both load
# 500 before either stores, so one add is lost and the run ends at 495 or
# 505, never 500.  Without the window the two adds take nanoseconds and
# almost never meet.  A loaded machine could keep one worker off the CPU
# for the whole window, so up to 3 runs are tried.
drifts() {
	local code
	for _ in 1 2 3; do
		timeout 60 "$T" run --backend none:window_us=100000 --workload addsub \
			--iters 1 --mode "$1" --format json >"$TMP/out" 2>"$TMP/err"
		code=$?
		[ $code = 0 ] || break
	done
	if [ $code = 1 ]; then
		ok
		json "d['actual'] in (495, 505) and d['expected'] == 500 and d['backend'] == 'none' and d['mode'] == '$1'"
	else
		bad "'none:window_us=100000' addsub in $1: exit $code, wanted 1 (drift) in 3 tries"
	fi
}

case $GROUP in
basic)
	drifts threads
	for cmd in list run demo shm; do
		run 0 "$T" "$cmd" --help && contains out "^usage: tally $cmd" "$cmd --help"
	done
	run 0 "$T" --help && contains out "^usage: tally" "--help"
	run 0 "$T" --version && contains out "^tally [0-9]+\.[0-9]+\.[0-9]+$" "--version"
	run 0 "$T" list && contains out "ticket" "list"
	run 0 "$T" list --format json &&
		json "{b['name'] for b in d} >= {'none','mutex','sem','spin','ticket','atomic'}"
	run 0 "$T" list --format csv && contains out "^atomic,yes," "list csv"
	list=$(synchronized) || exit 1
	for b in $list; do
		run 0 "$T" run --backend "$b" --workload inc --format json &&
			json "d['actual'] == 3000000 == d['expected'] and d['lost'] == 0 and d['backend'] == '$b' and d['workers'] == 2 and d['iters'] == 1000000 and d['mode'] == 'threads' and d['per_worker_ops'] == [1000000, 1000000] and d['seconds'] > 0 and d['ns_per_op'] > 0"
	done
	# percpu says which path its adds took: the restartable sequence where
	# glibc registered rseq, the atomic fallback where it did not or when
	# asked; a backend with one path says null.
	run 0 "$T" run --backend percpu --workload inc --format json &&
		json "d['exact'] and d['path'] in ('rseq', 'atomic')"
	run 0 env GLIBC_TUNABLES=glibc.pthread.rseq=0 "$T" run --backend percpu --workload inc --mode processes --format json &&
		json "d['exact'] and d['path'] == 'atomic'"
	run 0 "$T" run --backend percpu:path=atomic --workload inc --format json &&
		json "d['exact'] and d['path'] == 'atomic'"
	run 0 "$T" run --backend atomic --workload inc --iters 10 --format json &&
		json "d['path'] is None"
	# The racy backend loses updates and says so with exit 1.
	loses threads
	# Names are case-insensitive; the environment picks the default.
	spinning=$(pick spinning) || {
		echo "FAIL: no spinning backend (clh is always one)"
		exit 1
	}
	run 0 "$T" run --backend "$(echo "$spinning" | tr "[:lower:]" "[:upper:]")" --workload inc --iters 1000 &&
		contains out "^$spinning " "case-insensitive backend"
	run 0 env TALLY_BACKEND=sem "$T" run --workload addsub --sleep-us 0 --format csv &&
		contains out "^sem,addsub,threads,2,100,500,500,0," "TALLY_BACKEND"
	run 0 "$T" run --workload addsub --sleep-us 0 --format csv --workers 1 &&
		contains out "^atomic,addsub,threads,1,100,1000,1000,0," "default backend, 1 worker"
	# A spinning backend with more workers than CPUs is warned about.
	cpus=$(nproc)
	run 0 "$T" run --backend "$spinning" --workload inc --workers $((cpus + 2)) --iters 200 &&
		contains err "warning: $((cpus + 2)) workers on $cpus online CPUs" "oversubscription warning"
	# Wrap-around is modulo 2^64, and the bounds themselves are allowed.
	run 0 "$T" run --backend mutex --workload inc --workers 1 --iters 1 --initial -9223372036854775808 --format json &&
		json "d['actual'] == -9223372036854775807"
	# A stress run that could not even create its counter is an error in
	# its summary, never "exact"; a backend that got no round says so.
	if "$T" list | grep -Eq '^redis +yes'; then
		run 3 "$T" stress --backend redis:url=redis://127.0.0.1:1,timeout_ms=500 --rounds 1 &&
			contains out "^redis( +0){5} +0.000 +error$" "stress verdict on a failed create"
	fi
	run 0 "$T" stress --backend all --rounds 1 --format json &&
		json "sum(b['verdict'] == 'exact' for b in d['backends']) == 1 and all(b['verdict'] in ('exact', 'not run') for b in d['backends'])"
	;;
input)
	refused "unknown command 'frob'.*list, run, demo" frob
	refused "usage" # no command at all
	refused "unknown or incomplete option '--frob'" run --workload inc --frob
	refused "unknown or incomplete option" run --workload inc --workers
	refused "unexpected argument 'extra'" run --workload inc extra
	refused "--workload is required" run --backend mutex
	refused "unknown workload 'mul'.*addsub, inc" run --workload mul
	refused "unknown backend 'lock'.*none, mutex, sem, spin, ticket, mcs, clh, adaptive, atomic, sharded, percpu, redis" run --workload inc --backend lock
	refused "unknown backend 'bogus'" run --workload inc --backend "bogus:x=1"
	refused "backend 'percpu': invalid backend option: 'percpu:path=fast'" run --workload inc --backend percpu:path=fast
	refused "invalid backend option" run --workload addsub --backend "none:window_us=abc"
	refused "invalid backend option" run --workload addsub --backend "none:window_us=1000001"
	refused "invalid backend option" run --workload addsub --backend "none:colour=blue"
	# Lock variants are options; a bad key or value is bad input (exit 2).
	for spec in spin:backoff=fast spin:backoff= ticket:shift=17 ticket:backoff=exp \
		adaptive:spin=x adaptive:fair_us=0 "adaptive:spin=1," mutex:backoff=exp; do
		if "$T" list | grep -Eq "^${spec%%:*} +yes"; then
			refused "backend '${spec%%:*}': invalid backend option: '$spec'" run --workload inc --backend "$spec"
		fi
	done
	refused "invalid backend option" shm create "clitest-opt-$$" --backend adaptive:spin=99
	refused "unknown mode 'fibers'.*threads, processes" run --workload inc --mode fibers
	refused "unknown format 'xml'.*table, json, csv" run --workload inc --format xml
	refused "unknown format" list --format yaml
	refused "--workers must be a whole number.*not 'abc'" run --workload inc --workers abc
	refused "--workers must be a whole number.*not '-5'" run --workload inc --workers -5
	refused "--workers is out of range" run --workload inc --workers 0
	refused "--workers is out of range.*1 to 1024" run --workload inc --workers 5000
	refused "--iters is out of range: '99999999999999999999'" run --workload inc --iters 99999999999999999999
	refused "--iters must be a whole number" run --workload inc --iters " 5"
	refused "--iters must be a whole number" run --workload inc --iters +5
	refused "--iters must be a whole number" run --workload inc --iters 1e6
	refused "--iters must be a whole number" run --workload inc --iters ""
	refused "--delta is out of range" run --workload inc --delta 9223372036854775808
	refused "--initial must be a whole number" run --workload inc --initial 0x10
	refused "--sleep-us is out of range" run --workload inc --sleep-us 99999999
	refused "--stall-timeout must be a number of seconds" run --workload inc --stall-timeout -1
	refused "--stall-timeout must be a number of seconds" run --workload inc --stall-timeout inf
	refused "--kill-after-ms needs --mode processes" run --workload inc --kill-after-ms 10
	refused "--kill-after-ms needs at least 2 workers" run --workload inc --mode processes --workers 1 --kill-after-ms 10
	# Values the counter could pass through that do not fit in int64.
	refused "outside the signed 64-bit range" run --workload inc --initial 9223372036854775000 --iters 1000
	refused "outside the signed 64-bit range" run --workload addsub --initial -9223372036854775800 --sleep-us 0
	refused "does not fit in a signed 64-bit integer" run --workload inc --workers 3 --delta 4611686018427387904 --iters 1
	refused "does not fit" run --workload inc --iters 4611686018427387904 --delta 4
	refused "worker 1 would subtract --delta, and -\(-9223372036854775808\) does not fit" run --workload addsub --delta -9223372036854775808 --iters 1
	refused "unexpected argument 'extra' \(it takes options only" list extra
	refused "unexpected argument 'extra' \(it takes options only" demo extra
	refused "unexpected argument 'extra' after --version" --version extra
	# One parser under every command (cli_options): the same words from each.
	for cmd in list run demo stress bench shm; do
		run 0 "$T" $cmd -h && contains out "^usage: tally $cmd" "$cmd -h"
		hint=
		[ $cmd = shm ] && hint="a NAME that begins with '-' goes after '--'; "
		refused "^tally $cmd: unknown or incomplete option '--frob' \(${hint}see 'tally $cmd --help'\)$" $cmd --frob
		refused "^tally $cmd: unknown or incomplete option '--help=1' \(${hint}see 'tally $cmd --help'\)$" $cmd --help=1
		refused "^tally $cmd: unknown or incomplete option '--format' \(${hint}see 'tally $cmd --help'\)$" $cmd --format
	done
	for cmd in list run demo stress bench; do
		refused "^tally $cmd: unexpected argument 'extra' \(it takes options only; see 'tally $cmd --help'\)$" $cmd -- extra
	done
	refused "^tally shm: unexpected argument 'e' \(see 'tally shm --help'\)$" shm a b c d e
	refused "^tally run: unknown or incomplete option '-xy' " run --workers 2 -xy
	refused "^tally list: unknown or incomplete option '-55' " list -55
	# A name from the environment is refused as such, and says so.
	TALLY_BACKEND=nope refused "unknown backend 'nope' \(from \\\$TALLY_BACKEND\) \(known: none, mutex" run --workload inc
	# One rule for options, in every command: one given twice is refused
	# (exit 2), named as the command spells it (also when abbreviated),
	# and nothing is done, even when both values agree.
	refused "^tally run: --workers given twice$" run --workload inc --workers 2 --workers 3
	refused "^tally run: --participants given twice$" run --workload inc --participants 2 --participants 3
	refused "^tally run: --backend given twice$" run --workload inc --backend atomic --backend mutex
	refused "^tally run: --workload given twice$" run --workload inc --workload inc
	refused "^tally run: --format given twice$" run --workload inc --form json --format csv
	refused "^tally stress: --seed given twice$" stress --rounds 1 --seed 1 --seed 2
	refused "^tally stress: --rounds given twice$" stress --rounds 1 --rounds 2
	refused "^tally stress: --oversubscribe given twice$" stress --rounds 1 --oversubscribe --oversubscribe
	refused "^tally stress: --backend given twice$" stress --rounds 1 --backend atomic --backend mutex
	refused "^tally bench: --workers given twice$" bench --backend atomic --workers 1 --workers 2 --duration 0.01 --out "$TMP/dup.json"
	if [ -e "$TMP/dup.json" ]; then bad "bench --workers twice: --out was written"; else ok; fi
	refused "^tally bench: --pin given twice$" bench --backend atomic --workers 1 --pin --pin
	refused "^tally bench: --duration given twice$" bench --backend atomic --workers 1 --duration 0.01 --duration 0.02
	refused "^tally bench: --mode given twice$" bench --backend atomic --mode threads --mode processes
	refused "^tally demo: --format given twice$" demo --format json --format json
	refused "^tally list: --format given twice$" list --format json --format csv
	dup=clitest-dup-$$
	refused "^tally shm: --backend given twice$" shm create $dup --backend mutex --backend atomic
	refused "^tally shm: --initial given twice$" shm create $dup --initial 1 --initial 1
	if [ -e /dev/shm/tally.$dup ]; then
		bad "an option given twice created a counter"
		"$T" shm rm $dup
	else
		ok
	fi
	refused "^tally shm: --timeout given twice$" shm add $dup 1 --timeout 1 --timeout 2
	refused "^tally shm: --timeout given twice$" shm get --timeout 1 $dup --timeout 1
	# Options that contradict each other are refused naming both; one
	# that does nothing without another names the other.
	refused "^tally stress: --duration and --rounds contradict each other" stress --duration 1 --rounds 2
	refused "^tally stress: --duration and --round contradict each other" stress --round 3 --duration 1
	refused "^tally stress: --rounds and --round contradict each other" stress --round 3 --rounds 2
	refused "^tally run: --join-timeout has no effect without --participants$" run --workload inc --join-timeout 5
	# bench --backend may repeat by design: the lists add up.
	run 0 "$T" bench --backend atomic --backend mutex,sem --workers 1 --duration 0.01 --warmup 0.01 --repeat 1 --format json &&
		json "[r['backend'] for r in d['results']] == ['atomic', 'mutex', 'sem']"
	;;
processes)
	loses processes
	drifts processes
	list=$(synchronized pshared) || exit 1
	for b in $list; do
		run 0 "$T" run --backend "$b" --workload inc --mode processes --iters 200000 --format json &&
			json "d['mode'] == 'processes' and d['expected'] == 600000 == d['actual']"
		run 0 "$T" run --backend "$b" --workload addsub --mode processes --workers 4 --sleep-us 100 --format json &&
			json "d['actual'] == 500 and d['per_worker_ops'] == [100] * 4"
	done
	;;
faults)
	# A robust mutex survives a worker killed while holding it.  Whether
	# the victim holds the lock at the instant of SIGKILL is chance
	# (about one try in three here), so try until it does, within bounds.
	seen=0
	robust_futexes || { seen=1; echo "SKIP: mutex holder death: no robust futex list under $TALLY_TEST_EMULATOR"; }
	for i in $(seq 1 25); do
		[ $seen = 1 ] && break
		run 3 "$T" run --backend mutex --workload inc --mode processes --iters 3000000 --kill-after-ms 30 || break
		contains err "worker 0 was killed" "kill report"
		contains err "accounting: .*(they agree|the one add that was in flight)" "mutex accounting"
		if grep -q "recovered it" "$TMP/err"; then
			seen=1
			break
		fi
	done
	if [ $seen = 1 ]; then ok; else bad "a killed mutex holder was never recovered in 25 tries"; fi
	# A shared spin lock's word is its holder's record (src/life.h): a
	# holder killed at any point is known, and a surviving worker takes
	# the lock over.  The run ends in bounded time with exit 3 (a worker
	# was killed), never a stall.
	# It is about spin itself: skipped where Concurrency Kit was absent.
	if built spin; then
		seen=0
		for i in $(seq 1 25); do
			start=$(date +%s)
			run 3 "$T" run --backend spin --workload inc --mode processes --iters 3000000 --kill-after-ms 30 --stall-timeout 5 || break
			if [ $(($(date +%s) - start)) -le 10 ]; then ok; else bad "spin holder death took over 10 s"; fi
			grep -q "no add completed" "$TMP/err" && bad "a killed spin holder stalled the run: $(cat "$TMP/err")"
			if grep -q "recovered it (the kernel said its process was gone)" "$TMP/err"; then
				seen=1
				break
			fi
		done
		if [ $seen = 1 ]; then ok; else bad "a killed spin holder was never recovered in 25 tries"; fi
		contains err "accounting: final value [0-9]+, completed adds sum to [0-9]+: (they agree|they differ by the one add)" "recovered spin accounting"
		# The final value is read (tally_get never waits for the lock) and set
		# against what the workers completed; only the killed worker is
		# reported as killed.
		run 3 "$T" run --backend spin --workload inc --mode processes --iters 20000000 --kill-after-ms 30 --stall-timeout 1 --format json
		json "d['killed_worker'] == 0 and d['died_worker'] == -1 and d['actual'] - d['expected'] in (0, 1)"
	fi
	# The adaptive lock sleeps on a futex instead of spinning, and records
	# its holder beside its word, so a holder killed in the instant after
	# it took the lock is not known: a run whose worker dies ends in
	# bounded time with exit 3 either way.  Whether the victim held the lock is chance
	# (rare under a sanitizer, whose code runs outside the lock), so the
	# certain case -- a holder killed while it holds -- is in the shm group.
	for i in 1 2 3 4 5; do
		start=$(date +%s)
		run 3 "$T" run --backend adaptive --workload inc --mode processes --iters 3000000 --kill-after-ms 30 --stall-timeout 1 || break
		if [ $(($(date +%s) - start)) -le 10 ]; then ok; else bad "adaptive worker death took over 10 s"; fi
		grep -q "most likely died holding the 'adaptive' lock" "$TMP/err" && break
	done
	# A kill that comes after every worker finished is said, not hidden.
	run 0 "$T" run --backend mutex --workload inc --mode processes --iters 1000 --kill-after-ms 5000
	contains err "no worker was killed: every worker had finished before --kill-after-ms 5000" "missed kill"
	# Ctrl-C stops the workers and reports partial counts (exit 3).
	interrupted 1 run --backend mutex --workload addsub --iters 100000 --sleep-us 1000 --format json
	contains err "interrupted" "Ctrl-C message"
	json "d['interrupted'] and 0 < sum(d['per_worker_ops']) < 200000 and d['lost'] == 0"
	# Workers that cannot be started (fork fails: a process limit) are a
	# runtime failure that says why, in every command that starts them.
	# The limit is a second user's (root is exempt from it).
	if [ "$(id -u)" != 0 ]; then
		echo "SKIP: the process-limit checks need root (a second uid)"
	elif [ -n "${TALLY_TEST_EMULATOR:-}" ]; then
		# The emulator's own threads count against the limit, so the
		# program is stopped at other places than natively.
		echo "SKIP: the process-limit checks: $TALLY_TEST_EMULATOR's threads count against the limit"
	elif ! nobody_tally; then
		bad "uid 65534 cannot run a copy of $T"
	else
		# as_nobody, spelled out: run() starts it with timeout(1).
		few=(setpriv --reuid 65534 --regid 65534 --clear-groups env "LD_LIBRARY_PATH=$TMP/u" prlimit --nproc=8:8 "$NOBODY_T")
		# The message names the limit and its value, not only EAGAIN.
		limit="Resource temporarily unavailable: a process limit was hit: RLIMIT_NPROC \\('ulimit -u'\\) allows this user 8 processes and threads in all, or the pids cgroup \\(pids.max\\) is full"
		run 3 "${few[@]}" run --backend mutex --workload inc --mode processes --workers 64 --iters 10
		contains err "cannot start the workers: Resource temporarily unavailable" "run: fork failure"
		contains err "cannot start the workers: $limit$" "run: fork failure names the limit"
		run 3 "${few[@]}" run --backend mutex --workload inc --workers 64 --iters 10
		contains err "cannot start the workers: $limit; or no memory was left for a thread's stack$" "run: thread limit"
		run 3 "${few[@]}" bench --backend mutex --mode processes --workers 64 --duration 0.01 --repeat 1
		contains err "cannot start the workers: Resource temporarily unavailable" "bench: fork failure"
		contains err "cannot start the workers: $limit$" "bench: fork failure names the limit"
		run 3 "${few[@]}" stress --backend mutex --mode processes --max-workers 64 --rounds 20
		contains err "cannot start worker [0-9]+: Resource temporarily unavailable" "stress: fork failure"
		contains err "cannot start worker [0-9]+: $limit$" "stress: fork failure names the limit"
	fi
	;;
shm)
	name="clitest-$$"
	trap 'rm -rf "$TMP"; "$T" shm rm $name 2>/dev/null' EXIT
	refused "invalid counter name" shm create "a/b"
	refused "invalid counter name" shm create ".x"
	refused "missing operation" shm
	refused "unknown operation 'inc'" shm inc $name
	refused "takes two operands" shm add $name
	refused "DELTA must be a whole number" shm add $name five
	refused "no shared counter by that name" shm get $name
	refused "does not take --backend" shm add $name 1 --backend mutex
	refused "unknown backend 'nope'" shm create $name --backend nope
	# A lock that cannot be named is refused, and the refusal lists those
	# that can (what is built in, from the registry).
	unnamed=$(pick locked named) || {
		echo "FAIL: no locked backend that cannot be named (clh is one)"
		exit 1
	}
	refused "cannot be used for a named counter.*\(allowed: .*mutex" shm create $name --backend "$unnamed"
	refused "--timeout is out of range: .0.01. \(allowed: 0.1 to 3600" shm add $name 1 --timeout 0.01
	run 0 "$T" shm create $name --backend mutex --initial 500
	refused "already exists" shm create $name
	mode=$(stat -c %a /dev/shm/tally.$name)
	if [ "$mode" = 600 ]; then ok; else bad "mode is $mode, not 600"; fi
	# Four shells at once, each 100 adds of +5 or -5: nothing is lost.
	for s in 1 2 3 4; do
		(
			d=5
			[ $((s % 2)) = 0 ] && d=-5
			for i in $(seq 1 100); do "$T" shm add $name $d || exit 1; done
		) &
	done
	wait
	run 0 "$T" shm get $name && contains out "^500$" "four concurrent shells"
	run 0 "$T" shm list && contains out "^$name +mutex +500$" "shm list"
	run 0 "$T" shm rm $name
	refused "no shared counter by that name" shm rm $name
	if [ -n "$HOLDER" ]; then
		# While another process holds the lock: get and list answer at
		# once (get still accepts --timeout); an add that is asked to
		# stop finishes first and says the add counts; a mutex add
		# that times out says its holder is alive.
		# A spinning lock where one is built in that can be named.
		held=$(pick "named locked spinning" || pick "named locked")
		run 0 "$T" shm create $name --backend "$held" --initial 6
		"$HOLDER" $name 2 &
		holder=$!
		sleep 0.5
		start=$(date +%s%N)
		run 0 "$T" shm get $name --timeout 1 && contains out "^106$" "get while held"
		run 0 "$T" shm list && contains out "^$name +$held +106$" "list while held"
		if [ $(( ($(date +%s%N) - start) / 1000000 )) -lt 1000 ]; then ok; else bad "get and list waited for the lock"; fi
		"$T" shm add $name 1 >"$TMP/out" 2>"$TMP/err" &
		adder=$!
		sleep 0.3
		kill -TERM $adder
		wait $adder
		code=$?
		if [ $code = 0 ]; then ok; else bad "add stopped by SIGTERM: exit $code, wanted 0"; fi
		contains err "interrupted during the add, which was done first \\(it counts\\)" "interrupted add"
		wait $holder
		run 0 "$T" shm get $name && contains out "^107$" "the interrupted add counted"
		run 0 "$T" shm rm $name
		run 0 "$T" shm create $name --backend mutex
		"$HOLDER" $name 2 &
		holder=$!
		sleep 0.5
		run 3 "$T" shm add $name 1 --timeout 0.3 &&
			contains err "^tally shm: $name: the mutex lock was not taken in 0\.300 s; nothing was added\.  It is held by a live" "live mutex holder"
		not_died "live mutex holder"
		wait $holder
		run 0 "$T" shm get $name && contains out "^100$" "a timed-out add added nothing"
		run 0 "$T" shm rm $name
		# adaptive sleeps on a futex in the shared object: a waiter in
		# another program is woken by the holder's unlock (a private
		# futex would never be), and one that gives up says why.
		run 0 "$T" shm create $name --backend adaptive
		"$HOLDER" $name 2 &
		holder=$!
		sleep 0.5
		"$T" shm add $name 5 --timeout 10 >"$TMP/adder.out" 2>"$TMP/adder.err" &
		adder=$!
		# A live holder is not called dead: the add that gives up
		# says it was not taken in its time, and that the holder lives.
		run 3 "$T" shm add $name 1 --timeout 0.3 &&
			contains err "^tally shm: $name: the adaptive lock was not taken in 0\.3[0-9]* s; nothing was added\.  It is held by a live process" "live adaptive holder"
		not_died "live adaptive holder"
		wait $holder
		wait $adder
		code=$?
		if [ $code = 0 ]; then ok; else bad "a sleeping adaptive waiter in another program: exit $code, wanted 0"; fi
		run 0 "$T" shm get $name && contains out "^105$" "adaptive across programs"
		# A holder killed while it holds: get still answers at once,
		# and the next add takes the lock over and is done.
		"$HOLDER" $name 5 &
		holder=$!
		sleep 0.5
		kill -KILL $holder
		wait $holder 2>/dev/null
		run 0 "$T" shm get $name --timeout 1 && contains out "^(105|205)$" "get past a dead adaptive holder"
		start=$(date +%s%N)
		run 0 "$T" shm add $name 1 --timeout 0.5 &&
			contains err "^tally shm: $name: recovered the lock from a process that died holding it$" "dead adaptive holder"
		if [ $(( ($(date +%s%N) - start) / 1000000 )) -lt 5000 ]; then ok; else bad "a dead adaptive holder kept an add over 5 s"; fi
		run 0 "$T" shm get $name && contains out "^(106|206)$" "the add after a dead adaptive holder"
		run 0 "$T" shm rm $name
		# Every named backend with a lock, its holder killed inside it:
		# the next add is recovered (exit 0), or fails at once saying
		# that the holder died (exit 3); it never waits its time out
		# and never hangs.
		for b in $("$T" list --format csv | awk -F, 'NR > 1 && $2 == "yes" && (" " $3 " ") ~ / named / && (" " $3 " ") ~ / locked / { print $1 }'); do
			if [ "$b" = mutex ] && ! robust_futexes; then
				echo "SKIP: mutex holder death: no robust futex list under $TALLY_TEST_EMULATOR"
				continue
			fi
			run 0 "$T" shm create $name --backend "$b"
			"$HOLDER" $name 30 &
			holder=$!
			sleep 0.5
			kill -KILL $holder
			wait $holder 2>/dev/null
			start=$(date +%s%N)
			timeout 20 "$T" shm add $name 1 --timeout 10 >"$TMP/out" 2>"$TMP/err"
			code=$?
			took=$(( ($(date +%s%N) - start) / 1000000 ))
			if [ $code = 0 ]; then
				contains err "^tally shm: $name: recovered the lock from a process that died holding it$" "$b: dead holder recovered"
			elif [ $code = 3 ]; then
				contains err "^tally shm: $name: the process that held the $b lock.* died holding it" "$b: dead holder reported"
			else
				bad "$b: an add after its holder was killed: exit $code, wanted 0 or 3"
			fi
			if [ $took -lt 5000 ]; then ok; else bad "$b: a dead holder kept an add $took ms"; fi
			run 0 "$T" shm rm $name
		done
	fi
	# Something else under the name is refused, never read as a counter:
	# this user's own (0600), so that what it holds is what is checked.
	(umask 077 && head -c 4096 /dev/urandom >/dev/shm/tally.$name)
	refused "not a tally counter" shm get $name
	# The same bytes open to others are refused before they are read.
	chmod 644 /dev/shm/tally.$name
	refused "owned by uid $(id -u) .*with mode 0644" shm get $name
	run 0 "$T" shm rm $name
	;;
trust)
	# Hostile and careless input around named counters and the commands.
	name=clitrust-$$
	cleanup_trust() { rm -f /dev/shm/tally.$name* /dev/shm/tally.-$name; }
	trap 'cleanup_trust; rm -rf "$TMP"' EXIT
	# A NAME may begin with '-' after '--'.
	run 0 "$T" shm create --initial 4 -- -$name
	run 0 "$T" shm add -- -$name -1
	run 0 "$T" shm get -- -$name && contains out "^3$" "dash name"
	refused "goes after '--'" shm get -$name
	run 0 "$T" shm rm -- -$name
	# Names anyone can plant in /dev/shm are printed escaped: a newline
	# cannot forge a row, an escape sequence cannot reach the terminal.
	(umask 077 && : >"/dev/shm/tally.$name
forged 0 0" && printf x >"/dev/shm/tally.$name$(printf '\033')[2J")
	run 0 "$T" shm list
	contains out "^$name\\\\x0aforged 0 0 +\\? " "newline escaped"
	contains out "^$name\\\\x1b\\[2J +\\? " "escape escaped"
	if grep -q "^forged" "$TMP/out"; then bad "a planted name forged a row"; else ok; fi
	if grep -q "$(printf '\033')" "$TMP/out"; then bad "an escape reached the terminal"; else ok; fi
	cleanup_trust
	# Validate first, exit 2, nothing on stdout: before any calibration.
	refused "invalid backend option: 'atomic:foo'" bench --backend atomic:foo --workers 1
	if built redis; then
		refused "invalid backend option" stress --backend "redis:url=redis://:0" --rounds 1
		refused "invalid backend option" bench --backend "redis:url=redis://:0" --workers 1
	fi
	refused "--out: cannot write '/nonexistent/x.json'" bench --backend atomic --workers 1 --duration 0.1 --out /nonexistent/x.json
	# Ctrl-C during bench: the results so far, marked, and exit 3.
	interrupted 2 bench --backend atomic,mutex --workers 1,2 --duration 0.3 --repeat 4 --format json
	contains err "interrupted \(Ctrl-C\) after [0-9]+ of 16 runs" "bench Ctrl-C message"
	json "d['context']['interrupted'] is True and 0 < sum(r['repeats'] for r in d['results']) < 16"
	# No worker outlives `tally run`, whatever signal ends it.
	for sig in TERM HUP INT; do
		"$T" run --backend mutex --workload inc --mode processes --workers 2 --iters 987654$$ >/dev/null 2>&1 &
		pid=$!
		sleep 0.7
		kill -$sig $pid
		wait $pid 2>/dev/null
		sleep 0.3
		if pgrep -f "iters 987654$$" >/dev/null; then
			bad "SIG$sig left workers behind: $(pgrep -af "iters 987654$$")"
			pkill -KILL -f "iters 987654$$"
		else
			ok
		fi
	done
	# An add's exit status always tells whether it counted, whatever
	# signal arrives: the final value is exactly the number of exit-0
	# adds (a signal before the add kills it uncounted).
	run 0 "$T" shm create $name --backend mutex
	counted=0
	exe=$(readlink -f "$T")
	for i in $(seq 1 60); do
		"$T" shm add $name 1 2>/dev/null &
		pid=$!
		# Signal tally, not the shell's child before its exec (which
		# would run this script's EXIT trap).
		while kill -0 $pid 2>/dev/null &&
			[ "$(readlink /proc/$pid/exe 2>/dev/null)" != "$exe" ]; do :; done
		sleep 0.00$((i % 7))
		if [ $((i % 2)) = 0 ]; then sig=TERM; else sig=INT; fi
		kill -$sig $pid 2>/dev/null
		wait $pid && counted=$((counted + 1))
	done
	run 0 "$T" shm get $name && contains out "^$counted$" "exit status matches the adds that counted"
	run 0 "$T" shm rm $name
	if [ "$(id -u)" != 0 ]; then
		echo "SKIP: the second-user and full-/dev/shm checks need root (a second uid, a mount namespace)"
	elif ! nobody_tally; then
		bad "uid 65534 cannot run a copy of $T"
	else
		# Another user's counter, open to all: never joined.
		if as_nobody "$NOBODY_T" shm create $name --initial 100; then ok; else bad "nobody could not create"; fi
		chmod 666 /dev/shm/tally.$name
		refused "owned by uid 65534 .*mode 0666" shm add $name 5
		refused "owned by uid 65534" shm create $name --backend atomic
		refused "owned by uid 65534" shm get $name
		run 0 "$T" shm list && contains out "^$name +\? +\(another user's: not opened\)" "list: another user's"
		chmod 600 /dev/shm/tally.$name
		refused "owned by uid 65534 .*mode 0600" shm add $name 5
		as_nobody "$NOBODY_T" shm get $name >"$TMP/out" 2>&1 && contains out "^100$" "the foreign counter was not changed"
		rm -f /dev/shm/tally.$name
		# root's counter is not nobody's to join either.
		run 0 "$T" shm create $name
		as_nobody "$NOBODY_T" shm get $name >"$TMP/out" 2>"$TMP/err"
		if [ $? = 2 ]; then ok; else bad "nobody joined root's counter"; fi
		contains err "owned by uid 0" "nobody told whose it is"
		run 0 "$T" shm rm $name
		# A full /dev/shm (a small tmpfs in a private mount namespace):
		# exit 3 with the reason, nothing left behind, no SIGBUS.
		# shellcheck disable=SC2016 # $1, $2 and $? are the inner sh's, expanded there
		unshare -m sh -c '
			mount -t tmpfs -o size=12k tmpfs /dev/shm || exit 99
			head -c 12288 /dev/zero >/dev/shm/fill 2>/dev/null
			"$1" shm create "$2" --backend mutex; echo "rc=$?"
			ls /dev/shm' sh "$T" $name >"$TMP/out" 2>"$TMP/err"
		contains out "^rc=3$" "full /dev/shm: exit 3"
		contains err "no space" "full /dev/shm: the reason"
		if grep -q "tally\." "$TMP/out"; then bad "full /dev/shm: an object was left"; else ok; fi
		# A file-size limit: exit 3, not SIGXFSZ, nothing left.
		(ulimit -f 1 && "$T" shm create $name) >"$TMP/out" 2>"$TMP/err"
		if [ $? = 3 ]; then ok; else bad "ulimit -f: wanted exit 3"; fi
		contains err "file-size limit" "ulimit -f: the reason"
		if [ -e /dev/shm/tally.$name ]; then bad "ulimit -f: an object was left"; else ok; fi
	fi
	;;
demo)
	# About 20 s here; sanitizer builds take several times longer.
	LIMIT=280 run 0 "$T" demo && {
		contains out "^inc +threads +none +3000000 " "demo none row"
		contains out "Every synchronized backend was exact" "demo verdict"
		# none loses, every synchronized row is exact.
		# Whether two racing workers overlap is up to the scheduler;
		# on an idle machine with 2 cores both inc rows lose, on a
		# loaded one at least one of them does.
		if awk '$1 == "inc" && $3 == "none" && $6 != 0 { lost = 1 } END { exit !lost }' "$TMP/out"; then ok; else bad "none did not lose in demo"; fi
		if awk '($1 == "inc" || $1 == "addsub") && $3 !~ /^none(:|$)/ && $6 != 0 { exit 1 }' "$TMP/out"; then ok; else bad "a synchronized demo row lost updates"; fi
	}
	LIMIT=280 run 0 "$T" demo --format json && json "len(d) >= 20 and all(r['lost'] == 0 for r in d if r['backend'] != 'none') and all(r['tries'] >= 1 and r['total_ops'] > 0 and not r['interrupted'] for r in d)"
	# Ctrl-C: the runs so far, the cut one marked, a message, exit 3, and
	# no closing lines that would speak for runs that never happened.  The
	# first addsub runs last 1 s each: at 2.5 s the signal lands inside the
	# third, half a second from either end (at 2 s it fell on the boundary
	# between two runs, and was taken after one).
	interrupted 2.5 demo
	contains err "interrupted during run [0-9]+ \\(addsub threads" "demo Ctrl-C message"
	contains out "interrupted \\(Ctrl-C\\)$" "demo Ctrl-C row"
	if grep -q "What you just saw" "$TMP/out"; then bad "demo explained an interrupted run"; else ok; fi
	;;
redis)
	# A private server on loopback, started by the redis_start fixture.
	r="redis:url=$TALLY_TEST_REDIS_URL,key=cli-$$"
	for mode in threads processes; do
		run 0 "$T" run --backend "$r" --workload inc --iters 3000 --mode $mode --format json &&
			json "d['actual'] == 9000 == d['expected'] and d['backend'] == 'redis'"
		run 0 "$T" run --backend "$r" --workload addsub --workers 4 --sleep-us 0 --mode $mode --format json &&
			json "d['actual'] == 500"
	done
	refused "invalid backend option" run --workload inc --backend "redis:colour=blue"
	# A key that holds no counter is named with its type, and kept.
	redis-cli -u "$TALLY_TEST_REDIS_URL" del "cli-$$-list" >/dev/null
	redis-cli -u "$TALLY_TEST_REDIS_URL" rpush "cli-$$-list" a b >/dev/null
	for extra in "" ",keep"; do
		refused "redis key 'cli-$$-list' holds a list, not an integer counter" \
			run --workload inc --backend "$r-list$extra"
	done
	if [ "$(redis-cli -u "$TALLY_TEST_REDIS_URL" llen "cli-$$-list")" = 2 ]; then
		ok
	else
		bad "a list was overwritten"
	fi
	run 0 "$T" run --workload inc --iters 10 --backend "$r-list,reset" && ok
	# Joined runs: two participants 0.2 s apart, twice, in either order,
	# on a key that already holds 1000.  Each prints the same exact joint
	# verdict, and nobody resets the counter: 1000 + 2 x (6000 + 3000).
	redis-cli -u "$TALLY_TEST_REDIS_URL" set "cli-$$-joint" 1000 >/dev/null
	for first in 2000 1000; do
		second=$((3000 - first))
		"$T" run --backend "$r-joint" --workload inc --iters $first \
			--participants 2 --join-timeout 30 --format json \
			>"$TMP/first" 2>"$TMP/first.err" &
		p=$!
		sleep 0.2
		run 0 "$T" run --backend "$r-joint" --workload inc --iters $second \
			--participants 2 --join-timeout 30 --format json
		if wait $p; then ok; else bad "the first participant: exit $?"; fi
		json "d['participants'] == 2 and d['lost'] == 0 and d['actual'] == d['expected'] == json.load(open('$TMP/first'))['actual']"
	done
	if [ "$(redis-cli -u "$TALLY_TEST_REDIS_URL" get "cli-$$-joint")" = 19000 ]; then
		ok
	else
		bad "joined runs: the counter is not 19000"
	fi
	# Who never came, and who never finished (killed mid-run).
	run 3 "$T" run --backend "$r-alone" --workload inc --iters 10 \
		--participants 2 --join-timeout 0.3 &&
		contains err "participants 2 to 2 of 2 never arrived within 0.3 s \(1 arrived\)" "never arrived"
	"$T" run --backend "$r-killed" --workload inc --iters 100000 --sleep-us 1000 \
		--participants 2 --join-timeout 30 >/dev/null 2>&1 &
	p=$!
	sleep 0.2
	"$T" run --backend "$r-killed" --workload inc --iters 10 \
		--participants 2 --join-timeout 1 >"$TMP/out" 2>"$TMP/err" &
	q=$!
	sleep 1
	kill -KILL $p
	wait $q
	if [ $? = 3 ]; then ok; else bad "a participant whose partner was killed: not exit 3"; fi
	contains err "participant [12] of 2 never finished" "never finished"
	contains err "this participant \\([12] of 2, joint run [0-9]*\\) made [0-9]* adds, summing to [0-9]*: each acknowledged, 0 of unknown outcome" "a survivor's own sum"
	# Adds of unknown outcome that the server did apply are no loss: the
	# server paused (SIGSTOP) past the deadline with adds in flight, then
	# resumed before the final read, which sees them applied.  (A 300 ms
	# timeout: creating the counter gets one, and a loaded machine has
	# stalled a server for more than 100.)
	"$T" run --backend "$r-unknown,timeout_ms=300,deadline_ms=600" --workload inc \
		--workers 4 --iters 100000 --sleep-us 1000 --format json >"$TMP/out" 2>"$TMP/err" &
	q=$!
	sleep 0.7
	kill -STOP "$(cat "$TALLY_TEST_REDIS_PIDFILE")"
	sleep 1.2
	kill -CONT "$(cat "$TALLY_TEST_REDIS_PIDFILE")"
	wait $q
	if [ $? = 3 ]; then ok; else bad "adds of unknown outcome: not exit 3"; fi
	json "d['unknown'] >= 1 and d['lost'] == 0 and 0 <= d['actual'] - d['expected'] <= d['unknown_sum']"
	# A plain run that joins a key (keep) judges its own adds: a key at
	# 100 is no loss of 100, and two such runs at once are each exact,
	# each saying how far the other moved the key; the server agrees.
	redis-cli -u "$TALLY_TEST_REDIS_URL" set "cli-$$-keep" 100 >/dev/null
	run 0 "$T" run --backend "$r-keep,keep" --workload inc --iters 100 --format json &&
		json "d['start'] == 100 and d['actual'] == d['expected'] == 400 and d['lost'] is None and d['others'] == 0 and d['exact']" &&
		contains err "the key moved by exactly this run's adds, to 400" "a keep run on its own"
	"$T" run --backend "$r-keep,keep" --workload inc --iters 3000 --sleep-us 200 \
		--format json >"$TMP/first" 2>"$TMP/first.err" &
	p=$!
	sleep 0.2
	run 0 "$T" run --backend "$r-keep,keep" --workload inc --iters 3000 --sleep-us 200 --format json &&
		json "d['lost'] is None and d['others'] > 0 and d['exact']" &&
		contains err "the key also moved by [0-9]* beyond this run's adds, to [0-9]*: other writers" "two keep runs"
	if wait $p; then ok; else bad "the first keep run: exit $?"; fi
	if [ "$(redis-cli -u "$TALLY_TEST_REDIS_URL" get "cli-$$-keep")" = 18400 ]; then
		ok
	else
		bad "two keep runs: the key is not 100 + 300 + 2 x 9000"
	fi
	# Joint runs agree on N: a run that asks for another N than the one
	# forming is refused, naming both, and changes nothing.
	"$T" run --backend "$r-n" --workload inc --iters 10 --participants 2 \
		--join-timeout 30 >"$TMP/first" 2>"$TMP/first.err" &
	p=$!
	sleep 0.5
	refused "joint run 0 on this key is forming with 2 participants, and this run asked for 3" \
		run --backend "$r-n" --workload inc --iters 10 --participants 3
	run 0 "$T" run --backend "$r-n" --workload inc --iters 10 --participants 2 --format json &&
		json "d['participants'] == 2 and d['actual'] == d['expected'] == 60 and d['lost'] == 0"
	if wait $p; then ok; else bad "the first of two participants: exit $?"; fi
	# A participant killed at the barrier leaves nothing that breaks the
	# next joint run: its lease runs out, and the next two join a new one.
	# both_joined: wait (10 s at most) until the two participants whose
	# stderr is $TMP/p1.err and p2.err have both joined their joint run.
	both_joined() {
		for _ in $(seq 1 100); do
			cat "$TMP/p1.err" "$TMP/p2.err" | grep -c "participant [12] of 2" | grep -q 2 && break
			sleep 0.1
		done
	}
	# after_dead KEY N WHAT: a run of N participants killed at the barrier,
	# then two of 2 join a new joint run (1) and end exact.
	after_dead() {
		"$T" run --backend "$r-$1" --workload inc --iters 10 --participants "$2" >/dev/null 2>&1 &
		p=$!
		sleep 0.5
		kill -KILL $p
		wait $p 2>/dev/null
		"$T" run --backend "$r-$1" --workload inc --iters 10 --participants 2 \
			--format json >"$TMP/first" 2>"$TMP/first.err" &
		p=$!
		sleep 0.2
		run 0 "$T" run --backend "$r-$1" --workload inc --iters 10 --participants 2 --format json &&
			json "d['joint_run'] == 1 and d['actual'] == d['expected'] == 60 and d['lost'] == 0"
		if wait $p; then ok; else bad "after $3: exit $?"; fi
	}
	after_dead dead 2 "a dead participant"
	if grep -q "joint run 0 had 1 of 2 participants, none of them alive for 5 s; closing it" "$TMP/first.err" "$TMP/err"; then
		ok
	else
		bad "the dead participant's joint run was not said to be closed"
	fi
	# A forming joint run of another N whose participants died expires
	# too: the next runs do not take its N for theirs, nor wait for ever.
	after_dead deadn 3 "a dead run of another N"
	# Participants stopped (SIGSTOP) past the lease are taken for dead:
	# the run waiting for them closes their joint run and goes ahead;
	# resumed, they find it closed, stop, and say so (exit 3).
	for i in 1 2; do
		"$T" run --backend "$r-frozen" --workload inc --iters 100000 --sleep-us 1000 \
			--participants 2 >"$TMP/p$i" 2>"$TMP/p$i.err" &
		eval "p$i=\$!"
	done
	both_joined
	sleep 0.3
	# shellcheck disable=SC2154 # p1 and p2 are set by the eval above
	kill -STOP "$p1" "$p2"
	run 0 "$T" run --backend "$r-frozen" --workload inc --iters 10 --participants 1 --format json &&
		json "d['joint_run'] == 1 and d['lost'] == 0" &&
		contains err "joint run 0 showed no sign of life for 5 s: its participants are gone; closing it" "a frozen run closed"
	kill -CONT "$p1" "$p2"
	for i in 1 2; do
		eval "q=\$p$i"
		if wait "$q"; then bad "a frozen participant: exit 0"; else ok; fi
		if grep -q "joint run 0 was closed by another run while this one took part" "$TMP/p$i.err"; then
			ok
		else
			bad "frozen participant $i did not say its run was closed"
		fi
	done
	# After a joint run that timed out, a run of its own joins at once.
	run 3 "$T" run --backend "$r-dead" --workload inc --iters 10 --participants 2 --join-timeout 0.3
	run 0 "$T" run --backend "$r-dead" --workload inc --iters 10 --participants 1 --format json &&
		json "d['joint_run'] == 3 and d['lost'] == 0"
	# One joint run per key at a time: a third waits for the two under
	# way, says so, then runs; in every mode, each verdict exact.
	for m in "" ",mode=async" ",flush_ms=10"; do
		for i in 1 2; do
			"$T" run --backend "$r-one$m" --workload inc --iters 4000 --sleep-us 200 \
				--participants 2 >"$TMP/p$i" 2>"$TMP/p$i.err" &
			eval "p$i=\$!"
		done
		# Both have joined (a third asking for another N while the
		# run forms would be refused), and run 1 s at least.
		both_joined
		run 0 "$T" run --backend "$r-one$m" --workload inc --iters 10 --participants 1 --format json &&
			json "d['lost'] == 0 and d['actual'] == d['expected']" &&
			contains err "joint run [0-9]* on this key \\(2 participants\\) is under way; waiting for it to end" "a third run waits ($m)"
		# shellcheck disable=SC2154 # p1 and p2 are set by the eval above
		if wait "$p1" && wait "$p2"; then ok; else bad "two participants$m: exit $?"; fi
		if grep -q "joint verdict over 2 participants: adds sum to 24000, .*: exact" "$TMP/p1.err"; then
			ok
		else
			bad "two participants$m: no exact joint verdict"
		fi
	done
	# Backends with options hold commas: such a one takes the rest of its
	# --backend, and --backend repeats.
	run 0 "$T" bench --backend "atomic,$r-b1" --backend "$r-b2" --workers 2 \
		--duration 0.05 --warmup 0.01 --format json &&
		json "[r['backend'] for r in d['results']] == ['atomic', '$r-b1', '$r-b2'] and all(r['correct'] for r in d['results'])"
	run 3 "$T" run --backend "redis:url=redis://127.0.0.1:1" --workload inc --iters 10 &&
		contains err "redis server 127.0.0.1:1: cannot connect: .*refused" "refused connection"
	# Passwords: a second private server that wants one (--requirepass,
	# bounded by timeout, stopped by the trap), and an ACL user on the
	# first.  Each authenticates, and no output -- stderr, a table, JSON,
	# a refusal -- holds the password.
	port=${TALLY_TEST_REDIS_URL##*:}
	pport=$((port + 5000)) pw="pw-$$-s3cret"
	timeout 120 redis-server --bind 127.0.0.1 --port $pport --save '' \
		--appendonly no --requirepass "$pw" --dir "$TMP" \
		>"$TMP/pserver.log" 2>&1 &
	pserver=$!
	trap 'kill $pserver 2>/dev/null; rm -rf "$TMP"' EXIT
	for _ in $(seq 1 50); do
		redis-cli -p $pport -a "$pw" --no-auth-warning ping 2>/dev/null | grep -q PONG && break
		sleep 0.1
	done
	no_password() { # WHAT: the password is in neither stdout nor stderr
		if grep -q -- "$pw" "$TMP/out" "$TMP/err"; then bad "$1: the password was shown"; else ok; fi
	}
	p="redis:url=redis://:$pw@127.0.0.1:$pport,key=cli-$$-pw"
	run 0 "$T" run --backend "$p" --workload inc --iters 100 --format json &&
		json "d['actual'] == 300" && no_password "run --format json"
	run 0 "$T" run --backend "$p" --workload inc --iters 100 && no_password "run"
	run 0 "$T" bench --backend "$p" --workers 1 --duration 0.05 --warmup 0.01 --format json &&
		json "[r['backend'] for r in d['results']] == ['redis:url=redis://:***@127.0.0.1:$pport,key=cli-$$-pw']" &&
		no_password "bench --format json"
	run 0 "$T" bench --backend "$p" --workers 1 --duration 0.05 --warmup 0.01 && no_password "bench"
	refused "refused AUTH \(the URL's password\): WRONGPASS" run --workload inc \
		--backend "redis:url=redis://:$pw-not@127.0.0.1:$pport" && no_password "a wrong password"
	refused "redis:url=redis://:\*\*\*@127.0.0.1:$pport,colour=blue" run --workload inc \
		--backend "redis:url=redis://:$pw@127.0.0.1:$pport,colour=blue" && no_password "a bad option"
	refused "NOAUTH" run --workload inc --backend "redis:url=redis://127.0.0.1:$pport"
	user="cli-$$"
	redis-cli -u "$TALLY_TEST_REDIS_URL" acl setuser "$user" reset on ">$pw" '~*' '&*' '+@all' >/dev/null
	a="redis:url=redis://$user:$pw@127.0.0.1:$port,key=cli-$$-acl"
	run 0 "$T" run --backend "$a" --workload inc --iters 100 --mode processes --format json &&
		json "d['actual'] == 300" && no_password "an ACL user's run"
	run 0 "$T" run --backend "$a-joint" --workload inc --iters 10 --participants 1 --format json &&
		json "d['backend'] == 'redis:url=redis://$user:***@127.0.0.1:$port,key=cli-$$-acl-joint'" &&
		no_password "a joint run"
	run 0 "$T" run --backend "$a-joint" --workload inc --iters 10 --participants 1 && no_password "a joint run's table"
	refused "refused AUTH as user '$user': WRONGPASS" run --workload inc \
		--backend "redis:url=redis://$user:not-$pw@127.0.0.1:$port" && no_password "an ACL user's wrong password"
	# Once a run has started, the server's own words reach its message: an
	# ACL that forbids the add (NOPERM), in threads and in processes; a
	# server out of memory mid-run (OOM, on the private server); a key
	# that changes type mid-run, named with its type.
	np="cli-$$-np"
	redis-cli -u "$TALLY_TEST_REDIS_URL" acl setuser "$np" reset on ">$pw" '~*' '&*' '+@all' -evalsha >/dev/null
	for mode in threads processes; do
		run 3 "$T" run --backend "redis:url=redis://$np:$pw@127.0.0.1:$port,key=cli-$$-np" \
			--workload inc --iters 10 --workers 4 --mode $mode &&
			contains err "an add failed: redis server 127.0.0.1:$port: NOPERM .*evalsha" "NOPERM ($mode)" &&
			no_password "NOPERM ($mode)"
	done
	"$T" run --backend "$p-oom" --workload inc --iters 3000 --sleep-us 1000 >"$TMP/out" 2>"$TMP/err" &
	q=$!
	sleep 0.5
	redis-cli -p $pport -a "$pw" --no-auth-warning config set maxmemory 1 >/dev/null
	wait $q
	if [ $? = 3 ]; then ok; else bad "a server out of memory mid-run: not exit 3"; fi
	contains err "an add failed: redis server 127.0.0.1:$pport: OOM command not allowed" "OOM mid-run"
	redis-cli -p $pport -a "$pw" --no-auth-warning config set maxmemory 0 >/dev/null
	"$T" run --backend "$r-typed" --workload inc --iters 3000 --sleep-us 1000 >"$TMP/out" 2>"$TMP/err" &
	q=$!
	sleep 0.5
	printf 'MULTI\nDEL cli-%s-typed\nHSET cli-%s-typed f v\nEXEC\n' $$ $$ |
		redis-cli -u "$TALLY_TEST_REDIS_URL" >/dev/null
	wait $q
	if [ $? = 3 ]; then ok; else bad "a key that changed type mid-run: not exit 3"; fi
	contains err "an add failed: redis key 'cli-$$-typed' holds a hash, not an integer counter" "type changed mid-run"
	# A database the server does not have is bad input, in its words.
	refused "redis server 127\.0\.0\.1:[0-9]+: refused database 99 \(SELECT\): ERR DB index is out of range" \
		run --workload inc --iters 10 --backend "redis:url=$TALLY_TEST_REDIS_URL/99,key=cli-$$-db"
	if [ -s "$TMP/out" ]; then bad "printed a result for an unreachable server"; else ok; fi
	;;
*)
	echo "unknown group $GROUP"
	exit 2
	;;
esac

echo "$passes passed, $fails failed"
[ $fails = 0 ]
