#!/bin/sh
# shell_check.sh SOURCE_DIR [SHELLCHECK]: every shell script in the
# tree (build trees and .git left out) must be one that shellcheck finds
# nothing in, at its default severity (style notes included).  A script is
# a file named *.sh or one whose first line starts sh, bash, dash or ksh;
# they are listed when the test runs, so a new one is checked without
# reconfiguring.  A finding that is meant is disabled on its own line, with
# the reason beside it.
# Exit 0 clean, 1 findings (shellcheck prints them), 77 (CTest's skip)
# no shellcheck to run: tools/install-deps --test installs it.
set -u
src=$1
sc=${2:-shellcheck}
if ! command -v "$sc" >/dev/null 2>&1; then
	echo "shellcheck: '$sc' not found, skipped: run tools/install-deps --test" >&2
	exit 77
fi
cd "$src" || exit 1
files=$(find . \( -path './build*' -o -path ./.git \) -prune -o -type f -print |
	sort | while IFS= read -r f; do
		case $f in
		*.sh) echo "$f" ;;
		*)
			if head -n 1 "$f" 2>/dev/null | grep -Eq '^#!.*[/ ](ba|da|k)?sh( |$)'; then
				echo "$f"
			fi
			;;
		esac
	done)
[ -n "$files" ] || {
	echo "shellcheck: no shell scripts under $src" >&2
	exit 1
}
# One name a line, so a name with a space in it is still one argument.
if ! echo "$files" | xargs -d '\n' "$sc"; then
	echo "shellcheck: fix the findings above (quote, use arrays, read -r...)" >&2
	exit 1
fi
echo "shellcheck: $(echo "$files" | wc -l) scripts clean ($("$sc" --version | sed -n 's/^version: //p'))"
