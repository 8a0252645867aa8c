"""Integration tests for `sockit bench` with many TLS connections: each generator thread keeps at
most 128 handshakes in flight, the next client connecting when one of them is over, so that the
5 s connect timeout runs from each connection's own start, not from the run's.

The servers are Python ones on 127.0.0.1 (one thread, selectors, the `ssl` module): one that
completes handshakes at a fixed pace (one every 3 ms, in the order the connections were
accepted) and echoes, recording how many accepted connections had their handshake still to do;
one that accepts and never answers. Certificates come from tls_helpers. Every run has a time
limit.

    SOCKIT=build/sockit python3 -m unittest test_bench_tls_many -v
"""

import collections
import json
import resource
import selectors
import socket
import ssl
import subprocess
import threading
import time
import unittest

from helpers import SOCKIT, SockitTest, server_env
from tls_helpers import certs, tls_setup_module

WAVE = 128                  # handshakes in flight per generator thread
CONNS = 2000
PACE = 0.003                # seconds between two handshakes the paced server completes
CONNECT_TIMEOUT = 5.0       # bench's connect timeout (handshake included)
BENCH_TIMEOUT = 30.0


def setUpModule():
    tls_setup_module()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * CONNS + 256          # the servers' connections and bench's, with room
    if hard < need:
        raise unittest.SkipTest(f'descriptor hard limit {hard} < {need}')
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_bench(args):
    """`sockit bench ARGS`: (CompletedProcess, seconds); killed and raised after BENCH_TIMEOUT."""
    start = time.monotonic()
    r = subprocess.run([SOCKIT, 'bench', *args], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=BENCH_TIMEOUT, env=server_env())
    return r, time.monotonic() - start


class PyServer:
    """A listener on 127.0.0.1 served by one thread until stop(); subclasses handle events."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(4096)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.accepted = []          # monotonic time of each accept
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.tick()
            for key, events in self.sel.select(0.001):
                if key.data is None:
                    self._accept()
                else:
                    self.event(key.fileobj, key.data, events)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()
        self.closing()

    def _accept(self):
        for _ in range(256):
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            self.accepted.append(time.monotonic())
            conn.setblocking(False)
            self.taken(conn)

    def tick(self):
        pass

    def closing(self):
        pass

    def stop(self):
        self._stop.set()
        self._thread.join(10.0)


class PacedTLSServer(PyServer):
    """Accepts every connection at once, but drives the TLS handshakes of at most one more
    connection every PACE seconds (from the first accept), first accepted first; echoes after.
    peak: the most connections accepted at one time whose handshake was neither done nor
    failed."""

    def __init__(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(certs().server_pem, certs().server_key)
        ctx.num_tickets = 0
        self.ctx = ctx
        self.waiting = collections.deque()   # accepted, handshake not begun
        self.handshaking = 0
        self.done = self.failed = self.echoed = self.peak = 0
        super().__init__()

    def taken(self, conn):
        self.waiting.append(self.ctx.wrap_socket(conn, server_side=True,
                                                 do_handshake_on_connect=False))
        self.peak = max(self.peak, len(self.waiting) + self.handshaking)

    def tick(self):
        if not self.accepted:
            return
        allowed = int((time.monotonic() - self.accepted[0]) / PACE) + 1
        while self.waiting and self.done + self.failed + self.handshaking < allowed:
            conn = self.waiting.popleft()
            self.handshaking += 1
            self.sel.register(conn, selectors.EVENT_READ, 'handshake')
            self._handshake(conn)

    def event(self, conn, state, events):
        if state == 'handshake':
            self._handshake(conn)
        else:
            self._echo(conn)

    def _drop(self, conn):
        self.sel.unregister(conn)
        conn.close()

    def _handshake(self, conn):
        try:
            conn.do_handshake()
        except ssl.SSLWantReadError:
            self.sel.modify(conn, selectors.EVENT_READ, 'handshake')
            return
        except ssl.SSLWantWriteError:
            self.sel.modify(conn, selectors.EVENT_WRITE, 'handshake')
            return
        except (ssl.SSLError, OSError):
            self.handshaking -= 1
            self.failed += 1
            self._drop(conn)
            return
        self.handshaking -= 1
        self.done += 1
        self.sel.modify(conn, selectors.EVENT_READ, 'echo')
        self._echo(conn)

    def _echo(self, conn):
        data = b''
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    self._drop(conn)
                    break
                data += chunk
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, OSError):
            self._drop(conn)
        if data and conn.fileno() >= 0:
            self.echoed += len(data)
            conn.settimeout(5.0)        # replies are small: never a long wait
            conn.sendall(data)
            conn.setblocking(False)

    def closing(self):
        for conn in self.waiting:
            conn.close()


class SilentServer(PyServer):
    """Accepts connections and never answers; each is closed when its client closes."""

    def taken(self, conn):
        self.sel.register(conn, selectors.EVENT_READ, 'conn')

    def event(self, conn, state, events):
        try:
            data = conn.recv(65536)
        except ConnectionError:
            data = b''
        if not data:
            self.sel.unregister(conn)
            conn.close()


class ManyTLSConnectionsTest(SockitTest):

    def test_handshakes_in_bounded_waves(self):
        """2000 TLS connections to a server that completes one handshake every 3 ms (6 s for
        all, more than the 5 s timeout): every one connects, since at most 128 are in their
        handshake at a time, and every request is answered."""
        if '/tsan/' in SOCKIT or '/asan/' in SOCKIT:
            self.skipTest('a schedule of 2000 handshakes in 6.7 s: too tight for a sanitizer build')
        server = PacedTLSServer()
        self.addCleanup(server.stop)
        # One request per connection (request j on connection j), 300 a second: light load.
        r, _ = run_bench(['--json', '-c', str(CONNS), '-n', str(CONNS), '--rate', '300',
                          f'tls://127.0.0.1:{server.port},ca={certs().ca_pem}'])
        self.assertEqual(r.returncode, 0, (r.stderr, server.done, server.failed, server.peak))
        self.assertEqual(r.stderr, b'')
        report = json.loads(r.stdout)
        self.assertEqual((report['requests'], report['errors']), (CONNS, 0), report)
        self.assertEqual((report['bytes_sent'], report['bytes_received']),
                         (CONNS * 64, CONNS * 64), report)
        self.assertEqual(server.echoed, CONNS * 64)
        self.assertEqual(len(server.accepted), CONNS)
        self.assertEqual((server.done, server.failed), (CONNS, 0))
        # The server finished a handshake before reading the client's last flight of it: a few
        # more than the wave may be counted in flight here, never all of them.
        self.assertGreaterEqual(server.peak, WAVE // 2)
        self.assertLessEqual(server.peak, WAVE + WAVE // 2)

    def test_timeout_runs_from_each_connection_start(self):
        """129 clients to a server that never answers: the first 128 time out after 5 s, then
        the last one connects and gets 5 s of its own."""
        server = SilentServer()
        self.addCleanup(server.stop)
        r, seconds = run_bench(['-c', str(WAVE + 1), '-n', str(WAVE + 1),
                                f'tls://127.0.0.1:{server.port},ca={certs().ca_pem}'])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.splitlines()[-1],
                         f'sockit: bench tls://127.0.0.1:{server.port}: handshake timed out'.encode())
        self.assertEqual(len(server.accepted), WAVE + 1)
        first, last = server.accepted[0], server.accepted[-1]
        self.assertLess(server.accepted[WAVE - 1] - first, 2.0)
        self.assertGreaterEqual(last - first, CONNECT_TIMEOUT - 0.1)
        self.assertLess(last - first, CONNECT_TIMEOUT + 2.0)
        self.assertGreaterEqual(seconds, 2 * CONNECT_TIMEOUT - 0.1)
        self.assertLess(seconds, 2 * CONNECT_TIMEOUT + 4.0)

    def test_connections_still_opening_at_the_end_of_a_run_are_errors(self):
        """A timed run (-d) whose clients are all still in their handshake when it ends (a
        server that never answers): each counts as an error and the run fails, where it said
        0 requests, 0 errors and exit 0."""
        server = SilentServer()
        self.addCleanup(server.stop)
        r, _ = run_bench(['--json', '-c', '4', '-d', '0.3',
                          f'tls://127.0.0.1:{server.port},ca={certs().ca_pem}'])
        self.assertEqual(r.returncode, 1, r.stderr)
        report = json.loads(r.stdout)
        self.assertEqual((report['requests'], report['errors']), (0, 4), report)
        self.assertEqual(r.stderr.splitlines()[-1],
                         f'sockit: bench tls://127.0.0.1:{server.port}: replies lost or late, '
                         'or connections not opened (4 errors)'.encode())


if __name__ == '__main__':
    unittest.main()
