"""Black-box integration tests of `--metrics ENDPOINT` (serve and relay).

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
Each test starts a server with --metrics, does something to it, then scrapes GET /metrics over
HTTP/1.1 and reads the body with a strict parser of the Prometheus text format 0.0.4 (every line
a HELP or TYPE comment or a sample, HELP and TYPE once per family and before its samples, the
samples of a family together, no series twice, counters named *_total, values numbers). The
values are checked exactly against what the test did: connections, bytes, datagrams, refusals,
idle timeouts, a relay's failed connections. Then the HTTP side: 404, 405, 400, HEAD,
keep-alive and pipelining, Connection: close, HTTP/1.0; --metrics over unix: and TLS; a datagram
endpoint is a usage error.

    python3 -m unittest discover -s tests/integration -v
"""

import re
import select
import socket
import ssl
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule as base_setup
from tls_helpers import certs, client_context

METRIC = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*'
LABEL_VALUE = r'"((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(rf'({METRIC})(?:\{{((?:{LABEL}={LABEL_VALUE},)*{LABEL}={LABEL_VALUE})?\}})? (\S+)')
PAIR = re.compile(rf'({LABEL})={LABEL_VALUE}')
HELP = re.compile(rf'# HELP ({METRIC}) (.*)')
TYPE = re.compile(rf'# TYPE ({METRIC}) (counter|gauge|histogram|summary|untyped)')
REASONS = ('max_conns', 'max_per_source', 'denied', 'tls_handshake', 'proxy_header', 'fd_limit')
PER_LISTENER = ('sockit_connections_accepted_total', 'sockit_connections_active',
                'sockit_bytes_received_total', 'sockit_bytes_sent_total',
                'sockit_datagrams_received_total', 'sockit_datagrams_sent_total',
                'sockit_datagrams_dropped_total', 'sockit_idle_timeouts_total',
                'sockit_accept_pauses_total')
WAIT = 5.0


def setUpModule():
    base_setup()


def unescape(value):
    return re.sub(r'\\(.)', lambda m: '\n' if m.group(1) == 'n' else m.group(1), value)


def parse_exposition(text):
    """{family: {'type', 'help', 'samples': {(name, ((label, value), ...)): float}}}; asserts the
    format is respected."""
    if not text.endswith('\n'):
        raise AssertionError('the body does not end with a newline')
    families, done, current = {}, set(), None
    for n, line in enumerate(text[:-1].split('\n'), 1):
        where = f'line {n}: {line!r}'
        m = HELP.fullmatch(line) or TYPE.fullmatch(line)
        if m:
            name, kind = m.group(1), 'help' if line.startswith('# HELP') else 'type'
            fam = families.setdefault(name, {'samples': {}})
            if kind in fam or fam['samples'] or name in done:
                raise AssertionError(f'{where}: {kind} twice or after the samples of {name}')
            fam[kind] = m.group(2)
            if current != name:
                done.add(current)
            current = name
            continue
        if line.startswith('#') or line == '':
            raise AssertionError(f'{where}: neither a HELP or TYPE comment nor a sample')
        m = SAMPLE.fullmatch(line)
        if not m:
            raise AssertionError(f'{where}: not a sample NAME{{LABELS}} VALUE')
        name = m.group(1)
        if name != current or name not in families:
            raise AssertionError(f'{where}: a sample outside its family (HELP and TYPE first)')
        fam = families[name]
        if 'help' not in fam or 'type' not in fam:
            raise AssertionError(f'{where}: {name} lacks its HELP or TYPE before its samples')
        labels = tuple(sorted((k, unescape(v)) for k, v in PAIR.findall(m.group(2) or '')))
        if len({k for k, _ in labels}) != len(labels):
            raise AssertionError(f'{where}: a label twice')
        if (name, labels) in fam['samples']:
            raise AssertionError(f'{where}: the same series twice')
        fam['samples'][(name, labels)] = float(m.group(len(m.groups())))
    for name, fam in families.items():
        if fam['type'] == 'counter' and not name.endswith('_total'):
            raise AssertionError(f'counter {name} is not named *_total')
        if not fam['samples']:
            raise AssertionError(f'family {name} has no sample')
    return families


def value(families, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    fam = families.get(name)
    if fam is None or key not in fam['samples']:
        raise AssertionError(f'no sample {name}{labels}')
    return fam['samples'][key]


# ----------------------------------------------------------------------------- HTTP


class HTTPClient:
    """Raw HTTP/1.1 on one connection: requests sent as bytes, responses read one by one."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f'timed out; buffered {bytes(self.buf[:200])!r}')
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError(bytes(self.buf))
        self.buf += chunk

    def response(self, head_only=False, timeout=TIMEOUT):
        """(status, {lower-case header: value}, body)."""
        deadline = time.monotonic() + timeout
        while b'\r\n\r\n' not in self.buf:
            self._fill(deadline)
        end = self.buf.index(b'\r\n\r\n')
        lines = bytes(self.buf[:end]).decode('latin-1').split('\r\n')
        del self.buf[:end + 4]
        version, status, _ = lines[0].split(' ', 2)
        assert version == 'HTTP/1.1', lines[0]
        headers = {}
        for h in lines[1:]:
            k, v = h.split(':', 1)
            assert k.lower() not in headers, f'header {k} twice'
            headers[k.lower()] = v.strip()
        length = 0 if head_only else int(headers['content-length'])
        while len(self.buf) < length:
            self._fill(deadline)
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return int(status), headers, body

    def at_eof(self, timeout=TIMEOUT):
        """True when the server closed the connection with nothing more sent."""
        try:
            self._fill(time.monotonic() + timeout)
        except (EOFError, ConnectionResetError):
            return not self.buf
        return False


def request(path='/metrics', method='GET', version='HTTP/1.1', headers=('Host: sockit',)):
    return f'{method} {path} {version}\r\n'.encode() + b''.join(
        h.encode() + b'\r\n' for h in headers) + b'\r\n'


class MetricsTest(ServeTest):
    """A server with --metrics; scrapes of it over plain TCP (or unix:, or TLS)."""

    def start(self, *endpoints, opts=(), command='serve', metrics='tcp://127.0.0.1:0', count=None):
        server = Server(endpoints, ('--metrics', metrics, *opts), command=command)
        self.addCleanup(server.stop)
        server.wait_listening(count if count is not None else len(endpoints))
        self.metrics_ep = server.wait_metrics()
        return server

    def metrics_socket(self, ep=None):
        ep = ep or self.metrics_ep
        family, stype, addr = endpoint_address(ep)
        s = socket.socket(family, stype)
        self.addCleanup(s.close)
        s.settimeout(TIMEOUT)
        s.connect(addr)
        return s

    def http(self, ep=None):
        return HTTPClient(self.metrics_socket(ep))

    def scrape(self, client=None):
        own = client is None
        client = client or self.http()
        client.send(request())
        status, headers, body = client.response()
        if own:
            client.sock.close()  # the responder serves at most 8 at once per source
        self.assertEqual(status, 200, body)
        self.assertEqual(headers['content-type'], 'text/plain; version=0.0.4')
        return parse_exposition(body.decode())

    def wait_value(self, want, name, **labels):
        """Scrapes until the sample is want (counters follow the event the client sees)."""
        deadline = time.monotonic() + WAIT
        while True:
            got = value(self.scrape(), name, **labels)
            if got == want or time.monotonic() > deadline:
                self.assertEqual(got, want, f'{name}{labels}')
                return
            time.sleep(0.02)


class TestExposition(MetricsTest):

    def test_every_family_has_a_sample_per_listener(self):
        server = self.start('tcp://127.0.0.1:0', 'udp://127.0.0.1:0', opts=('-s', 'echo'))
        self.assertRegex(self.metrics_ep, r'^tcp://127\.0\.0\.1:\d+$')
        fams = self.scrape()
        version = run_sockit(['--version']).stdout.decode().split()[1]
        self.assertEqual(value(fams, 'sockit_build_info', version=version), 1)
        self.assertEqual(fams['sockit_connections_active']['type'], 'gauge')
        for ep in server.endpoints:
            for name in PER_LISTENER:
                self.assertEqual(value(fams, name, listener=ep), 0, f'{name} {ep}')
            for reason in REASONS:
                self.assertEqual(value(fams, 'sockit_connections_rejected_total', listener=ep,
                                       reason=reason), 0)

    def test_label_values_are_escaped(self):
        path = self.path('a"b\\c.sock')
        server = self.start('unix:' + path.replace('\\', '\\\\'), opts=('-s', 'echo'))
        listener = server.endpoints[0]
        self.assertIn('"', listener)
        self.metrics_socket()
        raw = self.http()
        raw.send(request())
        _, _, body = raw.response()
        self.assertIn(b'listener="unix:' + self.tmp.encode() + b'/a\\"b\\\\\\\\c.sock"', body)
        fams = parse_exposition(body.decode())
        self.assertEqual(value(fams, 'sockit_connections_accepted_total', listener=listener), 0)


class TestCounts(MetricsTest):

    def test_echo_clients_connections_and_bytes(self):
        server = self.start('tcp://127.0.0.1:0', opts=('-s', 'echo', '--threads', '2'))
        ep = server.endpoints[0]
        clients, sent = [], 0
        for i in range(5):
            c = server.connect()
            payload = bytes([65 + i]) * (1000 * i + 7) + b'\n'
            c.sendall(payload)
            self.assertEqual(recv_exactly(c, len(payload)), payload)
            clients.append(c)
            sent += len(payload)
        self.wait_value(sent, 'sockit_bytes_sent_total', listener=ep)
        fams = self.scrape()
        self.assertEqual(value(fams, 'sockit_connections_accepted_total', listener=ep), 5)
        self.assertEqual(value(fams, 'sockit_connections_active', listener=ep), 5)
        self.assertEqual(value(fams, 'sockit_bytes_received_total', listener=ep), sent)
        for c in clients:
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(c), b'')
            c.close()
        self.wait_value(0, 'sockit_connections_active', listener=ep)
        fams = self.scrape()
        self.assertEqual(value(fams, 'sockit_connections_accepted_total', listener=ep), 5)
        self.assertEqual(value(fams, 'sockit_bytes_received_total', listener=ep), sent)
        self.assertEqual(value(fams, 'sockit_bytes_sent_total', listener=ep), sent)

    def test_udp_datagrams(self):
        server = self.start('tcp://127.0.0.1:0', 'udp://127.0.0.1:0', opts=('-s', 'echo'))
        udp = server.endpoints[1]
        d = server.dgram(1)
        for i in range(3):
            self.assertEqual(dgram_request(d, b'datagram %d' % i), b'datagram %d' % i)
        self.wait_value(3, 'sockit_datagrams_sent_total', listener=udp)
        fams = self.scrape()
        self.assertEqual(value(fams, 'sockit_datagrams_received_total', listener=udp), 3)
        self.assertEqual(value(fams, 'sockit_datagrams_dropped_total', listener=udp), 0)
        self.assertEqual(value(fams, 'sockit_datagrams_received_total',
                               listener=server.endpoints[0]), 0)

    def test_max_conns_refusal(self):
        server = self.start('tcp://127.0.0.1:0', opts=('-s', 'echo', '--max-conns', '1'))
        ep = server.endpoints[0]
        first = server.connect()
        first.sendall(b'x\n')
        self.assertEqual(recv_exactly(first, 2), b'x\n')
        second = server.connect()
        data, _ = read_to_close(second)
        self.assertEqual(data, b'')
        self.wait_value(1, 'sockit_connections_rejected_total', listener=ep, reason='max_conns')
        fams = self.scrape()
        self.assertEqual(value(fams, 'sockit_connections_accepted_total', listener=ep), 1)
        self.assertEqual(value(fams, 'sockit_connections_active', listener=ep), 1)

    def test_deny_is_counted_as_denied(self):
        # The responder is not subject to the server's access rules.
        server = self.start('tcp://127.0.0.1:0', opts=('-s', 'echo', '--deny', '127.0.0.1'))
        ep = server.endpoints[0]
        for _ in range(2):
            data, _ = read_to_close(server.connect())
            self.assertEqual(data, b'')
        self.wait_value(2, 'sockit_connections_rejected_total', listener=ep, reason='denied')
        self.assertEqual(value(self.scrape(), 'sockit_connections_accepted_total', listener=ep), 0)

    def test_idle_timeout(self):
        server = self.start('tcp://127.0.0.1:0', opts=('-s', 'echo', '--idle-timeout', '0.2'))
        ep = server.endpoints[0]
        c = server.connect()
        data, _ = read_to_close(c)
        self.assertEqual(data, b'')
        self.wait_value(1, 'sockit_idle_timeouts_total', listener=ep)
        self.wait_value(0, 'sockit_connections_active', listener=ep)

    def test_relay_target_refusing_counts_failures(self):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            target = f'tcp://127.0.0.1:{s.getsockname()[1]}'   # closed: nobody listens
        server = self.start('tcp://127.0.0.1:0', target, command='relay', count=1)
        for _ in range(3):
            data, _ = read_to_close(server.connect())
            self.assertEqual(data, b'')
        self.wait_value(3, 'sockit_relay_target_connect_failures_total', target=target)
        fams = self.scrape()
        self.assertEqual(value(fams, 'sockit_relay_target_connects_total', target=target), 0)
        self.assertEqual(value(fams, 'sockit_connections_accepted_total',
                               listener=server.endpoints[0]), 3)
        for reason in ('table_full', 'source_limit', 'oversized_reply'):
            self.assertEqual(value(fams, 'sockit_relay_flows_dropped_total',
                                   listener=server.endpoints[0], reason=reason), 0)

    def test_relay_bytes_to_and_from_target(self):
        backend = self.serve('tcp://127.0.0.1:0', opts=('-s', 'echo'))
        target = backend.endpoints[0]
        server = self.start('tcp://127.0.0.1:0', target, command='relay', count=1)
        c = server.connect()
        c.sendall(b'relayed bytes\n')
        self.assertEqual(recv_exactly(c, 14), b'relayed bytes\n')
        # Counted while the connection lives (once a second), then no more at its end.
        self.wait_value(14, 'sockit_relay_target_bytes_received_total', target=target)
        self.assertEqual(value(self.scrape(), 'sockit_relay_target_bytes_sent_total',
                               target=target), 14)
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(c), b'')
        self.wait_value(0, 'sockit_connections_active', listener=server.endpoints[0])
        fams = self.scrape()
        self.assertEqual(value(fams, 'sockit_relay_target_bytes_sent_total', target=target), 14)
        self.assertEqual(value(fams, 'sockit_relay_target_bytes_received_total', target=target), 14)
        self.assertEqual(value(fams, 'sockit_relay_target_connects_total', target=target), 1)

    def test_udp_relay_flows_and_refusals(self):
        backend = self.serve('udp://127.0.0.1:0', opts=('-s', 'echo'))
        target = backend.endpoints[0]
        server = self.start('udp://127.0.0.1:0', target, command='relay', count=1)
        d = server.dgram()
        self.assertEqual(dgram_request(d, b'flow one'), b'flow one')
        self.wait_value(8, 'sockit_relay_target_bytes_received_total', target=target)
        fams = self.scrape()
        self.assertEqual(value(fams, 'sockit_relay_target_bytes_sent_total', target=target), 8)
        self.assertEqual(value(fams, 'sockit_relay_target_connects_total', target=target), 1)
        self.assertEqual(value(fams, 'sockit_datagrams_received_total',
                               listener=server.endpoints[0]), 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(('127.0.0.1', 0))
            closed = f'udp://127.0.0.1:{s.getsockname()[1]}'   # nobody there once closed
        server = self.start('udp://127.0.0.1:0', closed, command='relay', count=1)
        server.dgram().send(b'to nobody')
        self.wait_value(1, 'sockit_relay_target_connect_failures_total', target=closed)
        self.assertEqual(value(self.scrape(), 'sockit_relay_target_connects_total', target=closed), 1)


class TestHTTP(MetricsTest):

    def setUp(self):
        super().setUp()
        self.start('tcp://127.0.0.1:0', opts=('-s', 'echo'))

    def test_one_source_holds_at_most_8_connections(self):
        # Silent clients from one address: the 9th is closed at once, and a scrape works again
        # as soon as one of the 8 goes, so one host cannot keep Prometheus out.
        held = [self.http() for _ in range(8)]
        for client in held:
            client.send(b'GET')  # each accepted and waiting for the rest of its head
        self.assertTrue(self.http().at_eof(), 'a 9th connection from the same source was served')
        held[0].sock.close()
        deadline = time.monotonic() + WAIT
        while True:
            try:
                fams = self.scrape()
                break
            except (EOFError, ConnectionResetError):
                self.assertLess(time.monotonic(), deadline, 'no scrape once a slot was free')
                time.sleep(0.02)
        self.assertIn('sockit_build_info', fams)

    def test_a_head_not_whole_in_10_s_gets_408_and_is_closed(self):
        # A client trickling its head a byte a second holds a slot no longer than 10 s from its
        # accept, however often it sends; then 408, the connection closed.
        c = self.http()
        t0 = time.monotonic()
        head = b'GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ' + b'y' * 20
        sent = 0
        while b'\r\n\r\n' not in c.buf and time.monotonic() - t0 < 20:
            if sent < len(head):
                c.send(head[sent:sent + 1])
                sent += 1
            r, _, _ = select.select([c.sock], [], [], 1.0)
            if r:
                try:
                    c._fill(time.monotonic() + 1.0)
                except EOFError:
                    break
        elapsed = time.monotonic() - t0
        status, headers, _ = c.response(timeout=1.0)
        self.assertEqual(status, 408)
        self.assertGreaterEqual(elapsed, 9.9)
        self.assertLess(sent, len(head), 'the head was whole before the deadline')
        self.assertTrue(c.at_eof())

    def test_other_path_404_method_405_garbage_400(self):
        for path in ('/', '/metrics/', '/metricsx', '/foo?x'):
            c = self.http()
            c.send(request(path))
            status, headers, _ = c.response()
            self.assertEqual(status, 404, path)
        c = self.http()
        c.send(request(method='POST'))
        status, headers, _ = c.response()
        self.assertEqual(status, 405)
        self.assertEqual(headers['allow'], 'GET, HEAD')
        for garbage in (b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n', b'GET\r\n\r\n',
                        b'GET /metrics HTTP/1.1\r\n\r\n',              # no Host
                        b'GET /metrics HTTP/1.1\r\nHost: a\r\n bad\r\n\r\n',
                        b'GET  /metrics HTTP/1.1\r\nHost: a\r\n\r\n',
                        b'GET /metrics HTTP/1.1\r\nHost : a\r\n\r\n'):
            c = self.http()
            c.send(garbage)
            status, headers, _ = c.response()
            self.assertEqual(status, 400, garbage)
            self.assertEqual(headers['connection'], 'close')
            self.assertTrue(c.at_eof(), garbage)

    def test_query_string_ignored(self):
        c = self.http()
        c.send(request('/metrics?name[]=x'))
        status, headers, body = c.response()
        self.assertEqual(status, 200)
        parse_exposition(body.decode())

    def test_head_has_the_headers_and_no_body(self):
        c = self.http()
        c.send(request(method='HEAD'))
        status, headers, body = c.response(head_only=True)
        self.assertEqual(status, 200)
        self.assertEqual(headers['content-type'], 'text/plain; version=0.0.4')
        length = int(headers['content-length'])
        self.assertGreater(length, 1000)
        # Nothing followed: the next answer on the connection starts right away.
        c.send(request())
        status, headers, body = c.response()
        self.assertEqual(status, 200)
        self.assertEqual(len(body), length)

    def test_keep_alive_and_pipelining(self):
        c = self.http()
        self.scrape(c)
        self.scrape(c)
        c.send(request() + request('/nothing') + request(method='HEAD') + request())
        self.assertEqual(c.response()[0], 200)
        self.assertEqual(c.response()[0], 404)
        self.assertEqual(c.response(head_only=True)[0], 200)
        status, _, body = c.response()
        self.assertEqual(status, 200)
        parse_exposition(body.decode())

    def test_request_in_pieces(self):
        c = self.http()
        data = request()
        for i in range(0, len(data), 5):
            c.send(data[i:i + 5])
            time.sleep(0.01)
        self.assertEqual(c.response()[0], 200)

    def test_connection_close_is_honoured(self):
        c = self.http()
        c.send(request(headers=('Host: a', 'Connection: close')) + request())
        status, headers, _ = c.response()
        self.assertEqual((status, headers['connection']), (200, 'close'))
        self.assertTrue(c.at_eof())

    def test_http10_closes_unless_keep_alive(self):
        c = self.http()
        c.send(request(version='HTTP/1.0', headers=()))
        status, headers, _ = c.response()
        self.assertEqual((status, headers['connection']), (200, 'close'))
        self.assertTrue(c.at_eof())
        c = self.http()
        c.send(request(version='HTTP/1.0', headers=('Connection: keep-alive',)) * 2)
        for _ in range(2):
            status, headers, _ = c.response()
            self.assertEqual((status, headers['connection']), (200, 'keep-alive'))

    def test_body_refused_and_long_head(self):
        c = self.http()
        c.send(request(method='POST', headers=('Host: a', 'Content-Length: 3')) + b'abc')
        self.assertEqual(c.response()[0], 413)
        self.assertTrue(c.at_eof())
        c = self.http()
        c.send(b'GET /metrics HTTP/1.1\r\nHost: a\r\nX: ' + b'y' * 9000)
        self.assertEqual(c.response()[0], 431)
        self.assertTrue(c.at_eof())


class TestEndpoints(MetricsTest):

    def test_datagram_endpoint_is_a_usage_error(self):
        for cmd in (['serve', '-s', 'echo'], ['relay']):
            args = [*cmd, '--metrics', 'udp://127.0.0.1:0', 'tcp://127.0.0.1:0']
            if cmd == ['relay']:
                args.append('tcp://127.0.0.1:9')
            result = run_sockit(args)
            self.assertEqual(result.returncode, 2, result.stderr)
            self.assertEqual(result.stderr.count(b'\n'), 1, result.stderr)
            self.assertTrue(result.stderr.startswith(b'sockit: --metrics udp://'), result.stderr)

    def test_metrics_over_unix(self):
        path = self.path('metrics.sock')
        server = self.start('tcp://127.0.0.1:0', opts=('-s', 'echo'), metrics='unix:' + path)
        self.assertEqual(self.metrics_ep, 'unix:' + path)
        fams = self.scrape()
        self.assertEqual(value(fams, 'sockit_connections_accepted_total',
                               listener=server.endpoints[0]), 0)
        server.stop()
        self.assertFalse(os.path.exists(path), 'the socket file is removed at exit')

    def test_metrics_over_tls(self):
        c = certs()
        server = self.start('tcp://127.0.0.1:0', opts=('-s', 'echo'),
                            metrics=f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key}')
        self.assertTrue(self.metrics_ep.startswith('tls://127.0.0.1:'), self.metrics_ep)
        port = int(self.metrics_ep.rsplit(':', 1)[1])
        raw = socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT)
        tls = client_context().wrap_socket(raw, server_hostname='localhost')
        self.addCleanup(tls.close)
        fams = self.scrape(HTTPClient(tls))
        self.assertEqual(value(fams, 'sockit_connections_active', listener=server.endpoints[0]), 0)
        self.assertEqual(server.stop(), 0)

    def test_quiet_hides_the_line_and_sigterm_exits_0(self):
        # A path known beforehand: the responder is known to run once a scrape answers.
        self.metrics_ep = 'unix:' + self.path('quiet.sock')
        server = Server(['tcp://127.0.0.1:0'], ('-q', '-s', 'echo', '--metrics', self.metrics_ep))
        self.addCleanup(server.stop)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                fams = self.scrape()
                break
            except OSError:
                self.assertLess(time.monotonic(), deadline, 'the responder never answered')
                time.sleep(0.02)
        version = run_sockit(['--version']).stdout.decode().split()[1]
        self.assertEqual(value(fams, 'sockit_build_info', version=version), 1)
        self.assertEqual(server.stop(), 0)
        self.assertNotIn(b'metrics on', server.stderr)
        self.assertNotIn(b'listening on', server.stderr)


if __name__ == '__main__':
    unittest.main()
