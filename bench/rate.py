#!/usr/bin/env python3
"""rate.py -- the latency of `sockit serve -s echo` under an open loop at a
known fraction of its peak: the 50-connection TCP scenario of run.py.

    python3 bench/rate.py [--duration S] [--rounds N] [--sockit PATH] [--write]

The server runs with one thread, pinned to CPU 0; `sockit bench` runs pinned
to CPU 1. First the closed loop (`sockit bench --json -c 50 -d S`) measures
the peak requests/s (the median of the rounds); then `--rate` at 50% and 90%
of that peak, N rounds each, interleaved, records p50, p99, p99.9 and max
(medians over the rounds), the rate achieved, the errors, the server's CPU
per request and the CPU the rest of the machine used meanwhile. Each run
waits (up to --wait seconds) for a calm machine, and one with more than 0.10
CPUs of other load is made again (up to --retries times). With --write,
the section between the markers `bench/rate.py: begin/end` of
bench/RESULTS.md is replaced (or appended), and bench/rate.json holds every
run. Needs: build/sockit (make), util-linux (taskset).
"""
import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_CPU, CLIENT_CPU = "0", "1"
FRACTIONS = (0.5, 0.9)
TICK = os.sysconf("SC_CLK_TCK")
CALM, RETRIES = 0.10, 2
ARGS = None
BEGIN, END = "<!-- bench/rate.py: begin -->", "<!-- bench/rate.py: end -->"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(sockit, port):
    """sockit serve -q -s echo --threads 1, pinned; returns the process once it accepts."""
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, sockit, "serve", "-q", "-s", "echo",
                             "--threads", "1", "tcp://127.0.0.1:%d" % port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                sys.exit("rate.py: the server exited with %d" % proc.returncode)
            time.sleep(0.05)
    proc.kill()
    sys.exit("rate.py: the server did not accept within 10 s")


def machine_busy():
    """CPU seconds the whole machine has been busy (from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TICK   # all but idle and iowait


def process_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench(sockit, server, port, duration, rate=None):
    """One pinned `sockit bench --json -c 50` run; returns its report, with the server's CPU per
    request and the machine's other load (CPUs busy outside the server and the generator)."""
    argv = ["taskset", "-c", CLIENT_CPU, sockit, "bench", "--json", "-c", "50", "-d", str(duration)]
    if rate is not None:
        argv += ["--rate", "%.0f" % rate]
    t0, busy0, srv0, gen0 = time.monotonic(), machine_busy(), process_cpu(server.pid), children_cpu()
    out = subprocess.run(argv + ["tcp://127.0.0.1:%d" % port], capture_output=True,
                         timeout=duration + 30)
    elapsed, srv, gen = time.monotonic() - t0, process_cpu(server.pid) - srv0, children_cpu() - gen0
    other = max(machine_busy() - busy0 - srv - gen, 0) / elapsed
    if not out.stdout:
        sys.exit("rate.py: %s: %s" % (" ".join(argv), out.stderr.decode().strip()))
    report = json.loads(out.stdout)
    report.pop("histogram", None)
    report["server_cpu_us_per_req"] = srv * 1e6 / max(report["requests"], 1)
    report["other_load"] = other
    report["server_busy"] = srv / elapsed
    report["generator_busy"] = gen / elapsed
    report["command"] = " ".join(argv[3:]) + " tcp://127.0.0.1:PORT"
    return report


def wait_calm(limit):
    """Waits (at most limit seconds) for half a second in which the machine, with the server
    idle and no generator, is busy less than CALM CPUs."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        busy0, t0 = machine_busy(), time.monotonic()
        time.sleep(0.5)
        if (machine_busy() - busy0) / (time.monotonic() - t0) < CALM:
            return


def calm_bench(sockit, server, port, duration, rate=None):
    """bench() once the machine is calm (waiting up to --wait seconds), made again (up to
    --retries times) while the rest of the machine was busier than CALM CPUs during the run;
    the calmest run is kept."""
    wait_calm(ARGS.wait)
    runs = [bench(sockit, server, port, duration, rate)]
    while runs[-1]["other_load"] > CALM and len(runs) <= ARGS.retries:
        wait_calm(ARGS.wait)
        runs.append(bench(sockit, server, port, duration, rate))
    return min(runs, key=lambda r: r["other_load"])


def calm(every):
    """The runs made while the rest of the machine was calm, or all of them if none was."""
    return [r for r in every if r["other_load"] <= CALM] or every


def med(runs, *path):
    values = []
    for r in runs:
        for key in path:
            r = r[key]
        values.append(r)
    return statistics.median(values)


def table(peak, closed, rated, args):
    """The RESULTS.md section, as lines."""
    lines = [BEGIN, "", "## Open loop: latency at 50% and 90% of the peak (`bench/rate.py`)", "",
             "`python3 bench/rate.py %s` on %s: `sockit serve -q -s echo "
             "--threads 1 tcp://127.0.0.1:PORT` pinned to CPU %s, `sockit bench --json -c 50` pinned "
             "to CPU %s. The peak is the closed loop's requests/s (median of its calm runs, of %d); each rate "
             "row is `--rate R -d %g`, latency counted from each request's scheduled time "
             "(coordinated omission corrected); %d runs of each, interleaved, medians of the calm ones."
             % (" ".join(sys.argv[1:]), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), SERVER_CPU, CLIENT_CPU,
                args.rounds, args.duration, args.rounds), "",
             "| load | rate asked /s | achieved /s | p50 µs | p99 µs | p99.9 µs | max µs | errors "
             "| server CPU µs/req | server busy | generator busy | calm runs | other load (CPUs, worst kept) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [("closed loop (the peak)", None, closed)]
    rows += [("`--rate` %d%% of the peak" % (frac * 100), rated[frac][0]["rate_asked"], rated[frac])
             for frac in FRACTIONS]
    for name, asked, every in rows:
        # The medians are of the calm runs when there is one: a busy machine measures itself.
        runs = calm(every)
        achieved = med(runs, "requests_per_s") if asked is None else med(runs, "rate_achieved")
        lines.append("| %s | %s | %.0f | %d | %d | %d | %d | %d | %.2f | %.0f%% | %.0f%% | %d of %d | %.2f |"
                     % (name, "-" if asked is None else "%.0f" % asked, achieved,
                        med(runs, "latency_us", "p50"), med(runs, "latency_us", "p99"),
                        med(runs, "latency_us", "p99_9"), med(runs, "latency_us", "max"),
                        sum(r["errors"] for r in runs), med(runs, "server_cpu_us_per_req"),
                        100 * med(runs, "server_busy"), 100 * med(runs, "generator_busy"),
                        sum(r["other_load"] <= CALM for r in every), len(every),
                        max(r["other_load"] for r in runs)))
    lines += ["", "Server busy and generator busy are the CPU each used, in percent of one CPU; "
              "errors under `--rate` are mostly requests of the schedule never sent (the "
              "generator more than 2 s behind). Where the generator is near 100%%, the row "
              "measures the generator: the open loop costs it more per request than the closed "
              "loop (each reply wakes it on its own rather than in a batch of ready connections, "
              "and its timer wakes it too), so near a peak that the generator itself bounds, it "
              "falls behind, requests leave late, and their latency, counted from the schedule, "
              "grows for as long as the run lasts. A request's latency also includes the "
              "generator's wake-up lateness at its scheduled instant, which on a virtual machine "
              "whose CPUs sleep between requests is milliseconds at the tail. The "
              "other-load column says how busy the rest of the machine was (a run above %.2f "
              "was made again, up to %d times, and the calmest kept; the medians are of the calm "
              "runs where there is one)." % (CALM, args.retries), "", END]
    return lines


def write(lines, every):
    md = os.path.join(ROOT, "bench", "RESULTS.md")
    try:
        with open(md) as f:
            old = f.read()
    except FileNotFoundError:
        old = "# sockit benchmark results\n"
    section = "\n".join(lines)
    if BEGIN in old and END in old:
        new = old.split(BEGIN, 1)[0] + section + old.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    with open(md, "w") as f:
        f.write(new)
    with open(os.path.join(ROOT, "bench", "rate.json"), "w") as f:
        json.dump(every, f, indent=1)
    print("wrote bench/RESULTS.md (its rate.py section) and bench/rate.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per load (default 3)")
    ap.add_argument("--sockit", default=os.path.join(ROOT, "build", "sockit"),
                    help="the binary (default build/sockit)")
    ap.add_argument("--retries", type=int, default=RETRIES,
                    help="runs made again while the machine is busy (default %d)" % RETRIES)
    ap.add_argument("--wait", type=float, default=10.0,
                    help="seconds to wait for a calm machine before each run (default 10)")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md and bench/rate.json")
    args = ap.parse_args()
    global ARGS
    ARGS = args
    port = free_port()
    server = start_server(args.sockit, port)
    try:
        closed = [calm_bench(args.sockit, server, port, args.duration) for _ in range(args.rounds)]
        for r in closed:
            print("closed loop  %.0f requests/s  p99 %d  generator busy %.0f%%  other load %.2f"
                  % (r["requests_per_s"], r["latency_us"]["p99"], 100 * r["generator_busy"],
                     r["other_load"]), flush=True)
        peak = med(calm(closed), "requests_per_s")
        print("peak (closed loop, median of the calm runs): %.0f requests/s" % peak, flush=True)
        rated = {frac: [] for frac in FRACTIONS}
        for rnd in range(args.rounds):
            for frac in FRACTIONS:
                r = calm_bench(args.sockit, server, port, args.duration, rate=peak * frac)
                rated[frac].append(r)
                print("round %d  %d%%  asked %.0f achieved %.0f  p50 %d p99 %d p99.9 %d max %d  errors %d"
                      "  generator busy %.0f%%  other load %.2f"
                      % (rnd + 1, frac * 100, r["rate_asked"], r["rate_achieved"], r["latency_us"]["p50"],
                         r["latency_us"]["p99"], r["latency_us"]["p99_9"], r["latency_us"]["max"],
                         r["errors"], 100 * r["generator_busy"], r["other_load"]), flush=True)
    finally:
        server.terminate()
        server.wait(10)
    every = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": vars(args), "peak": peak,
             "closed": closed, "rated": {str(k): v for k, v in rated.items()}}
    with open(os.path.join(tempfile.gettempdir(), "sockit-rate-runs.json"), "w") as f:
        json.dump(every, f)     # the runs, whatever happens to the table
    lines = table(peak, closed, rated, args)
    print("\n".join(lines))
    if args.write:
        write(lines, every)


if __name__ == "__main__":
    main()
