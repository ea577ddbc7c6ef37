#!/bin/sh
# format_check.sh SOURCE_DIR [CLANG_FORMAT]: every .c and .h file in the
# tree (build trees and .git left out) must be exactly what clang-format 14
# makes of it with the root's .clang-format.  The files are listed when the
# test runs, so a new one is checked without reconfiguring.
# Exit 0 formatted, 1 not (the files are named), 77 (CTest's skip) another
# clang-format version: the check is pinned to Debian's 14.
set -u
src=$1
cf=${2:-clang-format}
if ! command -v "$cf" >/dev/null 2>&1; then
	echo "format: '$cf' not found: run tools/install-deps --test" >&2
	exit 1
fi
version=$("$cf" --version)
case $version in
*"clang-format version 14."*) ;;
*)
	echo "format: pinned to clang-format 14; $cf is: $version" >&2
	exit 77
	;;
esac
cd "$src" || exit 1
files=$(find . \( -path './build*' -o -path ./.git \) -prune -o \
	-type f \( -name '*.c' -o -name '*.h' \) -print | sort)
[ -n "$files" ] || {
	echo "format: no C files under $src" >&2
	exit 1
}
# shellcheck disable=SC2086 # one file name per word: none has a space
if ! "$cf" --dry-run -Werror $files; then
	echo "format: run clang-format -i on the files above" >&2
	exit 1
fi
echo "format: $(echo "$files" | wc -l) files as clang-format 14 writes them"
