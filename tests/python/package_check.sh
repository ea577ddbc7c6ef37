#!/bin/sh
# What a Python user does with a clone, offline:
#   package_check.sh SOURCE-DIR PYTHON WORK-DIR
# `pip install .` into a virtual environment made with
# `PYTHON -m venv --system-site-packages` (Debian's pip, pytest and build are
# seen there; no index is reached: the build backend needs no package),
# `import tally` from another directory, then `python3 -m build`: an sdist,
# and a wheel built from that sdist, which installs and imports too.  Every
# step's failure says which step.
set -eu
src=$1 python=$2 work=$3
fail() {
	echo "package_check: $*" >&2
	exit 1
}
rm -rf "$work"
mkdir -p "$work"
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
want=$(sed -n 's/^project(tally VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")

# Without a pip of its own: Debian's, seen through the system site, installs
# into the venv (and making one is three times as fast).
"$python" -m venv --system-site-packages --without-pip "$work/venv" ||
	fail "venv"
(cd "$src" && "$work/venv/bin/python" -m pip install -q .) ||
	fail "pip install . (from $src)"
got=$(cd / && "$work/venv/bin/python" -c '
import sys, tally, pathlib
p = pathlib.Path(tally.__file__).parent
assert p.is_relative_to(sys.prefix), f"{p} is not in the venv {sys.prefix}"
assert (p / "py.typed").exists() and (p / "_tally.pyi").exists(), p
with tally.Counter("mutex", 1, shared=True) as c:
    c.add(2)
    assert c.value == 3
print(tally.__version__)') || fail "import tally from / in the venv"
[ "$got" = "$want" ] || fail "tally.__version__ is '$got', CMakeLists.txt says '$want'"
"$work/venv/bin/python" -m pip show tally | grep -x "Version: $want" >/dev/null ||
	fail "pip show tally: not version $want"

(cd "$src" && "$python" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1) ||
	fail "python3 -m build: $(tail -20 "$work/build.log")"
sdist=$work/dist/tally-$want.tar.gz
wheel=$(ls "$work"/dist/tally-"$want"-*.whl) || fail "no wheel"
[ -f "$sdist" ] || fail "no sdist $sdist"
tar tzf "$sdist" | grep -qx "tally-$want/src/python/tallymodule.c" ||
	fail "the sdist lacks the module's source"
"$work/venv/bin/python" -m pip install -q --force-reinstall "$wheel" ||
	fail "pip install $wheel"
(cd / && "$work/venv/bin/python" -c 'import tally; print(tally.backends()[0])') ||
	fail "import tally from the wheel"
echo "package_check: pip install ., import, sdist and wheel: all good ($want)"
