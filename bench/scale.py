#!/usr/bin/env python3
"""The scale run: K idle TCP connections held against `sockit serve -s echo --threads 1`.

For each K (default 1000, 5000 and the most the descriptor limit allows), this script (the
holder, a process of its own) opens K connections to the server, spread over the source
addresses 127.0.0.1..127.0.0.S with IP_BIND_ADDRESS_NO_PORT, and reports:

  - the time to establish all K (first connect to the server holding K more descriptors);
  - the server's RSS per idle connection: (VmRSS with the K held - VmRSS before) / K, read
    once the server holds every descriptor and a fresh probe connection has been echoed;
  - the same after one 64-byte echo on each of the K;
  - a new client's round trips meanwhile: `sockit bench --json -c 1 -n 1000` (sequential,
    64 bytes), p50 and p99 from its histogram;
  - `sockit bench -c K --sources S -n 2K` against the same server: the generator opening the K
    connections itself (its run time includes the connects).

With --peer, the same figures for bench/peers/epoll_echo (build/bench/epoll_echo, built by
bench/run.py) at the same K; with --uring, for sockit on its io_uring backend. Every step is bounded (timeouts on connects, reads and runs).
Not part of `make check`.

    python3 bench/scale.py [--write]    # --write: its section of bench/RESULTS.md
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- bench/scale.py: begin -->", "<!-- bench/scale.py: end -->"
IP_BIND_ADDRESS_NO_PORT = 24
SIZE = 64
STEP_TIMEOUT = 50.0  # seconds for one K step
RESERVE = 500        # descriptors of the server and the holder left for the rest


def raise_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def open_conn(port, ctx, source="127.0.0.1", timeout=5.0):
    """A connection from source (port picked at connect), over TLS when ctx is set."""
    s = socket.socket()
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        return ctx.wrap_socket(s, server_hostname="localhost") if ctx else s
    except BaseException:
        s.close()
        raise


def echo_once(port, ctx, timeout=5.0):
    """A fresh connection, one 64-byte round trip, closed."""
    with open_conn(port, ctx, timeout=timeout) as s:
        s.sendall(b"p" * SIZE)
        got = b""
        while len(got) < SIZE:
            chunk = s.recv(SIZE - len(got))
            if not chunk:
                raise RuntimeError("probe: closed")
            got += chunk
        if got != b"p" * SIZE:
            raise RuntimeError("probe: wrong reply")


def wait_port(port, ctx, proc, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.args}")
        try:
            echo_once(port, ctx, 0.5)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server not ready: {proc.args}")


def make_cert(directory):
    """A self-signed P-256 certificate for localhost (the openssl command, as the tests do)."""
    cert, key = os.path.join(directory, "server.pem"), os.path.join(directory, "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True,
                   timeout=30)
    return cert, key


def start_server(kind, sockit, port, ctx, cert):
    """The server of the row, listening on 127.0.0.1:port and answering."""
    listen = f"tcp://127.0.0.1:{port}"
    if kind == "sockit-tls":
        listen = f"tls://127.0.0.1:{port},cert={cert[0]},key={cert[1]}"
    if kind.startswith("sockit"):
        argv = [sockit, "serve", "-s", "echo", "--threads", "1", "--max-conns", "0", listen]
        if kind == "sockit-uring":
            argv[2:2] = ["--backend", "io_uring"]
    else:
        argv = [os.path.join(ROOT, "build", "bench", "epoll_echo"), "tcp", str(port)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=raise_limit)
    wait_port(port, ctx, proc)
    return proc


def settled_rss(pid, port, ctx):
    """VmRSS once a fresh probe has been echoed and the figure holds still (bounded)."""
    echo_once(port, ctx)
    last = vmrss_kib(pid)
    for _ in range(20):
        time.sleep(0.1)
        now = vmrss_kib(pid)
        if now == last:
            return now
        last = now
    return last


def hold(port, ctx, k, sources, pid, base_fds, deadline, socks):
    """Opens k connections from 127.0.0.1..S into socks; returns the seconds until the
    server holds all k descriptors (over TLS: every handshake done)."""
    start = time.monotonic()
    for i in range(k):
        socks.append(open_conn(port, ctx, f"127.0.0.{1 + i % sources}"))
        if i % 1000 == 0 and time.monotonic() > deadline:
            raise RuntimeError(f"{i} of {k} connections by the deadline")
    while fd_count(pid) < base_fds + k:
        if time.monotonic() > deadline:
            raise RuntimeError(f"server holds {fd_count(pid) - base_fds} of {k}")
        time.sleep(0.005)
    return time.monotonic() - start


def echo_each(socks):
    """One 64-byte round trip on each held connection (all sent, then all read)."""
    msg = b"e" * SIZE
    for s in socks:
        s.sendall(msg)
    for s in socks:
        got = b""
        while len(got) < SIZE:
            chunk = s.recv(SIZE - len(got))
            if not chunk:
                raise RuntimeError("held connection closed")
            got += chunk
        if got != msg:
            raise RuntimeError("wrong reply on a held connection")


def bench(sockit, args, timeout=STEP_TIMEOUT):
    r = subprocess.run([sockit, "bench", "--json", *args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"sockit bench {' '.join(args)}: exit {r.returncode}: "
                           f"{r.stderr.decode(errors='replace').strip()}")
    return json.loads(r.stdout)


def latency(sockit, ep, rounds):
    """A new client's 1000 sequential round trips, `rounds` times: the medians of p50 and
    p99, the largest max."""
    runs = [bench(sockit, ["-c", "1", "-n", "1000", ep])["latency_us"] for _ in range(rounds)]
    return {"p50": statistics.median(r["p50"] for r in runs),
            "p99": statistics.median(r["p99"] for r in runs),
            "max": max(r["max"] for r in runs)}


def step(kind, sockit, k, sources, rounds, cert):
    """One K step against a fresh server; returns the row."""
    port = free_port()
    ctx = None
    ep = f"tcp://127.0.0.1:{port}"
    spread = ["--sources", str(sources)]
    if kind == "sockit-tls":
        ctx = ssl.create_default_context(cafile=cert[0])
        ep = f"tls://127.0.0.1:{port},verify=none"
        spread = []  # --sources is for plain tcp
    proc = start_server(kind, sockit, port, ctx, cert)
    socks = []
    try:
        bench(sockit, ["-c", "1", "-n", "1000", ep])  # warm-up: buffers the server keeps
        base_rss = settled_rss(proc.pid, port, ctx)
        base_fds = fd_count(proc.pid)
        deadline = time.monotonic() + STEP_TIMEOUT
        seconds = hold(port, ctx, k, sources, proc.pid, base_fds, deadline, socks)
        idle_rss = settled_rss(proc.pid, port, ctx)
        lat = latency(sockit, ep, rounds)
        echo_each(socks)
        echoed_rss = settled_rss(proc.pid, port, ctx)
        for s in socks:
            s.close()
        socks = []
        try:
            gen = bench(sockit, ["-c", str(k), *spread, "-n", str(2 * k), ep])
            gen_text = f"{gen['duration_s']:.2f} s, {gen['errors']} errors"
        except RuntimeError as e:  # the generator's failure is a figure too
            gen_text = str(e).split(": ", 2)[-1]
        return {
            "server": kind, "k": k,
            "establish_s": round(seconds, 3),
            "rss_base_kib": base_rss,
            "idle_b_per_conn": round((idle_rss - base_rss) * 1024 / k),
            "echoed_b_per_conn": round((echoed_rss - base_rss) * 1024 / k),
            "p50_us": lat["p50"], "p99_us": lat["p99"], "max_us": lat["max"],
            "bench": gen_text,
        }
    finally:
        for s in socks:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def verdicts(rows):
    """The issue's targets, measured: lines for the section."""
    lines = []
    for server in ("sockit", "sockit-uring"):
        plain = [r for r in rows if r["server"] == server]
        if not plain:
            continue
        idle = [r["idle_b_per_conn"] for r in plain]
        top = max(plain, key=lambda r: r["k"])
        flat = max(idle) - min(idle) <= 0.05 * max(idle)
        ok = max(idle) <= 512 and flat
        lines += [f"- {server}: target RSS <= 0.5 KiB per idle plaintext connection, flat "
                  f"from {min(r['k'] for r in plain)} to {top['k']}: {min(idle)}..{max(idle)} "
                  f"B, {'met' if ok else 'missed'}.",
                  f"- {server}: target new-client p99 < 1 ms with {top['k']} held: "
                  f"{top['p99_us']} µs, {'met' if top['p99_us'] < 1000 else 'missed'}."]
    plain = [r for r in rows if r["server"] == "sockit"]
    if not plain:
        return lines
    extra = [r["echoed_b_per_conn"] - r["idle_b_per_conn"] for r in plain]
    lines.append(f"- After one echo a connection costs {min(extra)}..{max(extra)} B more: a "
                 "reply shorter than the write-through minimum goes through the connection's "
                 "output queue (256 B at least, plus malloc's header), which is kept once "
                 "empty so that steady traffic allocates nothing.")
    return lines


def section(rows, command, when):
    lines = [BEGIN, "## Scale: idle connections held (bench/scale.py)", "",
             f"`{command}` on {when}: `sockit serve -s echo --threads 1 --max-conns 0` "
             "(sockit-uring: with `--backend io_uring`; sockit-tls: on `tls://…,cert=,key=`, a P-256 certificate; epoll_echo: "
             "bench/peers/epoll_echo), the holder a separate Python process with its own "
             "descriptor limit (hard limit 20,000 per process), plain connections spread over "
             "127.0.0.1..127.0.0.8 with IP_BIND_ADDRESS_NO_PORT. Establish: the holder's "
             "first connect to the server holding all K descriptors (TLS: handshakes "
             "included). RSS: the server's VmRSS with the K held less before (after a warm-up "
             "client), over K; user memory only, the kernel's socket memory is not in it. "
             "Latency: a new client's 1000 sequential 64-byte round trips (`sockit bench -c 1 "
             "-n 1000`) while the K are held idle, medians of the runs' p50 and p99, the "
             "largest max. Last column: `sockit bench -c K -n 2K` against the same server "
             "after the holder let go (`--sources 8` on plain tcp; connects and handshakes "
             "included in its time).", "",
             "| server | K | establish (s) | RSS/idle conn (B) | RSS/conn after one echo (B) "
             "| new client p50 (µs) | p99 (µs) | max (µs) | `sockit bench -c K -n 2K` |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['server']} | {r['k']} | {r['establish_s']:.3f} | "
                     f"{r['idle_b_per_conn']} | {r['echoed_b_per_conn']} | {r['p50_us']} | "
                     f"{r['p99_us']} | {r['max_us']} | {r['bench']} |")
    lines += ["", *verdicts(rows), END]
    return lines


def write(lines):
    md = os.path.join(ROOT, "bench", "RESULTS.md")
    with open(md) as f:
        old = f.read()
    text = "\n".join(lines)
    if BEGIN in old and END in old:
        new = old.split(BEGIN, 1)[0] + text + old.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    with open(md, "w") as f:
        f.write(new)
    print("wrote bench/RESULTS.md (its scale.py section)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sockit", default=os.path.join(ROOT, "build", "sockit"),
                    help="the binary (default build/sockit)")
    ap.add_argument("--ks", default="", help="comma-separated K (default 1000,5000,limit-500)")
    ap.add_argument("--sources", type=int, default=8, help="source addresses (default 8)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="new-client latency runs per K, medians taken (default 3)")
    ap.add_argument("--peer", action="store_true", help="also bench/peers/epoll_echo")
    ap.add_argument("--tls", action="store_true", help="also sockit serve over TLS")
    ap.add_argument("--uring", action="store_true",
                    help="also sockit serve --backend io_uring (the row sockit-uring)")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args()
    hard = raise_limit()
    ks = [int(x) for x in args.ks.split(",")] if args.ks else [1000, 5000, hard - RESERVE]
    if max(ks) > hard - RESERVE:
        sys.exit(f"scale.py: K {max(ks)} beyond the descriptor limit {hard} less {RESERVE}")
    kinds = (["sockit"] + (["sockit-uring"] if args.uring else []) +
             (["epoll_echo"] if args.peer else []) + (["sockit-tls"] if args.tls else []))
    if args.tls and shutil.which("openssl") is None:
        sys.exit("scale.py: --tls needs the openssl command")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sockit-scale-") as tmp:
        cert = make_cert(tmp) if args.tls else None
        for k in ks:
            for kind in kinds:
                row = step(kind, args.sockit, k, args.sources, args.rounds, cert)
                print(json.dumps(row), flush=True)
                rows.append(row)
    command = "python3 bench/scale.py " + " ".join(sys.argv[1:])
    lines = section(rows, command.strip(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print("\n".join(lines))
    if args.write:
        write(lines)


if __name__ == "__main__":
    main()
