"""Black-box integration tests for the log of `sockit serve` and `sockit relay` on stderr: the
`open`/`close` lines of -v (peer, listener, duration, bytes, reason), --log-json, the escaping of
a peer's chosen name, the warnings that are logged without -v (one a second per kind, with
`(and N more like it)`), and SIGHUP, which never stops a server without TLS.

Every socket is on 127.0.0.1, ::1 or a UNIX name (a path in a temporary directory, or an abstract
name carrying the test's pid).

    cd tests/integration && SOCKIT=build/sockit python3 -m unittest test_observe -v
"""

import calendar
import itertools
import json
import os
import re
import signal
import socket
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

STAMP = re.compile(rb'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z sockit: ')
JSON_STAMP = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z')
CLOSE = r'close {peer} on {local} after (\d+\.\d{{3}}) s, (\d+) bytes in, (\d+) bytes out: (.*)'
WEIRD_NAME = b'we"ird\\name\n\xff'                      # bound as b'\0' + WEIRD_NAME + a tag
WEIRD_TEXT = 'unix:@we"ird\\\\name\\x0a\\xff'           # as sk_endpoint_format writes it
_tags = itertools.count()


def unique_tag():
    """A suffix that keeps an abstract name of this test process its own."""
    return f'-{os.getpid()}-{next(_tags)}'


def stamp_ms(text):
    """Unix time in ms of an ISO 8601 UTC stamp such as 2026-12-01T23:59:59.123Z."""
    day, ms = text[:19], text[20:23]
    return calendar.timegm(time.strptime(day, '%Y-%m-%dT%H:%M:%S')) * 1000 + int(ms)


def texts(stderr):
    """The log lines (timestamp and `sockit: ` checked, then stripped) as str."""
    out = []
    for line in log_lines(stderr):
        assert line.startswith(b'sockit: '), line
        out.append(line[len(b'sockit: '):].decode('ascii'))
    return out


def stamps(stderr):
    """The timestamps (unix ms) of the log lines."""
    return [stamp_ms((m.group(1) + b'.' + m.group(2)).decode())
            for m in map(STAMP.match, stderr.splitlines()) if m]


def records(test, stderr):
    """Every stderr line of a --log-json server but its `listening on` lines, parsed."""
    out = []
    for line in stderr.splitlines():
        if line.startswith(b'listening on '):
            continue
        test.assertTrue(all(b < 0x80 for b in line), f'a raw non-ASCII byte in {line!r}')
        try:
            r = json.loads(line)
        except ValueError as e:
            test.fail(f'not JSON ({e}): {line!r}')
        test.assertIsInstance(r, dict, line)
        test.assertRegex(r.pop('ts', ''), r'\A' + JSON_STAMP.pattern + r'\Z', line)
        out.append(r)
    return out


def limit_counts(lines, local):
    """[(port, N)] of the `connection limit reached` lines of listener local."""
    pat = re.compile(re.escape(f'{local}: connection limit reached (1), closing ') +
                     r'tcp://127\.0\.0\.1:(\d+)(?: \(and (\d+) more like it\))?')
    found = []
    for line in lines:
        m = pat.fullmatch(line)
        if m:
            found.append((int(m.group(1)), int(m.group(2) or 0)))
    return found


def peer_text(sock, kind):
    if kind.startswith('tcp'):
        return inet_endpoint(sock, 'tcp')
    return 'unix:(unnamed)'             # a client that did not bind has no name


class ObserveTest(SockitTest):

    def wait_log(self, server, pred, what):
        """Waits (bounded) until pred(text log lines) holds."""
        if not server.wait_stderr(lambda e: pred(texts(e))):
            self.fail(f'{what}: not logged within {TIMEOUT}s; stderr {server.stderr!r}')
        return texts(server.stderr)

    def wait_line(self, server, line):
        return self.wait_log(server, lambda ls: line in ls, repr(line))

    def wait_close(self, server, peer, local):
        pat = re.compile(CLOSE.format(peer=re.escape(peer), local=re.escape(local)))
        self.wait_log(server, lambda ls: any(pat.fullmatch(x) for x in ls), f'close of {peer}')
        return [pat.fullmatch(x) for x in texts(server.stderr) if pat.fullmatch(x)][0]

    def echo_once(self, sock, payload=b'hello'):
        sock.sendall(payload)
        self.assertEqual(recv_exactly(sock, len(payload)), payload)

    def refused(self, server, i=0):
        """A client that the server closes at once, unserved; returns its port (TCP)."""
        c = server.connect(i)
        name = c.getsockname()
        self.assertEqual(read_to_close(c), (b'', 'eof'))
        c.close()
        return name[1] if isinstance(name, tuple) else None


# --------------------------------------------------------------------------- -v: open and close

class VerboseTest(ObserveTest):

    def test_open_and_close_of_an_echo_client(self):
        for kind in STREAM_KINDS:
            with self.subTest(kind=kind):
                server = self.serve(self.endpoint(kind), opts=['-s', 'echo', '-v'],
                                    env=server_env('JST-9'))        # the log is UTC anyway
                local = server.endpoints[0]
                t0 = time.time()
                start = time.monotonic()
                c = server.connect()
                peer = peer_text(c, kind)
                self.echo_once(c)
                c.close()
                m = self.wait_close(server, peer, local)
                elapsed, t1 = time.monotonic() - start, time.time()
                self.assertEqual(m.group(2, 3, 4), ('5', '5', 'peer closed'))
                self.assertLessEqual(float(m.group(1)), elapsed + 0.001)
                lines = texts(server.stderr)
                self.assertEqual(lines, [f'open {peer} on {local}', m.group(0)])
                for ms in stamps(server.stderr):
                    self.assertGreaterEqual(ms, int(t0 * 1000) - 1)
                    self.assertLessEqual(ms, int(t1 * 1000) + 1)

    def test_closed_by_the_service(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'daytime', '-v'])
        c = server.connect()
        peer = inet_endpoint(c, 'tcp')
        data = recv_until_eof(c)
        self.assertEqual(len(data), 26, data)
        m = self.wait_close(server, peer, server.endpoints[0])
        self.assertEqual(m.group(2, 3, 4), ('0', '26', 'closed by the service'))

    def test_idle_timeout(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo', '-v', '--idle-timeout', '0.3'])
        c = server.connect()
        peer = inet_endpoint(c, 'tcp')
        self.echo_once(c)
        self.assertEqual(read_to_close(c), (b'', 'eof'))
        m = self.wait_close(server, peer, server.endpoints[0])
        self.assertEqual(m.group(2, 3, 4), ('5', '5', 'idle timeout'))
        self.assertGreaterEqual(float(m.group(1)), 0.3)
        self.assertLess(float(m.group(1)), 1.5)

    def test_connection_reset_by_the_client(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo', '-v'])
        c = server.connect()
        peer = inet_endpoint(c, 'tcp')
        self.echo_once(c)
        rst_close(c)
        m = self.wait_close(server, peer, server.endpoints[0])
        self.assertEqual(m.group(2, 3, 4), ('5', '5', 'connection reset by peer'))

    def test_server_stopped_after_the_drain_timeout(self):
        server = self.serve('tcp://127.0.0.1:0',
                            opts=['--exec', 'cat; sleep 30', '-v', '--drain-timeout', '0.3'])
        c = server.connect()
        peer = inet_endpoint(c, 'tcp')
        self.echo_once(c)           # the command runs: the connection is its, past the drain
        self.assertEqual(server.stop(close_clients=False), 0)
        self.assertEqual(read_to_close(c)[0], b'')
        lines = texts(server.stderr)
        pat = re.compile(CLOSE.format(peer=re.escape(peer), local=re.escape(server.endpoints[0])))
        closes = [pat.fullmatch(x) for x in lines if pat.fullmatch(x)]
        self.assertEqual(len(closes), 1, lines)
        self.assertEqual(closes[0].group(4), 'server stopped')
        self.assertGreaterEqual(float(closes[0].group(1)), 0.3)

    def test_server_stopped_at_a_second_signal(self):
        target = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
        relay = self.relay('tcp://127.0.0.1:0', target.endpoints[0], opts=['-v', '--drain-timeout', '30'])
        c = relay.connect()
        peer = inet_endpoint(c, 'tcp')
        self.echo_once(c)
        relay.proc.send_signal(signal.SIGTERM)
        self.wait_refusing(relay)           # the first signal was taken: draining
        t0 = time.monotonic()
        self.assertEqual(relay.stop(close_clients=False), 0)
        self.assertLess(time.monotonic() - t0, 5.0, 'a second signal stops at once')
        pat = re.compile(CLOSE.format(peer=re.escape(peer), local=re.escape(relay.endpoints[0])))
        closes = [pat.fullmatch(x) for x in texts(relay.stderr) if pat.fullmatch(x)]
        self.assertEqual([m.group(4) for m in closes], ['server stopped'], relay.stderr)

    def wait_refusing(self, server, timeout=TIMEOUT):
        family, _, addr = server.address(0)
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(TIMEOUT)
                try:
                    s.connect(addr)
                except (ConnectionRefusedError, ConnectionResetError):
                    return          # the listener is shut down (or its backlog swept)
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.fail(f'{server.endpoints[0]} still accepts {timeout}s after SIGTERM')

    def test_relay_close_line_counts_the_relayed_bytes(self):
        # The relay's own close line of a client: 5 bytes passed each way. The pair that carried
        # them ended cleanly (both ways shut); the line says so without naming who went first.
        target = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
        relay = self.relay('tcp://127.0.0.1:0', target.endpoints[0], opts=['-v'])
        c = relay.connect()
        peer = inet_endpoint(c, 'tcp')
        self.echo_once(c)
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(c), b'')
        m = self.wait_close(relay, peer, relay.endpoints[0])
        self.assertEqual(m.group(2, 3, 4), ('5', '5', 'ended'), m.group(0))

    def test_a_long_peer_name_keeps_the_whole_close_line(self):
        # A peer may bind the longest abstract name there is (107 bytes), each byte written \xNN.
        for json_ in (False, True):
            with self.subTest(json=json_):
                tag = unique_tag()
                peer = f'unix:@{tag}' + '\\xff' * (107 - len(tag))
                server = self.serve(self.endpoint('unix'), opts=['-s', 'echo', '-v']
                                    + (['--log-json'] if json_ else []))
                local = server.endpoints[0]
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                server.clients.append(c)
                c.bind(b'\0' + tag.encode() + b'\xff' * (107 - len(tag)))
                c.settimeout(TIMEOUT)
                c.connect(server.address(0)[2])
                self.echo_once(c)
                c.close()
                self.assertTrue(server.wait_stderr(lambda e: e.count(b'\n') >= 3), server.stderr)
                self.assertEqual(server.stop(), 0)
                if json_:
                    opened, closed = records(self, server.stderr)
                    self.assertEqual((closed['peer'], closed['reason']), (peer, 'peer closed'))
                    lines = [opened['message'], closed['message']]
                else:
                    lines = texts(server.stderr)
                self.assertEqual(lines[0], f'open {peer} on {local}')
                self.assertTrue(lines[1].endswith(', 5 bytes in, 5 bytes out: peer closed'),
                                f'{len(lines[1])} characters, ending {lines[1][-60:]!r}')
                self.assertRegex(lines[1], r'\A' + CLOSE.format(peer=re.escape(peer), local=re.escape(local))
                                 + r'\Z')


# --------------------------------------------------------------------------- a peer's own name

class PeerNameTest(ObserveTest):

    def weird_client(self, server):
        """A client bound to a name with a quote, a backslash, a newline and 0xff; its text."""
        tag = unique_tag()
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.clients.append(c)
        c.bind(b'\0' + WEIRD_NAME + tag.encode())
        c.settimeout(TIMEOUT)
        c.connect(server.address(0)[2])
        self.echo_once(c)
        c.close()
        return WEIRD_TEXT + tag

    def test_text_line_escapes_the_name(self):
        server = self.serve(self.endpoint('unix'), opts=['-s', 'echo', '-v'])
        weird = self.weird_client(server)
        local = server.endpoints[0]
        self.wait_close(server, weird, local)
        self.assertEqual(server.stop(), 0)
        err = server.stderr
        self.assertNotIn(b'\xff', err)
        lines = err.splitlines()
        self.assertEqual(len(lines), 3, err)                # listening, open, close: no raw newline
        self.assertEqual(lines[0], f'listening on {local}'.encode())
        self.assertEqual(texts(err)[0], f'open {weird} on {local}')
        self.assertRegex(texts(err)[1], r'\A' + CLOSE.format(
            peer=re.escape(weird), local=re.escape(local)).replace(r'(.*)', 'peer closed') + r'\Z')

    def test_json_line_carries_the_escaped_name(self):
        server = self.serve(self.endpoint('unix'), opts=['-s', 'echo', '-v', '--log-json'])
        weird = self.weird_client(server)
        local = server.endpoints[0]
        self.assertTrue(server.wait_stderr(lambda e: b'"close"' in e), server.stderr)
        self.assertEqual(server.stop(), 0)
        self.assertNotIn(b'\xff', server.stderr)
        self.assertEqual(len(server.stderr.splitlines()), 3, server.stderr)
        opened, closed = records(self, server.stderr)
        self.assertEqual(opened, {'event': 'open', 'peer': weird, 'local': local,
                                  'message': f'open {weird} on {local}'})
        d = closed.pop('duration_s')
        self.assertEqual(closed, {
            'event': 'close', 'peer': weird, 'local': local, 'bytes_in': 5, 'bytes_out': 5,
            'reason': 'peer closed',
            'message': f'close {weird} on {local} after {d:.3f} s, 5 bytes in, 5 bytes out: peer closed'})


# --------------------------------------------------------------------------- --log-json

class JsonTest(ObserveTest):

    def test_open_close_and_refusal_records(self):
        server = self.serve('tcp://127.0.0.1:0', self.endpoint('unix'),
                            opts=['-s', 'echo', '-v', '--log-json', '--deny', 'uid:%d' % os.getuid()])
        local, ulocal = server.endpoints
        t0 = time.time()
        c = server.connect()
        peer = inet_endpoint(c, 'tcp')
        self.echo_once(c)
        c.close()
        self.assertTrue(server.wait_stderr(lambda e: b'"close"' in e), server.stderr)
        self.refused(server, 1)
        self.assertTrue(server.wait_stderr(lambda e: b'"refused"' in e), server.stderr)
        t1 = time.time()
        self.assertEqual(server.stop(), 0)
        for line in server.stderr.splitlines()[2:]:
            ms = stamp_ms(json.loads(line)['ts'])
            self.assertTrue(int(t0 * 1000) - 1 <= ms <= int(t1 * 1000) + 1, line)
        opened, closed, refused = records(self, server.stderr)
        self.assertEqual(opened, {'event': 'open', 'peer': peer, 'local': local,
                                  'message': f'open {peer} on {local}'})
        d = closed.pop('duration_s')
        self.assertIsInstance(d, float)
        self.assertTrue(0 <= d <= t1 - t0 + 0.001, d)
        self.assertEqual(closed, {
            'event': 'close', 'peer': peer, 'local': local, 'bytes_in': 5, 'bytes_out': 5,
            'reason': 'peer closed',
            'message': f'close {peer} on {local} after {d:.3f} s, 5 bytes in, 5 bytes out: peer closed'})
        self.assertEqual(refused, {'event': 'refused', 'peer': 'unix:(unnamed)', 'local': ulocal,
                                   'reason': 'access rules',
                                   'message': 'refused unix:(unnamed): access rules'})

    def test_json_close_reasons(self):
        cases = ((['-s', 'daytime'], None, 0, 26, 'closed by the service'),
                 (['-s', 'echo', '--idle-timeout', '0.3'], 'idle', 5, 5, 'idle timeout'),
                 (['-s', 'echo'], 'reset', 5, 5, 'connection reset by peer'))
        for opts, how, nin, nout, reason in cases:
            with self.subTest(reason=reason):
                server = self.serve('tcp://127.0.0.1:0', opts=[*opts, '-v', '--log-json'])
                c = server.connect()
                peer = inet_endpoint(c, 'tcp')
                if how is None:
                    self.assertEqual(len(recv_until_eof(c)), 26)
                else:
                    self.echo_once(c)
                    if how == 'idle':
                        self.assertEqual(read_to_close(c), (b'', 'eof'))
                    else:
                        rst_close(c)
                self.assertTrue(server.wait_stderr(lambda e: b'"close"' in e), server.stderr)
                self.assertEqual(server.stop(), 0)
                closed = records(self, server.stderr)[1]
                self.assertEqual({k: closed.get(k) for k in ('event', 'peer', 'bytes_in', 'bytes_out',
                                                             'reason')},
                                 {'event': 'close', 'peer': peer, 'bytes_in': nin, 'bytes_out': nout,
                                  'reason': reason})
                self.assertTrue(closed['message'].endswith(f', {nin} bytes in, {nout} bytes out: {reason}'))


# --------------------------------------------------------------------------- warnings without -v

class WarningTest(ObserveTest):

    def test_connection_limit(self):
        for json_ in (False, True):
            with self.subTest(json=json_):
                server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo', '--max-conns', '1']
                                    + (['--log-json'] if json_ else []))
                local = server.endpoints[0]
                held = server.connect()
                self.echo_once(held)
                port = self.refused(server)
                peer = f'tcp://127.0.0.1:{port}'
                line = f'{local}: connection limit reached (1), closing {peer}'
                self.echo_once(held)
                if json_:
                    self.assertTrue(server.wait_stderr(lambda e: b'"limit"' in e), server.stderr)
                else:
                    self.wait_line(server, line)
                held.close()
                self.assertEqual(server.stop(), 0)
                if json_:
                    self.assertEqual(records(self, server.stderr), [{
                        'event': 'limit', 'peer': peer, 'local': local,
                        'reason': 'connection limit reached', 'message': line, 'warning': True}])
                else:
                    self.assertEqual(texts(server.stderr), [line])

    def test_connection_limit_flood_is_rate_limited(self):
        for json_ in (False, True):
            with self.subTest(json=json_):
                server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo', '--max-conns', '1']
                                    + (['--log-json'] if json_ else []))
                local = server.endpoints[0]
                held = server.connect()
                self.echo_once(held)
                start = time.monotonic()
                ports = [self.refused(server) for _ in range(40)]
                flood = time.monotonic() - start
                time.sleep(1.1)             # the limiter's period (1 s) has passed
                last = self.refused(server)
                ports.append(last)
                self.assertTrue(server.wait_stderr(lambda e: b':%d' % last in e), server.stderr)
                self.echo_once(held)
                held.close()
                self.assertEqual(server.stop(), 0)
                if json_:
                    recs = records(self, server.stderr)
                    for r in recs:
                        self.assertEqual((r['event'], r['local'], r['warning'], r['reason']),
                                         ('limit', local, True, 'connection limit reached'))
                        self.assertTrue(r['message'].startswith(f'{local}: connection limit reached '
                                                                f'(1), closing {r["peer"]}'), r)
                    counts = [(int(r['peer'].rsplit(':', 1)[1]), r.get('suppressed', 0)) for r in recs]
                    self.assertNotIn(0, [r.get('suppressed', 1) for r in recs], 'suppressed: 0 given')
                else:
                    counts = limit_counts(texts(server.stderr), local)
                    self.assertEqual(len(counts), len(texts(server.stderr)), server.stderr)
                self.assertLessEqual(len(counts) - 1, 1 + flood + 1, counts)
                self.assertEqual(counts[-1][0], last, 'the client after a quiet second has a line')
                self.assertGreater(counts[-1][1], 0, 'the line after suppressed ones says so')
                self.assertEqual(sum(1 + n for _, n in counts), len(ports), counts)
                for port, _ in counts:
                    self.assertIn(port, ports)
                st = stamps(server.stderr) if not json_ else [stamp_ms(json.loads(x)['ts'])
                                                              for x in server.stderr.splitlines()[1:]]
                for a, b in zip(st, st[1:]):
                    self.assertGreaterEqual(b - a, 990, f'two limit lines {b - a} ms apart')

    def test_too_many_from_one_source(self):
        for opts in ([], ['--log-json']):
            with self.subTest(opts=opts):
                server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo', '--max-per-source', '1', *opts])
                held = server.connect()
                self.echo_once(held)
                peer = f'tcp://127.0.0.1:{self.refused(server)}'
                line = f'refused {peer}: too many connections from this source'
                self.echo_once(held)
                self.assertTrue(server.wait_stderr(lambda e: peer.encode() in e), server.stderr)
                held.close()
                self.assertEqual(server.stop(), 0)
                if opts:
                    self.assertEqual(records(self, server.stderr), [{
                        'event': 'limit', 'peer': peer, 'local': server.endpoints[0],
                        'reason': 'too many connections from this source', 'message': line,
                        'warning': True}])
                else:
                    self.assertEqual(texts(server.stderr), [line])

    def test_each_kind_has_its_own_limit(self):
        # A source refusal and a connection limit within the same second: one line each.
        server = self.serve('tcp://127.0.0.1:0', self.endpoint('unix'),
                            opts=['-s', 'echo', '--max-conns', '2', '--max-per-source', '1'])
        local = server.endpoints[0]
        a = server.connect(0)
        self.echo_once(a)
        source = self.refused(server, 0)                    # 2 of 2: the source's second
        u = server.connect(1)
        self.echo_once(u)
        limited = self.refused(server, 0)                   # 3 of 2
        self.wait_log(server, lambda ls: len(ls) >= 2, 'two warnings')
        a.close()
        u.close()
        self.assertEqual(server.stop(), 0)
        self.assertEqual(texts(server.stderr), [
            f'refused tcp://127.0.0.1:{source}: too many connections from this source',
            f'{local}: connection limit reached (2), closing tcp://127.0.0.1:{limited}'])

    def test_descriptors_exhausted(self):
        import resource

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo', '--threads', '1'], preexec=low_limit)
        local = server.endpoints[0]
        line = f'{local}: accept: too many open files; pausing 100 ms'
        held = [server.connect() for _ in range(60)]        # more than 40 descriptors' worth
        self.wait_line(server, line)
        for c in held:
            c.close()
        c = server.connect()
        self.echo_once(c)                                   # accepting again once there is room
        c.close()
        self.assertEqual(server.stop(), 0)
        pat = re.compile(re.escape(line) + r'(?: \(and [1-9]\d* more like it\))?')
        lines = texts(server.stderr)
        self.assertEqual(lines[0], line)
        self.assertTrue(all(pat.fullmatch(x) for x in lines), lines)

    def test_access_refusals_only_with_v(self):
        for opts in ([], ['--log-json']):
            with self.subTest(opts=opts):
                server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo', '--deny', '127.0.0.1', *opts])
                for _ in range(3):
                    self.refused(server)
                self.assertEqual(server.stop(), 0)
                self.assertEqual(server.stderr, f'listening on {server.endpoints[0]}\n'.encode())
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo', '--deny', '127.0.0.1', '-v'])
        port = self.refused(server)
        self.wait_line(server, f'refused tcp://127.0.0.1:{port}: access rules')

    def test_relay_target_refusing(self):
        port = free_port()
        target = f'tcp://127.0.0.1:{port}'
        line = f'connect {target}: connection refused'
        for opts in ([], ['--log-json']):
            with self.subTest(opts=opts):
                relay = self.relay('tcp://127.0.0.1:0', target, opts=opts)
                self.refused(relay)
                self.assertTrue(relay.wait_stderr(lambda e: b'connection refused' in e), relay.stderr)
                self.refused(relay)
                self.refused(relay)
                time.sleep(1.1)             # the limiter's period (1 s) has passed
                self.refused(relay)
                self.assertTrue(relay.wait_stderr(lambda e: e.count(b'connection refused') >= 2),
                                relay.stderr)
                self.assertEqual(relay.stop(), 0)
                # The target's state changes have lines of their own (test_relay_targets); here,
                # the warnings about the clients it failed.
                if opts:
                    every = records(self, relay.stderr)
                    self.assertEqual([r['event'] for r in every if r['event'] != 'target'],
                                     ['target_down'])
                    recs = [r for r in every if r['event'] == 'target']
                    self.assertEqual(recs[0], {'event': 'target', 'peer': target,
                                               'reason': 'connection refused', 'message': line,
                                               'warning': True})
                    for r in recs[1:]:
                        self.assertEqual(dict(r, suppressed=0), dict(recs[0], suppressed=0))
                        self.assertNotEqual(r.get('suppressed'), 0)
                    counts = [r.get('suppressed', 0) for r in recs]
                    st = [stamp_ms(r['ts']) for r in map(json.loads, relay.stderr.splitlines()[1:])
                          if r['event'] == 'target']
                else:
                    every = texts(relay.stderr)
                    self.assertEqual([x for x in every if not x.startswith('connect ')],
                                     [f'target {target} down: connection refused (retry in 1 s)'])
                    lines = [x for x in every if x.startswith('connect ')]
                    st = [t for t, x in zip(stamps(relay.stderr), every) if x.startswith('connect ')]
                    self.assertEqual(lines[0], line)
                    pat = re.compile(re.escape(line) + r'(?: \(and ([1-9]\d*) more like it\))?')
                    self.assertTrue(all(pat.fullmatch(x) for x in lines), lines)
                    counts = [int(pat.fullmatch(x).group(1) or 0) for x in lines]
                # Usually [0, 2]: the three refusals within the first second, then one more.
                self.assertEqual(sum(1 + n for n in counts), 4, counts)
                self.assertGreaterEqual(len(counts), 2, "the refusal after a quiet second has a line")
                for a, b in zip(st, st[1:]):
                    self.assertGreaterEqual(b - a, 990, f'two target lines {b - a} ms apart')


# --------------------------------------------------------------------------- SIGHUP

class HangupTest(ObserveTest):

    def assertSurvivesHangups(self, server):
        for _ in range(3):
            server.proc.send_signal(signal.SIGHUP)
            c = server.connect()
            self.echo_once(c, b'after SIGHUP\n')
            c.close()
        # A SIGHUP still pending when SIGTERM comes is taken first (the lower number).
        server.proc.send_signal(signal.SIGHUP)
        self.assertEqual(server.stop(), 0)
        self.assertEqual(server.stderr, f'listening on {server.endpoints[0]}\n'.encode())

    def test_serve_survives_sighup(self):
        self.assertSurvivesHangups(self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo']))

    def test_relay_survives_sighup(self):
        target = self.serve(self.endpoint('unix'), opts=['-s', 'echo'])
        self.assertSurvivesHangups(self.relay('tcp://127.0.0.1:0', target.endpoints[0]))


if __name__ == '__main__':
    unittest.main()
