"""Black-box integration tests for `sockit serve`.

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
Every test starts its own server on port 0, a temporary UNIX path or a unique abstract name,
waits for its `listening on ENDPOINT` lines on stderr, talks to it over loopback only and
stops it again (SIGTERM, then SIGKILL if it does not exit).

    python3 -m unittest discover -s tests/integration -v
"""

import itertools
import os
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from helpers import *  # noqa: F401,F403  (shared with test_connect / test_relay)
from helpers import setUpModule  # noqa: F401

# --------------------------------------------------------------------------- tests

class DefaultServiceTest(ServeTest):

    def test_no_arguments_serves_timestamp_on_tcp_and_udp_21567(self):
        if not port_free(DEFAULT_PORT):
            self.skipTest(f'127.0.0.1:{DEFAULT_PORT} is in use')
        server = self.serve()
        self.assertEqual(server.endpoints,
                         [f'tcp://127.0.0.1:{DEFAULT_PORT}', f'udp://127.0.0.1:{DEFAULT_PORT}'])

        self.stamp_request(server.connect(0), b'hello\n')
        t0 = time.time()
        reply = dgram_request(server.dgram(1), b'hello')
        self.assertStamped(reply, b'hello', t0)

        self.assertEqual(server.stop(), 0)
        self.assertEqual(server.stderr, (f'listening on tcp://127.0.0.1:{DEFAULT_PORT}\n'
                                         f'listening on udp://127.0.0.1:{DEFAULT_PORT}\n').encode())


class EndpointTest(ServeTest):

    def test_listening_lines_are_canonical_and_in_command_line_order(self):
        unix_path, dgram_path = self.path('a.sock'), self.path('b.sock')
        abstract = abstract_name('canon')
        given = ['tcp://127.0.0.1:0', f'unix://{unix_path}', f'unix:{abstract}', 'udp://127.0.0.1:0',
                 f'unixgram://{dgram_path}', 'tcp4://127.0.0.1:0', 'udp4://127.0.0.1:0']
        expected = [r'tcp://127\.0\.0\.1:(\d+)', re.escape(f'unix:{unix_path}'),
                    re.escape(f'unix:{abstract}'), r'udp://127\.0\.0\.1:(\d+)',
                    re.escape(f'unixgram:{dgram_path}'), r'tcp4://127\.0\.0\.1:(\d+)',
                    r'udp4://127\.0\.0\.1:(\d+)']
        if HAVE_IPV6:
            given += ['tcp6://[::1]:0', 'udp://[::1]:0']
            expected += [r'tcp6://\[::1\]:(\d+)', r'udp://\[::1\]:(\d+)']
        server = self.serve(*given)
        self.assertEqual(len(server.endpoints), len(expected), server.endpoints)
        for ep, pattern in zip(server.endpoints, expected):
            m = re.fullmatch(pattern, ep)
            self.assertIsNotNone(m, f'{ep!r} does not match {pattern!r}')
            if m.groups():
                self.assertTrue(0 < int(m.group(1)) < 65536, ep)
        self.assertTrue(stat.S_ISSOCK(os.stat(unix_path).st_mode))
        self.assertTrue(stat.S_ISSOCK(os.stat(dgram_path).st_mode))
        self.assertEqual(server.stop(), 0)
        listening = ''.join(f'listening on {ep}\n' for ep in server.endpoints)
        self.assertEqual(server.stderr, listening.encode(), 'stderr has more than the listening lines')

    def test_host_name_binds_every_address_on_one_port(self):
        addresses = {ai[4][0] for ai in socket.getaddrinfo('localhost', 0, socket.AF_UNSPEC,
                                                           socket.SOCK_STREAM, 0, socket.AI_PASSIVE)}
        if not HAVE_IPV6:
            addresses.discard('::1')
        if '127.0.0.1' not in addresses:
            self.skipTest(f'localhost resolves to {addresses}')
        server = self.serve('tcp://localhost:0', count=1)
        server.stop()
        eps = server.endpoints
        self.assertGreaterEqual(len(eps), 1)
        self.assertLessEqual(len(eps), len(addresses), eps)
        hosts = set()
        for ep in eps:
            family, _, (host, port) = endpoint_address(ep)
            hosts.add(host)
            self.assertEqual(port, server.port(0), f'all addresses must share one port: {eps}')
        self.assertIn('127.0.0.1', hosts)
        self.assertLessEqual(hosts, addresses)

    def test_unix_path_length_limit(self):
        # sun_path holds 108 bytes: 107 for a path (plus its NUL) or for an abstract name.
        path107 = os.path.join(self.tmp, 'p' * (107 - len(self.tmp) - 1))
        name107 = '@' + ('n%d-' % os.getpid()).ljust(107, 'n')
        self.assertEqual(len(path107), 107)
        for ep in (f'unix:{path107}', f'unix:{name107}'):
            with self.subTest(endpoint=ep[:30]):
                server = self.serve(ep)
                self.assertEqual(server.endpoints, [ep])
                self.stamp_request(server.connect(), b'long\n')
                self.assertEqual(server.stop(), 0)
        for ep in (f'unix:{path107}x', f'unix:{name107}x', f'unixgram:{path107}x'):
            with self.subTest(endpoint=ep[:30]):
                self.assertExit(run_sockit(['serve', ep]), 2)
                self.assertFalse(os.path.lexists(path107 + 'x'))

    @unittest.skipUnless(HAVE_IPV6, '::1 cannot be bound')
    def test_ipv6_forced_family_works(self):
        server, idx = self.serve_kinds(['tcp6', 'udp6'], opts=['-s', 'echo'])
        c = server.connect(idx['tcp6'])
        c.sendall(b'v6\n')
        self.assertEqual(recv_exactly(c, 3), b'v6\n')
        self.assertEqual(dgram_request(server.dgram(idx['udp6']), b'six'), b'six')


class TimestampTest(ServeTest):

    def test_a_line_on_every_stream_kind(self):
        server, idx = self.serve_kinds(STREAM_KINDS)
        for kind in STREAM_KINDS:
            with self.subTest(kind=kind):
                self.stamp_request(server.connect(idx[kind]), b'hello\n')

    def test_a_datagram_on_every_datagram_kind(self):
        server, idx = self.serve_kinds(DGRAM_KINDS)
        for kind in DGRAM_KINDS:
            with self.subTest(kind=kind):
                t0 = time.time()
                reply = dgram_request(server.dgram(idx[kind]), b'hello')
                self.assertStamped(reply, b'hello', t0)

    def test_unixgram_client_bound_to_a_path(self):
        server = self.serve(self.endpoint('unixgram'))
        t0 = time.time()
        reply = dgram_request(server.dgram(0, bind_path=self.path('client.sock')), b'path client')
        self.assertStamped(reply, b'path client', t0)

    def test_datagram_payload_is_kept_verbatim(self):
        server, idx = self.serve_kinds(['udp', 'unixgram'])
        for kind in ('udp', 'unixgram'):
            for payload in (b'', b'a\nb\n', b'cr\r\n', b'\x00\xff binary'):
                with self.subTest(kind=kind, payload=payload):
                    t0 = time.time()
                    reply = dgram_request(server.dgram(idx[kind]), payload)
                    self.assertStamped(reply, payload, t0)

    def test_several_lines_in_one_send_are_answered_in_order(self):
        server, idx = self.serve_kinds(['tcp', 'unix'])
        lines = [b'one\n', b'two\r\n', b'\n', b'three with spaces\n', b'\x00\x01\xfe\xff\n']
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                c = server.connect(idx[kind])
                t0 = time.time()
                c.sendall(b''.join(lines))
                for line in lines:
                    self.assertStamped(recv_exactly(c, STAMP_PREFIX_LEN + len(line)), line, t0)

    def test_cr_before_lf_is_kept(self):
        server = self.serve('tcp://127.0.0.1:0')
        self.stamp_request(server.connect(), b'a\r\n')

    def test_unterminated_last_piece_at_eof_counts_as_a_line(self):
        server, idx = self.serve_kinds(['tcp', 'unix'])
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                c = server.connect(idx[kind])
                t0 = time.time()
                c.sendall(b'x')
                c.shutdown(socket.SHUT_WR)
                self.assertStamped(recv_until_eof(c), b'x\n', t0)

    def test_half_close_after_full_lines_gives_replies_then_eof(self):
        server = self.serve('tcp://127.0.0.1:0')
        c = server.connect()
        t0 = time.time()
        c.sendall(b'a\nb\n')
        c.shutdown(socket.SHUT_WR)
        data = recv_until_eof(c)
        self.assertEqual(len(data), 2 * (STAMP_PREFIX_LEN + 2), data)
        self.assertStamped(data[:STAMP_PREFIX_LEN + 2], b'a\n', t0)
        self.assertStamped(data[STAMP_PREFIX_LEN + 2:], b'b\n', t0)

    def test_line_split_across_sends(self):
        server = self.serve('tcp://127.0.0.1:0')
        c = server.connect()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.time()
        c.sendall(b'first\nhel')
        self.assertStamped(recv_exactly(c, STAMP_PREFIX_LEN + 6), b'first\n', t0)
        c.sendall(b'lo\n')
        self.assertStamped(recv_exactly(c, STAMP_PREFIX_LEN + 6), b'hello\n', t0)

    def test_many_pipelined_lines(self):
        server = self.serve('tcp://127.0.0.1:0')
        c = server.connect()
        lines = [b'line %04d\n' % i for i in range(1000)]
        t0 = time.time()
        writer = Writer(c, b''.join(lines), shutdown=True)
        writer.start()
        data = recv_until_eof(c, timeout=15)
        writer.finish()
        self.assertEqual(len(data), sum(STAMP_PREFIX_LEN + len(l) for l in lines))
        pos = 0
        for line in lines:
            n = STAMP_PREFIX_LEN + len(line)
            self.assertStamped(data[pos:pos + n], line, t0)
            pos += n

    def test_default_max_line_is_65536(self):
        server = self.serve('tcp://127.0.0.1:0')
        c = server.connect()
        line = b'a' * 65536 + b'\n'
        t0 = time.time()
        writer = Writer(c, line, shutdown=False)
        writer.start()
        self.assertStamped(recv_exactly(c, STAMP_PREFIX_LEN + len(line)), line, t0)
        writer.finish()
        c = server.connect()
        Writer(c, b'a' * 65537 + b'\n', shutdown=False).start()
        data, _ = read_to_close(c)
        self.assertEqual(data, b'')

    def test_concurrent_clients_get_their_own_answers(self):
        server = self.serve('tcp://127.0.0.1:0')
        clients = [server.connect() for _ in range(20)]
        t0 = time.time()
        for i, c in enumerate(clients):
            c.sendall(b'client %02d\n' % i)
        for i, c in enumerate(clients):
            self.assertStamped(recv_exactly(c, STAMP_PREFIX_LEN + 10), b'client %02d\n' % i, t0)

    def test_dates_are_local_time(self):
        # POSIX TZ "XST-5:30" is 5 h 30 min east of UTC; no zoneinfo files needed.
        offset = 5 * 3600 + 30 * 60
        server, idx = self.serve_kinds(['tcp', 'udp'], env=server_env('XST-5:30'))
        self.stamp_request(server.connect(idx['tcp']), b'tz\n', utc_offset=offset)
        t0 = time.time()
        self.assertStamped(dgram_request(server.dgram(idx['udp']), b'tz'), b'tz', t0, utc_offset=offset)


class EchoTest(ServeTest):

    def test_one_mib_of_binary_is_echoed_byte_exact_on_streams(self):
        server, idx = self.serve_kinds(STREAM_KINDS, opts=['-s', 'echo'])
        for kind in STREAM_KINDS:
            with self.subTest(kind=kind):
                data = os.urandom(MIB)
                c = server.connect(idx[kind])
                writer = Writer(c, data, shutdown=True)
                writer.start()
                got = recv_exactly(c, len(data), timeout=20)
                writer.finish()
                self.assertTrue(got == data, f'{kind}: 1 MiB echo differs')
                self.assertEqual(recv_until_eof(c), b'')

    def test_datagrams_of_0_to_65507_bytes(self):
        server, idx = self.serve_kinds(DGRAM_KINDS, opts=['-s', 'echo'])
        for kind in DGRAM_KINDS:
            for size in (0, 1, 60000, 65507):
                with self.subTest(kind=kind, size=size):
                    payload = os.urandom(size)
                    u = server.dgram(idx[kind], bufsize=256 * 1024)
                    reply = dgram_request(u, payload)
                    self.assertEqual(len(reply), size)
                    self.assertTrue(reply == payload, 'payload differs')

    def test_each_datagram_goes_back_to_its_sender(self):
        server = self.serve('udp://127.0.0.1:0', opts=['-s', 'echo'])
        a, b = server.dgram(0), server.dgram(0)
        for i in range(5):
            a.send(b'from a %d' % i)
            b.send(b'from b %d' % i)
        for i in range(5):
            self.assertEqual(a.recv(100), b'from a %d' % i)
            self.assertEqual(b.recv(100), b'from b %d' % i)

    def test_half_close_flushes_then_eof(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
        c = server.connect()
        c.sendall(b'abc')
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(c), b'abc')


class DiscardTest(ServeTest):

    def test_stream_data_is_dropped_and_half_close_ends_it(self):
        server, idx = self.serve_kinds(['tcp', 'unix'], opts=['-s', 'discard'])
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                c = server.connect(idx[kind])
                writer = Writer(c, os.urandom(256 * 1024) + b'\n', shutdown=True)
                writer.start()
                self.assertEqual(recv_until_eof(c), b'')
                writer.finish()

    def test_datagrams_get_no_answer(self):
        server, idx = self.serve_kinds(['udp', 'unixgram'], opts=['-s', 'discard'])
        for kind in ('udp', 'unixgram'):
            with self.subTest(kind=kind):
                u = server.dgram(idx[kind])
                u.send(b'hello')
                u.send(b'')
                assert_silent(u, 0.3)
        self.assertIsNone(server.proc.poll())


class DaytimeTest(ServeTest):

    def test_stream_one_line_then_close(self):
        server, idx = self.serve_kinds(['tcp', 'unix'], opts=['-s', 'daytime'])
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                t0 = time.time()
                self.assertDaytime(recv_until_eof(server.connect(idx[kind])), t0)

    def test_any_datagram_is_answered_by_the_line(self):
        server, idx = self.serve_kinds(['udp', 'unixgram'], opts=['-s', 'daytime'])
        for kind in ('udp', 'unixgram'):
            for payload in (b'', b'what time is it?'):
                with self.subTest(kind=kind, payload=payload):
                    t0 = time.time()
                    self.assertDaytime(dgram_request(server.dgram(idx[kind]), payload), t0)


class TimeTest(ServeTest):

    def test_stream_four_bytes_then_close(self):
        server, idx = self.serve_kinds(['tcp', 'unix'], opts=['-s', 'time'])
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                t0 = time.time()
                self.assertTime(recv_until_eof(server.connect(idx[kind])), t0)

    def test_any_datagram_is_answered_by_four_bytes(self):
        server, idx = self.serve_kinds(['udp', 'unixgram'], opts=['-s', 'time'])
        for kind in ('udp', 'unixgram'):
            for payload in (b'', b'x' * 100):
                with self.subTest(kind=kind, payload=payload):
                    t0 = time.time()
                    self.assertTime(dgram_request(server.dgram(idx[kind]), payload), t0)


class ChargenTest(ServeTest):

    def test_pattern_helper_matches_rfc_864_example(self):
        self.assertEqual(chargen_line(0), b'!"#$%&\'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ'
                                          b'[\\]^_`abcdefgh\r\n')
        self.assertEqual(chargen_line(1)[:3], b'"#$')
        self.assertEqual(chargen_line(94)[:2], b' !')

    def test_stream_follows_the_pattern_and_server_keeps_serving(self):
        server, idx = self.serve_kinds(['tcp', 'unix'], opts=['-s', 'chargen'])
        expected = chargen_bytes(10000)
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                for attempt in range(2):    # the second connection proves the server goes on
                    c = server.connect(idx[kind])
                    got = recv_exactly(c, len(expected))
                    self.assertEqual(got, expected, f'attempt {attempt}')
                    c.close()

    def test_datagram_is_answered_by_one_pattern_line(self):
        server, idx = self.serve_kinds(['udp', 'unixgram'], opts=['-s', 'chargen'])
        for kind in ('udp', 'unixgram'):
            u = server.dgram(idx[kind])
            for attempt in range(3):
                with self.subTest(kind=kind, attempt=attempt):
                    reply = dgram_request(u, b'')
                    self.assertEqual(len(reply), 74, reply)
                    self.assertTrue(reply.endswith(b'\r\n'), reply)
                    start = CHARGEN_RING.find(reply[:1])
                    self.assertGreaterEqual(start, 0, reply)
                    self.assertEqual(reply, chargen_line((start - 1) % 95))


class ChatTest(ServeTest):

    def join(self, server, members, rcvbuf=None):
        """Connect a new chat client; every member (already in the room) is told.

        Returns (sock, reader, name)."""
        sock = server.connect(rcvbuf=rcvbuf)
        name = inet_endpoint(sock, 'tcp').encode()
        for _, reader, _ in members:
            self.assertEqual(reader.line(), b'* %s joined\n' % name)
        return sock, LineReader(sock), name

    def test_join_talk_nick_and_leave(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'chat'])
        a, b = self.chat_pair(server)
        c = self.join(server, [a, b])
        (sa, ra, na), (sb, rb, nb), (sc, rc, nc) = a, b, c

        sa.sendall(b'hello\n')
        self.assertEqual(rb.line(), b'[%s] hello\n' % na)
        self.assertEqual(rc.line(), b'[%s] hello\n' % na)

        sb.sendall(b'crlf\r\n')      # the CR is stripped; A sees no echo of its own line first
        self.assertEqual(ra.line(), b'[%s] crlf\n' % nb)
        self.assertEqual(rc.line(), b'[%s] crlf\n' % nb)

        sc.sendall(b'one\ntwo\n')
        for r in (ra, rb):
            self.assertEqual(r.line(), b'[%s] one\n' % nc)
            self.assertEqual(r.line(), b'[%s] two\n' % nc)

        sa.sendall(b'/nick alice\n')
        self.assertEqual(rb.line(), b'* %s is now alice\n' % na)
        self.assertEqual(rc.line(), b'* %s is now alice\n' % na)
        sa.sendall(b'hi\n')
        self.assertEqual(rb.line(), b'[alice] hi\n')
        self.assertEqual(rc.line(), b'[alice] hi\n')

        sc.close()
        self.assertEqual(ra.line(), b'* %s left\n' % nc)
        self.assertEqual(rb.line(), b'* %s left\n' % nc)
        sa.close()
        self.assertEqual(rb.line(), b'* alice left\n')
        sb.sendall(b'alone\n')
        assert_silent(sb, 0.2)      # not echoed to the sender

    def test_slow_reader_is_disconnected_without_slowing_the_others(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'chat'])
        a, b = self.chat_pair(server)
        slow = self.join(server, [a, b], rcvbuf=4096)
        (sa, ra, na), (sb, rb, nb), (ss, _, ns) = a, b, slow

        count, body = 200, b'x' * (60 * 1024 - 6)
        lines = [b'%05d %s\n' % (i, body) for i in range(count)]
        writer = Writer(sa, b''.join(lines), shutdown=False, timeout=30)
        writer.start()
        left = b'* %s left\n' % ns
        got, saw_left = 0, False
        deadline = time.monotonic() + 30
        while got < count or not saw_left:
            line = rb.line(timeout=max(0.1, deadline - time.monotonic()))
            if line == left:
                saw_left = True
                continue
            self.assertEqual(line, b'[%s] %s' % (na, lines[got]), f'line {got} for B')
            got += 1
        writer.finish()
        self.assertEqual(ra.line(), left)

        data, how = read_to_close(ss, timeout=10)
        self.assertLess(len(data), count * len(lines[0]), 'slow reader got everything')

    def test_chat_on_a_datagram_endpoint_is_a_usage_error(self):
        self.assertExit(run_sockit(['serve', '-s', 'chat', 'udp://127.0.0.1:0']), 2)


class ExecTest(ServeTest):

    def test_stream_connection_is_stdin_and_stdout(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', 'tr a-z A-Z'])
        c = server.connect()
        c.sendall(b'hello\n')
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(c), b'HELLO\n')

    def test_environment_has_peer_and_local_endpoints(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', 'echo "$SOCKIT_PEER $SOCKIT_LOCAL"'])
        c = server.connect()
        expected = f'{inet_endpoint(c, "tcp")} {server.endpoints[0]}\n'.encode()
        self.assertEqual(recv_until_eof(c), expected)

    def test_child_stderr_is_the_servers_stderr(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', 'echo oops-from-child >&2; echo ok'])
        self.assertEqual(recv_until_eof(server.connect()), b'ok\n')
        self.assertTrue(server.wait_stderr(lambda err: b'oops-from-child\n' in err), server.stderr)

    def test_datagram_payload_is_stdin_and_stdout_is_the_reply(self):
        server, idx = self.serve_kinds(['udp', 'unixgram'], opts=['--exec', 'tr a-z A-Z'])
        for kind in ('udp', 'unixgram'):
            with self.subTest(kind=kind):
                self.assertEqual(dgram_request(server.dgram(idx[kind]), b'abc'), b'ABC')

    def test_empty_output_sends_no_datagram(self):
        server = self.serve('udp://127.0.0.1:0', opts=['--exec', 'cat >/dev/null'])
        u = server.dgram(0)
        u.send(b'abc')
        assert_silent(u, 0.5)

    def test_datagram_child_is_killed_after_exec_timeout(self):
        pid_file = self.path('slow.pid')
        cmd = (f'p=$(cat); if [ "$p" = slow ]; then echo $$ > {pid_file}; exec sleep 30; fi; '
               f'printf "got %s" "$p"')
        server = self.serve('udp://127.0.0.1:0', opts=['--exec', cmd, '--exec-timeout', '0.5'])
        u = server.dgram(0)
        u.send(b'slow')
        assert_silent(u, 1.5)
        self.assertIsNone(server.proc.poll(), 'server died')
        with open(pid_file) as f:
            child = int(f.read())
        deadline = time.monotonic() + 5
        while os.path.exists(f'/proc/{child}') and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(f'/proc/{child}'), 'timed-out child still exists (not killed/reaped)')
        self.assertEqual(dgram_request(u, b'fast'), b'got fast')

    def test_datagram_timeout_kills_the_whole_command(self):
        # `sleep 30` may run as a child of the shell: the timeout must end it too,
        # or every timed-out datagram leaves a process behind.
        server = self.serve('udp://127.0.0.1:0', opts=['--exec', 'sleep 30', '--exec-timeout', '0.5'])
        u = server.dgram(0)
        u.send(b'x')
        deadline = time.monotonic() + TIMEOUT
        procs = descendants(server.pid)
        while not any(cmd.startswith(b'sleep') for cmd in procs.values()):
            self.assertLess(time.monotonic(), deadline, f'no sleep process started: {procs}')
            time.sleep(0.02)
            procs = descendants(server.pid)
        assert_silent(u, 1.0)
        deadline = time.monotonic() + TIMEOUT
        while any(process_alive(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = {p: cmd for p, cmd in procs.items() if process_alive(p)}
        self.assertEqual(survivors, {}, 'processes of the timed-out command still run')
        self.assertIsNone(server.proc.poll(), 'server died')

    def test_command_gets_only_its_stdio(self):
        server, idx = self.serve_kinds(['tcp', 'udp'], opts=['--exec', 'exec ls -l /proc/self/fd'])
        outputs = {'tcp': recv_until_eof(server.connect(idx['tcp'])),
                   'udp': dgram_request(server.dgram(idx['udp']), b'')}
        for kind, output in outputs.items():
            with self.subTest(kind=kind):
                fds = dict(re.findall(r' (\d+) -> (.*)$', output.decode(errors='replace'), re.M))
                self.assertTrue({'0', '1', '2'} <= set(fds), output)
                leaked = {fd: target for fd, target in fds.items()
                          if fd not in ('0', '1', '2') and not re.fullmatch(r'/proc/\d+/fd', target)}
                self.assertEqual(leaked, {}, 'file descriptors leaked into the command')

    def test_no_zombies_after_many_connections(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', 'echo hi'])
        for _ in range(20):
            c = server.connect()
            self.assertEqual(recv_until_eof(c), b'hi\n')
            c.close()
        deadline = time.monotonic() + 5
        zombies = [p for p, state in children(server.pid) if state == 'Z']
        while zombies and time.monotonic() < deadline:
            time.sleep(0.05)
            zombies = [p for p, state in children(server.pid) if state == 'Z']
        self.assertEqual(zombies, [])

    def test_exec_with_service_is_a_usage_error(self):
        self.assertExit(run_sockit(['serve', '-s', 'echo', '--exec', 'cat', 'tcp://127.0.0.1:0']), 2)


class OptionsTest(ServeTest):

    def test_max_conns_closes_the_extra_connection_at_once(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--max-conns', '2'])
        first, second = server.connect(), server.connect()
        self.stamp_request(first, b'1\n')
        self.stamp_request(second, b'2\n')
        third = server.connect()
        self.assertEqual(recv_until_eof(third), b'')
        self.stamp_request(first, b'1 again\n')
        self.stamp_request(second, b'2 again\n')
        # Once a slot is free again a new connection is served (bounded retries).
        first.close()
        for _ in range(50):
            c = server.connect()
            c.sendall(b'later\n')
            try:
                reply = recv_exactly(c, STAMP_PREFIX_LEN + 6, timeout=1)
                break
            except (AssertionError, ConnectionResetError):
                c.close()
                time.sleep(0.05)
        else:
            self.fail('no connection served after a slot was freed')
        self.assertTrue(reply.endswith(b'] later\n'), reply)

    def test_idle_timeout_closes_an_idle_connection(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--idle-timeout', '0.5'])
        c = server.connect()
        start = time.monotonic()
        self.assertEqual(recv_until_eof(c), b'')
        self.assertGreaterEqual(time.monotonic() - start, 0.4)

    def test_idle_timeout_spares_an_active_connection(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--idle-timeout', '0.5'])
        c = server.connect()
        for i in range(4):             # 4 x 0.3 s of activity > 0.5 s idle timeout
            assert_silent(c, 0.3)
            self.stamp_request(c, b'still here %d\n' % i)

    def test_max_line(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--max-line', '10'])
        c = server.connect()
        self.stamp_request(c, b'abcdefghij\n')
        c = server.connect()
        c.sendall(b'abcdefghijk')
        data, _ = read_to_close(c)
        self.assertEqual(data, b'')

    def test_threads(self):
        for threads in ('1', '4'):
            with self.subTest(threads=threads):
                server = self.serve('tcp://127.0.0.1:0', 'udp://127.0.0.1:0', opts=['--threads', threads])
                clients = [server.connect(0) for _ in range(8)]
                t0 = time.time()
                for round_ in range(3):
                    for i, c in enumerate(clients):
                        c.sendall(b'%d-%d\n' % (i, round_))
                    for i, c in enumerate(clients):
                        self.assertStamped(recv_exactly(c, STAMP_PREFIX_LEN + 4), b'%d-%d\n' % (i, round_), t0)
                self.assertStamped(dgram_request(server.dgram(1), b'udp'), b'udp', t0)
                self.assertEqual(server.stop(), 0)

    def test_unix_mode(self):
        for mode in ('600', '640'):
            with self.subTest(mode=mode):
                path, dpath = self.path(f'm{mode}.sock'), self.path(f'd{mode}.sock')
                server = self.serve(f'unix:{path}', f'unixgram:{dpath}', opts=['--unix-mode', mode])
                self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), int(mode, 8))
                self.assertEqual(stat.S_IMODE(os.stat(dpath).st_mode), int(mode, 8))
                self.stamp_request(server.connect(0), b'mode\n')
                self.assertEqual(server.stop(), 0)

    def test_quiet_prints_nothing(self):
        path = self.path('quiet.sock')
        server = Server([f'unix:{path}'], ['-q'])
        self.addCleanup(server.stop)
        # No listening line to wait for: bounded polling for the socket to accept.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.clients.append(c)
            try:
                c.settimeout(TIMEOUT)
                c.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                c.close()
                self.assertIsNone(server.proc.poll(), 'server exited')
                self.assertLess(time.monotonic(), deadline, 'socket never became ready')
                time.sleep(0.02)
        self.stamp_request(c, b'quiet\n')
        self.assertEqual(server.stop(), 0)
        self.assertEqual(server.stderr, b'')


class ShutdownTest(ServeTest):

    def test_sigterm_and_sigint_exit_0_and_remove_socket_files(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig.name):
                path, dpath = self.path(f'{sig.name}.sock'), self.path(f'{sig.name}.dgram')
                server = self.serve(f'unix:{path}', f'unixgram:{dpath}', 'tcp://127.0.0.1:0')
                self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
                self.assertTrue(stat.S_ISSOCK(os.stat(dpath).st_mode))
                start = time.monotonic()
                self.assertEqual(server.stop(sig), 0)
                self.assertLess(time.monotonic() - start, STOP_TIMEOUT)
                self.assertFalse(os.path.lexists(path), 'unix socket file left behind')
                self.assertFalse(os.path.lexists(dpath), 'unixgram socket file left behind')

    def test_existing_regular_file_is_never_touched(self):
        for scheme in ('unix', 'unixgram'):
            with self.subTest(scheme=scheme):
                path = self.path(f'precious-{scheme}.txt')
                with open(path, 'wb') as f:
                    f.write(b'precious data\n')
                r = run_sockit(['serve', f'{scheme}:{path}'])
                self.assertExit(r, 1)
                self.assertTrue(r.stderr.startswith(f'sockit: bind {scheme}:{path}: '.encode()), r.stderr)
                self.assertTrue(stat.S_ISREG(os.lstat(path).st_mode))
                with open(path, 'rb') as f:
                    self.assertEqual(f.read(), b'precious data\n')

    def test_stale_socket_file_is_replaced(self):
        path = self.path('stale.sock')
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(path)            # closed without unlinking: nobody accepts on it
        self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        server = self.serve(f'unix:{path}')
        self.assertEqual(server.endpoints, [f'unix:{path}'])
        self.stamp_request(server.connect(), b'fresh\n')
        self.assertEqual(server.stop(), 0)
        self.assertFalse(os.path.lexists(path))

    def test_live_socket_is_address_in_use(self):
        path = self.path('live.sock')
        live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(live.close)
        live.bind(path)
        live.listen(4)
        self.assertExit(run_sockit(['serve', f'unix:{path}']), 1,
                        f'sockit: bind unix:{path}: address in use')
        # The live socket still works.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(TIMEOUT)
            c.connect(path)
            live.settimeout(TIMEOUT)
            conn, _ = live.accept()
            conn.close()

    def test_reply_in_flight_is_delivered_before_eof(self):
        server = self.serve('tcp://127.0.0.1:0')
        c = server.connect()
        self.stamp_request(c, b'before shutdown\n')
        self.assertEqual(server.stop(close_clients=False), 0)
        self.assertEqual(recv_until_eof(c), b'')

    def test_exec_sessions_end_when_the_server_stops(self):
        # `cat` may run as a child of the shell; it must not keep the connection after the server exits.
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', 'cat'])
        c = server.connect()
        c.sendall(b'ping\n')
        self.assertEqual(recv_exactly(c, 5), b'ping\n')
        procs = descendants(server.pid)
        start = time.monotonic()
        self.assertEqual(server.stop(close_clients=False), 0)
        self.assertLess(time.monotonic() - start, STOP_TIMEOUT)
        try:
            data, _ = read_to_close(c, timeout=TIMEOUT)
        except AssertionError:
            survivors = {p: cmd for p, cmd in procs.items() if process_alive(p)}
            self.fail(f'connection still open {TIMEOUT}s after the server exited; '
                      f'processes of the command still running: {survivors}')
        self.assertEqual(data, b'')

    def test_idle_client_does_not_hold_shutdown(self):
        server = self.serve('tcp://127.0.0.1:0', 'unix:' + self.path('idle.sock'), opts=['-s', 'echo'])
        tcp, unix = server.connect(0), server.connect(1)
        start = time.monotonic()
        self.assertEqual(server.stop(close_clients=False), 0)
        self.assertLess(time.monotonic() - start, STOP_TIMEOUT)
        self.assertEqual(recv_until_eof(tcp), b'')
        self.assertEqual(recv_until_eof(unix), b'')


class BadInputTest(ServeTest):

    def test_unknown_option(self):
        self.assertExit(run_sockit(['--bogus']), 2)
        self.assertExit(run_sockit(['serve', '--bogus']), 2)

    def test_unknown_subcommand(self):
        self.assertExit(run_sockit(['frobnicate']), 2)

    def test_bare_sockit_prints_usage_on_stderr(self):
        r = run_sockit([])
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, b'')
        self.assertIn(b'serve', r.stderr)
        help_ = run_sockit(['--help'])
        self.assertEqual(help_.stdout, r.stderr, 'bare sockit should print the --help usage')

    def test_help(self):
        r = run_sockit(['--help'])
        self.assertEqual((r.returncode, r.stderr), (0, b''))
        self.assertIn(b'serve', r.stdout)

    def test_version(self):
        r = run_sockit(['--version'])
        self.assertEqual((r.returncode, r.stderr), (0, b''))
        self.assertTrue(r.stdout.startswith(b'sockit '), r.stdout)

    def test_serve_help(self):
        r = run_sockit(['serve', '--help'])
        self.assertEqual((r.returncode, r.stderr), (0, b''))
        self.assertIn(b'serve', r.stdout)

    def test_unknown_service(self):
        self.assertExit(run_sockit(['serve', '-s', 'nope', 'tcp://127.0.0.1:0']), 2)

    def test_bad_option_values(self):
        for args in (['--threads', 'abc', 'tcp://127.0.0.1:0'], ['--idle-timeout', 'soon', 'tcp://127.0.0.1:0'],
                     ['--max-line', 'x', 'tcp://127.0.0.1:0'], ['tcp://127.0.0.1:0', '--max-conns'],
                     ['--unix-mode', '999', 'unix:' + self.path('m.sock')],
                     ['--unix-mode', 'rw', 'unix:' + self.path('m.sock')]):
            with self.subTest(args=args):
                self.assertExit(run_sockit(['serve', *args]), 2)

    def test_port_out_of_range(self):
        self.assertExit(run_sockit(['serve', 'tcp://:99999']), 2, 'sockit: tcp://:99999: port out of range 0..65535')

    def test_port_65536_out_of_range(self):
        self.assertExit(run_sockit(['serve', 'tcp://127.0.0.1:65536']), 2,
                        'sockit: tcp://127.0.0.1:65536: port out of range 0..65535')

    def test_unresolvable_host_is_a_runtime_error(self):
        try:
            r = run_sockit(['serve', 'tcp://nonexistent.invalid:0'], timeout=15)
        except subprocess.TimeoutExpired:
            self.skipTest('name resolution is too slow here')
        self.assertExit(r, 1)
        self.assertTrue(r.stderr.startswith(b'sockit: resolve tcp://nonexistent.invalid:0: '), r.stderr)

    def test_same_unix_path_twice(self):
        path = self.path('twice.sock')
        self.assertExit(run_sockit(['serve', f'unix:{path}', f'unix:{path}']), 1,
                        f'sockit: bind unix:{path}: address in use')
        self.assertFalse(os.path.lexists(path), 'socket file of the failed server left behind')

    def test_quiet_still_reports_errors(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(('127.0.0.1', 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            self.assertExit(run_sockit(['serve', '-q', f'tcp://127.0.0.1:{port}']), 1,
                            f'sockit: bind tcp://127.0.0.1:{port}: address in use')

    def test_bad_endpoints(self):
        for ep in ('tcp://127.0.0.1', 'bogus://x:1', 'tcp4://[::1]:0', 'tcp6://127.0.0.1:0',
                   'udp4://[::1]:0', 'udp6://127.0.0.1:0', 'tcp://127.0.0.1:abc', 'tcp://127.0.0.1:-1',
                   'tcp://[::1:0', 'unix:', 'unixgram:', 'unix:/' + 'a' * 200, 'unixgram:/' + 'a' * 200):
            with self.subTest(endpoint=ep):
                self.assertExit(run_sockit(['serve', ep]), 2)

    def test_tcp_address_in_use(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(('127.0.0.1', 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            self.assertExit(run_sockit(['serve', f'tcp://127.0.0.1:{port}']), 1,
                            f'sockit: bind tcp://127.0.0.1:{port}: address in use')

    def test_udp_address_in_use(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
            busy.bind(('127.0.0.1', 0))
            port = busy.getsockname()[1]
            self.assertExit(run_sockit(['serve', f'udp://127.0.0.1:{port}']), 1,
                            f'sockit: bind udp://127.0.0.1:{port}: address in use')

    def test_missing_directory(self):
        r = run_sockit(['serve', 'unix:/nonexistent-dir-xyz/s.sock'])
        self.assertExit(r, 1)
        self.assertTrue(r.stderr.startswith(b'sockit: bind unix:/nonexistent-dir-xyz/s.sock: '), r.stderr)
        self.assertIn(b'no such file or directory', r.stderr)

    def test_privileged_port_needs_privileges(self):
        if os.geteuid() != 0 or SETPRIV is None:
            self.skipTest('needs root and setpriv')
        try:
            with open('/proc/sys/net/ipv4/ip_unprivileged_port_start') as f:
                if int(f.read()) <= 80:
                    self.skipTest('port 80 is unprivileged on this system')
        except OSError:
            pass
        if not os.stat(SOCKIT).st_mode & stat.S_IXOTH:
            self.skipTest('binary not executable by others')
        r = run_sockit(['serve', 'tcp://127.0.0.1:80'],
                       prefix=[SETPRIV, '--reuid=65534', '--regid=65534', '--clear-groups'])
        self.assertExit(r, 1, 'sockit: bind tcp://127.0.0.1:80: permission denied (ports below 1024 need privileges)')

    def test_one_failing_endpoint_means_nothing_is_served(self):
        path = self.path('first.sock')
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
            busy.bind(('127.0.0.1', 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            r = run_sockit(['serve', f'unix:{path}', 'tcp://127.0.0.1:0', f'tcp://127.0.0.1:{port}'])
        self.assertExit(r, 1, f'sockit: bind tcp://127.0.0.1:{port}: address in use')
        self.assertFalse(os.path.lexists(path), 'socket file of the failed server left behind')


class HostileTest(ServeTest):

    def test_reset_in_the_middle_of_replies(self):
        for service in ('chargen', 'echo', 'timestamp'):
            with self.subTest(service=service):
                server = self.serve('tcp://127.0.0.1:0', opts=['-s', service, '--threads', '1'])
                c = server.connect()
                if service == 'chargen':
                    recv_exactly(c, 1000)
                elif service == 'echo':
                    send_without_blocking(c, os.urandom(4096), 8 * MIB)
                else:
                    send_without_blocking(c, b'a line\n' * 100, 8 * MIB)
                rst_close(c)
                self.check_service(server, service)
                self.assertEqual(server.stop(), 0)

    def test_long_line_without_newline_closes_the_connection(self):
        server = self.serve('tcp://127.0.0.1:0')
        c = server.connect()
        writer = Writer(c, b'a' * (100 * 1024), shutdown=False)
        writer.start()
        data, _ = read_to_close(c)
        writer.join(TIMEOUT)
        self.assertEqual(data, b'')
        self.stamp_request(server.connect(), b'next\n')

    def test_partial_line_does_not_block_other_clients(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--threads', '1'])
        lazy = server.connect()
        lazy.sendall(b'no newline yet')
        self.stamp_request(server.connect(), b'other\n')
        lazy.sendall(b'\n')
        self.assertStamped(recv_exactly(lazy, STAMP_PREFIX_LEN + 15), b'no newline yet\n', time.time() - 5)

    def test_client_that_never_reads_does_not_block_echo(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo', '--threads', '1'])
        hog = server.connect(rcvbuf=4096)
        send_without_blocking(hog, os.urandom(64 * 1024), 16 * MIB)
        c = server.connect()
        c.sendall(b'ping\n')
        self.assertEqual(recv_exactly(c, 5), b'ping\n')

    def test_datagrams_from_vanished_senders(self):
        server, idx = self.serve_kinds(['udp', 'unixgram'], opts=['-s', 'echo'])
        for kind in ('udp', 'unixgram'):
            with self.subTest(kind=kind):
                family, _, addr = server.address(idx[kind])
                for i in range(50):     # the replies go nowhere (ICMP unreachable / no such socket)
                    with socket.socket(family, socket.SOCK_DGRAM) as gone:
                        gone.bind('' if family == socket.AF_UNIX else ('127.0.0.1', 0))
                        gone.sendto(b'gone %d' % i, addr)
                u = server.dgram(idx[kind])
                self.assertEqual(dgram_request(u, b'still there'), b'still there')

    def test_connect_and_close_churn(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'daytime'])
        for i in range(100):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(TIMEOUT)
            c.connect(('127.0.0.1', server.port()))
            if i % 2:
                rst_close(c)
            else:
                c.close()
        self.check_service(server, 'daytime')

    def test_garbage_to_every_service(self):
        for service in ('timestamp', 'echo', 'discard', 'daytime', 'time', 'chargen', 'chat', 'exec'):
            with self.subTest(service=service):
                opts = ['--exec', 'cat'] if service == 'exec' else ['-s', service]
                eps = ['tcp://127.0.0.1:0'] + ([] if service == 'chat' else ['udp://127.0.0.1:0'])
                server = self.serve(*eps, opts=opts)
                if service == 'chat':
                    (_, watcher, _), (c, _, name) = self.chat_pair(server)
                else:
                    c = server.connect(0)
                send_without_blocking(c, os.urandom(64 * 1024), 64 * 1024)
                rst_close(c)
                if service == 'chat':
                    line = watcher.line()       # garbage lines are relayed; then the client leaves
                    while line.startswith(b'[%s] ' % name):
                        line = watcher.line()
                    self.assertEqual(line, b'* %s left\n' % name)
                if service != 'chat':
                    u = server.dgram(1)
                    for size in (0, 1, 17, 512, 1400, 9000):
                        u.send(os.urandom(size))
                self.check_service(server, service)
                self.assertEqual(server.stop(), 0)

    def check_service(self, server, service):
        """A fresh TCP client (endpoint 0) is served correctly."""
        self.assertIsNone(server.proc.poll(), 'server exited')
        if service == 'chat':
            (sa, _, na), (_, rb, _) = self.chat_pair(server)
            sa.sendall(b'fresh\n')
            self.assertEqual(rb.line(), b'[%s] fresh\n' % na)
            return
        c = server.connect(0)
        t0 = time.time()
        if service == 'timestamp':
            self.stamp_request(c, b'fresh\n')
        elif service in ('echo', 'exec'):
            c.sendall(b'fresh\n')
            self.assertEqual(recv_exactly(c, 6), b'fresh\n')
        elif service == 'discard':
            c.sendall(b'fresh\n')
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(c), b'')
        elif service == 'daytime':
            self.assertDaytime(recv_until_eof(c), t0)
        elif service == 'time':
            self.assertTime(recv_until_eof(c), t0)
        elif service == 'chargen':
            self.assertEqual(recv_exactly(c, 1000), chargen_bytes(1000))
        c.close()


@unittest.skipIf(SOCAT is None, 'socat is not installed')
class InteropTest(ServeTest):

    def socat(self, input_, *addresses):
        return subprocess.run([SOCAT, *addresses], input=input_, capture_output=True, timeout=10)

    def test_socat_tcp_to_echo(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
        r = self.socat(b'hi\n', '-', f'TCP:127.0.0.1:{server.port()}')
        self.assertEqual((r.returncode, r.stdout), (0, b'hi\n'), r.stderr)

    def test_socat_unix_to_timestamp(self):
        path = self.path('socat.sock')
        server = self.serve(f'unix:{path}')
        t0 = time.time()
        r = self.socat(b'hi\n', '-', f'UNIX-CONNECT:{path}')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertStamped(r.stdout, b'hi\n', t0)

    def test_socat_udp_to_echo(self):
        server = self.serve('udp://127.0.0.1:0', opts=['-s', 'echo'])
        r = self.socat(b'hi\n', '-', f'UDP:127.0.0.1:{server.port()}')
        self.assertEqual((r.returncode, r.stdout), (0, b'hi\n'), r.stderr)


if __name__ == '__main__':
    unittest.main()
