#!/bin/sh
# relay.sh -- one TCP connection moving SIZE bytes through `sockit relay`
# and through `socat` (the same relay), in turns, on this machine.
#
#   sh bench/relay.sh [SIZE_MIB] [ROUNDS]      (default 1024 MiB, 3 rounds)
#
# Source: one Python socket sending 4 MiB buffers of zeros; sink: `sockit
# serve -s discard`. The time of each transfer ends when the sink has read
# the last byte and closed. Prints seconds and MiB/s per run, and the median
# ratio. Both relays run single-threaded; neither is pinned.
set -eu
cd "$(dirname "$0")/.."
SOCKIT=${SOCKIT:-build/sockit}
MIB=${1:-1024}
ROUNDS=${2:-3}
command -v socat >/dev/null || { echo "relay.sh: socat is not installed" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # bounded: 5 s
    i=0
    until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 50 ] || { echo "relay.sh: port $1 not ready" >&2; exit 1; }
        sleep 0.1
    done
}

SINK=$(free_port); RSOCKIT=$(free_port); RSOCAT=$(free_port)
$SOCKIT serve -q -s discard --threads 1 tcp://127.0.0.1:$SINK & SINK_PID=$!
$SOCKIT relay -q --threads 1 tcp://127.0.0.1:$RSOCKIT tcp://127.0.0.1:$SINK & R1=$!
socat TCP-LISTEN:$RSOCAT,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:$SINK & R2=$!
trap 'kill $SINK_PID $R1 $R2 2>/dev/null' EXIT
wait_port $SINK; wait_port $RSOCKIT; wait_port $RSOCAT

run() { # prints seconds for one transfer through port $1
    python3 - "$1" "$MIB" <<'PY'
import socket, sys, time
port, mib = int(sys.argv[1]), int(sys.argv[2])
chunk = bytes(4 << 20)
t = time.monotonic()
with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
    for _ in range(mib // 4):
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    if s.recv(1) != b"":          # the sink closes after the last byte
        sys.exit("relay.sh: unexpected reply")
print("%.3f" % (time.monotonic() - t))
PY
}

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  size: $MIB MiB  rounds: $ROUNDS"
: > /tmp/relay-bench.$$
for r in $(seq "$ROUNDS"); do
    a=$(run $RSOCKIT); b=$(run $RSOCAT)
    echo "round $r: sockit relay ${a}s ($(awk "BEGIN{printf \"%d\", $MIB / $a}") MiB/s)  socat ${b}s ($(awk "BEGIN{printf \"%d\", $MIB / $b}") MiB/s)"
    echo "$a $b" >> /tmp/relay-bench.$$
done
python3 - /tmp/relay-bench.$$ <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
a = statistics.median(r[0] for r in rows); b = statistics.median(r[1] for r in rows)
print("median: sockit relay %.3fs, socat %.3fs; sockit is %.2fx socat's throughput" % (a, b, b / a))
PY
rm -f /tmp/relay-bench.$$
