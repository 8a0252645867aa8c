#!/usr/bin/env python3
"""tls_client.py -- Python ssl clients for bench/tls.py, on 127.0.0.1 only.

    tls_client.py idle PORT N [--ca FILE] [--timeout S]
        Opens N TLS connections, each with its handshake done and one 64 B
        echo checked, prints "open N", keeps them open until a line arrives
        on stdin (or the timeout passes), closes them all (close_notify),
        prints "closed". Used for the RSS of an idle TLS connection.

    tls_client.py load PORT [-c N] [--size B] [-d S] [--connect] [--resume]
                  [--ca FILE]
        A validation-only echo load (threads, blocking sockets): proves that a
        peer comes up, handshakes (full or resumed) and echoes byte for byte.
        Prints one JSON object with the keys `sockit bench --json` has. Its
        numbers measure Python, not the server: bench/tls.py never writes
        them into bench/RESULTS.md.

Without --ca the server is not verified. Every loop is bounded in time.
"""
import argparse
import json
import os
import resource
import socket
import ssl
import sys
import threading
import time


def context(ca):
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def recv_exactly(s, n):
    data = bytearray()
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return bytes(data)


def open_tls(ctx, port, timeout, session=None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session)
    except BaseException:
        raw.close()
        raise


def close_tls(s):
    try:
        s.unwrap()  # our close_notify, then the server's
    except (OSError, ValueError):
        pass
    s.close()


def idle(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = context(args.ca)
    deadline = time.monotonic() + args.timeout
    conns = []
    payload = os.urandom(64)
    try:
        for _ in range(args.n):
            if time.monotonic() > deadline:
                sys.exit("tls_client.py: %d of %d connections open at the timeout" % (len(conns), args.n))
            s = open_tls(ctx, args.port, 10)
            conns.append(s)
            s.sendall(payload)
            if recv_exactly(s, 64) != payload:
                sys.exit("tls_client.py: wrong echo")
        print("open %d" % len(conns), flush=True)
        # Wait for the harness to read the server's memory, bounded.
        import select
        select.select([sys.stdin], [], [], max(1.0, deadline - time.monotonic()))
    finally:
        for s in conns:
            s.settimeout(1)
            close_tls(s)
    print("closed", flush=True)


def load(args):
    ctx = context(args.ca)
    stop_at = time.monotonic() + args.duration
    lock = threading.Lock()
    lat, totals = [], {"requests": 0, "errors": 0, "resumed": 0, "handshakes": 0}
    proto = {}
    payload = os.urandom(args.size)

    def worker():
        mine, n, errors, resumed, handshakes, session, s = [], 0, 0, 0, 0, None, None
        try:
            while time.monotonic() < stop_at:
                t = time.monotonic()
                try:
                    if s is None:
                        s = open_tls(ctx, args.port, 5, session if args.resume else None)
                        handshakes += 1
                        resumed += s.session_reused
                        proto.setdefault("v", (s.version(), s.cipher()[0]))
                    s.sendall(payload)
                    if recv_exactly(s, len(payload)) != payload:
                        raise ValueError("wrong echo")
                    n += 1
                    if args.connect:
                        session = s.session
                        close_tls(s)
                        s = None
                except (OSError, ValueError, ssl.SSLError):
                    errors += 1
                    if s is not None:
                        s.close()
                        s = None
                    time.sleep(0.01)
                mine.append(time.monotonic() - t)
        finally:
            if s is not None:
                close_tls(s)
            with lock:
                lat.extend(mine)
                totals["requests"] += n
                totals["errors"] += errors
                totals["resumed"] += resumed
                totals["handshakes"] += handshakes

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + 30)
    elapsed = time.monotonic() - t0
    lat.sort()

    def pct(p):
        return int(lat[min(len(lat) - 1, int(p * len(lat)))] * 1e6) if lat else 0

    n = totals["requests"]
    print(json.dumps({"requests": n, "errors": totals["errors"], "duration_s": round(elapsed, 3),
                      "requests_per_s": round(n / elapsed, 1),
                      "mb_per_s": round(2 * n * args.size / elapsed / 1e6, 3),
                      "latency_us": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
                                     "p99_9": pct(0.999), "max": pct(1.0)},
                      "handshakes": totals["handshakes"], "resumed": totals["resumed"],
                      "protocol": proto.get("v", [None, None])[0], "cipher": proto.get("v", [None, None])[1],
                      "generator": "tls_client.py (validation only)"}))
    return 0 if n and not totals["errors"] else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("idle")
    a.add_argument("port", type=int)
    a.add_argument("n", type=int)
    a.add_argument("--ca")
    a.add_argument("--timeout", type=float, default=120)
    b = sub.add_parser("load")
    b.add_argument("port", type=int)
    b.add_argument("-c", type=int, default=1)
    b.add_argument("--size", type=int, default=64)
    b.add_argument("-d", "--duration", type=float, default=1.0)
    b.add_argument("--connect", action="store_true")
    b.add_argument("--resume", action="store_true")
    b.add_argument("--ca")
    args = ap.parse_args()
    sys.exit(idle(args) if args.mode == "idle" else load(args))


if __name__ == "__main__":
    main()
