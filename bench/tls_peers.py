#!/usr/bin/env python3
"""tls_peers.py -- the TLS peers of bench/tls.py: their names, versions,
argv and configuration files (written to the run's temporary directory),
and Server, the processes of one peer (pinned to SERVER_CPU, with
bench/peers/epoll_echo behind the terminating relays), started only once a
TLS handshake and a 64 B echo succeed. Imported by bench/tls.py only.
"""
import glob
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import run as plain  # free_port, wait_ready, tree_cpu, the paths (bench/ is on sys.path)

PEER_DIR = plain.PEER_DIR
SERVER_CPU = plain.SERVER_CPU
# every name peer_argv knows, in the order of the report
ALL_PEERS = ["sockit-1", "sockit-1-uring", "tls-floor", "sockit-relay", "haproxy", "nginx", "stunnel", "socat"]


def version_of(cmd, pattern):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else "?"


def nginx_stream_module():
    """The load_module line Debian's nginx needs (stream is a dynamic module)."""
    out = subprocess.run(["nginx", "-V"], capture_output=True, text=True, timeout=5).stderr
    if "--with-stream=dynamic" not in out:
        return ""
    for path in glob.glob("/usr/lib/nginx/modules/ngx_stream_module.so") + \
            glob.glob("/usr/share/nginx/modules/ngx_stream_module.so"):
        return "load_module %s;\n" % path
    return None


def peer_argv(name, ctx, port, echo):
    """argv of the TLS side of peer `name` on port, echo the backend port
    (None for the peers that echo themselves). Writes configs in ctx tmp."""
    tmp, cert, key, comb = ctx["tmp"], ctx["cert"], ctx["key"], ctx["combined"]
    if name in ("sockit-1", "sockit-1-uring"):
        backend = "io_uring" if name == "sockit-1-uring" else "epoll"
        return [ctx["sockit"], "serve", "-q", "-s", "echo", "--threads", "1",
                "--backend", backend, "tls://127.0.0.1:%d,cert=%s,key=%s" % (port, cert, key)]
    if name == "tls-floor":
        return [os.path.join(PEER_DIR, "tls_echo"), "tcp", str(port), cert, key]
    if name == "sockit-relay":
        return [ctx["sockit"], "relay", "-q", "--threads", "1",
                "tls://127.0.0.1:%d,cert=%s,key=%s" % (port, cert, key), "tcp://127.0.0.1:%d" % echo]
    if name == "haproxy":
        cfg = os.path.join(tmp, "haproxy-%d.cfg" % port)
        with open(cfg, "w") as f:
            f.write("global\n    nbthread 1\n    maxconn 8000\n"
                    "    ssl-default-bind-options ssl-min-ver TLSv1.2\n"
                    "defaults\n    mode tcp\n    timeout connect 5s\n"
                    "    timeout client 120s\n    timeout server 120s\n"
                    "frontend tls\n    bind 127.0.0.1:%d ssl crt %s\n    default_backend echo\n"
                    "backend echo\n    server echo 127.0.0.1:%d\n" % (port, comb, echo))
        return ["haproxy", "-db", "-f", cfg]
    if name == "nginx":
        prefix = os.path.join(tmp, "nginx-%d" % port)
        os.makedirs(prefix, exist_ok=True)
        cfg = os.path.join(prefix, "nginx.conf")
        with open(cfg, "w") as f:
            f.write("%sdaemon off;\nmaster_process on;\nworker_processes 1;\n"
                    "pid %s/nginx.pid;\nerror_log stderr error;\nworker_rlimit_nofile 65536;\n"
                    "events { worker_connections 65536; }\n"
                    "stream {\n    server {\n        listen 127.0.0.1:%d ssl backlog=4096;\n"
                    "        ssl_certificate %s;\n        ssl_certificate_key %s;\n"
                    "        ssl_protocols TLSv1.2 TLSv1.3;\n"
                    "        ssl_session_cache shared:SSL:10m;\n"
                    "        proxy_pass 127.0.0.1:%d;\n    }\n}\n"
                    % (ctx["nginx_module"], prefix, port, cert, key, echo))
        return ["nginx", "-p", prefix + "/", "-c", cfg, "-e", "stderr"]
    if name == "stunnel":
        cfg = os.path.join(tmp, "stunnel-%d.conf" % port)
        with open(cfg, "w") as f:
            f.write("foreground = yes\npid =\ndebug = 3\n"
                    "socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n"
                    "[echo]\naccept = 127.0.0.1:%d\nconnect = 127.0.0.1:%d\n"
                    "cert = %s\nkey = %s\nsslVersionMin = TLSv1.2\n" % (port, echo, cert, key))
        return ["stunnel4", cfg]
    if name == "socat":
        return ["socat", "OPENSSL-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr,backlog=4096,"
                "cert=%s,key=%s,verify=0" % (port, cert, key), "TCP:127.0.0.1:%d" % echo]
    raise KeyError(name)


def needs_backend(name):
    return name not in ("sockit-1", "sockit-1-uring", "tls-floor")


# ------------------------------------------------------------ processes

class Server:
    """The processes of one peer: the TLS side and, for relays, epoll_echo."""

    def __init__(self, name, ctx):
        self.name, self.procs, self.ctx = name, [], ctx
        self.port = plain.free_port()
        self.log = os.path.join(ctx["tmp"], "%s-%d.log" % (name, self.port))

    def _start(self, argv):
        with open(self.log, "ab") as log:
            p = subprocess.Popen(["taskset", "-c", SERVER_CPU, *argv], stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=log, start_new_session=True)
        self.procs.append(p)
        return p

    def start(self):
        echo = None
        if needs_backend(self.name):
            echo = plain.free_port()
            p = self._start([os.path.join(PEER_DIR, "epoll_echo"), "tcp", str(echo)])
            plain.wait_ready("tcp", str(echo), p)
        self.tls = self._start(peer_argv(self.name, self.ctx, self.port, echo))
        try:
            tls_ready(self.port, self.tls)
        except RuntimeError as e:
            raise RuntimeError("%s: %s" % (e, self.log_tail()))
        return self

    def stop(self):
        for p in reversed(self.procs):  # the TLS side first, then its backend
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)  # the group it leads
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout=5)
                except ProcessLookupError:
                    p.wait(timeout=5)
        self.procs = []

    def cpu(self):
        """CPU seconds: (every server process, the TLS side alone)."""
        each = [plain.tree_cpu(p.pid) for p in self.procs]
        return sum(each), each[-1]

    def log_tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            return ""

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


def client_ctx(ca=None, version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        ctx.load_verify_locations(ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def tls_echo_once(port, payload, ctx=None, session=None, timeout=2.0):
    """One connection, payload echoed; returns (ok, session_reused, session,
    version, cipher)."""
    ctx = ctx or client_ctx()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as s:
            s.sendall(payload)
            got = bytearray()
            while len(got) < len(payload):
                chunk = s.recv(len(payload) - len(got))
                if not chunk:
                    break
                got += chunk
            out = (bytes(got) == payload, s.session_reused, s.session, s.version(), s.cipher()[0])
            try:
                s.unwrap()
            except (OSError, ValueError):
                pass
            return out


def tls_ready(port, proc, timeout=10.0):
    """Bounded: a TLS handshake and 64 B echoed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("exited (status %s)" % proc.returncode)
        try:
            if tls_echo_once(port, b"x" * 64, timeout=0.5)[0]:
                return
        except (OSError, ssl.SSLError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError("not ready after %.0f s" % timeout)

