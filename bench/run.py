#!/usr/bin/env python3
"""run.py -- sockit next to the echo servers people would otherwise pick,
same machine, same run, interleaved, same scenarios.

    python3 bench/run.py [--duration S] [--rounds N] [--only SCENARIO,...]
                         [--out DIR] [--sockit PATH] [--no-strace]

Builds the peers (bench/peers/), then for each round, each scenario and
each server in turn: starts the server (single-threaded servers pinned to
CPU 0), runs `sockit bench --json` pinned to CPU 1, reads the server's CPU
time from /proc, stops the server. A last pass counts system calls per
request under `strace -c -f`, every scenario, for sockit-1, sockit-1-uring,
epoll-loop and uring-loop. Writes bench/RESULTS.md (medians, ratios)
and bench/results.json (every run; --out DIR writes them there), keeping the sections other scripts
write (bench/tls.py, rate.py, relay.py, scale.py) and the "tls" key of
bench/tls.py. Needs: build/sockit (make; --sockit PATH for another), libuv1-dev,
libevent-dev, liburing-dev, libssl-dev, socat, ncat, redis-server, redis-tools, strace,
util-linux.
"""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOCKIT = os.path.join(ROOT, "build", "sockit")
PEER_DIR = os.path.join(ROOT, "build", "bench")  # next to the sockit binary (--sockit)
# Scripts whose sections of RESULTS.md this one keeps when it rewrites the file.
KEPT_SECTIONS = ("tls.py", "rate.py", "relay.py", "scale.py")
SERVER_CPU, CLIENT_CPU = "0", "1"
TICK = os.sysconf("SC_CLK_TCK")

# name, kind, bench options
SCENARIOS = [
    ("tcp-1conn-64B", "tcp", ["-c", "1"]),
    ("tcp-50conn-64B", "tcp", ["-c", "50"]),
    ("tcp-50conn-pipeline16", "tcp", ["-c", "50", "--pipeline", "16"]),
    ("tcp-bulk-64KiB", "tcp", ["-c", "4", "--size", "65536"]),
    ("udp-8sock-64B", "udp", ["-c", "8"]),
    ("tcp-churn", "tcp", ["-c", "8", "--connect"]),
    ("unix-50conn-64B", "unix", ["-c", "50"]),
]


def peers(tmp):
    """name -> (function(kind, where, bench options) -> argv or None, pinned)."""
    def c_peer(binary, *flags):
        # A peer that did not build (its library missing) has no rows.
        def argv(kind, where, opts=()):
            path = os.path.join(PEER_DIR, binary)
            return [path, *flags, kind, where] if os.path.exists(path) else None
        return argv

    def sockit(threads, backend=None):
        def argv(kind, where, opts=()):
            ep = {"tcp": "tcp://127.0.0.1:%s", "udp": "udp://127.0.0.1:%s", "unix": "unix:%s"}[kind] % where
            return [SOCKIT, "serve", "-q", "-s", "echo"] + (["--threads", threads] if threads else []) + \
                (["--backend", backend] if backend else []) + [ep]
        return argv

    def socat(kind, where, opts=()):
        if kind == "udp":
            return None
        listen = "TCP-LISTEN:%s,bind=127.0.0.1,reuseaddr,fork,backlog=4096" % where if kind == "tcp" \
            else "UNIX-LISTEN:%s,fork,backlog=4096" % where
        return ["socat", listen, "PIPE"]

    def ncat(kind, where, opts=()):
        # ncat --exec takes seconds to accept 50 connections (6 requests/s
        # in a trial): it is measured where it has one client at a time.
        if kind == "udp" or "50" in opts:
            return None
        target = ["127.0.0.1", where] if kind == "tcp" else ["-U", where]
        return ["ncat", "-l", "-k", "--exec", "/bin/cat", *target]

    asyncio_py = os.path.join(ROOT, "bench", "peers", "asyncio_echo.py")
    return {
        "sockit-1": (sockit("1"), True),
        "sockit-1-uring": (sockit("1", "io_uring"), True),
        "sockit-default": (sockit(None), False),
        "epoll-loop": (c_peer("epoll_echo"), True),
        "uring-loop": (c_peer("uring_echo"), True),
        "libuv": (c_peer("uv_echo"), True),
        "libuv-tuned": (c_peer("uv_echo", "--tuned"), True),
        "libevent": (c_peer("event_echo"), True),
        "libevent-tuned": (c_peer("event_echo", "--tuned"), True),
        "python-asyncio": (lambda kind, where, opts=(): [sys.executable, asyncio_py, kind, where], True),
        "socat-fork": (socat, True),
        "ncat-exec": (ncat, True),
    }


def build_peers():
    """Into PEER_DIR; a peer whose library is missing is left out, with a warning."""
    os.makedirs(PEER_DIR, exist_ok=True)
    src = os.path.join(ROOT, "bench", "peers")
    for name, libs in (("epoll_echo", []), ("uring_echo", ["-luring"]), ("uv_echo", ["-luv"]),
                       ("event_echo", ["-levent"]), ("tls_echo", ["-lssl", "-lcrypto"])):
        binary = os.path.join(PEER_DIR, name)
        r = subprocess.run(["cc", "-O2", "-Wall", "-o", binary, os.path.join(src, name + ".c"), *libs],
                           capture_output=True, text=True)
        if r.returncode != 0:
            if os.path.exists(binary):
                os.unlink(binary)
            print("run.py: %s did not build, left out:\n%s" % (name, r.stderr.strip()), file=sys.stderr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(kind, where, proc, timeout=5.0):
    """Bounded: a stream connects, a datagram is echoed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited: %s" % proc.args)
        try:
            if kind == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(0.2)
                    s.sendto(b"ping", ("127.0.0.1", int(where)))
                    if s.recv(16) == b"ping":
                        return
            else:
                family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
                addr = where if kind == "unix" else ("127.0.0.1", int(where))
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(0.2)
                    s.connect(addr)
                    s.sendall(b"ping")
                    if s.recv(16) == b"ping":
                        return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server not ready: %s" % proc.args)


def tree_cpu(pid):
    """CPU seconds of pid, its reaped children and its live children."""
    def stat(p):
        with open("/proc/%d/stat" % p) as f:
            return f.read().rsplit(")", 1)[1].split()
    total = 0
    try:
        fields = stat(pid)
        total = sum(int(x) for x in fields[11:15])
    except OSError:
        return 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                f = stat(int(entry))
                if int(f[1]) == pid:
                    total += int(f[11]) + int(f[12])
            except (OSError, IndexError):
                pass
    return total / TICK


def start_server(argv, pinned):
    cmd = (["taskset", "-c", SERVER_CPU] if pinned else []) + argv
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop_server(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def endpoint(kind, where):
    return {"tcp": "tcp://127.0.0.1:%s", "udp": "udp://127.0.0.1:%s", "unix": "unix:%s"}[kind] % where


_runs = iter(range(1 << 30))


def one_run(argv_fn, pinned, kind, opts, duration, tmp):
    where = os.path.join(tmp, "s%d.sock" % next(_runs)) if kind == "unix" else str(free_port())
    argv = argv_fn(kind, where, opts)
    if argv is None:
        return None
    proc = start_server(argv, pinned)
    try:
        try:
            wait_ready(kind, where, proc)
        except RuntimeError as e:
            print("run.py: %s" % e, file=sys.stderr)
            return None
        cpu0 = tree_cpu(proc.pid)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(["taskset", "-c", CLIENT_CPU, SOCKIT, "bench", "--json", "-d", str(duration),
                              *opts, endpoint(kind, where)], capture_output=True, timeout=duration + 30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = tree_cpu(proc.pid) - cpu0
    finally:
        stop_server(proc)
    result = json.loads(out.stdout)
    result["exit"] = out.returncode
    result["server_cpu_s"] = cpu
    result["cpu_us_per_req"] = cpu * 1e6 / result["requests"] if result["requests"] else None
    bench_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["bench_cpu_us_per_req"] = bench_cpu * 1e6 / result["requests"] if result["requests"] else None
    return result


def redis_context(duration):
    """redis-server PING through redis-benchmark: context, not a peer."""
    if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
        return {}
    port = str(free_port())
    proc = start_server(["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no"], True)
    out = {}
    try:
        time.sleep(0.0)
        wait_port(port, proc)
        for name, pipe in (("tcp-50conn-64B", "1"), ("tcp-50conn-pipeline16", "16")):
            n = str(200000 if pipe == "1" else 1000000)
            r = subprocess.run(["taskset", "-c", CLIENT_CPU, "redis-benchmark", "-p", port, "-c", "50",
                                "-n", n, "-P", pipe, "-t", "ping_inline", "--csv", "-q"],
                               capture_output=True, text=True, timeout=120)
            m = re.search(r'"PING_INLINE","([0-9.]+)"', r.stdout)
            if m:
                out[name] = float(m.group(1))
    finally:
        stop_server(proc)
    return out


def wait_port(port, proc, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server not ready")


# The servers the strace pass counts in every scenario; the other C peers
# are counted in STRACE_EXTRA_SCENARIO only.
STRACE_SERVERS = ("sockit-1", "sockit-1-uring", "epoll-loop", "uring-loop")
STRACE_EXTRA = ("libuv", "libuv-tuned", "libevent", "libevent-tuned")
STRACE_EXTRA_SCENARIO = "tcp-50conn-64B"


def strace_count(opts):
    """Requests per scenario of the strace pass: fixed, fewer where each costs more."""
    if "--connect" in opts:
        return 2000
    if "--size" in opts:
        return 5000
    return 20000


def strace_one(argv_fn, name, kind, opts, count, tmp):
    """System calls per request of one server under `strace -c -f`."""
    where = os.path.join(tmp, "st%d.sock" % next(_runs)) if kind == "unix" else str(free_port())
    trace = os.path.join(tmp, "strace-%s-%d.txt" % (name, next(_runs)))
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, "strace", "-c", "-f", "-o", trace,
                             *argv_fn(kind, where, opts)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(kind, where, proc, timeout=10)
        subprocess.run(["taskset", "-c", CLIENT_CPU, SOCKIT, "bench", "-n", str(count), *opts,
                        endpoint(kind, where)], capture_output=True, timeout=120)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print("run.py: strace %s: %s" % (name, e), file=sys.stderr)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    try:
        with open(trace) as f:
            total = [l for l in f if l.rstrip().endswith("total")]
    except FileNotFoundError:
        return None
    # "100.00  seconds  usecs/call  calls  [errors]  total"
    calls = int(total[0].split()[3]) if total else None
    return calls / count if calls else None


def syscalls_per_request(table, tmp, only):
    """scenario -> server -> system calls per request (strace -c -f, fixed request counts)."""
    out = {}
    for scen, kind, opts in SCENARIOS:
        if only and scen not in only:
            continue
        names = STRACE_SERVERS + (STRACE_EXTRA if scen == STRACE_EXTRA_SCENARIO else ())
        for name in names:
            argv_fn, _ = table[name]
            if argv_fn(kind, "0", opts) is None:
                continue
            v = strace_one(argv_fn, name, kind, opts, strace_count(opts), tmp)
            out.setdefault(scen, {})[name] = v
            print("strace %-22s %-15s %s syscalls/req" % (
                scen, name, "%.3f" % v if v else "-"), flush=True)
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def floor_ratios(cells):
    """Each sockit backend's requests/s over its floor's, where both ran."""
    out = {}
    for a, b in (("sockit-1", "epoll-loop"), ("sockit-1-uring", "uring-loop"),
                 ("sockit-1-uring", "sockit-1"), ("uring-loop", "epoll-loop")):
        x, y = cells.get(a, {}).get("requests_per_s"), cells.get(b, {}).get("requests_per_s")
        if x and y:
            out["%s ÷ %s" % (a, b)] = x / y
    return out


def syscall_table(syscalls):
    """The "system calls per request" section: scenario rows, one column a server."""
    def cell(v):
        return "%.3f" % v if v else "-"
    counts = {scen: strace_count(opts) for scen, _, opts in SCENARIOS}
    lines = ["## System calls per request", "",
             "`strace -c -f` on the server over `sockit bench -n COUNT` with the scenario's options "
             "(all calls, setup included; io_uring submissions count as their io_uring_enter calls).",
             "", "| scenario | requests | %s |" % " | ".join(STRACE_SERVERS),
             "|---|---:|%s" % ("---:|" * len(STRACE_SERVERS))]
    for scen, cells in syscalls.items():
        lines.append("| %s | %d | %s |" % (scen, counts.get(scen, 0),
                                           " | ".join(cell(cells.get(n)) for n in STRACE_SERVERS)))
    extra = syscalls.get(STRACE_EXTRA_SCENARIO, {})
    if any(n in extra for n in STRACE_EXTRA):
        lines += ["", "The other C peers, %s:" % STRACE_EXTRA_SCENARIO, "",
                  "| server | syscalls/request |", "|---|---:|"]
        lines += ["| %s | %s |" % (n, cell(extra.get(n))) for n in STRACE_EXTRA if n in extra]
    return lines + [""]


def run_records(runs):
    """Every run of {(scenario, server): [run]}, each with its latency summary but not its
    histogram's counts (megabytes in all)."""
    return [{"scenario": s, "server": n, **{k: v for k, v in r.items() if k != "histogram"}}
            for (s, n), rs in runs.items() for r in rs]


def write_results(runs, redis, syscalls, args, started, elapsed):
    names = list(peers("/tmp").keys())
    lines = ["# sockit benchmark results", "",
             "Run on %s (UTC) with `%s`, %.0f s in all." % (
                 started, "python3 bench/run.py " + " ".join(sys.argv[1:]), elapsed),
             "Machine: %s, %d CPUs, Linux %s. Servers marked pinned run on CPU %s, the load "
             "generator (`sockit bench`, one thread) on CPU %s. Each cell is the median of %d "
             "interleaved runs of %s s." % (platform.machine(), os.cpu_count(), platform.release(),
                                           SERVER_CPU, CLIENT_CPU, args.rounds, args.duration),
             "`sockit-1 ÷ peer` is sockit-1's requests/s divided by the peer's: above 1, sockit "
             "single-threaded is ahead. CPU µs/req is the server's CPU time (its process tree) per "
             "request; bench CPU µs/req the load generator's. Where the generator's CPU per request "
             "is near 1 / requests/s (its CPU saturated), the row measures the generator.",
             "sockit-1-uring is sockit-1 on the io_uring backend (`--backend io_uring`); "
             "uring-loop is the io_uring floor (bench/peers/uring_echo.c), as epoll-loop is the "
             "epoll one. Under each table, `sockit-1 ÷ epoll-loop` and `sockit-1-uring ÷ "
             "uring-loop` compare each backend with its floor.", ""]
    summary = {}
    for scen, kind, opts in SCENARIOS:
        if args.only and scen not in args.only:
            continue
        lines += ["## %s (`sockit bench %s %s`)" % (scen, " ".join(opts), kind), "",
                  "| server | requests/s | sockit-1 ÷ peer | p99 µs | CPU µs/req | bench CPU µs/req | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        base = median([r["requests_per_s"] for r in runs.get((scen, "sockit-1"), [])])
        for name in names:
            rs = runs.get((scen, name))
            if not rs:
                continue
            rps = median([r["requests_per_s"] for r in rs])
            p99 = median([r["latency_us"]["p99"] for r in rs])
            cpu = median([r["cpu_us_per_req"] for r in rs])
            bcpu = median([r.get("bench_cpu_us_per_req") for r in rs])
            errors = sum(r["errors"] for r in rs)
            ratio = base / rps if base and rps else None
            summary.setdefault(scen, {})[name] = {"requests_per_s": rps, "ratio": ratio}
            lines.append("| %s | %.0f | %s | %s | %s | %s | %d |" % (
                name, rps, "%.2f" % ratio if ratio else "-", "%.0f" % p99 if p99 is not None else "-",
                "%.2f" % cpu if cpu else "-", "%.2f" % bcpu if bcpu else "-", errors))
        if scen in redis:
            lines.append("| redis PING (context, redis-benchmark) | %.0f | %.2f | - | - | - | - |" % (
                redis[scen], base / redis[scen] if base else 0))
        lines.append("")
        floors = floor_ratios(summary.get(scen, {}))
        if floors:
            lines += ["; ".join("%s: %.2f" % (k, v) for k, v in floors.items()) + ".", ""]
            summary[scen]["floor_ratios"] = floors
    if syscalls:
        lines += syscall_table(syscalls)
    # The sections other scripts write (between their markers) and the "tls" key of
    # bench/tls.py are kept as they were (read from DIR when it has them, else bench/).
    md_path, js_path = os.path.join(args.out, "RESULTS.md"), os.path.join(args.out, "results.json")
    bench_dir = os.path.join(ROOT, "bench")
    try:
        with open(md_path if os.path.exists(md_path) else os.path.join(bench_dir, "RESULTS.md")) as f:
            old = f.read()
        for script in KEPT_SECTIONS:
            begin, end = "<!-- bench/%s: begin -->" % script, "<!-- bench/%s: end -->" % script
            if begin in old and end in old:
                lines += [begin + old.split(begin, 1)[1].split(end, 1)[0] + end, ""]
    except FileNotFoundError:
        pass
    try:
        with open(js_path if os.path.exists(js_path) else os.path.join(bench_dir, "results.json")) as f:
            tls = json.load(f).get("tls")
    except (FileNotFoundError, ValueError):
        tls = None
    with open(md_path, "w") as f:
        f.write("\n".join(lines))
    with open(js_path, "w") as f:
        json.dump({"date": started, "args": vars(args), "redis": redis, "syscalls": syscalls,
                   "summary": summary,
                   "runs": run_records(runs),
                   **({"tls": tls} if tls is not None else {})},
                  f, indent=1)


def main():
    global SOCKIT, PEER_DIR
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", type=lambda s: s.split(","), default=None)
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench"),
                    help="directory for RESULTS.md and results.json (default bench/)")
    ap.add_argument("--sockit", default=SOCKIT, help="the sockit binary (default build/sockit)")
    args = ap.parse_args()
    SOCKIT = os.path.abspath(args.sockit)
    PEER_DIR = os.path.join(os.path.dirname(SOCKIT), "bench")
    if not os.path.exists(SOCKIT):
        sys.exit("run.py: %s is missing: run make first" % SOCKIT)
    os.makedirs(args.out, exist_ok=True)
    build_peers()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    t0 = time.monotonic()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        table = peers(tmp)
        order = list(table.items())
        for rnd in range(args.rounds):
            for scen, kind, opts in SCENARIOS:
                if args.only and scen not in args.only:
                    continue
                # Rotate the order each round so that no server always runs first.
                k = rnd % len(order)
                for name, (argv_fn, pinned) in order[k:] + order[:k]:
                    r = one_run(argv_fn, pinned, kind, opts, args.duration, tmp)
                    if r is not None:
                        runs.setdefault((scen, name), []).append(r)
                        print("round %d %-22s %-15s %10.0f req/s  errors %d" % (
                            rnd + 1, scen, name, r["requests_per_s"], r["errors"]), flush=True)
        # redis fills cells of the two tcp-50conn scenarios only.
        wanted = ("tcp-50conn-64B", "tcp-50conn-pipeline16")
        redis = redis_context(args.duration) if not args.only or set(wanted) & set(args.only) else {}
        syscalls = {} if args.no_strace else syscalls_per_request(table, tmp, args.only)
    write_results(runs, redis, syscalls, args, started, time.monotonic() - t0)
    print("wrote %s and %s" % (os.path.join(args.out, "RESULTS.md"), os.path.join(args.out, "results.json")))


if __name__ == "__main__":
    main()
