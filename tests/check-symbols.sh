#!/bin/sh
# check-symbols.sh -- the shared library exports the public sk_ API only,
# every name with the version node of this minor version (src/libsockit.map).
set -eu
node=SOCKIT_0.2
syms=$(nm -D --defined-only "$1" | awk '$2 ~ /^[TDBRVW]$/ { print $3 }')
bad=$(echo "$syms" | grep -v '^sk_[a-z]' || true)
if [ -n "$bad" ]; then
    echo "symbols: exported names outside the public API:" >&2
    echo "$bad" >&2
    exit 1
fi
unversioned=$(echo "$syms" | grep -v "@@$node\$" || true)
if [ -n "$unversioned" ]; then
    echo "symbols: exported names without the version $node:" >&2
    echo "$unversioned" >&2
    exit 1
fi
echo "symbols: ok ($(nm -D --defined-only "$1" | grep -c ' T sk_') functions," \
     "every name @$node)"
