#!/bin/sh
# check-symbols.sh -- the shared library exports the public sk_ API only.
set -eu
bad=$(nm -D --defined-only "$1" | awk '$2 ~ /^[TDBRVW]$/ { print $3 }' |
      grep -v '^sk_[a-z]' || true)
if [ -n "$bad" ]; then
    echo "symbols: exported names outside the public API:" >&2
    echo "$bad" >&2
    exit 1
fi
echo "symbols: ok ($(nm -D --defined-only "$1" | grep -c ' T sk_') functions)"
