"""Integration tests for `sockit bench --sources N` (connections spread over the source addresses
127.0.0.1 to 127.0.0.N) and for a -c beyond the descriptor limit.

The target is a small Python echo server on 127.0.0.1 that records the peer address of every
connection it accepts and the bytes it echoes. Every run has a time limit.

    SOCKIT=build/sockit python3 -m unittest test_bench_scale -v
"""

import json
import resource
import selectors
import socket
import subprocess
import threading
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

BENCH_TIMEOUT = 20.0


class RecordingEcho:
    """An echo server on 127.0.0.1 (one thread, selectors) that records each accepted peer
    address and the bytes echoed in all. stop() ends it."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.peers = []
        self.echoed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, None)
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                if key.data is None:
                    self._accept(sel)
                else:
                    self._echo(sel, key.fileobj)
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()

    def _accept(self, sel):
        for _ in range(64):
            try:
                conn, peer = self.listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            self.peers.append(peer)
            sel.register(conn, selectors.EVENT_READ, 'conn')

    def _echo(self, sel, conn):
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError:
            data = b''
        if not data:
            sel.unregister(conn)
            conn.close()
            return
        self.echoed += len(data)  # counted first: once sent, bench may end at once
        conn.setblocking(True)  # replies are small: a blocking send never waits long
        conn.sendall(data)
        conn.setblocking(False)

    def stop(self):
        self._stop.set()
        self._thread.join(5.0)


def run_bench(args, preexec=None):
    """`sockit bench ARGS`: returns the CompletedProcess (killed and raised after BENCH_TIMEOUT)."""
    return subprocess.run([SOCKIT, 'bench', *args], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=BENCH_TIMEOUT, env=server_env(), preexec_fn=preexec)


class BenchSourcesTest(SockitTest):

    def setUp(self):
        super().setUp()
        self.echo = RecordingEcho()
        self.addCleanup(self.echo.stop)

    def test_sources_spread_connections(self):
        """-c 200 --sources 4: 200 connections, 50 from each of 127.0.0.1..4, every reply right."""
        r = run_bench(['--json', '-c', '200', '--sources', '4', '-n', '400',
                       f'tcp://127.0.0.1:{self.echo.port}'])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, b'')
        report = json.loads(r.stdout)
        self.assertEqual((report['requests'], report['errors']), (400, 0), report)
        self.assertEqual(report['bytes_sent'], 400 * 64, report)
        self.assertEqual(report['bytes_received'], 400 * 64, report)
        self.assertEqual(self.echo.echoed, 400 * 64)
        self.assertEqual(len(self.echo.peers), 200, self.echo.peers[:10])
        hosts = {}
        for host, _ in self.echo.peers:
            hosts[host] = hosts.get(host, 0) + 1
        self.assertEqual(hosts, {'127.0.0.1': 50, '127.0.0.2': 50, '127.0.0.3': 50, '127.0.0.4': 50})
        # Each connection had a port of its own source.
        self.assertEqual(len(set(self.echo.peers)), 200)

    def test_sources_over_threads(self):
        """--threads 3: the sources cycle over the run's connections, not each thread's."""
        r = run_bench(['--json', '-c', '30', '--threads', '3', '--sources', '3', '-n', '60',
                       f'tcp://127.0.0.1:{self.echo.port}'])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)['errors'], 0)
        hosts = {}
        for host, _ in self.echo.peers:
            hosts[host] = hosts.get(host, 0) + 1
        self.assertEqual(hosts, {'127.0.0.1': 10, '127.0.0.2': 10, '127.0.0.3': 10})

    def test_default_one_source(self):
        """Without --sources, the kernel's source: 127.0.0.1 for a 127.0.0.1 target."""
        r = run_bench(['--json', '-c', '20', '-n', '40', f'tcp://127.0.0.1:{self.echo.port}'])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)['errors'], 0)
        self.assertEqual({host for host, _ in self.echo.peers}, {'127.0.0.1'})
        self.assertEqual(len(self.echo.peers), 20)

    def test_bad_sources(self):
        """0, junk and more than 254: exit 2, one line, no connection made."""
        ep = f'tcp://127.0.0.1:{self.echo.port}'
        for value in ('0', 'x', '4x', '-1', '255', ''):
            with self.subTest(value=value):
                r = run_bench(['--sources', value, '-n', '10', ep])
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stdout, b'')
                self.assertEqual(r.stderr,
                                 f"sockit: --sources: expected a whole number 1..254, got '{value}'\n".encode())
        self.assertEqual(self.echo.peers, [])

    def test_sources_need_loopback_tcp(self):
        """--sources with a target it cannot spread to: exit 2, one line, nothing sent."""
        plain = b'sockit: bench: --sources needs a plain tcp endpoint (no tls, no --connect)\n'
        r = run_bench(['--sources', '2', '-n', '4', 'udp://127.0.0.1:9'])
        self.assertEqual((r.returncode, r.stderr), (2, plain))
        r = run_bench(['--sources', '2', '--connect', '-n', '4', f'tcp://127.0.0.1:{self.echo.port}'])
        self.assertEqual((r.returncode, r.stderr), (2, plain))
        if HAVE_IPV6:
            r = run_bench(['--sources', '2', '-n', '4', 'tcp://[::1]:9'])
            self.assertEqual((r.returncode, r.stderr),
                             (2, b'sockit: bench: --sources needs a target in 127.0.0.0/8\n'))
        self.assertEqual(self.echo.peers, [])

    def test_conns_beyond_descriptor_limit(self):
        """-c past the descriptor limit (here lowered to 256): exit 2 and one line before any connect."""
        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        start = time.monotonic()
        r = run_bench(['-c', '1000', '-n', '1000', f'tcp://127.0.0.1:{self.echo.port}'], preexec=low_limit)
        self.assertLess(time.monotonic() - start, 5.0)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stdout, b'')
        self.assertEqual(r.stderr,
                         b'sockit: bench: -c 1000: the descriptor limit (256) allows at most 236 connections\n')
        self.assertEqual(self.echo.peers, [])
        # Within the limit, the same run works.
        r = run_bench(['-c', '200', '-n', '400', f'tcp://127.0.0.1:{self.echo.port}'], preexec=low_limit)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.echo.peers), 200)


if __name__ == '__main__':
    unittest.main()
