"""Black-box integration tests for `sockit relay`.

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
Targets are `sockit serve` and plain Python sockets; clients are Python sockets. Everything is on
127.0.0.1, ::1, UNIX paths in a temporary directory or abstract names carrying the test's pid.

    python3 -m unittest discover -s tests/integration -v
"""

import os
import signal
import socket
import subprocess
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

STREAM_PAIRS = [('tcp', 'unix'), ('unix', 'tcp'), ('tcp', 'tcp'), ('unix-abstract', 'unix-abstract')]
if HAVE_IPV6:
    STREAM_PAIRS.append(('tcp6', 'tcp'))
DGRAM_PAIRS = [('udp', 'udp'), ('udp', 'unixgram'), ('unixgram', 'udp'), ('unixgram-abstract', 'unixgram')]
if HAVE_IPV6:
    DGRAM_PAIRS.append(('udp6', 'udp'))
DGRAM_SIZES = (1, 1000, 60000)


class RelayTest(SockitTest):

    # Extra relay options for every relay a test class starts. A relay waits up to its drain
    # deadline (default 2 s) for open connections and datagram flows when it is stopped, so the
    # datagram tests use a short one; SignalTest covers the default.
    RELAY_OPTS = ()

    def relay(self, listen, target, opts=(), env=None):
        return super().relay(listen, target, [*self.RELAY_OPTS, *opts], env=env)

    def echo_relay(self, listen_kind, target_kind, opts=(), service='echo'):
        """A `sockit serve -s SERVICE` on target_kind and a relay to it from listen_kind."""
        target = self.serve(self.endpoint(target_kind), opts=['-s', service])
        return self.relay(self.endpoint(listen_kind), target.endpoints[0], opts=opts), target

    def roundtrip(self, sock, data, timeout=10.0):
        """Send data and half-close in a thread while reading everything back until EOF."""
        writer = Writer(sock, data)
        writer.start()
        got = recv_until_eof(sock, timeout=timeout)
        writer.finish()
        if got != data:
            self.fail(f'{len(got)} bytes back instead of {len(data)}; first difference at '
                      f'{first_difference(got, data)}')

    def echo_once(self, sock, payload=b'ping\n'):
        sock.sendall(payload)
        self.assertEqual(recv_exactly(sock, len(payload)), payload)


class StreamTest(RelayTest):

    def test_binary_mib_between_kinds(self):
        data = os.urandom(MIB)
        for listen, target in STREAM_PAIRS:
            with self.subTest(listen=listen, target=target):
                relay, _ = self.echo_relay(listen, target)
                self.roundtrip(relay.connect(), data)

    def test_repeated_transfers_lose_nothing(self):
        # The end of a transfer (client EOF, then the target's last bytes and EOF) is racy inside a
        # relay, so do it many times; a UNIX client side fills up differently from TCP.
        data = os.urandom(MIB)
        rounds = 15

        def echo(conn):                 # a Python echo target, echoing while it reads
            total = 0
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    conn.shutdown(socket.SHUT_WR)
                    return total
                total += len(chunk)
                conn.sendall(chunk)

        for listen, family in (('unix', socket.AF_INET), ('unix-abstract', socket.AF_UNIX), ('tcp', socket.AF_INET)):
            with self.subTest(listen=listen, target=family.name):
                peer = PyStreamServer(self, echo, family=family, path=self.path(f'rep-{listen}.sock'),
                                      count=rounds)
                relay = self.relay(self.endpoint(listen), peer.endpoint())
                for i in range(rounds):
                    c = relay.connect()
                    writer = Writer(c, data)
                    writer.start()
                    got = recv_until_eof(c, timeout=10)
                    writer.finish()
                    c.close()
                    self.assertEqual(len(got), len(data), f'transfer {i}: {len(got)} of {len(data)} bytes')
                    self.assertEqual(got, data, f'transfer {i}')
                self.assertEqual(peer.wait(), [len(data)] * rounds)

    def test_concurrent_clients(self):
        for threads in ('1', '4'):
            with self.subTest(threads=threads):
                relay, _ = self.echo_relay('tcp', 'unix', opts=['--threads', threads])
                clients = [relay.connect() for _ in range(8)]
                blocks = [os.urandom(128 * 1024) for _ in clients]
                writers = [Writer(c, b) for c, b in zip(clients, blocks)]
                for w in writers:
                    w.start()
                for c, b in zip(clients, blocks):
                    self.assertEqual(recv_until_eof(c, timeout=10), b)
                for w in writers:
                    w.finish()

    def test_half_close_from_the_client_is_passed_on(self):
        for listen, target in (('tcp', 'tcp'), ('tcp', 'unix')):
            with self.subTest(listen=listen, target=target):
                relay, _ = self.echo_relay(listen, target, service='timestamp')
                c = relay.connect()
                t0 = time.time()
                c.sendall(b'x')
                c.shutdown(socket.SHUT_WR)
                self.assertStamped(recv_until_eof(c), b'x\n', t0)

    def test_half_close_from_the_target_is_passed_on(self):
        for family in (socket.AF_INET, socket.AF_UNIX):
            with self.subTest(target=family.name):
                def handler(conn):
                    conn.sendall(b'hello')
                    conn.shutdown(socket.SHUT_WR)
                    return read_all(conn)

                peer = PyStreamServer(self, handler, family=family, path=self.path(f'hc-{family.name}.sock'))
                relay = self.relay('tcp://127.0.0.1:0', peer.endpoint())
                c = relay.connect()
                self.assertEqual(recv_until_eof(c), b'hello')
                c.sendall(b'more')
                c.shutdown(socket.SHUT_WR)
                self.assertEqual(peer.wait(), [b'more'])

    def test_target_refuses_then_comes_up(self):
        path = self.path('later.sock')
        relay = self.relay('tcp://127.0.0.1:0', f'unix:{path}')
        c = relay.connect()
        self.assertEqual(read_to_close(c), (b'', 'eof'))
        self.assertIsNone(relay.proc.poll(), 'relay exited')
        self.serve(f'unix:{path}', opts=['-s', 'echo'])
        self.echo_once(relay.connect(), b'now it works\n')

    def test_tcp_target_refuses_then_comes_up(self):
        port = free_port()
        relay = self.relay('unix:' + self.path('front.sock'), f'tcp://127.0.0.1:{port}')
        for _ in range(3):
            self.assertEqual(read_to_close(relay.connect()), (b'', 'eof'))
        self.assertIsNone(relay.proc.poll(), 'relay exited')
        self.serve(f'tcp://127.0.0.1:{port}', opts=['-s', 'echo'])
        self.echo_once(relay.connect(), b'now it works\n')

    def test_client_reset_closes_the_target_side(self):
        def handler(conn):
            try:
                return read_all(conn), 'eof'
            except ConnectionResetError:
                return None, 'reset'

        peer = PyStreamServer(self, handler, count=2)
        relay = self.relay('tcp://127.0.0.1:0', peer.endpoint())
        c = relay.connect()
        c.sendall(b'some bytes')
        self.assertTrue(peer.accepted.wait(TIMEOUT))
        rst_close(c)
        c2 = relay.connect()
        c2.sendall(b'second')
        c2.shutdown(socket.SHUT_WR)
        results = peer.wait()      # both target connections end (EOF or reset) within the timeout
        self.assertEqual(results[1], (b'second', 'eof'))
        self.assertIn(results[0][1], ('eof', 'reset'))

    def test_target_reset_closes_the_client(self):
        peer = PyStreamServer(self, lambda conn: (conn.recv(4), rst_close(conn)), count=1)
        relay = self.relay('tcp://127.0.0.1:0', peer.endpoint())
        c = relay.connect()
        c.sendall(b'boom')
        data, _ = read_to_close(c)
        self.assertEqual(data, b'')
        peer.wait()
        self.assertIsNone(relay.proc.poll(), 'relay exited')

    def test_client_that_never_reads_does_not_block_others(self):
        relay, _ = self.echo_relay('tcp', 'tcp', opts=['--threads', '1'], service='chargen')
        hog = relay.connect(rcvbuf=4096)
        time.sleep(0.3)                 # let the hog's buffers fill up (ordering, not readiness)
        c = relay.connect()
        self.assertEqual(recv_exactly(c, 10000), chargen_bytes(10000))
        c2 = relay.connect()
        self.assertEqual(recv_exactly(c2, 1000), chargen_bytes(1000))
        hog.close()


class DatagramTest(RelayTest):

    RELAY_OPTS = ('--drain-timeout', '0.2')

    def test_sizes_between_kinds(self):
        for listen, target in DGRAM_PAIRS:
            with self.subTest(listen=listen, target=target):
                relay, _ = self.echo_relay(listen, target)
                c = relay.dgram()
                for size in DGRAM_SIZES:
                    payload = os.urandom(size)
                    reply = dgram_request(c, payload)
                    self.assertEqual((len(reply), reply), (size, payload))

    def test_empty_datagram(self):
        relay, _ = self.echo_relay('udp', 'udp')
        c = relay.dgram()
        self.assertEqual(dgram_request(c, b''), b'')
        self.assertEqual(dgram_request(c, b'after'), b'after')

    def test_each_client_gets_only_its_own_replies(self):
        for listen, target in DGRAM_PAIRS[:3]:
            with self.subTest(listen=listen, target=target):
                relay, _ = self.echo_relay(listen, target)
                a, b = relay.dgram(), relay.dgram()
                for i in range(5):
                    a.send(b'A%d' % i)
                    b.send(b'B%d' % i)
                for sock, tag in ((a, b'A'), (b, b'B')):
                    sock.settimeout(TIMEOUT)
                    got = [sock.recv(65536) for _ in range(5)]
                    # UDP does not promise order; the payloads must be exactly this client's.
                    self.assertEqual(sorted(got), [tag + b'%d' % i for i in range(5)])
                assert_silent(a, 0.2)
                assert_silent(b, 0.2)

    def test_one_flow_per_client_address(self):
        peer = PyDgramServer(self, lambda srv, p, a: srv.sock.sendto(p, a))
        relay = self.relay('udp://127.0.0.1:0', peer.endpoint())
        a, b = relay.dgram(), relay.dgram()
        for i in range(3):
            self.assertEqual(dgram_request(a, b'a%d' % i), b'a%d' % i)
            self.assertEqual(dgram_request(b, b'b%d' % i), b'b%d' % i)
        flows = {}
        for payload, source in peer.received:
            flows.setdefault(payload[:1], set()).add(source)
        self.assertEqual(len(flows[b'a']), 1, f'client a used several flows: {flows}')
        self.assertEqual(len(flows[b'b']), 1, f'client b used several flows: {flows}')
        self.assertNotEqual(flows[b'a'], flows[b'b'], 'two clients share one flow')

    def test_flow_idle_timeout(self):
        peer = PyDgramServer(self, lambda srv, p, a: srv.sock.sendto(p, a))
        relay = self.relay('udp://127.0.0.1:0', peer.endpoint(), opts=['--idle-timeout', '0.5'])
        c = relay.dgram()
        for i in range(4):              # 4 x 0.25 s of activity > 0.5 s: still one flow
            self.assertEqual(dgram_request(c, b'busy %d' % i), b'busy %d' % i)
            time.sleep(0.25)
        self.assertEqual(len(set(peer.sources())), 1, peer.received)
        time.sleep(1.5)                 # idle for three timeouts: the flow is dropped
        self.assertEqual(dgram_request(c, b'after idle'), b'after idle')
        sources = peer.sources()
        self.assertNotEqual(sources[-1], sources[0], 'the idle flow was not dropped')

    def test_unreachable_target_then_comes_up(self):
        path = self.path('later-dgram.sock')
        relay = self.relay('udp://127.0.0.1:0', f'unixgram:{path}')
        c = relay.dgram()
        c.send(b'lost')
        assert_silent(c, 0.3)
        self.assertIsNone(relay.proc.poll(), 'relay exited')
        self.serve(f'unixgram:{path}', opts=['-s', 'echo'])
        self.assert_reply_soon(c, b'found', 'the first client')
        self.assert_reply_soon(relay.dgram(), b'found too', 'a new client')

    def test_udp_target_refusing(self):
        port = free_port(socket.SOCK_DGRAM)
        relay = self.relay('udp://127.0.0.1:0', f'udp://127.0.0.1:{port}')
        c = relay.dgram()
        for i in range(20):
            c.send(b'refused %d' % i)
        assert_silent(c, 0.3)
        self.assertIsNone(relay.proc.poll(), 'relay exited')
        try:
            PyDgramServer(self, lambda srv, p, a: srv.sock.sendto(p, a), port=port)
        except OSError:
            self.skipTest(f'udp port {port} was taken in the meantime')
        self.assert_reply_soon(c, b'ok now', 'the refused client')
        self.assert_reply_soon(relay.dgram(), b'new client', 'a new client')

    def assert_reply_soon(self, sock, payload, who):
        """A reply to payload within a few bounded retries (the flow may have to recover)."""
        for _ in range(10):
            try:
                reply = dgram_request(sock, payload, timeout=0.5)
                break
            except (AssertionError, ConnectionRefusedError):
                continue
        else:
            self.fail(f'no reply through the relay for {who} once the target was up')
        self.assertEqual(reply, payload)


class OptionsTest(RelayTest):

    def test_max_conns(self):
        relay, _ = self.echo_relay('tcp', 'tcp', opts=['--max-conns', '1'])
        first = relay.connect()
        self.echo_once(first, b'first\n')
        second = relay.connect()
        self.assertEqual(recv_until_eof(second), b'')
        self.echo_once(first, b'first again\n')
        first.close()
        for _ in range(50):             # once the slot is free a new client is relayed
            c = relay.connect()
            try:
                self.echo_once(c, b'later\n')
                break
            except (AssertionError, ConnectionResetError, BrokenPipeError):
                c.close()
                time.sleep(0.05)
        else:
            self.fail('no connection relayed after the slot was freed')

    def test_idle_timeout_closes_an_idle_connection(self):
        relay, _ = self.echo_relay('tcp', 'unix', opts=['--idle-timeout', '0.5'])
        c = relay.connect()
        self.echo_once(c)
        start = time.monotonic()
        self.assertEqual(recv_until_eof(c), b'')
        self.assertGreaterEqual(time.monotonic() - start, 0.4)

    def test_idle_timeout_spares_an_active_connection(self):
        relay, _ = self.echo_relay('tcp', 'tcp', opts=['--idle-timeout', '0.5'])
        c = relay.connect()
        for i in range(4):              # 4 x 0.3 s of activity > 0.5 s idle timeout
            assert_silent(c, 0.3)
            self.echo_once(c, b'still here %d\n' % i)

    def test_quiet(self):
        target = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
        path = self.path('quiet.sock')
        relay = Server([f'unix:{path}', target.endpoints[0]], ['-q'], command='relay')
        self._watch(relay)
        self.addCleanup(relay.stop)
        c = None
        for _ in range(250):            # -q prints nothing: ready once a connect succeeds
            if relay.proc.poll() is not None:
                break
            try:
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.settimeout(TIMEOUT)
                c.connect(path)
                break
            except OSError:
                c.close()
                c = None
                time.sleep(0.02)
        self.assertIsNotNone(c, 'quiet relay never accepted')
        self.addCleanup(c.close)
        self.echo_once(c)
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(c), b'')
        self.assertEqual(relay.stop(), 0)
        self.assertEqual(relay.stderr, b'')


class SignalTest(RelayTest):

    def test_sigterm_and_sigint(self):
        # SIGTERM with the default drain deadline (2 s), SIGINT with --drain-timeout 0.3; a relayed
        # connection is open and idle in both.
        for sig, opts, bound in ((signal.SIGTERM, [], STOP_TIMEOUT), (signal.SIGINT, ['--drain-timeout', '0.3'], 1.5)):
            with self.subTest(signal=sig.name):
                path = self.path(f'front-{sig.name}.sock')
                target = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
                relay = self.relay(f'unix:{path}', target.endpoints[0], opts=opts)
                self.assertEqual(relay.endpoints, [f'unix:{path}'])
                c = relay.connect()
                self.echo_once(c)
                start = time.monotonic()
                self.assertEqual(relay.stop(sig, close_clients=False), 0)
                self.assertLess(time.monotonic() - start, bound)
                self.assertFalse(os.path.lexists(path), 'relay left its socket file behind')
                self.assertEqual(recv_until_eof(c), b'')
                self.assertEqual(relay.stderr, f'listening on unix:{path}\n'.encode())

    def test_sigterm_datagram_relay(self):
        path = self.path('front.dgram')
        relay, _ = self.echo_relay('udp', 'udp', opts=['--drain-timeout', '0.2'])
        relay2 = self.relay(f'unixgram:{path}', relay.endpoints[0])
        self.assertEqual(dgram_request(relay2.dgram(), b'two hops'), b'two hops')
        start = time.monotonic()
        self.assertEqual(relay2.stop(), 0)
        self.assertLess(time.monotonic() - start, STOP_TIMEOUT)
        self.assertFalse(os.path.lexists(path), 'relay left its socket file behind')


class BadInputTest(RelayTest):

    def run_relay(self, args, timeout=RUN_TIMEOUT):
        try:
            return run_sockit(['relay', *args], timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail(f'sockit relay {args} did not exit within {timeout}s')

    def test_stream_and_datagram_do_not_mix(self):
        p, q = self.path('s.sock'), self.path('d.sock')
        for args in (['tcp://127.0.0.1:0', 'udp://127.0.0.1:9'], ['udp://127.0.0.1:0', 'tcp://127.0.0.1:9'],
                     [f'unix:{p}', f'unixgram:{q}'], [f'unixgram:{q}', 'tcp://127.0.0.1:9'],
                     [f'unix:{p}', 'udp://127.0.0.1:9']):
            with self.subTest(args=args):
                self.assertExit(self.run_relay(args), 2)
                self.assertFalse(os.path.lexists(p) or os.path.lexists(q), 'socket file left behind')

    def test_endpoint_count(self):
        # Several TARGETs are fine (test_relay_targets.py); fewer than one is not.
        for args in ([], ['tcp://127.0.0.1:0']):
            with self.subTest(args=args):
                self.assertExit(self.run_relay(args), 2)

    def test_bad_endpoints(self):
        for args in (['tcp://127.0.0.1:99999', 'tcp://127.0.0.1:9'], ['tcp://127.0.0.1:0', 'tcp://127.0.0.1:99999'],
                     ['bogus://x:1', 'tcp://127.0.0.1:9'], ['tcp://127.0.0.1:0', 'tcp://127.0.0.1'],
                     ['tcp://127.0.0.1:0', 'unix:'], ['unix:/' + 'a' * 200, 'tcp://127.0.0.1:9'],
                     ['tcp4://[::1]:0', 'tcp://127.0.0.1:9']):
            with self.subTest(args=args):
                self.assertExit(self.run_relay(args), 2)
        self.assertExit(self.run_relay(['tcp://127.0.0.1:0', 'tcp://:80']), 2,
                        'sockit: tcp://:80: a connecting side needs a host')

    def test_target_port_0_or_the_relay_itself(self):
        p = self.path('loop.sock')
        for args, line in ((['tcp://127.0.0.1:0', 'tcp://127.0.0.1:0'], 'tcp://127.0.0.1:0: port 0 is no target'),
                           (['udp://127.0.0.1:0', 'udp://127.0.0.1:0'], 'udp://127.0.0.1:0: port 0 is no target'),
                           (['tcp://127.0.0.1:9000', 'tcp://127.0.0.1:9000'],
                            'tcp://127.0.0.1:9000: the relay would connect to itself'),
                           (['udp://127.0.0.1:9000', 'udp://127.0.0.1:9000'],
                            'udp://127.0.0.1:9000: the relay would connect to itself'),
                           ([f'unix:{p}', f'unix:{p}'], f'unix:{p}: the relay would connect to itself')):
            with self.subTest(args=args):
                self.assertExit(self.run_relay(args), 2, f'sockit: {line}')
                self.assertFalse(os.path.lexists(p), 'socket file left behind')

    def test_unknown_or_bad_options(self):
        for args in (['--bogus', 'tcp://127.0.0.1:0', 'tcp://127.0.0.1:9'],
                     ['--max-conns', 'x', 'tcp://127.0.0.1:0', 'tcp://127.0.0.1:9'],
                     ['--idle-timeout', 'soon', 'tcp://127.0.0.1:0', 'tcp://127.0.0.1:9'],
                     ['--threads', 'abc', 'tcp://127.0.0.1:0', 'tcp://127.0.0.1:9'],
                     ['--connect-timeout', 'never', 'tcp://127.0.0.1:0', 'tcp://127.0.0.1:9'],
                     ['-s', 'echo', 'tcp://127.0.0.1:0', 'tcp://127.0.0.1:9'],
                     ['tcp://127.0.0.1:0', 'tcp://127.0.0.1:9', '--max-conns']):
            with self.subTest(args=args):
                self.assertExit(self.run_relay(args), 2)

    def test_target_name_not_resolved(self):
        path = self.path('unresolved.sock')
        for listen in ('tcp://127.0.0.1:0', f'unix:{path}'):
            with self.subTest(listen=listen):
                try:
                    r = run_sockit(['relay', listen, 'tcp://nonexistent.invalid:80'], timeout=15)
                except subprocess.TimeoutExpired:
                    self.skipTest('name resolution is too slow here')
                self.assertExit(r, 1, 'sockit: resolve tcp://nonexistent.invalid:80: name not resolved')
                self.assertFalse(os.path.lexists(path), 'socket file left behind')

    def test_listen_address_in_use(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(('127.0.0.1', 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            self.assertExit(self.run_relay([f'tcp://127.0.0.1:{port}', 'tcp://127.0.0.1:9']), 1,
                            f'sockit: bind tcp://127.0.0.1:{port}: address in use')
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
            busy.bind(('127.0.0.1', 0))
            port = busy.getsockname()[1]
            self.assertExit(self.run_relay([f'udp://127.0.0.1:{port}', 'udp://127.0.0.1:9']), 1,
                            f'sockit: bind udp://127.0.0.1:{port}: address in use')
        path = self.path('live.sock')
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
            live.bind(path)
            live.listen(1)
            self.assertExit(self.run_relay([f'unix:{path}', 'tcp://127.0.0.1:9']), 1,
                            f'sockit: bind unix:{path}: address in use')
            self.assertTrue(os.path.exists(path), 'the live socket file was removed')

    def test_help(self):
        for flag in ('--help', '-h'):
            with self.subTest(flag=flag):
                r = run_sockit(['relay', flag])
                self.assertEqual((r.returncode, r.stderr), (0, b''))
                self.assertIn(b'sockit relay', r.stdout)


if __name__ == '__main__':
    unittest.main()
