#!/usr/bin/env python3
"""deploy.py -- what the deployment features cost the server: a refused
connection (--deny, --max-per-source, a bad PROXY header) next to an
accepted one, and a PROXY header next to none, in the same run.

    python3 bench/deploy.py [--duration S] [--rounds N]

Each scenario starts `sockit serve -s echo --threads 1` pinned to CPU 0,
runs `sockit bench --json` pinned to CPU 1, and reads the server's CPU time
from /proc; scenarios are interleaved round by round and the medians of
the server's CPU time per connection (churn) or per request are printed,
with their ratios, on stdout and in bench/DEPLOY.md. Needs build/sockit and
util-linux (taskset).
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (free_port, wait_ready, tree_cpu, start/stop)

SOCKIT = run.SOCKIT

# name, server options, listening suffix, bench options, target suffix
SCENARIOS = [
    ("accepted (echo, churn)", [], "", ["-c", "8", "--connect"], ""),
    ("refused by --deny", ["--deny", "127.0.0.1"], "",
     ["-c", "8", "--connect", "--keep-going"], ""),
    ("refused by --max-per-source", ["--max-per-source", "1"], "",
     ["-c", "8", "--connect", "--keep-going"], ""),
    ("refused: no PROXY header", [], ",proxy=v2",
     ["-c", "8", "--connect", "--keep-going"], ""),
    ("accepted with PROXY v2 (churn)", [], ",proxy=v2", ["-c", "8", "--connect"],
     ",proxy=v2"),
    ("50 conns, no PROXY", [], "", ["-c", "50"], ""),
    ("50 conns, PROXY v2", [], ",proxy=v2", ["-c", "50"], ",proxy=v2"),
]


def hold_one(port):
    """One connection from 127.0.0.1 kept open: --max-per-source 1 then
    refuses every other. The readiness probe's slot frees a moment after
    it closes: retried, bounded."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(b"x")
            if s.recv(1) == b"x":
                return s
        except OSError:
            pass
        s.close()
        time.sleep(0.05)
    raise RuntimeError("held connection not served")


def one_run(scen, duration):
    name, opts, lsuffix, bopts, tsuffix = scen
    port = run.free_port()
    ep = "tcp://127.0.0.1:%d" % port
    argv = [SOCKIT, "serve", "-q", "-s", "echo", "--threads", "1", *opts, ep + lsuffix]
    proc = run.start_server(argv, True)
    held = None
    try:
        if lsuffix or opts:
            wait_listening(port, proc)
        else:
            run.wait_ready("tcp", str(port), proc)
        if "--max-per-source" in opts:
            held = hold_one(port)
        cpu0 = run.tree_cpu(proc.pid)
        out = subprocess.run(["taskset", "-c", run.CLIENT_CPU, SOCKIT, "bench", "--json", "-d",
                              str(duration), *bopts, ep + tsuffix],
                             capture_output=True, timeout=duration + 30)
        cpu = run.tree_cpu(proc.pid) - cpu0
    finally:
        if held is not None:
            held.close()
        run.stop_server(proc)
    result = json.loads(out.stdout)
    done = result["requests"] + result["errors"]
    return {"cpu_us": cpu * 1e6 / done if done else None, "requests": result["requests"],
            "errors": result["errors"], "rps": done / result["duration_s"]}


def wait_listening(port, proc):
    """A proxy= or --deny listener answers nothing: a connect is enough
    (bounded)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited: %s" % proc.args)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server not ready: %s" % proc.args)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    runs = {s[0]: [] for s in SCENARIOS}
    for r in range(args.rounds):
        for scen in SCENARIOS:
            res = one_run(scen, args.duration)
            runs[scen[0]].append(res)
            print("round %d %-32s %8.0f/s  %6.2f us server CPU  (%d ok, %d refused)" %
                  (r + 1, scen[0], res["rps"], res["cpu_us"] or 0, res["requests"],
                   res["errors"]), file=sys.stderr)
    med = {k: statistics.median(x["cpu_us"] for x in v if x["cpu_us"]) for k, v in runs.items()}
    rps = {k: statistics.median(x["rps"] for x in v) for k, v in runs.items()}
    base = med["accepted (echo, churn)"]
    lines = ["# What refusals and PROXY headers cost the server", "",
             "`python3 bench/deploy.py --duration %g --rounds %d`: `sockit serve -s echo "
             "--threads 1` on CPU 0, `sockit bench` on CPU 1, medians of %d interleaved "
             "rounds; server CPU per connection (churn rows) or per request (50-connection "
             "rows), and its ratio to the accepted row of the same kind." %
             (args.duration, args.rounds, args.rounds), "",
             "| scenario | connections or requests/s | server CPU µs each | ÷ accepted |",
             "|---|---|---|---|"]
    for name in runs:
        ref = med["50 conns, no PROXY"] if name.startswith("50") else base
        lines.append("| %s | %.0f | %.2f | %.2f |" % (name, rps[name], med[name], med[name] / ref))
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with open(os.path.join(run.ROOT, "bench", "DEPLOY.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
