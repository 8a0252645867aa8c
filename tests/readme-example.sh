#!/bin/sh
# readme-example.sh -- keeps the README's C example honest.
#   extract README.md [NAME]  print the C block that follows
#                             "<!-- example -->" (or "<!-- example NAME -->")
#   run SERVER CLIENT         start the server on a free port and check its
#                             answers, plain and over TLS, the second to
#                             the client
set -eu

case "${1:-}" in
extract)
    mark="<!-- example${3:+ $3} -->"
    awk -v mark="$mark" '$0 == mark { found = 1; next }
         found && /^```c$/ { inside = 1; next }
         inside && /^```$/ { exit }
         inside { print }' "$2"
    ;;
run)
    exec python3 "$(dirname "$0")/run-example.py" "$2" "$3"
    ;;
*)
    echo "usage: $0 extract README.md [NAME] | run SERVER CLIENT" >&2
    exit 2
    ;;
esac
