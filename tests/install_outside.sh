#!/bin/sh
# Install the built tree into a temporary prefix, move it somewhere else, and
# build the examples against it as an outside program would, five ways:
#   pkg-config, shared       cc prog.c $(pkg-config --cflags --libs tally)
#   pkg-config, inline       the same with -DTALLY_INLINE
#   pkg-config, static       --static inside -Wl,-Bstatic, as tally(3) says
#   find_package, shared     tally::tally
#   find_package, static     tally::tally_static (Concurrency Kit found again)
# Each program then runs every backend, in threads and in forked processes,
# and checks its own count.
#
# With PYTHON and PYDIR (the interpreter the Python module was built for, and
# where it is installed relative to the prefix), the installed module is
# imported from the moved prefix and the lesson's programs run on it.
#
# usage: install_outside.sh BUILD_DIR EXAMPLES_DIR CMAKE CC [CFLAGS
#                           [PYTHON PYDIR]]
# (EXAMPLES_DIR: the source tree's, to compare the installed copy with)
set -eu
build=$1 examples=$2 cmake=$3 cc=$4 cflags=${5:-} python=${6:-} pydir=${7:-}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
step() { printf '\n== %s\n' "$*"; }
fail() { echo "install_outside: FAIL: $*" >&2; exit 1; }

step "install into a staging prefix, then move it: nothing may point back"
"$cmake" --install "$build" --prefix "$tmp/stage" >/dev/null
prefix="$tmp/moved+prefix@1"
mv "$tmp/stage" "$prefix"
for f in include/tally.h share/man/man1/tally.1 share/man/man3/tally.3 \
	bin/tally; do
	[ -e "$prefix/$f" ] || fail "$f not installed"
done
# From here on, the examples as installed, not as in the source tree.
[ -f "$prefix/share/doc/tally/examples/CMakeLists.txt" ] ||
	fail "examples not installed"
cmp -s "$examples/pool.c" "$prefix/share/doc/tally/examples/pool.c" ||
	fail "installed examples differ from $examples"
examples="$prefix/share/doc/tally/examples"
pc=$(find "$prefix" -name tally.pc)
[ -n "$pc" ] || fail "tally.pc not installed"
libdir=$(dirname "$(dirname "$pc")")
for f in libtally.a libtally.so; do
	[ -e "$libdir/$f" ] || fail "$f not installed"
done
soname=$(readelf -d "$libdir/libtally.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ -e "$libdir/$soname" ] || fail "SONAME '$soname' missing"
echo "libraries in $libdir, SONAME $soname"
# Only tally_* leaves the shared library.
bad=$(nm -D --defined-only "$libdir/libtally.so" | awk '{print $3}' |
	grep -v '^tally_' || true)
[ -z "$bad" ] || fail "exported symbols not named tally_*: $bad"
"$prefix/bin/tally" list >/dev/null || fail "installed 'tally list'"

# python3, with a sanitizer build's runtime preloaded when the test says so
# (TALLY_TEST_PY_PRELOAD; CPython's objects left at exit are no leak of ours)
py() {
	if [ -n "${TALLY_TEST_PY_PRELOAD:-}" ]; then
		LD_PRELOAD="$TALLY_TEST_PY_PRELOAD" \
			ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" "$python" "$@"
	else
		"$python" "$@"
	fi
}
if [ -n "$python" ]; then
	step "the Python module, imported from the moved prefix"
	site="$prefix/$pydir"
	mod=$(ls "$site"/tally/_tally.*.so 2>/dev/null) ||
		fail "Python package not installed in <prefix>/$pydir/tally"
	# Self-contained: libtally.a inside, no path back to anything.
	! readelf -d "$mod" | grep -q 'NEEDED.*libtally' ||
		fail "the Python module needs libtally.so"
	! readelf -d "$mod" | grep -Eq 'RPATH|RUNPATH' ||
		fail "the Python module carries an RPATH"
	exported=$(nm -D --defined-only "$mod" | awk '{print $3}')
	[ "$exported" = PyInit__tally ] ||
		fail "the Python module exports more than PyInit__tally: $exported"
	for f in addsub.py inc.py; do
		cmp -s "$examples/python/$f" \
			"$prefix/share/doc/tally/examples/python/$f" ||
			fail "installed examples/python/$f differs"
	done
	pyex="$prefix/share/doc/tally/examples/python"
	# Where PYDIR is on the interpreter's own sys.path (Debian:
	# /usr/local/lib/python3.X/dist-packages), installing into that
	# prefix needs no PYTHONPATH at all.
	"$python" -c 'import sys
d = "/" + sys.argv[1]
hits = [p for p in sys.path if p.endswith(d)]
print("no PYTHONPATH needed with --prefix", ", ".join(p[:-len(d)] for p in hits))
sys.exit(not hits)' "$pydir" ||
		fail "<prefix>/$pydir is on no sys.path of $python"
	got=$(cd "$tmp" && PYTHONPATH="$site" py -c \
		'import tally; print(tally.__file__)')
	[ "$got" = "$site/tally/__init__.py" ] ||
		fail "imported $got, not $site/tally/__init__.py"
	for args in "addsub.py mutex:500" "inc.py atomic:3000000" \
		"inc.py mutex --spawn:3000000"; do
		want=${args##*:}
		args=${args%:*}
		echo "-- python3 $args"
		# shellcheck disable=SC2086 # the script and its arguments
		out=$(cd "$tmp" && PYTHONPATH="$site" py "$pyex"/$args) ||
			fail "python3 $args: exit status $?"
		[ "$out" = "$want" ] || fail "python3 $args printed '$out'"
	done
fi

PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PKG_CONFIG_PATH
got=$(pkg-config --variable=prefix tally)
[ "$(cd "$got" && pwd -P)" = "$(cd "$prefix" && pwd -P)" ] ||
	fail "tally.pc prefix is '$got', not the moved '$prefix'"

run() { # NAME PROGRAM ARGS...: every backend, exact counts
	name=$1
	shift
	echo "-- $name"
	"$@" || fail "$name: exit status $?"
}
runboth() { # DIR LABEL
	run "$2 pool" "$1/tally-pool" --backend all --threads 2 --jobs 5000
	run "$2 fork" "$1/tally-fork" --backend all --workers 2 --iters 20000
}
needs_no_libtally() {
	! readelf -d "$1" | grep -q 'NEEDED.*libtally' ||
		fail "$1 is linked to libtally.so, not libtally.a"
}

step "pkg-config, shared library"
mkdir "$tmp/pc"
for ex in pool fork; do
	# shellcheck disable=SC2046,SC2086 # word splitting is the point
	"$cc" $cflags -o "$tmp/pc/tally-$ex" "$examples/$ex.c" \
		$(pkg-config --cflags --libs tally) \
		-Wl,-rpath,"$(pkg-config --variable=libdir tally)"
done
readelf -d "$tmp/pc/tally-pool" | grep -q "NEEDED.*$soname" ||
	fail "not linked to $soname"
runboth "$tmp/pc" pkg-config

step "pkg-config, shared library, built with -DTALLY_INLINE"
mkdir "$tmp/pci"
for ex in pool fork; do
	# shellcheck disable=SC2046,SC2086
	"$cc" $cflags -DTALLY_INLINE -o "$tmp/pci/tally-$ex" "$examples/$ex.c" \
		$(pkg-config --cflags --libs tally) \
		-Wl,-rpath,"$(pkg-config --variable=libdir tally)"
done
# It must link to the layout-checked names, which this library exports.
nm -D --undefined-only "$tmp/pci/tally-pool" | grep -q ' tally_create_inline1$' ||
	fail "a TALLY_INLINE program does not use tally_create_inline1"
runboth "$tmp/pci" "pkg-config TALLY_INLINE"

step "pkg-config --static, as tally(3) says, beside libtally.so"
# -ltally alone would pick libtally.so: -Wl,-Bstatic makes every library that
# pkg-config names (tally, ck, hiredis) static; libc stays shared.
mkdir "$tmp/pcs"
for ex in pool fork; do
	# shellcheck disable=SC2046,SC2086
	"$cc" $cflags -o "$tmp/pcs/tally-$ex" "$examples/$ex.c" \
		$(pkg-config --cflags tally) \
		-Wl,-Bstatic $(pkg-config --static --libs tally) -Wl,-Bdynamic
	needs_no_libtally "$tmp/pcs/tally-$ex"
done
runboth "$tmp/pcs" "pkg-config --static"

for kind in shared static; do
	step "find_package(tally CONFIG), $kind library"
	static=OFF
	[ $kind = shared ] || static=ON
	"$cmake" -S "$examples" -B "$tmp/cm-$kind" -DCMAKE_BUILD_TYPE=Release \
		-DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" \
		-DCMAKE_PREFIX_PATH="$prefix" -DTALLY_EXAMPLES_STATIC=$static \
		-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$tmp/cm-$kind.log" 2>&1 ||
		{ cat "$tmp/cm-$kind.log"; fail "configure ($kind)"; }
	grep 'tally 0' "$tmp/cm-$kind.log"
	"$cmake" --build "$tmp/cm-$kind" -j2 >"$tmp/cm-$kind-build.log" 2>&1 ||
		{ cat "$tmp/cm-$kind-build.log"; fail "build ($kind)"; }
	[ $kind = shared ] || needs_no_libtally "$tmp/cm-$kind/tally-pool"
	runboth "$tmp/cm-$kind" "find_package $kind"
done
echo
echo "install_outside: all four ways build and count exactly"
