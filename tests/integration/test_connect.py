"""Black-box integration tests for `sockit connect`.

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
Peers are `sockit serve`, plain Python sockets and socat (when installed), all on 127.0.0.1, ::1,
UNIX paths in a temporary directory or abstract names carrying the test's pid.

    python3 -m unittest discover -s tests/integration -v
"""

import os
import select
import socket
import subprocess
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

STAMP_LINE = rb'\[' + DATE_PATTERN + rb'\] '



def start_connect(test, peer):
    """`sockit connect` to peer with all three pipes; ended and reaped at cleanup."""
    proc = subprocess.Popen([SOCKIT, 'connect', peer.endpoint()], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server_env())

    def reap():
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()

    test.addCleanup(reap)
    return proc

class ConnectTest(SockitTest):

    def assertStampedLines(self, data, bodies, t0):
        """data is exactly one `[DATE] BODY\\n` line per body, dates between t0 and now."""
        lines = data.split(b'\n')
        self.assertEqual(lines[-1], b'', f'output does not end in LF: {data!r}')
        self.assertEqual(len(lines) - 1, len(bodies), data)
        for line, body in zip(lines, bodies):
            self.assertStamped(line + b'\n', body + b'\n', t0)


class StreamTest(ConnectTest):

    def test_binary_mib_through_echo_on_every_stream_kind(self):
        server, idx = self.serve_kinds(STREAM_KINDS, opts=['-s', 'echo'])
        data = os.urandom(MIB)
        for kind in STREAM_KINDS:
            with self.subTest(kind=kind):
                result, _ = self.connect_run([server.endpoints[idx[kind]]], data, timeout=15)
                self.assertClean(result, data)

    def test_more_than_both_socket_buffers_through_a_unix_echo(self):
        # The echo stops reading while its replies are not read: connect
        # must read them while stdin waits, or both wait forever.
        # A file on stdin is read as fast as the connection takes it.
        server = self.serve('unix:' + self.path('big.sock'), opts=['-s', 'echo'])
        data = os.urandom(8 * MIB)
        with open(self.path('big.in'), 'wb') as f:
            f.write(data)
        with open(self.path('big.in'), 'rb') as stdin:
            try:
                result = subprocess.run([SOCKIT, 'connect', server.endpoints[0]], stdin=stdin,
                                        capture_output=True, timeout=20, env=server_env())
            except subprocess.TimeoutExpired as e:
                self.fail(f'no end within 20 s; {len(e.stdout or b"")} bytes back')
        self.assertClean(result, data)

    def test_endpoint_spellings(self):
        path = self.path('spell.sock')
        server = self.serve('tcp://127.0.0.1:0', f'unix:{path}', opts=['-s', 'echo'])
        port = server.port(0)
        for ep in (f'tcp4://127.0.0.1:{port}', f'tcp://localhost:{port}', f'unix://{path}'):
            with self.subTest(endpoint=ep):
                if 'localhost' in ep and '127.0.0.1' not in {
                        ai[4][0] for ai in socket.getaddrinfo('localhost', port, socket.AF_INET)}:
                    self.skipTest('localhost does not resolve to 127.0.0.1')
                result, _ = self.connect_run([ep], b'spelled\n')
                self.assertClean(result, b'spelled\n')

    def test_half_close_at_stdin_eof(self):
        # The timestamp server answers the unterminated `b` only once it sees the half-close.
        server, idx = self.serve_kinds(['tcp', 'unix'])
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                t0 = time.time()
                result, _ = self.connect_run([server.endpoints[idx[kind]]], b'a\nb')
                self.assertEqual((result.returncode, result.stderr), (0, b''))
                self.assertStampedLines(result.stdout, [b'a', b'b'], t0)

    def test_empty_stdin_still_reads_until_the_peer_closes(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'daytime'])
        t0 = time.time()
        result, _ = self.connect_run([server.endpoints[0]], b'')
        self.assertEqual((result.returncode, result.stderr), (0, b''))
        self.assertDaytime(result.stdout, t0)

    def test_peer_half_closes_first_and_stdin_is_still_sent(self):
        data = os.urandom(200 * 1024)

        def handler(conn):
            conn.shutdown(socket.SHUT_WR)
            return read_all(conn)

        peer = PyStreamServer(self, handler)
        proc = start_connect(self, peer)
        self.assertTrue(peer.accepted.wait(TIMEOUT), 'sockit connect never connected')
        # Let sockit see the peer's EOF before any stdin arrives (ordering, not readiness).
        time.sleep(0.2)
        try:
            out, err = proc.communicate(data, timeout=10)
        except subprocess.TimeoutExpired:
            self.fail('sockit connect did not exit after stdin EOF although the peer had closed')
        self.assertEqual((proc.returncode, out, err), (0, b'', b''))
        got = peer.wait()[0]
        self.assertEqual(len(got), len(data))
        self.assertEqual(got, data)

    def test_peer_half_closes_first_with_stdin_still_open(self):
        # The peer's EOF must not end the session while stdin is open: later input is still sent.
        def handler(conn):
            conn.sendall(b'greeting\n')
            conn.shutdown(socket.SHUT_WR)
            return read_all(conn)

        peer = PyStreamServer(self, handler)
        proc = start_connect(self, peer)
        self.assertEqual(self._read_pipe(proc.stdout, 9), b'greeting\n')
        self.assertIsNone(proc.poll(), 'sockit connect exited at the peer\'s EOF with stdin still open')
        proc.stdin.write(b'late ')
        proc.stdin.flush()
        try:
            out, err = proc.communicate(b'input', timeout=10)
        except subprocess.TimeoutExpired:
            self.fail('sockit connect did not exit after stdin EOF')
        self.assertEqual((proc.returncode, out, err), (0, b'', b''))
        self.assertEqual(peer.wait(), [b'late input'])

    def _read_pipe(self, pipe, n, timeout=TIMEOUT):
        """n bytes from a child's output pipe (fewer on EOF), bounded by timeout."""
        deadline = time.monotonic() + timeout
        buf = b''
        while len(buf) < n:
            readable, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                self.fail(f'no output within {timeout}s; got {buf!r}')
            chunk = os.read(pipe.fileno(), n - len(buf))
            if not chunk:
                break
            buf += chunk
        return buf

    def test_python_server_that_answers_after_eof(self):
        data = os.urandom(64 * 1024)
        for family in (socket.AF_INET, socket.AF_UNIX):
            with self.subTest(family=family.name):
                peer = PyStreamServer(self, lambda conn: conn.sendall(read_all(conn)[::-1]), family=family,
                                      path=self.path(f'py-{family.name}.sock'))
                result, _ = self.connect_run([peer.endpoint()], data)
                self.assertClean(result, data[::-1])
                peer.wait()


@unittest.skipIf(SOCAT is None, 'socat is not installed')
class SocatTest(ConnectTest):

    def socat(self, listen, action, probe):
        """Start a forking socat listener; ready once probe() connects (bounded retries)."""
        err = open(self.path('socat.err'), 'w+b')
        self.addCleanup(err.close)
        proc = subprocess.Popen([SOCAT, '-t', '5', listen, action], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)

        def stop():
            if proc.poll() is None:
                proc.kill()
            proc.wait(TIMEOUT)
        self.addCleanup(stop)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err.seek(0)
                self.fail(f'socat exited with {proc.returncode}: {err.read(4000)!r}')
            try:
                with probe() as s:
                    s.settimeout(TIMEOUT)
                    return proc
            except OSError:
                time.sleep(0.02)
        self.fail('socat did not start listening')

    def test_socat_tcp_exec_tr(self):
        port = free_port()
        self.socat(f'TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork', 'EXEC:tr a-z A-Z',
                   lambda: socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT))
        result, _ = self.connect_run([f'tcp://127.0.0.1:{port}'], b'hello world\nline two')
        self.assertClean(result, b'HELLO WORLD\nLINE TWO')

    def test_socat_unix_system_cat_binary(self):
        path = self.path('socat.sock')

        def probe():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(TIMEOUT)
                s.connect(path)
            except OSError:
                s.close()
                raise
            return s
        self.socat(f'UNIX-LISTEN:{path},fork', 'SYSTEM:cat', probe)
        data = os.urandom(256 * 1024)
        result, _ = self.connect_run([f'unix:{path}'], data)
        self.assertClean(result, data)


class DatagramTest(ConnectTest):

    def test_lines_are_datagrams_on_every_datagram_kind(self):
        server, idx = self.serve_kinds(DGRAM_KINDS, opts=['-s', 'echo'])
        for kind in DGRAM_KINDS:
            with self.subTest(kind=kind):
                result, elapsed = self.connect_run(['-w', '0.3', server.endpoints[idx[kind]]],
                                                   b'a\nbb\n\nlast')
                self.assertClean(result, b'a\nbb\n\nlast\n')
                self.assertLess(elapsed, 2.0)

    def test_timestamp_replies_get_a_newline(self):
        server = self.serve('udp://127.0.0.1:0')
        t0 = time.time()
        result, _ = self.connect_run(['-w', '0.3', server.endpoints[0]], b'one\ntwo\n')
        self.assertEqual((result.returncode, result.stderr), (0, b''))
        self.assertStampedLines(result.stdout, [b'one', b'two'], t0)

    def test_reply_ending_in_lf_gets_no_second_lf(self):
        # Each line arrives with its LF (as nc sends it); the handler answers by the line's text.
        def handler(srv, payload, address):
            payload = payload[:-1] if payload.endswith(b'\n') else payload
            if payload == b'multi':
                srv.sock.sendto(b'first\nsecond', address)
            elif payload == b'twice':
                srv.sock.sendto(b'1', address)
                srv.sock.sendto(b'2\n', address)
            else:
                srv.sock.sendto(payload.upper() + (b'\n' if payload.startswith(b'lf') else b''), address)

        for family in (socket.AF_INET, socket.AF_UNIX):
            with self.subTest(family=family.name):
                peer = PyDgramServer(self, handler, family=family, path=self.path(f'd-{family.name}.sock'))
                result, _ = self.connect_run(['-w', '0.3', peer.endpoint()],
                                             b'lf-yes\nno-lf\nmulti\ntwice\n')
                self.assertClean(result, b'LF-YES\nNO-LF\nfirst\nsecond\n1\n2\n')
                self.assertEqual([p for p, _ in peer.received],
                                 [b'lf-yes\n', b'no-lf\n', b'multi\n', b'twice\n'])

    def test_default_wait_is_one_second(self):
        server = self.serve('udp://127.0.0.1:0', opts=['-s', 'echo'])
        result, elapsed = self.connect_run([server.endpoints[0]], b'x\n')
        self.assertClean(result, b'x\n')
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 3.0)

    def test_wait_bounds_late_replies(self):
        peer = PyDgramServer(self, lambda srv, p, a: srv.reply_later(0.6, b'late ' + p, a))
        result, elapsed = self.connect_run(['-w', '1.5', peer.endpoint()], b'one')
        self.assertClean(result, b'late one\n')
        self.assertLess(elapsed, 3.5)
        peer2 = PyDgramServer(self, lambda srv, p, a: srv.reply_later(1.2, b'too late ' + p, a))
        result, elapsed = self.connect_run(['-w', '0.2', peer2.endpoint()], b'two')
        self.assertClean(result, b'')
        self.assertLess(elapsed, 1.1)
        self.assertEqual([p for p, _ in peer2.received], [b'two'])

    def test_unixgram_client_has_an_address_of_its_own(self):
        path = self.path('who.sock')
        peer = PyDgramServer(self, lambda srv, p, a: srv.sock.sendto(b'%r' % (a,), a),
                             family=socket.AF_UNIX, path=path)
        result, _ = self.connect_run(['-w', '0.3', f'unixgram:{path}'], b'who\n')
        self.assertEqual((result.returncode, result.stderr), (0, b''))
        (_, address), = peer.received
        self.assertTrue(address, 'the datagram came from an unbound socket')
        self.assertEqual(result.stdout, b'%r\n' % (address,))


class FailureTest(ConnectTest):

    def assertConnectFails(self, args, endpoint, reason, input_=b'', code=1):
        result, _ = self.connect_run(args, input_)
        self.assertExit(result, code, f'sockit: connect {endpoint}: {reason}')

    def test_tcp_refused(self):
        port = free_port()
        ep = f'tcp://127.0.0.1:{port}'
        self.assertConnectFails([ep], ep, 'connection refused', b'never sent\n')

    @unittest.skipUnless(HAVE_IPV6, '::1 cannot be bound')
    def test_tcp6_refused(self):
        port = free_port(host='::1')
        ep = f'tcp://[::1]:{port}'
        self.assertConnectFails([ep], ep, 'connection refused')

    def test_udp_refused(self):
        port = free_port(socket.SOCK_DGRAM)
        ep = f'udp://127.0.0.1:{port}'
        self.assertConnectFails(['-w', '1', ep], ep, 'connection refused', b'anyone there?\n')

    def test_unix_path_missing(self):
        for scheme in ('unix', 'unixgram'):
            with self.subTest(scheme=scheme):
                ep = f'{scheme}:{self.path("missing.sock")}'
                self.assertConnectFails([ep], ep, 'no such file or directory', b'x\n')

    def test_unix_nobody_listening(self):
        path = self.path('stale.sock')
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(path)                # a socket file nobody accepts on
        self.assertConnectFails([f'unix:{path}'], f'unix:{path}', 'connection refused')

    def test_reset_by_peer(self):
        def handler(conn):
            got = conn.recv(5)
            rst_close(conn)
            return got

        peer = PyStreamServer(self, handler)
        result, _ = self.connect_run([peer.endpoint()], b'hello, are you there?\n')
        self.assertEqual(peer.wait(), [b'hello'])
        self.assertExit(result, 1)
        self.assertTrue(result.stderr.startswith(f'sockit: connect {peer.endpoint()}: '.encode()), result.stderr)

    def test_reset_by_peer_while_stdin_is_open(self):
        peer = PyStreamServer(self, lambda conn: (conn.sendall(b'partial'), rst_close(conn)))
        proc = start_connect(self, peer)
        peer.wait()
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail('sockit connect did not notice the reset while waiting for stdin')
        out, err = proc.stdout.read(), proc.stderr.read()
        self.assertEqual(proc.returncode, 1, err)
        self.assertTrue(err.startswith(f'sockit: connect {peer.endpoint()}: '.encode()), err)
        self.assertEqual(err.count(b'\n'), 1, err)
        self.assertIn(out, (b'', b'partial'))

    def test_connect_timeout(self):
        # A deterministic timeout on loopback: a port whose SYNs go unanswered.
        ep = f'tcp://127.0.0.1:{self.full_backlog_port()}'
        result, elapsed = self.connect_run(['-w', '0.5', ep], b'x\n')
        self.assertExit(result, 1)
        self.assertTrue(result.stderr.startswith(f'sockit: connect {ep}: '.encode()), result.stderr)
        self.assertIn(b'timed out', result.stderr)
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 3.0)


class UsageTest(ConnectTest):

    def assertUsage(self, args, message=None):
        result, _ = self.connect_run(args, b'')
        self.assertExit(result, 2, message)

    def test_endpoint_count(self):
        for args in ([], ['tcp://127.0.0.1:9', 'tcp://127.0.0.1:10'], ['-w', '1']):
            with self.subTest(args=args):
                self.assertUsage(args)

    def test_port_out_of_range(self):
        self.assertUsage(['tcp://:99999'], 'sockit: tcp://:99999: port out of range 0..65535')
        self.assertUsage(['tcp://127.0.0.1:65536'], 'sockit: tcp://127.0.0.1:65536: port out of range 0..65535')

    def test_a_connecting_side_needs_a_host(self):
        self.assertUsage(['tcp://:80'], 'sockit: tcp://:80: a connecting side needs a host')
        self.assertUsage(['udp://:53'], 'sockit: udp://:53: a connecting side needs a host')

    def test_bad_endpoints(self):
        for ep in ('tcp://127.0.0.1', 'bogus://x:1', 'tcp4://[::1]:1', 'tcp6://127.0.0.1:1',
                   'tcp://127.0.0.1:abc', 'tcp://[::1:1', 'unix:', 'unixgram:', 'unix:/' + 'a' * 200):
            with self.subTest(endpoint=ep):
                self.assertUsage([ep])

    def test_unknown_option(self):
        self.assertUsage(['--bogus', 'tcp://127.0.0.1:9'])
        self.assertUsage(['-Z', 'tcp://127.0.0.1:9'])

    def test_bad_wait(self):
        for args in (['-w', 'soon', 'udp://127.0.0.1:9'], ['-w', '-1', 'udp://127.0.0.1:9'],
                     ['udp://127.0.0.1:9', '-w']):
            with self.subTest(args=args):
                self.assertUsage(args)

    def test_help(self):
        for flag in ('--help', '-h'):
            with self.subTest(flag=flag):
                result, _ = self.connect_run([flag])
                self.assertEqual((result.returncode, result.stderr), (0, b''))
                self.assertIn(b'sockit connect', result.stdout)
                self.assertIn(b'-w', result.stdout)


if __name__ == '__main__':
    unittest.main()
