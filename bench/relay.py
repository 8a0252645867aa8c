#!/usr/bin/env python3
"""relay.py -- plaintext TCP relays in front of the same epoll echo peer,
same machine, same run, interleaved.

    python3 bench/relay.py [--duration S] [--rounds N] [--only PEER,...]
                           [--scenarios NAME,...] [--json FILE]

Peers: sockit relay (SOCKIT=PATH, default build/sockit; sockit-uring is the same with
`--backend io_uring`; with SOCKIT_BEFORE=PATH another
sockit binary as "sockit-before"; SOCKIT_V01=PATH a third), haproxy
(`mode tcp`, `nbthread 1`, with and without `option splice-auto`), nginx's
stream module (`worker_processes 1`) and socat (a fork per connection).
For each round, each scenario and each peer in turn: starts
build/bench/epoll_echo and the relay in front of it, both pinned to CPU 0,
runs `sockit bench --json` pinned to CPU 1 against the relay, reads the
relay's CPU time (its process tree, from /proc), stops both. Prints each
run and a table of medians with ratios to haproxy's best configuration
per column (the higher requests/s of the two haproxy rows, the lower relay
CPU per request), each > 1 where the relay is ahead. Not part of `make check`.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as plain  # noqa: E402  (free_port, wait_ready, tree_cpu, ...)
from tls_peers import nginx_stream_module  # noqa: E402

ROOT = plain.ROOT
SOCKIT = os.environ.get("SOCKIT", os.path.join(ROOT, "build", "sockit"))
ECHO = os.path.join(plain.PEER_DIR, "epoll_echo")
# The generator: GENERATOR=PATH, else the suite's (build/sockit).
plain.SOCKIT = os.environ.get("GENERATOR", plain.SOCKIT)

SCENARIOS = [
    ("50conn-64B", ["-c", "50"]),
    ("bulk-64KiB", ["-c", "4", "--size", "65536"]),
    ("churn", ["-c", "8", "--connect"]),
]


def haproxy_cfg(tmp, port, echo, splice):
    cfg = os.path.join(tmp, "haproxy-%d.cfg" % port)
    with open(cfg, "w") as f:
        f.write("global\n    nbthread 1\n    maxconn 4000\n"
                "defaults\n    mode tcp\n    timeout connect 5s\n"
                "    timeout client 120s\n    timeout server 120s\n%s"
                "frontend relay\n    bind 127.0.0.1:%d\n    default_backend echo\n"
                "backend echo\n    server echo 127.0.0.1:%d\n"
                % ("    option splice-auto\n" if splice else "", port, echo))
    return ["haproxy", "-db", "-f", cfg]


def nginx_cfg(tmp, port, echo, module):
    prefix = os.path.join(tmp, "nginx-%d" % port)
    os.makedirs(prefix, exist_ok=True)
    cfg = os.path.join(prefix, "nginx.conf")
    with open(cfg, "w") as f:
        f.write("%sdaemon off;\nmaster_process on;\nworker_processes 1;\n"
                "pid %s/nginx.pid;\nerror_log stderr error;\nworker_rlimit_nofile 20000;\n"
                "events { worker_connections 8000; }\n"
                "stream {\n    server {\n        listen 127.0.0.1:%d backlog=4096;\n"
                "        proxy_pass 127.0.0.1:%d;\n    }\n}\n" % (module, prefix, port, echo))
    return ["nginx", "-p", prefix + "/", "-c", cfg, "-e", "stderr"]


def peers(tmp):
    """name -> function(port, echo port) -> argv."""
    def sockit(binary, backend="epoll"):
        return lambda port, echo: [binary, "relay", "-q", "--threads", "1", "--backend",
                                   backend, "tcp://127.0.0.1:%d" % port,
                                   "tcp://127.0.0.1:%d" % echo]
    table = {"sockit": sockit(SOCKIT), "sockit-uring": sockit(SOCKIT, "io_uring")}
    for name, var in (("sockit-before", "SOCKIT_BEFORE"), ("sockit-v0.1", "SOCKIT_V01")):
        if os.environ.get(var):
            table[name] = sockit(os.environ[var])
    table["haproxy"] = lambda port, echo: haproxy_cfg(tmp, port, echo, False)
    table["haproxy-splice"] = lambda port, echo: haproxy_cfg(tmp, port, echo, True)
    module = nginx_stream_module()
    if module is not None:
        table["nginx"] = lambda port, echo: nginx_cfg(tmp, port, echo, module)
    table["socat"] = lambda port, echo: [
        "socat", "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,backlog=4096" % port,
        "TCP:127.0.0.1:%d" % echo]
    return table


def one_run(argv_fn, opts, duration):
    echo_port, port = plain.free_port(), plain.free_port()
    echo = plain.start_server([ECHO, "tcp", str(echo_port)], True)
    relay = None
    try:
        plain.wait_ready("tcp", str(echo_port), echo)
        relay = plain.start_server(argv_fn(port, echo_port), True)
        plain.wait_ready("tcp", str(port), relay)
        cpu0 = plain.tree_cpu(relay.pid)
        out = subprocess.run(["taskset", "-c", plain.CLIENT_CPU, plain.SOCKIT, "bench", "--json",
                              "-d", str(duration), *opts, "tcp://127.0.0.1:%d" % port],
                             capture_output=True, timeout=duration + 30)
        cpu = plain.tree_cpu(relay.pid) - cpu0
    finally:
        if relay is not None:
            plain.stop_server(relay)
        plain.stop_server(echo)
    r = json.loads(out.stdout)
    return {"rps": r["requests_per_s"], "requests": r["requests"], "errors": r["errors"],
            "relay_cpu_s": cpu, "cpu_us": cpu * 1e6 / r["requests"] if r["requests"] else None,
            "p99_us": r["latency_us"]["p99"]}


def table(runs, names, scenarios):
    lines = ["| scenario | relay | requests/s | relay CPU µs/req | p99 µs | errors | "
             "req/s ÷ haproxy best | CPU ÷ haproxy best |", "|---|---|---|---|---|---|---|---|"]
    for scen, _ in scenarios:
        med = {}
        for n in names:
            rs = [r for r in runs if r["scenario"] == scen and r["peer"] == n]
            med[n] = {k: plain.median([r[k] for r in rs]) for k in ("rps", "cpu_us", "p99_us")}
            med[n]["errors"] = sum(r["errors"] for r in rs)
        hs = [h for h in ("haproxy", "haproxy-splice") if h in med and med[h]["cpu_us"]]
        best_r = max((med[h]["rps"] for h in hs), default=None)
        best_c = min((med[h]["cpu_us"] for h in hs), default=None)
        for n in names:
            m = med[n]
            ratio_r = "%.2f" % (m["rps"] / best_r) if best_r and m["rps"] else "-"
            # CPU: haproxy's best µs over this relay's, so that > 1 means cheaper.
            ratio_c = "%.2f" % (best_c / m["cpu_us"]) if best_c and m["cpu_us"] else "-"
            lines.append("| %s | %s | %.0f | %.2f | %s | %d | %s | %s |" % (
                scen, n, m["rps"] or 0, m["cpu_us"] or 0,
                "%.0f" % m["p99_us"] if m["p99_us"] else "-", m["errors"], ratio_r, ratio_c))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="")
    ap.add_argument("--scenarios", default="")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if not os.path.exists(ECHO):
        plain.build_peers()
    with tempfile.TemporaryDirectory() as tmp:
        table_of = peers(tmp)
        names = [n for n in table_of if not args.only or n in args.only.split(",")]
        scenarios = [s for s in SCENARIOS if not args.scenarios or s[0] in args.scenarios.split(",")]
        runs = []
        for rnd in range(args.rounds):
            for scen, opts in scenarios:
                for n in names:
                    r = one_run(table_of[n], opts, args.duration)
                    r.update(round=rnd, scenario=scen, peer=n)
                    runs.append(r)
                    print("round %d %-11s %-15s %9.0f req/s %7.2f µs/req relay CPU, %d errors"
                          % (rnd, scen, n, r["rps"], r["cpu_us"] or 0, r["errors"]), flush=True)
    print()
    print(table(runs, names, scenarios))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
