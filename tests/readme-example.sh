#!/bin/sh
# readme-example.sh -- keeps the README's C example honest.
#   extract README.md   print the C block that follows "<!-- example -->"
#   run BINARY          start it on a free port and check its answer
set -eu

case "${1:-}" in
extract)
    awk '/<!-- example -->/ { found = 1; next }
         found && /^```c$/ { inside = 1; next }
         inside && /^```$/ { exit }
         inside { print }' "$2"
    ;;
run)
    exec python3 "$(dirname "$0")/run-example.py" "$2"
    ;;
*)
    echo "usage: $0 extract README.md | run BINARY" >&2
    exit 2
    ;;
esac
