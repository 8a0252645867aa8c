#!/usr/bin/env python3
"""metrics.py -- what --metrics costs sockit serve.

    python3 bench/metrics.py [--sockit PATH] [--baseline PATH] [--duration S]
                             [--rounds N] [--scenario NAME,...] [--conns N]
                             [--scrapes N] [--only overhead|scrape]

1. Overhead: the 50-connection TCP echo and the 8-socket UDP echo of
   bench/run.py, `sockit serve -q -s echo --threads 1` pinned to CPU 0 and
   `sockit bench` pinned to CPU 1, without --metrics and with it (scraped
   once a second meanwhile, on a keep-alive connection), runs interleaved
   (the order alternating each round); the medians of requests per second
   and their ratio. With --baseline, a third server binary (one built
   before the counters, say) is measured the same way.
2. A scrape of a server holding --conns connections (default 10000): the
   connections opened from this process, then --scrapes GET /metrics timed
   one by one on a keep-alive connection and on fresh ones: median, 99th
   percentile and largest, in milliseconds.

Prints the figures; nothing is written. Needs build/sockit (make) and
util-linux (taskset).
"""
import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_CPU, CLIENT_CPU = "0", "1"
SCENARIOS = [("tcp-50conn-64B", "tcp", ["-c", "50"]),
             ("udp-8sock-64B", "udp", ["-c", "8"])]


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, pinned=True):
    """A server and the endpoints of its `listening on` and `metrics on` lines."""
    cmd = (["taskset", "-c", SERVER_CPU] if pinned else []) + argv
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    want = 1 + sum(1 for a in argv if a == "--metrics")
    lines = []
    deadline = time.monotonic() + 10
    while len(lines) < want:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("server not ready: %s" % argv)
        line = proc.stderr.readline().decode().strip()
        if line.startswith(("listening on ", "metrics on ")):
            lines.append(line)
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    listen = [l.split(" on ", 1)[1] for l in lines if l.startswith("listening")]
    metrics = [l.split(" on ", 1)[1] for l in lines if l.startswith("metrics")]
    return proc, listen, metrics[0] if metrics else None


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def address(ep):
    host, port = ep.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


class Scraper:
    """GET /metrics on one keep-alive connection; each scrape timed."""

    def __init__(self, ep):
        self.sock = socket.create_connection(address(ep), timeout=10)
        self.buf = b""

    def get(self):
        t0 = time.perf_counter()
        self.sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(1 << 20)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        length = int(next(l.split(b":")[1] for l in head.split(b"\r\n")
                          if l.lower().startswith(b"content-length:")))
        while len(self.buf) < length:
            self.buf += self.sock.recv(1 << 20)
        body, self.buf = self.buf[:length], self.buf[length:]
        if not head.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(head)
        return time.perf_counter() - t0, body.decode()

    def close(self):
        self.sock.close()


def scrape_every(ep, period, stop_event, count):
    s = Scraper(ep)
    while not stop_event.wait(period):
        s.get()
        count[0] += 1
    s.close()


def cpu_seconds(pid):
    """utime + stime of a process, all its threads (taskset execs it)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(sockit, server, kind, opts, duration, with_metrics):
    port = free_port(socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    ep = "%s://127.0.0.1:%d" % (kind, port)
    argv = [server, "serve", "-s", "echo", "--threads", "1"]
    if with_metrics:
        argv += ["--metrics", "tcp://127.0.0.1:0"]
    proc, _, mep = start(argv + [ep])
    done, scrapes = threading.Event(), [0]
    scraper = None
    try:
        if mep is not None:
            scraper = threading.Thread(target=scrape_every, args=(mep, 1.0, done, scrapes))
            scraper.start()
        cpu0 = cpu_seconds(proc.pid)
        out = subprocess.run(["taskset", "-c", CLIENT_CPU, sockit, "bench", "--json", "-d",
                              str(duration), *opts, ep], capture_output=True, timeout=duration + 30)
        cpu = cpu_seconds(proc.pid) - cpu0
        result = json.loads(out.stdout)
    finally:
        done.set()
        if scraper is not None:
            scraper.join()
        stop(proc)
    if out.returncode != 0:
        raise RuntimeError("bench failed: %s" % out.stderr.decode())
    return result["requests_per_s"], cpu * 1e6 / max(result["requests"], 1)


def overhead(args):
    variants = [("without", args.sockit, False), ("with --metrics", args.sockit, True)]
    if args.baseline:
        variants.insert(0, ("baseline", args.baseline, False))
    print("== overhead: %d rounds of %g s, server on CPU %s, bench on CPU %s"
          % (args.rounds, args.duration, SERVER_CPU, CLIENT_CPU))
    for name, kind, opts in SCENARIOS:
        if args.scenario and name not in args.scenario.split(","):
            continue
        rates = {v[0]: [] for v in variants}
        cpus = {v[0]: [] for v in variants}
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for label, server, metrics in order:
                rate, cpu = one_run(args.sockit, server, kind, opts, args.duration, metrics)
                rates[label].append(rate)
                cpus[label].append(cpu)
        base = statistics.median(rates["without"])
        base_cpu = statistics.median(cpus["without"])
        print("%s:" % name)
        for label, _, _ in variants:
            med, cpu = statistics.median(rates[label]), statistics.median(cpus[label])
            print("  %-15s median %8.0f req/s (ratio %.3f), server %.2f us CPU/req (ratio %.3f);"
                  " runs %s" % (label, med, med / base, cpu, cpu / base_cpu,
                                " ".join("%.0f" % x for x in rates[label])))


def open_conns(ep, n):
    conns = []
    host, port = address(ep)
    for _ in range(n):
        s = socket.socket()
        s.connect((host, port))
        conns.append(s)
    return conns


def sample_value(body, name, listener):
    prefix = '%s{listener="%s"} ' % (name, listener)
    for line in body.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    raise RuntimeError("no %s for %s" % (name, listener))


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def scrape_at_scale(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc, listen, mep = start([args.sockit, "serve", "-s", "echo", "--max-conns", "0",
                               "--metrics", "tcp://127.0.0.1:0", "tcp://127.0.0.1:0"],
                              pinned=False)
    try:
        t0 = time.monotonic()
        conns = open_conns(listen[0], args.conns)
        s = Scraper(mep)
        while sample_value(s.get()[1], "sockit_connections_active", listen[0]) < args.conns:
            time.sleep(0.05)
        print("== scrape at %d connections (opened in %.1f s), %d scrapes"
              % (args.conns, time.monotonic() - t0, args.scrapes))
        kept = [s.get()[0] * 1e3 for _ in range(args.scrapes)]
        fresh = []
        for _ in range(args.scrapes):
            f = Scraper(mep)
            t1 = time.perf_counter()
            f.get()
            fresh.append((time.perf_counter() - t1) * 1e3)
            f.close()
        size = len(s.get()[1])
        for label, xs in (("keep-alive", kept), ("fresh connection", fresh)):
            print("  %-17s median %.3f ms  p99 %.3f ms  max %.3f ms  (body %d bytes)"
                  % (label, statistics.median(xs), percentile(xs, 99), max(xs), size))
        s.close()
        for c in conns:
            c.close()
    finally:
        stop(proc)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sockit", default=os.path.join(ROOT, "build", "sockit"))
    p.add_argument("--baseline", help="another sockit binary to measure without --metrics")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--conns", type=int, default=10000)
    p.add_argument("--scrapes", type=int, default=200)
    p.add_argument("--only", choices=("overhead", "scrape"))
    p.add_argument("--scenario", help="overhead: these scenarios only (a,b)")
    args = p.parse_args()
    args.sockit = os.path.abspath(args.sockit)
    if args.only != "scrape":
        overhead(args)
    if args.only != "overhead":
        scrape_at_scale(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
