#!/usr/bin/env python3
"""tls_report.py -- the report of bench/tls.py: the "TLS" and "TLS relay"
sections of RESULTS.md (between the tls.py markers, replaced on each run)
and the "tls" key of results.json (the other keys are kept). Imported by
bench/tls.py only.
"""
import json
import os
import platform
import ssl
import sys

import run as plain  # median, the CPUs (bench/ is on sys.path)
from tls_peers import ALL_PEERS

SERVER_CPU, CLIENT_CPU = plain.SERVER_CPU, plain.CLIENT_CPU
BEGIN, END = "<!-- bench/tls.py: begin -->", "<!-- bench/tls.py: end -->"
SERVE_PEERS = ["sockit-1", "sockit-1-uring", "tls-floor", "haproxy", "nginx", "stunnel", "socat"]
RELAY_PEERS = ["sockit-relay", "haproxy", "nginx", "stunnel", "socat"]
PEER_NOTES = {
    "sockit-1": "`sockit serve -s echo --threads 1 tls://…,cert=,key=`",
    "sockit-1-uring": "the same with `--backend io_uring`",
    "tls-floor": "bench/peers/tls_echo.c: one thread, epoll, OpenSSL 3 (the floor)",
    "sockit-relay": "`sockit relay --threads 1 tls://…,cert=,key= tcp://ECHO` → epoll_echo",
    "haproxy": "haproxy %s, `mode tcp`, `nbthread 1`, `bind … ssl crt` → epoll_echo",
    "nginx": "nginx %s stream, `worker_processes 1`, `listen … ssl` → epoll_echo",
    "stunnel": "stunnel4 %s, one process (a thread per connection), foreground → epoll_echo",
    "socat": "socat %s `OPENSSL-LISTEN:…,fork` (a process per connection) → epoll_echo",
}


def fmt(v, spec):
    return spec % v if v is not None else "-"


def cell_value(kind, rs):
    """The headline number of a scenario for one peer (median of runs)."""
    if kind == "rss":
        return plain.median([r["rss_kib_per_conn"] for r in rs])
    if kind == "bulk":
        return plain.median([r["payload_mb_per_s"] for r in rs])
    return plain.median([r["requests_per_s"] for r in rs])


UNIT = {"req": "requests/s", "bulk": "MB/s echoed (each way)", "handshake": "handshakes/s",
        "rss": "KiB per connection (VmRSS)"}


def section(title, intro, base, names, runs, args, scenarios):
    lines = ["## %s" % title, ""] + intro + [""]
    # Summary: one line per scenario, one column per peer.
    lines += ["| scenario | unit | " + " | ".join(names) + " | %s ÷ floor | %s ÷ haproxy |" % (base, base)
              if "tls-floor" in names else
              "| scenario | unit | " + " | ".join(names) + " | %s ÷ haproxy |" % base]
    ncols = len(names) + (4 if "tls-floor" in names else 3)
    lines.append("|---|---|" + "---:|" * (ncols - 2))
    cpu_rows = []
    for scen, opts, kind in scenarios:
        if args.only and scen not in args.only:
            continue
        vals = {n: cell_value(kind, runs[(scen, n)]) if runs.get((scen, n)) else None for n in names}
        cpus = {n: plain.median([r.get("cpu_us_per_req") for r in runs.get((scen, n), [])])
                if kind != "rss" else None for n in names}

        def ratio(a, b):
            return "%.2f" % (a / b) if a and b else "-"

        refs = (["tls-floor"] if "tls-floor" in names else []) + ["haproxy"]
        spec = "%.1f" if kind in ("rss", "bulk") else "%.0f"
        lines.append("| %s | %s | " % (scen, UNIT[kind]) + " | ".join(fmt(vals[n], spec) for n in names) +
                     " | " + " | ".join(ratio(vals.get(base), vals.get(r)) for r in refs) + " |")
        if kind != "rss":
            cpu_rows.append("| %s | " % scen + " | ".join(fmt(cpus[n], "%.2f") for n in names) +
                            " | " + " | ".join(ratio(cpus.get(base), cpus.get(r)) for r in refs) + " |")
    lines += ["", "Server CPU µs per request (handshake, for the handshake scenarios), every server "
              "process counted (the terminator and epoll_echo behind it); below 1 in the ratio "
              "columns, %s spends less:" % base, "",
              "| scenario | " + " | ".join(names) + " | " +
              " | ".join("%s ÷ %s" % (base, r) for r in
                         (["floor"] if "tls-floor" in names else []) + ["haproxy"]) + " |",
              "|---|" + "---:|" * (ncols - 2)] + cpu_rows + [""]
    # Detail: one table per scenario.
    for scen, opts, kind in scenarios:
        if args.only and scen not in args.only:
            continue
        if kind == "rss":
            lines += ["### %s (%d idle TLS connections, `bench/tls_client.py idle`)" % (scen, args.conns), "",
                      "Each connection has done its handshake and echoed 64 B. The memory is the TLS "
                      "side's process tree (VmRSS and PSS summed over it, read 0.5 s after the last "
                      "connection opened); epoll_echo behind the relays is not counted.", "",
                      "| server | KiB/conn (VmRSS) | KiB/conn (PSS) | server processes | RSS before KiB | "
                      "RSS after KiB | seconds to open |", "|---|---:|---:|---:|---:|---:|---:|"]
            for n in names:
                rs = runs.get((scen, n))
                if not rs:
                    lines.append("| %s | %s |  |  |  |  |  |" % (n, "not run" if n not in args.failed
                                                             else "did not start"))
                    continue
                m = lambda k: plain.median([r[k] for r in rs])  # noqa: E731
                lines.append("| %s | %.1f | %.1f | %.0f | %.0f | %.0f | %.2f |" % (
                    n, m("rss_kib_per_conn"), m("pss_kib_per_conn"), m("processes"),
                    m("rss_kib_before"), m("rss_kib_after"), m("open_s")))
            lines.append("")
            continue
        lines += ["### %s (`%s %s tls://…`)" % (scen, args.generator_name, " ".join(opts)), "",
                  "| server | %s | %s ÷ peer | p99 µs | CPU µs/req (all) | CPU µs/req (TLS process) | "
                  "bench CPU µs/req | server busy | generator busy | errors | resumed | "
                  "other load (CPUs) |" % (UNIT[kind], base),
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        b = cell_value(kind, runs[(scen, base)]) if runs.get((scen, base)) else None
        for n in names:
            rs = runs.get((scen, n))
            if not rs:
                lines.append("| %s | %s |  |  |  |  |  |  |  |  |  |  |" % (
                    n, "not run" if n not in args.failed else "did not start"))
                continue
            v = cell_value(kind, rs)
            errors = sum(r.get("errors", 0) for r in rs) + sum(1 for r in rs if not r["server_alive"])
            resumed = sum(r.get("tls_resumed", r.get("resumed", 0)) or 0 for r in rs)
            asked = sum(r.get("requests") or 0 for r in rs)
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |" % (
                n, fmt(v, "%.1f" if kind == "bulk" else "%.0f"),
                "%.2f" % (b / v) if b and v else "-",
                fmt(plain.median([r.get("latency_us", {}).get("p99") for r in rs]), "%.0f"),
                fmt(plain.median([r["cpu_us_per_req"] for r in rs]), "%.2f"),
                fmt(plain.median([r["tls_cpu_us_per_req"] for r in rs]), "%.2f"),
                fmt(plain.median([r["bench_cpu_us_per_req"] for r in rs]), "%.2f"),
                fmt(plain.median([100 * r["server_busy"] for r in rs]), "%.0f%%"),
                fmt(plain.median([100 * r["bench_busy"] for r in rs]), "%.0f%%"), errors,
                "%.0f%%" % (100.0 * resumed / asked) if kind == "handshake" and asked else "-",
                fmt(max(r.get("other_cpu_share", 0) for r in rs), "%.2f")))
        lines.append("")
    return lines


def write_results(runs, probes, args, ctx, started, elapsed, scenarios):
    """bench/RESULTS.md (the TLS sections) and bench/results.json (the "tls"
    key) in args.out; scenarios: (name, options, kind) of each, in order."""
    versions = ctx["versions"]
    notes = ["- **%s**: %s" % (n, PEER_NOTES[n] % versions.get(n, "?") if "%s" in PEER_NOTES[n]
                               else PEER_NOTES[n]) for n in ALL_PEERS if n in args.peers]
    def short(text, n=160):
        return text if len(text) <= n else text[:n - 1] + "…"

    failed = ["- %s did not start: %s" % (n, short(e)) for n, e in sorted(args.failed.items())]
    head = ["Run on %s (UTC) with `python3 bench/tls.py %s`, %.0f s in all; generator: %s, one "
            "thread, pinned to CPU %s, against `tls://127.0.0.1:P,%s`. Servers (and the "
            "epoll_echo behind the terminating relays) are pinned to CPU %s. Each cell is the "
            "median of %d interleaved runs of %s s. Certificate: EC P-256, self-signed, made at "
            "run time. Machine: %s, %d CPUs, Linux %s, OpenSSL %s." % (
                started, " ".join(sys.argv[1:]), elapsed, args.generator_name, CLIENT_CPU,
                "ca=CERT" if args.verify == "ca" else "verify=none", SERVER_CPU, args.rounds,
                args.duration, platform.machine(), os.cpu_count(), platform.release(),
                ssl.OPENSSL_VERSION.split()[1]),
            "`X ÷ peer` is X's requests/s (MB/s, handshakes/s) divided by the peer's: above 1, X "
            "is ahead; for memory, X's KiB per connection divided by the peer's: below 1, X is "
            "leaner. CPU µs/req (all) counts every server process (its children included); "
            "(TLS process) the TLS side alone. Server busy and generator busy are the CPU each side "
            "used, in percent of one CPU: where the generator is near 100%%, the row measures the "
            "generator, and the server's CPU µs/req is the number to compare (the handshake rows, "
            "where the client's verification and key exchange cost more than the server's side, "
            "are like that on this 2-CPU machine). Other load is the "
            "CPU (in CPUs, the worst of the runs) that the machine spent outside the servers and the "
            "generator during a run: above a few hundredths, something else was running; a run "
            "above %.2f was made again, up to %d times, and the calmest kept." % (
                args.max_other_load, args.retries), ""]
    loads = [r.get("other_cpu_share", 0) for rs in runs.values() for r in rs if "other_cpu_share" in r]
    if loads and plain.median(loads) > 0.1:
        head += ["**This run is not clean**: the machine spent a median %.2f CPUs (at worst %.2f) on "
                 "other work during the runs; its numbers are noisy." % (plain.median(loads), max(loads)),
                 ""]
    probe_lines = ["Probe (Python ssl, once per peer, certificate verified): 64 B and 64 KiB "
                   "echoed, a second connection offered the first one's session.", "",
                   "| server | echo | protocol | cipher | resumes TLS 1.2 | resumes TLS 1.3 |",
                   "|---|---|---|---|---|---|"]
    for n in ALL_PEERS:
        if n in probes:
            p = probes[n]
            if "error" in p:
                probe_lines.append("| %s | did not start (above) |  |  |  |  |" % n
                                   if n in args.failed else "| %s | %s |  |  |  |  |" % (n, short(p["error"])))
            else:
                probe_lines.append("| %s | %s | %s | %s | %s | %s |" % (
                    n, "ok" if p["echo"] else "WRONG", p["version"], p["cipher"],
                    p["resumes_tls12"], p["resumes_tls13"]))
    serve_names = [n for n in SERVE_PEERS if n in args.peers or n == "sockit-1"]
    relay_names = [n for n in RELAY_PEERS if n in args.peers or n == "sockit-relay"]
    block = [BEGIN, ""]
    if serve_names:
        block += section("TLS", head + notes + failed + [""] + probe_lines, "sockit-1", serve_names,
                         runs, args, scenarios)
    if relay_names:
        block += section("TLS relay", ["TLS terminated in front of bench/peers/epoll_echo (plaintext, "
                                       "pinned to CPU %s as well): `sockit relay` beside haproxy and "
                                       "the others doing the same job. Same runs and rules as the "
                                       "TLS section above." % SERVER_CPU],
                         "sockit-relay", relay_names, runs, args, scenarios)
    block += [END, ""]
    md_path, js_path = os.path.join(args.out, "RESULTS.md"), os.path.join(args.out, "results.json")
    try:
        with open(md_path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# sockit benchmark results\n"
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        text = pre + "\n".join(block) + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(block)
    with open(md_path, "w") as f:
        f.write(text)
    try:
        with open(js_path) as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        data = {}
    summary = {}
    for (scen, n), rs in runs.items():
        kind = dict((s, k) for s, _, k in scenarios)[scen]
        summary.setdefault(scen, {})[n] = {
            "value": cell_value(kind, rs), "unit": UNIT[kind],
            "cpu_us_per_req": plain.median([r.get("cpu_us_per_req") for r in rs]) if kind != "rss" else None}
    data["tls"] = {"date": started, "args": {k: v for k, v in vars(args).items() if k != "failed"},
                   "generator": args.generator_name, "versions": versions, "probe": probes,
                   "failed": args.failed, "summary": summary,
                   "runs": plain.run_records(runs)}
    with open(js_path, "w") as f:
        json.dump(data, f, indent=1)
    print("wrote %s and %s" % (md_path, js_path))

