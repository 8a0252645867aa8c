#!/usr/bin/env python3
"""tls.py -- sockit over TLS next to the TLS servers and terminators people
would otherwise pick, same machine, same run, interleaved, same rules as
bench/run.py.

    python3 bench/tls.py [--duration S] [--rounds N] [--only SCEN,...]
                         [--peers NAME,...] [--generator sockit|python]
                         [--verify ca|none] [--sockit PATH] [--conns N]
                         [--out DIR] [--no-write] [--quick]
                         [--max-other-load CPUS] [--retries N]

For each round, each scenario and each peer in turn: starts the peer
(pinned to CPU 0, with the plaintext bench/peers/epoll_echo behind it, also
on CPU 0, for the terminating relays), runs the load generator pinned to
CPU 1, reads the CPU time of the server processes from /proc, stops them
by their PIDs. A run during which the machine spent more than
--max-other-load CPUs on anything else is made again (--retries). Before
the rounds, each peer is probed once (64 B and 64 KiB
echoed, TLS 1.2 and 1.3 resumption tried) with Python's ssl. A fresh EC
P-256 self-signed certificate (CN=localhost, SAN 127.0.0.1) and every
peer's configuration are written to a temporary directory.

The load generator is a function (GENERATORS): `sockit bench --json` over
`tls://127.0.0.1:P,ca=CERT` (the measurement), or `bench/tls_client.py load`
(--generator python: proves that peers come up and echo, measures Python,
and so never writes bench/RESULTS.md or bench/results.json; --out DIR
writes them there instead). The idle-RSS scenario always uses
bench/tls_client.py idle, which only opens connections.

Writes the "TLS" and "TLS relay" sections of bench/RESULTS.md (between
the tls.py markers, replaced on each run; bench/run.py keeps them) and the
"tls" key of bench/results.json (the plaintext keys are kept). Needs:
build/sockit (make), bench/install-deps (haproxy, nginx with
libnginx-mod-stream, stunnel4, socat, openssl, libssl-dev, util-linux).

The peers (argv, configurations, Server) are in bench/tls_peers.py, the
report (RESULTS.md, results.json) in bench/tls_report.py.
"""
import argparse
import json
import os
import resource
import select
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as plain  # noqa: E402  (free_port, tree_cpu, median, the paths)
from tls_peers import (ALL_PEERS, PEER_DIR, Server, client_ctx,  # noqa: E402
                       nginx_stream_module, tls_echo_once, version_of)
from tls_report import fmt, write_results  # noqa: E402

ROOT = plain.ROOT
BENCH = os.path.join(ROOT, "bench")
CLIENT_CPU = plain.CLIENT_CPU
CLIENT_PY = os.path.join(BENCH, "tls_client.py")

# name, sockit bench options, what a request is
SCENARIOS = [
    ("tls-1conn-64B", ["-c", "1"], "req"),
    ("tls-50conn-64B", ["-c", "50"], "req"),
    ("tls-bulk-64KiB", ["-c", "4", "--size", "65536"], "bulk"),
    ("tls-handshake-full", ["-c", "8", "--connect"], "handshake"),
    ("tls-handshake-resumed", ["-c", "8", "--connect", "--resume"], "handshake"),
    ("tls-idle-rss", None, "rss"),
]


# ------------------------------------------------------------ generators

def sockit_bench(ctx, opts, port, duration):
    """The measurement: sockit bench over TLS, one thread."""
    return [ctx["sockit"], "bench", "--json", "-d", str(duration), *opts, ctx["url"] % port]


def python_check(ctx, opts, port, duration):
    """Validation only: bench/tls_client.py load, same options."""
    argv = [sys.executable, CLIENT_PY, "load", str(port), "-d", str(duration), *opts]
    if ctx["verify"] == "ca":
        argv += ["--ca", ctx["cert"]]
    return argv


GENERATORS = {"sockit": sockit_bench, "python": python_check}


# ------------------------------------------------------------ processes

def tree_pids(pid):
    """pid and its descendants."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parent.items() if pp == p]
    return out


def tree_memory(pid):
    """KiB: (VmRSS summed over the tree, Pss summed over the tree)."""
    rss = pss = 0
    for p in tree_pids(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                rss += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            with open("/proc/%d/smaps_rollup" % p) as f:
                pss += next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
    return rss, pss


# ------------------------------------------------------------ runs

def busy_cpu():
    """CPU seconds all CPUs spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / plain.TICK


def start_server(name, ctx):
    """The peer name started, or None (recorded in ctx["failed"] and said)."""
    try:
        return Server(name, ctx).start()
    except RuntimeError as e:
        ctx["failed"].setdefault(name, str(e))
        print("tls.py: %s did not start: %s" % (name, e), file=sys.stderr)
        return None


def one_run(name, ctx, scen, opts, duration):
    srv = start_server(name, ctx)
    if srv is None:
        return None
    try:
        cpu0, tls0 = srv.cpu()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0 = busy_cpu()
        argv = ctx["generator"](ctx, opts, srv.port, duration)
        try:
            out = subprocess.run(["taskset", "-c", CLIENT_CPU, *argv], capture_output=True,
                                 timeout=duration + 60)
        except subprocess.TimeoutExpired:
            print("tls.py: %s %s: the generator did not finish in %.0f s" % (scen, name, duration + 60),
                  file=sys.stderr)
            return None
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu1, tls1 = srv.cpu()
        busy1 = busy_cpu()
        alive = all(p.poll() is None for p in srv.procs)
    finally:
        srv.stop()
    try:
        result = json.loads(out.stdout)
    except ValueError:
        print("tls.py: %s %s: generator printed no JSON (exit %d): %s" % (
            scen, name, out.returncode, out.stderr.decode(errors="replace").strip()[:300]),
            file=sys.stderr)
        return None
    n = result.get("requests") or 0
    result["exit"] = out.returncode
    result["server_alive"] = alive
    result["server_cpu_s"] = cpu1 - cpu0
    result["tls_cpu_s"] = tls1 - tls0
    result["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / n if n else None
    result["tls_cpu_us_per_req"] = (tls1 - tls0) * 1e6 / n if n else None
    bench_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["bench_cpu_us_per_req"] = bench_cpu * 1e6 / n if n else None
    span = result.get("duration_s") or duration
    result["server_busy"] = (cpu1 - cpu0) / span  # in CPUs
    result["bench_busy"] = bench_cpu / span
    # CPU that neither the servers nor the generator spent: another load on
    # the machine (or the kernel's work for them, softirqs and all).
    result["other_cpu_share"] = max(0.0, busy1 - busy0 - (cpu1 - cpu0) - bench_cpu) / span
    if "--size" in opts:
        result["payload_mb_per_s"] = result["requests_per_s"] * int(opts[opts.index("--size") + 1]) / 1e6
    return result


def rss_run(name, ctx, conns):
    """Server memory per idle TLS connection, conns of them open at once."""
    srv = start_server(name, ctx)
    if srv is None:
        return None
    client = None
    try:
        time.sleep(0.2)
        rss0, pss0 = tree_memory(srv.tls.pid)
        argv = [sys.executable, CLIENT_PY, "idle", str(srv.port), str(conns), "--timeout", "120"]
        if ctx["verify"] == "ca":
            argv += ["--ca", ctx["cert"]]
        t0 = time.monotonic()
        client = subprocess.Popen(["taskset", "-c", CLIENT_CPU, *argv], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([client.stdout], [], [], 120)
        line = client.stdout.readline() if ready else ""
        opened = time.monotonic() - t0
        if not line.startswith("open"):
            client.kill()
            err = client.communicate(timeout=10)[1]
            print("tls.py: tls-idle-rss %s: %s" % (name, (err or "timeout").strip()[-300:]),
                  file=sys.stderr)
            return None
        time.sleep(0.5)  # let the server settle (buffers released)
        rss1, pss1 = tree_memory(srv.tls.pid)
        procs = len(tree_pids(srv.tls.pid))
        client.communicate("\n", timeout=60)
        client = None
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait(timeout=10)
        srv.stop()
    return {"connections": conns, "open_s": opened, "rss_kib_before": rss0, "rss_kib_after": rss1,
            "pss_kib_before": pss0, "pss_kib_after": pss1, "processes": procs,
            "rss_kib_per_conn": (rss1 - rss0) / conns, "pss_kib_per_conn": (pss1 - pss0) / conns}


def probe(name, ctx):
    """Once per peer: 64 B and 64 KiB echoed (verifying the certificate),
    resumption on TLS 1.2 and TLS 1.3."""
    out = {}
    try:
        with Server(name, ctx) as srv:
            verify = client_ctx(ctx["cert"])
            ok1, _, _, version, cipher = tls_echo_once(srv.port, os.urandom(64), verify)
            ok2 = tls_echo_once(srv.port, os.urandom(65536), verify, timeout=5)[0]
            out.update(echo=ok1 and ok2, version=version, cipher=cipher)
            for label, v in (("resumes_tls12", ssl.TLSVersion.TLSv1_2),
                             ("resumes_tls13", ssl.TLSVersion.TLSv1_3)):
                c = client_ctx(ctx["cert"], v)
                try:
                    sess = tls_echo_once(srv.port, b"a" * 64, c)[2]
                    out[label] = bool(tls_echo_once(srv.port, b"b" * 64, c, session=sess)[1])
                except (OSError, ssl.SSLError) as e:
                    out[label] = "error: %s" % e
    except RuntimeError as e:
        ctx["failed"].setdefault(name, str(e))
        out["error"] = str(e)
    except (OSError, ssl.SSLError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    return out


# ------------------------------------------------------------ main

def build_peers():
    os.makedirs(PEER_DIR, exist_ok=True)
    src = os.path.join(BENCH, "peers")
    for name, libs in (("epoll_echo", []), ("tls_echo", ["-lssl", "-lcrypto"])):
        subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-o", os.path.join(PEER_DIR, name),
                        os.path.join(src, name + ".c"), *libs], check=True)


def make_cert(tmp):
    cert, key, comb = (os.path.join(tmp, n) for n in ("cert.pem", "key.pem", "combined.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    with open(comb, "w") as f:
        f.write(open(cert).read() + open(key).read())
    return cert, key, comb


def preflight(ctx, args):
    """Does the generator speak TLS (and --resume)? Tried on the floor."""
    srv = Server("tls-floor", ctx).start()
    try:
        ok = {}
        for label, opts in (("tls", ["-c", "1"]), ("resume", ["-c", "1", "--connect", "--resume"])):
            argv = ctx["generator"](ctx, opts, srv.port, 0.3)
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            try:
                ok[label] = out.returncode == 0 and json.loads(out.stdout)["requests"] > 0
            except (ValueError, KeyError):
                ok[label] = False
            if not ok[label]:
                ok[label + "_error"] = ["exit %d: %s" % (out.returncode, " ".join(
                    (out.stderr or out.stdout).strip().splitlines()[-1:]))]
        return ok
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", type=lambda s: s.split(","), default=None, help="scenarios")
    ap.add_argument("--peers", type=lambda s: s.split(","), default=list(ALL_PEERS))
    ap.add_argument("--generator", choices=sorted(GENERATORS), default="sockit")
    ap.add_argument("--verify", choices=["ca", "none"], default="ca")
    ap.add_argument("--sockit", default=os.environ.get("SOCKIT", os.path.join(ROOT, "build", "sockit")))
    ap.add_argument("--conns", type=int, default=1000, help="idle connections for tls-idle-rss")
    ap.add_argument("--out", default=None, help="directory of RESULTS.md and results.json (bench/)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--quick", action="store_true", help="1 round of 1 s")
    ap.add_argument("--max-other-load", type=float, default=0.1,
                    help="a run during which other work took more CPUs than this is made again")
    ap.add_argument("--retries", type=int, default=2, help="how many times at most (0: never)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 1.0
    unknown = set(args.peers) - set(ALL_PEERS) or set(args.only or []) - {s for s, _, _ in SCENARIOS}
    if unknown:
        sys.exit("tls.py: unknown: %s" % ", ".join(sorted(unknown)))
    if args.generator == "python" and args.out is None:
        args.no_write = True  # Python's numbers are no measurement
    args.out = args.out or BENCH
    args.failed = {}
    args.sockit = os.path.abspath(args.sockit)
    for tool in ("taskset", "openssl", "cc"):
        if not shutil.which(tool):
            sys.exit("tls.py: %s is missing (bench/install-deps)" % tool)
    missing = [n for n, t in (("haproxy", "haproxy"), ("nginx", "nginx"), ("stunnel", "stunnel4"),
                              ("socat", "socat")) if n in args.peers and not shutil.which(t)]
    if missing:
        print("tls.py: not installed, left out: %s (bench/install-deps)" % ", ".join(missing),
              file=sys.stderr)
        args.peers = [n for n in args.peers if n not in missing]
    if not os.path.exists(args.sockit) and (args.generator == "sockit" or "sockit-1" in args.peers):
        sys.exit("tls.py: %s is missing: run make first" % args.sockit)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers inherit it
    build_peers()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    t0 = time.monotonic()
    runs, probes = {}, {}
    with tempfile.TemporaryDirectory(prefix="sockit-tls-") as tmp:
        cert, key, comb = make_cert(tmp)
        ctx = {"tmp": tmp, "cert": cert, "key": key, "combined": comb, "sockit": args.sockit,
               "verify": args.verify, "generator": GENERATORS[args.generator],
               "url": "tls://127.0.0.1:%%d,%s" % ("ca=" + cert if args.verify == "ca" else "verify=none"),
               "failed": args.failed,
               "nginx_module": nginx_stream_module() if "nginx" in args.peers else "",
               "versions": {"haproxy": version_of(["haproxy", "-v"], r"version (\S+)"),
                            "nginx": version_of(["nginx", "-v"], r"nginx/(\S+)"),
                            "stunnel": version_of(["stunnel4", "-version"], r"stunnel (\S+)"),
                            "socat": version_of(["socat", "-V"], r"socat version (\S+)")}}
        if ctx["nginx_module"] is None:
            print("tls.py: nginx has no stream module (apt-get install libnginx-mod-stream): left out",
                  file=sys.stderr)
            args.peers.remove("nginx")
        args.generator_name = "sockit bench" if args.generator == "sockit" else "tls_client.py load"
        pre = preflight(ctx, args)
        if not pre["tls"]:
            sys.exit("tls.py: the generator (%s) does not run over TLS: %s\n"
                     "  (until `sockit bench` speaks TLS, `--generator python` checks the peers)"
                     % (args.generator_name, pre["tls_error"][0]))
        only = list(args.only or [s for s, _, _ in SCENARIOS])
        if not pre["resume"] and "tls-handshake-resumed" in only:
            print("tls.py: the generator has no --resume: %s; tls-handshake-resumed left out"
                  % pre["resume_error"][0], file=sys.stderr)
            only.remove("tls-handshake-resumed")
        args.only = only
        for name in args.peers:
            probes[name] = probe(name, ctx)
            print("probe %-13s %s" % (name, probes[name]), flush=True)
        order = [n for n in args.peers if n not in args.failed]
        for rnd in range(args.rounds):
            for scen, opts, kind in SCENARIOS:
                if scen not in args.only:
                    continue
                k = rnd % len(order) if order else 0
                for name in order[k:] + order[:k]:  # no peer always first
                    if kind == "rss":
                        r = rss_run(name, ctx, args.conns)
                        if r is not None:
                            print("round %d %-22s %-13s %8.1f KiB/conn (PSS %.1f) in %.1f s" % (
                                rnd + 1, scen, name, r["rss_kib_per_conn"], r["pss_kib_per_conn"],
                                r["open_s"]), flush=True)
                    else:
                        r = one_run(name, ctx, scen, opts, args.duration)
                        # A run during which the machine was busy elsewhere is
                        # made again (the calmest one is kept), a bounded number
                        # of times: on a shared machine, noise otherwise wins.
                        for retry in range(args.retries):
                            if r is None or r["other_cpu_share"] <= args.max_other_load:
                                break
                            print("round %d %-22s %-13s other load %.2f CPU: again" % (
                                rnd + 1, scen, name, r["other_cpu_share"]), flush=True)
                            again = one_run(name, ctx, scen, opts, args.duration)
                            if again is not None:
                                again["retries"] = retry + 1
                                if again["other_cpu_share"] < r["other_cpu_share"]:
                                    r = again
                        if r is not None:
                            print("round %d %-22s %-13s %10.0f req/s  cpu %6s us/req  errors %d  "
                                  "other load %.2f CPU%s" % (
                                      rnd + 1, scen, name, r["requests_per_s"],
                                      fmt(r["cpu_us_per_req"], "%.2f"), r["errors"], r["other_cpu_share"],
                                "" if r["server_alive"] else "  SERVER DIED"), flush=True)
                    if r is not None:
                        runs.setdefault((scen, name), []).append(r)
    elapsed = time.monotonic() - t0
    if args.no_write:
        print("tls.py: nothing written (%s)" % ("--generator python measures Python: --out DIR to see "
                                                "its tables" if args.generator == "python" else "--no-write"))
    else:
        write_results(runs, probes, args, ctx, started, elapsed, SCENARIOS)
    bad = [n for n, p in probes.items() if p.get("echo") is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
