"""Black-box integration tests of `unixpacket:` endpoints (AF_UNIX SOCK_SEQPACKET): connections
that keep message boundaries.

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
Servers listen on UNIX paths in a temporary directory or abstract names carrying the test's pid;
clients are Python SEQPACKET sockets, `sockit connect` and `sockit bench`. Each message a client
sends must come back as the service's answer to that message alone, never joined to another or
cut.

    python3 -m unittest test_unixpacket -v      (in tests/integration)
"""

import json
import os
import select
import socket
import subprocess
import threading
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

MESSAGE_MAX = 65536                         # SK_MESSAGE_MAX: the longest message either way
RECV_SIZE = 4 * MESSAGE_MAX                 # more than any message, so that none is cut
STAMP_ANSWERED_MAX = MESSAGE_MAX - STAMP_PREFIX_LEN


def packet_address(endpoint):
    """The socket address of a canonical `unixpacket:` endpoint."""
    prefix = 'unixpacket:'
    if not endpoint.startswith(prefix):
        raise AssertionError(f'not a unixpacket endpoint: {endpoint!r}')
    path = endpoint[len(prefix):]
    return '\0' + path[1:] if path.startswith('@') else path


class PacketTest(SockitTest):
    """SockitTest plus SEQPACKET clients: whole messages in, whole messages out."""

    def serve_packet(self, service, opts=(), name=None):
        """`sockit serve -s SERVICE` on one unixpacket endpoint; returns its canonical endpoint."""
        endpoint = 'unixpacket:' + (name or self.path(f'{service}.sock'))
        server = self.serve(endpoint, opts=['-s', service, *opts])
        self.assertEqual(server.endpoints, [endpoint])
        return server.endpoints[0]

    def client(self, endpoint, timeout=TIMEOUT):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(sock.close)
        sock.settimeout(timeout)
        sock.connect(packet_address(endpoint))
        return sock

    def message(self, sock, timeout=TIMEOUT):
        """The next message (b'' at the end), whole; fails after timeout."""
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            self.fail(f'no message within {timeout}s')
        data, _, flags, _ = sock.recvmsg(RECV_SIZE)
        self.assertFalse(flags & socket.MSG_TRUNC, 'a message longer than the test reads')
        return data

    def messages(self, sock, n, timeout=TIMEOUT):
        return [self.message(sock, timeout) for _ in range(n)]

    def assertEnd(self, sock, timeout=TIMEOUT):
        """The peer closes: the next read is the end, with no message before it."""
        self.assertEqual(self.message(sock, timeout), b'')

    def send_until_full(self, sock, payload, limit=100000):
        """Sends payload as messages until the socket would block; returns how many went."""
        sock.setblocking(False)
        sent = 0
        try:
            while sent < limit:
                sock.send(payload)
                sent += 1
        except BlockingIOError:
            pass
        sock.settimeout(TIMEOUT)
        return sent


# --------------------------------------------------------------------------- services

class ServiceTest(PacketTest):

    def test_timestamp_answers_each_message_whole(self):
        sock = self.client(self.serve_packet('timestamp'))
        bodies = [b'hello', b'two\nlines\n', b'\r\n', b'\n', b'x' * 1000, bytes(range(256))]
        t0 = time.time()
        for body in bodies:
            sock.send(body)
        for body in bodies:
            self.assertStamped(self.message(sock), body, t0)
        sock.shutdown(socket.SHUT_WR)
        self.assertEnd(sock)

    def test_timestamp_max_line_does_not_apply_to_messages(self):
        sock = self.client(self.serve_packet('timestamp', opts=['--max-line', '16']))
        body = b'0123456789\n' * 100
        t0 = time.time()
        sock.send(body)
        self.assertStamped(self.message(sock), body, t0)

    def test_timestamp_longest_message_answered_whole_then_one_too_long_closes(self):
        sock = self.client(self.serve_packet('timestamp'))
        longest = b'y' * STAMP_ANSWERED_MAX
        t0 = time.time()
        sock.send(longest)
        reply = self.message(sock)
        self.assertEqual(len(reply), MESSAGE_MAX)
        self.assertStamped(reply, longest, t0)
        # The reply to one byte more would not fit a message: the replies queued before it
        # are sent, then the connection closes.
        sock.send(b'before')
        sock.send(longest + b'y')
        self.assertStamped(self.message(sock), b'before', t0)
        self.assertEnd(sock)

    def test_echo_keeps_each_message_whole(self):
        sock = self.client(self.serve_packet('echo'))
        sizes = (1, 1000, MESSAGE_MAX, 3, MESSAGE_MAX - 1)
        payloads = [os.urandom(n) for n in sizes]
        for payload in payloads:                # all sent before any is read
            sock.send(payload)
        for payload in payloads:
            self.assertEqual(self.message(sock), payload)
        sock.shutdown(socket.SHUT_WR)
        self.assertEnd(sock)

    def test_echo_message_over_the_limit_closes_the_connection(self):
        endpoint = self.serve_packet('echo')
        sock = self.client(endpoint)
        sock.send(b'first')
        self.assertEqual(self.message(sock), b'first')
        sock.send(b'z' * (MESSAGE_MAX + 1))
        self.assertEnd(sock)
        # The server goes on.
        other = self.client(endpoint)
        other.send(b'still here')
        self.assertEqual(self.message(other), b'still here')

    def test_discard_answers_nothing(self):
        sock = self.client(self.serve_packet('discard'))
        for n in (1, 1000, MESSAGE_MAX):
            sock.send(b'd' * n)
        assert_silent(sock, 0.3)
        sock.shutdown(socket.SHUT_WR)
        self.assertEnd(sock)

    def test_daytime_is_one_message_then_the_end(self):
        sock = self.client(self.serve_packet('daytime'))
        t0 = time.time()
        self.assertDaytime(self.message(sock), t0)
        self.assertEnd(sock)

    def test_time_is_one_message_then_the_end(self):
        sock = self.client(self.serve_packet('time'))
        t0 = time.time()
        self.assertTime(self.message(sock), t0)
        self.assertEnd(sock)

    def test_chargen_sends_one_line_per_message_round_the_ring(self):
        sock = self.client(self.serve_packet('chargen'))
        assert_silent(sock, 0.2)                # nothing before the first message
        count = 2 * 95 + 10
        for i in range(count):
            sock.send(b'?' if i % 2 else b'any message\n')
        self.assertEqual(self.messages(sock, count), [chargen_line(i) for i in range(count)])
        assert_silent(sock, 0.2)
        sock.shutdown(socket.SHUT_WR)           # no more messages: no more lines
        self.assertEnd(sock)

    def test_chargen_client_that_does_not_read_gets_every_line_later(self):
        sock = self.client(self.serve_packet('chargen'))
        sent = self.send_until_full(sock, b'!')
        self.assertGreater(sent, 0)
        got = self.messages(sock, sent)
        self.assertEqual(got, [chargen_line(i) for i in range(sent)])
        sock.shutdown(socket.SHUT_WR)
        self.assertEnd(sock)


class ChatTest(PacketTest):

    def test_chat_between_message_and_stream_members(self):
        packet = 'unixpacket:' + self.path('chat.sock')
        stream = 'unix:' + self.path('chat-stream.sock')
        server = self.serve(packet, stream, opts=['-s', 'chat'])
        alice = self.client(packet)
        alice.send(b'/who')
        self.assertEqual(self.message(alice), b'* unix#1')
        alice.send(b'/nick alice\n')

        bob = self.client(packet)
        self.assertEqual(self.message(alice), b'* unix#2 joined')
        bob.send(b'/nick bob')
        self.assertEqual(self.message(alice), b'* unix#2 is now bob')

        carol = server.connect(server.index('unix:'))
        carol_lines = LineReader(carol)
        self.assertEqual(self.messages(alice, 1) + self.messages(bob, 1),
                         [b'* unix#3 joined'] * 2)

        # One message, one line: its LF or CRLF dropped; never echoed to the sender.
        bob.send(b'hello\r\n')
        self.assertEqual(self.message(alice), b'[bob] hello')
        self.assertEqual(carol_lines.line(), b'[bob] hello\n')

        # A message with LFs inside is that many lines: a stream member cannot be sent a
        # line that looks like someone else's.
        bob.send(b'one\ntwo\r\n\n[alice] three')
        expected = [b'[bob] one', b'[bob] two', b'[bob] ', b'[bob] [alice] three']
        self.assertEqual(self.messages(alice, 4), expected)
        self.assertEqual([carol_lines.line() for _ in expected], [m + b'\n' for m in expected])

        carol.sendall(b'from the stream\n')
        self.assertEqual(self.message(alice), b'[unix#3] from the stream')
        self.assertEqual(self.message(bob), b'[unix#3] from the stream')

        bob.send(b'/me waves')
        self.assertEqual(self.message(alice), b'* bob waves')
        self.assertEqual(carol_lines.line(), b'* bob waves\n')

        # Answers to the sender alone, one message each.
        bob.send(b'/nick alice')
        self.assertEqual(self.message(bob), b'* nick alice: taken')
        bob.send(b'/bogus word')
        self.assertEqual(self.message(bob), b'* unknown command /bogus')
        bob.send(b'/who')
        self.assertEqual(sorted(self.messages(bob, 3)), [b'* alice', b'* bob', b'* unix#3'])
        assert_silent(alice, 0.2)

        bob.send(b'/quit')
        self.assertEnd(bob)
        self.assertEqual(self.message(alice), b'* bob left')
        self.assertEqual(carol_lines.line(), b'* bob left\n')

        alice.shutdown(socket.SHUT_WR)
        self.assertEnd(alice)
        self.assertEqual(carol_lines.line(), b'* alice left\n')

    def test_chat_line_longer_than_max_line_closes_that_member(self):
        endpoint = self.serve_packet('chat', opts=['--max-line', '100'])
        alice, bob = self.client(endpoint), self.client(endpoint)
        self.assertEqual(self.message(alice), b'* unix#2 joined')
        bob.send(b'b' * 100)
        self.assertEqual(self.message(alice), b'[unix#2] ' + b'b' * 100)
        bob.send(b'b' * 101)
        self.assertEnd(bob)
        self.assertEqual(self.message(alice), b'* unix#2 left')


# --------------------------------------------------------------------------- connect

class ConnectTest(PacketTest):

    def test_each_line_is_one_message_and_each_reply_a_line(self):
        path = self.path('py.sock')
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(listener.close)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(TIMEOUT)
        received = []

        def peer():
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                while True:                         # until connect's end of stdin
                    data = conn.recv(RECV_SIZE)
                    if not data:
                        break
                    received.append(data)
                for reply in (b'one', b'two\n', b'three\r\n', b'\n'):
                    conn.send(reply)

        thread = threading.Thread(target=peer, daemon=True)
        thread.start()
        result, _ = self.connect_run([f'unixpacket:{path}'], b'a\nbb\r\n\nccc')
        thread.join(TIMEOUT)
        self.assertEqual(received, [b'a', b'bb\r', b'ccc'])
        self.assertClean(result, b'one\ntwo\nthree\r\n\n')

    def test_echo_through_connect(self):
        endpoint = self.serve_packet('echo')
        big = b'q' * MESSAGE_MAX
        result, _ = self.connect_run([endpoint], b'hello\nworld\n\n\n' + big + b'\nlast')
        self.assertClean(result, b'hello\nworld\n' + big + b'\nlast\n')

    def test_timestamp_through_connect(self):
        endpoint = self.serve_packet('timestamp')
        t0 = time.time()
        result, _ = self.connect_run([endpoint], b'one\ntwo\n')
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, b'')
        lines = result.stdout.split(b'\n')
        self.assertEqual(lines[-1], b'', result.stdout)
        self.assertEqual(len(lines), 3, result.stdout)
        for line, body in zip(lines, (b'one', b'two')):
            self.assertStamped(line, body, t0)

    def test_chargen_through_connect_ends_with_stdin(self):
        endpoint = self.serve_packet('chargen')
        result, _ = self.connect_run([endpoint], b'1\n2\n3\n')
        self.assertClean(result, b''.join(chargen_line(i) for i in range(3)))

    def test_daytime_through_connect(self):
        endpoint = self.serve_packet('daytime')
        t0 = time.time()
        result, _ = self.connect_run([endpoint], b'')
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertDaytime(result.stdout, t0)

    def test_line_longer_than_a_message_is_an_error(self):
        endpoint = self.serve_packet('echo')
        result, _ = self.connect_run([endpoint], b'ok\n' + b'w' * (MESSAGE_MAX + 1) + b'\n')
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stderr, f'sockit: connect {endpoint}: message too long\n'.encode())

    def test_nobody_listening_is_exit_1(self):
        endpoint = 'unixpacket:' + self.path('none.sock')
        result, _ = self.connect_run([endpoint], b'x\n')
        self.assertEqual(result.returncode, 1)
        self.assertTrue(result.stderr.startswith(f'sockit: connect {endpoint}: '.encode()),
                        result.stderr)


# --------------------------------------------------------------------------- relay and bench

class RelayTest(PacketTest):

    def test_relay_between_unixpacket_endpoints_keeps_each_message(self):
        target = self.serve_packet('echo')
        relay = self.relay('unixpacket:' + self.path('relay.sock'), target)
        sock = self.client(relay.endpoints[0])
        payloads = [os.urandom(n) for n in (1, 1000, MESSAGE_MAX, 2, 500)]
        for payload in payloads:                # all sent before any is read
            sock.send(payload)
        for payload in payloads:
            self.assertEqual(self.message(sock), payload)
        sock.shutdown(socket.SHUT_WR)           # passed on: the echo closes, then the relay
        self.assertEnd(sock)

    def test_relay_between_unixpacket_and_a_byte_stream_is_a_usage_error(self):
        packet, stream = 'unixpacket:' + self.path('p.sock'), 'unix:' + self.path('s.sock')
        for listen, target in ((packet, stream), (stream, packet)):
            with self.subTest(listen=listen, target=target):
                self.assertExit(run_sockit(['relay', listen, target]), 2)

    def test_relay_between_abstract_names(self):
        target = self.serve_packet('timestamp', name=abstract_name('pkt-target'))
        relay = self.relay('unixpacket:' + abstract_name('pkt-relay'), target)
        sock = self.client(relay.endpoints[0])
        t0 = time.time()
        for body in (b'a\nb', b'c'):
            sock.send(body)
        self.assertStamped(self.message(sock), b'a\nb', t0)
        self.assertStamped(self.message(sock), b'c', t0)


class BenchTest(PacketTest):

    def bench(self, *args):
        result = subprocess.run([SOCKIT, 'bench', '--json', *args], stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=20, env=server_env())
        self.assertEqual(result.returncode, 0, f'stderr {result.stderr!r}')
        self.assertEqual(result.stderr, b'')
        return json.loads(result.stdout)

    def test_bench_against_echo(self):
        endpoint = self.serve_packet('echo')
        for args in (('-c', '2'), ('-c', '3', '--pipeline', '8', '--size', '1000'),
                     ('-c', '2', '--connect'), ('-c', '1', '--pipeline', '4', '--size', '65536')):
            with self.subTest(args=args):
                report = self.bench('-n', '400', *args, endpoint)
                self.assertEqual((report['requests'], report['errors']), (400, 0), report)

    def test_each_request_is_one_message(self):
        path = self.path('py-echo.sock')
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(listener.close)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(TIMEOUT)
        sizes = []

        def echo():
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                while True:
                    data = conn.recv(RECV_SIZE)
                    if not data:
                        return
                    sizes.append(len(data))
                    conn.send(data)

        thread = threading.Thread(target=echo, daemon=True)
        thread.start()
        report = self.bench('-n', '64', '-c', '1', '--pipeline', '8', '--size', '100',
                            f'unixpacket:{path}')
        thread.join(TIMEOUT)
        self.assertEqual(report['requests'], 64, report)
        self.assertEqual(sizes, [100] * 64)

    def test_size_over_a_message_is_a_usage_error(self):
        endpoint = 'unixpacket:' + self.path('unused.sock')
        result = run_sockit(['bench', '--size', str(MESSAGE_MAX + 1), endpoint])
        self.assertExit(result, 2)


# --------------------------------------------------------------------------- names

class AbstractNameTest(PacketTest):

    def test_abstract_name_serves_and_connects(self):
        name = abstract_name('pkt')
        endpoint = self.serve_packet('echo', name=name)
        self.assertEqual(endpoint, f'unixpacket:{name}')
        sock = self.client(endpoint)
        sock.send(b'abstract')
        self.assertEqual(self.message(sock), b'abstract')
        result, _ = self.connect_run([endpoint], b'via connect\n')
        self.assertClean(result, b'via connect\n')


if __name__ == '__main__':
    unittest.main()
