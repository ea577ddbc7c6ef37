#!/bin/sh
# strings_check.sh SOURCE_DIR: every usage and error text is whole, so that
# grep finds it.  A line that ends in a string literal that does not end in
# \n, followed by a line that begins with one, is a text split in two (as
# clang-format once split them: "(5),\n", "adds " "sum to"); the pair is
# named.  Adjacent literals with \n at the end of the first are lines of
# one text, and fine.  Exit 0 whole, 1 not.
set -u
src=$1
cd "$src" || exit 1
files=$(find . \( -path './build*' -o -path ./.git \) -prune -o \
	-type f \( -name '*.c' -o -name '*.h' \) -print | sort)
[ -n "$files" ] || {
	echo "strings: no C files under $src" >&2
	exit 1
}
# shellcheck disable=SC2086 # one file name per word: none has a space
awk '
FNR == 1 { prev = "" }
prev ~ /"[ \t]*$/ && prev !~ /\\n"[ \t]*$/ && prev !~ /^[ \t]*#/ &&
    $0 ~ /^[ \t]*"/ {
	printf "%s:%d: a text split in two: join the literals\n", FILENAME, FNR
	bad = 1
}
{ prev = $0 }
END { exit bad }
' $files || {
	echo "strings: each text above is one literal, so that grep finds it" >&2
	exit 1
}
echo "strings: $(echo "$files" | wc -l) files, every text whole"
