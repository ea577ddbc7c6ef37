#!/bin/sh
# shell_check.sh SOURCE_DIR [SHELLCHECK]: every shell script in the
# tree must be one that shellcheck finds nothing in, at its default
# severity (style notes included).  A script is a file named *.sh or one
# whose first line starts sh, bash, dash or ksh.  In a checkout the files
# are git's, tracked or new but not ignored (so not a .venv's); elsewhere
# (an unpacked sdist) every file but build trees.  They are listed when the
# test runs, so a new one is checked without reconfiguring.  A finding
# that is meant is disabled on its own line, with the reason beside it.
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
all_files() {
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -c core.quotePath=off ls-files --cached --others --exclude-standard
	else
		find . \( -path './build*' -o -path ./.git \) -prune -o -type f -print
	fi
}
files=$(all_files | sort | while IFS= read -r f; do
	[ -f "$f" ] || continue # tracked, but deleted in the work tree
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
