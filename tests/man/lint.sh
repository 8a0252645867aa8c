#!/bin/sh
# lint.sh -- the man pages are clean and keep up with the code:
#   1. mandoc -Tlint -Wwarning says nothing about man/sockit.1 and
#      man/libsockit.3;
#   2. every subcommand that `sockit --help` lists, and every long option
#      that `sockit --help` and each `sockit COMMAND --help` print, appears
#      in sockit.1 (as rendered: `--threads`, not the mdoc source);
#   3. every function declared in include/sockit.h (a line that starts a
#      declaration with sk_NAME( ) appears in libsockit.3 as NAME(...).
# Prints each thing missing and exits 1 if there is any. Run from the top
# of the tree: sh tests/man/lint.sh. SOCKIT names the binary (default
# build/sockit); LINT_MAN1, LINT_MAN3 and LINT_HEADER the files checked.
set -u

SOCKIT=${SOCKIT:-build/sockit}
MAN1=${LINT_MAN1:-man/sockit.1}
MAN3=${LINT_MAN3:-man/libsockit.3}
HEADER=${LINT_HEADER:-include/sockit.h}
status=0

fail() {
    echo "man: $*" >&2
    status=1
}

if ! command -v mandoc >/dev/null 2>&1; then
    echo "man: mandoc is missing (.ci/install-deps installs it)" >&2
    exit 1
fi
for f in "$MAN1" "$MAN3" "$HEADER"; do
    [ -r "$f" ] || { echo "man: $f: not found" >&2; exit 1; }
done
if [ ! -x "$SOCKIT" ]; then
    echo "man: $SOCKIT: not found (run make, or set SOCKIT)" >&2
    exit 1
fi

# 1. Lint: any message at all, warning or worse, fails.
for page in "$MAN1" "$MAN3"; do
    out=$(mandoc -Tlint -Wwarning "$page" 2>&1)
    if [ -n "$out" ]; then
        printf '%s\n' "$out" >&2
        fail "$page: mandoc -Tlint -Wwarning is not clean"
    fi
done

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

# A page as a reader sees it: no overstrike (bold, underline), lines wide
# enough that nothing is broken between two words or at a hyphen.
bs=$(printf '\b')
render() {
    mandoc -Tascii -O width=1000 "$1" | sed "s/.$bs//g" > "$2"
}
render "$MAN1" "$tmp/sockit.txt" || fail "$MAN1: mandoc cannot render it"
render "$MAN3" "$tmp/libsockit.txt" || fail "$MAN3: mandoc cannot render it"

# 2. Subcommands and their long options.
"$SOCKIT" --help > "$tmp/help" 2>&1 ||
    fail "$SOCKIT --help: exit status $?"
commands=$(awk '/^commands:/ { on = 1; next }
                on && NF == 0 { exit }
                on { print $1 }' "$tmp/help")
[ -n "$commands" ] || fail "$SOCKIT --help: no commands listed"
nopts=0
for cmd in $commands; do
    grep -Eq "(^|[^a-z])sockit $cmd([^a-z-]|\$)" "$tmp/sockit.txt" ||
        fail "$MAN1: command '$cmd' (sockit --help) is missing"
    "$SOCKIT" "$cmd" --help >> "$tmp/help" 2>&1 ||
        fail "$SOCKIT $cmd --help: exit status $?"
done
for opt in $(grep -oE -- '--[a-z][a-z0-9-]*' "$tmp/help" | sort -u); do
    nopts=$((nopts + 1))
    grep -Eq -- "(^|[^a-z0-9-])$opt([^a-z0-9-]|\$)" "$tmp/sockit.txt" ||
        fail "$MAN1: option $opt (printed by --help) is missing"
done

# 3. The functions of the header.
nfuncs=0
for fn in $(grep -oE '^([a-z][^(]*[ *])?sk_[a-z0-9_]+\(' "$HEADER" |
            sed -E 's/.*(sk_[a-z0-9_]+)\($/\1/' | sort -u); do
    nfuncs=$((nfuncs + 1))
    grep -Eq "(^|[^a-z0-9_])$fn\(" "$tmp/libsockit.txt" ||
        fail "$MAN3: function $fn() (declared in $HEADER) is missing"
done

if [ "$status" = 0 ]; then
    echo "man: ok ($nopts options of $SOCKIT in $MAN1, $nfuncs functions" \
         "of $HEADER in $MAN3)"
fi
exit $status
