"""Black-box integration tests for `sockit serve` over TLS (cli-contract v0.2: Endpoint options, TLS).

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
Certificates are made at test time (tls_helpers.certs()). Clients are Python's ssl module,
`openssl s_client` and socat's OPENSSL address, on 127.0.0.1, ::1 and UNIX paths in a temporary
directory. A test of a feature the build lacks fails (the server does not start); a test that
needs a tool that is not installed is skipped.

    cd tests/integration && SOCKIT=build/sockit python3 -m unittest test_tls_serve
"""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import unittest

from helpers import *  # noqa: F401,F403
from tls_helpers import *  # noqa: F401,F403
from tls_helpers import tls_setup_module as setUpModule  # noqa: F401

KINDS = ('tcp', 'unix') + (('tcp6',) if HAVE_IPV6 else ())


class ServeTLSTest(TLSTest):

    def serve_tls(self, kinds=('tcp', 'unix'), opts=('-s', 'echo'), extra=''):
        """One server with a TLS endpoint of each kind; returns (server, {kind: endpoint})."""
        server = self.serve(*[self.tls_ep(k, extra=extra) for k in kinds], opts=list(opts))
        return server, dict(zip(kinds, server.endpoints))

    def stamp_tls(self, client, line):
        t0 = time.time()
        client.send(line)
        self.assertStamped(client.recv_exactly(STAMP_PREFIX_LEN + len(line)), line, t0)


# --------------------------------------------------------------------------- listening

class ListeningTest(ServeTLSTest):

    def test_listening_lines_keep_tls_and_drop_the_other_options(self):
        path, kc = self.path('l.sock'), f'cert={self.certs.server_pem},key={self.certs.server_key}'
        eps = [f'tls://127.0.0.1:0,{kc}', f'unix:{path},tls,{kc}', f'tcp://127.0.0.1:0,tls,{kc}']
        expected = [r'tls://127\.0\.0\.1:\d+', re.escape(f'unix:{path},tls'), r'tls://127\.0\.0\.1:\d+']
        if HAVE_IPV6:
            eps.append(f'tls://[::1]:0,{kc}')
            expected.append(r'tls://\[::1\]:\d+')
        server = self.serve(*eps, opts=['-s', 'echo'])
        self.assertEqual(len(server.endpoints), len(expected), server.stderr)
        for got, pattern in zip(server.endpoints, expected):
            self.assertRegex(got, '^' + pattern + '$')
        self.assertNotEqual(tls_port(server.endpoints[0]), 0)
        for ep in server.endpoints:
            with self.subTest(endpoint=ep):
                self.assertServes(ep)
        self.assertEqual(server.stop(), 0)
        lines = server.stderr.decode().splitlines()
        self.assertEqual(lines, [f'listening on {ep}' for ep in server.endpoints], server.stderr)

    def test_key_defaults_to_the_cert_file(self):
        server = self.serve(f'tls://127.0.0.1:0,cert={self.certs.combined_pem}', opts=['-s', 'echo'])
        c = self.client(server.endpoints[0])
        self.assertEqual(c.peer_der(), self.certs.der('server.pem'))
        c.send(b'combined\n')
        self.assertEqual(c.recv_exactly(9), b'combined\n')

    def test_tls_1_2_and_1_3_are_spoken_and_nothing_older(self):
        server, eps = self.serve_tls(['tcp'])
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with self.subTest(version=version.name):
                ctx = client_context()
                ctx.minimum_version = ctx.maximum_version = version
                c = self.client(eps['tcp'], ctx=ctx)
                self.assertEqual(c.version(), version.name.replace('_', '.'))
                got, end = c.roundtrip(b'v' * 1000)
                self.assertRoundtrip(got, end, b'v' * 1000)
        r = s_client(['-connect', f'127.0.0.1:{tls_port(eps["tcp"])}', '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0',
                      '-CAfile', self.certs.ca_pem])
        self.assertNotEqual(r.returncode, 0, 'TLS 1.1 was accepted')
        self.assertServes(eps['tcp'])


# --------------------------------------------------------------------------- services

class ServicesTest(ServeTLSTest):

    def test_timestamp(self):
        server, eps = self.serve_tls(opts=())
        for kind, ep in eps.items():
            with self.subTest(kind=kind):
                c = self.client(ep)
                for line in (b'hello\n', b'cr\r\n', b'\x00\xff binary\n'):
                    self.stamp_tls(c, line)
                t0 = time.time()
                c.send(b'last')                  # an unterminated piece, answered at close_notify
                got, end = c.roundtrip(b'', close=True)
                self.assertStamped(got, b'last\n', t0)
                self.assertEqual(end, 'close_notify')

    def test_echo_one_mib_byte_exact(self):
        server, eps = self.serve_tls(KINDS)
        for kind, ep in eps.items():
            with self.subTest(kind=kind):
                data = os.urandom(MIB)
                got, end = self.client(ep).roundtrip(data)
                self.assertRoundtrip(got, end, data)

    def test_discard(self):
        server, eps = self.serve_tls(opts=('-s', 'discard'))
        for kind, ep in eps.items():
            with self.subTest(kind=kind):
                got, end = self.client(ep).roundtrip(os.urandom(256 * 1024))
                self.assertRoundtrip(got, end, b'')

    def test_daytime_and_time(self):
        for service, check in (('daytime', self.assertDaytime), ('time', self.assertTime)):
            server, eps = self.serve_tls(opts=('-s', service))
            for kind, ep in eps.items():
                with self.subTest(service=service, kind=kind):
                    t0 = time.time()
                    data, end = self.client(ep).read_to_close()
                    check(data, t0)
                    self.assertEqual(end, 'close_notify')

    def test_chargen(self):
        server, eps = self.serve_tls(opts=('-s', 'chargen'))
        expected = chargen_bytes(20000)
        for kind, ep in eps.items():
            for attempt in range(2):
                with self.subTest(kind=kind, attempt=attempt):
                    c = self.client(ep)
                    self.assertEqual(c.recv_exactly(len(expected)), expected)
                    c.close()

    def who(self, client):
        """The client's /who answer: one `* NAME` line per member (itself included)."""
        client.send(b'/who\n')
        return client.line()

    def test_chat(self):
        server, eps = self.serve_tls(['tcp'], opts=('-s', 'chat'))
        a = self.client(eps['tcp'])
        line = self.who(a)                            # a is in the room once it has an answer
        m = re.fullmatch(rb'\* ((tcp|tls)://127\.0\.0\.1:%d)\n' % a.sock.getsockname()[1], line)
        self.assertIsNotNone(m, line)
        name_a, scheme = m.group(1), m.group(2)
        b = self.client(eps['tcp'])
        name_b = b'%s://127.0.0.1:%d' % (scheme, b.sock.getsockname()[1])
        self.assertEqual(a.line(), b'* %s joined\n' % name_b)
        self.assertEqual(sorted([self.who(b), b.line()]), sorted([b'* %s\n' % name_a, b'* %s\n' % name_b]))
        a.send(b'hello over tls\n')
        self.assertEqual(b.line(), b'[%s] hello over tls\n' % name_a)
        b.send(b'/nick bob\n')
        self.assertEqual(a.line(), b'* %s is now bob\n' % name_b)
        b.send(b'crlf\r\n')
        self.assertEqual(a.line(), b'[bob] crlf\n')
        b.close()
        self.assertEqual(a.line(), b'* bob left\n')
        a.send(b'alone\n')
        a.expect_silence(0.2)

    def test_exec_cat_and_tr(self):
        for cmd, transform in (('cat', lambda d: d), ('tr a-z A-Z', bytes.upper)):
            server, eps = self.serve_tls(opts=('--exec', cmd))
            for kind, ep in eps.items():
                with self.subTest(cmd=cmd, kind=kind):
                    data = b''.join(b'line %05d of plaintext for the child\n' % i for i in range(5000))
                    got, end = self.client(ep).roundtrip(data)
                    self.assertRoundtrip(got, end, transform(data))
            server.stop()

    def test_exec_environment(self):
        server, eps = self.serve_tls(opts=('--exec', 'echo "$SOCKIT_PEER $SOCKIT_LOCAL"'))
        c = self.client(eps['tcp'])
        data, end = c.read_to_close()
        self.assertEqual(end, 'close_notify')
        ports = (c.sock.getsockname()[1], tls_port(eps['tcp']))
        self.assertRegex(data, rb'^(tcp|tls)://127\.0\.0\.1:%d \1://127\.0\.0\.1:%d\n\Z' % ports)
        data, end = self.client(eps['unix']).read_to_close()
        local = eps['unix'].encode()
        self.assertTrue(data.endswith(b' %s\n' % local) or data.endswith(b' %s\n' % local[:-4]), data)

    def test_openssl_s_client(self):
        if OPENSSL is None:
            self.skipTest('openssl is not installed')
        day, _ = self.serve_tls(opts=('-s', 'daytime'))
        head, _ = self.serve_tls(opts=('--exec', 'head -n 1'))
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                for server, data, check in ((day, b'', self.assertDaytime),
                                            (head, b'first line\nsecond\n', None)):
                    ep = server.endpoints[0 if kind == 'tcp' else 1]
                    where = (['-connect', f'127.0.0.1:{tls_port(ep)}', '-verify_ip', '127.0.0.1']
                             if kind == 'tcp' else ['-unix', tls_address(ep)[1]])
                    t0 = time.time()
                    r = s_client([*where, '-CAfile', self.certs.ca_pem, '-verify_return_error', '-quiet'],
                                 data)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    if check:
                        check(r.stdout, t0)
                    else:
                        self.assertEqual(r.stdout, b'first line\n')

    def test_socat_client(self):
        if SOCAT is None:
            self.skipTest('socat is not installed')
        echo, _ = self.serve_tls(['tcp'])
        stamp, _ = self.serve_tls(['tcp'], opts=())
        data = os.urandom(256 * 1024)
        for server, payload in ((echo, data), (stamp, b'a\nb')):
            port = tls_port(server.endpoints[0])
            t0 = time.time()
            r = subprocess.run([SOCAT, '-t', '5', '-', f'OPENSSL:127.0.0.1:{port},cafile={self.certs.ca_pem}'],
                               input=payload, capture_output=True, timeout=15)
            self.assertEqual(r.returncode, 0, r.stderr)
            if payload is data:
                self.assertTrue(r.stdout == data, f'{len(r.stdout)} bytes back through socat')
            else:
                n = STAMP_PREFIX_LEN + 2
                self.assertEqual(len(r.stdout), 2 * n, r.stdout)
                self.assertStamped(r.stdout[:n], b'a\n', t0)
                self.assertStamped(r.stdout[n:], b'b\n', t0)


# --------------------------------------------------------------------------- close_notify

class CloseNotifyTest(ServeTLSTest):

    def test_replies_are_finished_after_the_clients_close_notify(self):
        server, eps = self.serve_tls()
        for kind, ep in eps.items():
            with self.subTest(kind=kind):
                c = self.client(ep)
                data = os.urandom(200 * 1024)
                c.send(data)                          # close_notify right behind the data
                c.close_notify()
                got, end = c.read_to_close()
                self.assertRoundtrip(got, end, data)

    def test_sslsocket_unwrap_completes_both_ways(self):
        server, eps = self.serve_tls()
        for kind, ep in eps.items():
            with self.subTest(kind=kind):
                family, addr = tls_address(ep)
                ctx = client_context()
                ctx.check_hostname = kind != 'unix'
                raw = socket.socket(family, socket.SOCK_STREAM)
                self.addCleanup(raw.close)
                raw.settimeout(TLS_TIMEOUT)
                raw.connect(addr)
                s = ctx.wrap_socket(raw, server_hostname=None if kind == 'unix' else addr[0],
                                    suppress_ragged_eofs=False)
                self.addCleanup(s.close)
                s.sendall(b'x' * 5000)
                self.assertEqual(recv_exactly(s, 5000), b'x' * 5000)
                plain = s.unwrap()                    # our close_notify, then the server's
                self.addCleanup(plain.close)
                self.assertEqual(plain.recv(100), b'', 'the server should close after its close_notify')


# --------------------------------------------------------------------------- mutual TLS

class MutualTLSTest(ServeTLSTest):

    def test_client_certificate_required(self):
        server, eps = self.serve_tls(extra=f'ca={self.certs.ca_pem}')
        bad = client_context(cert=self.certs.badclient_pem, key=self.certs.badclient_key)
        for kind, ep in eps.items():
            for name, ctx in (('no certificate', client_context()), ('other CA', bad)):
                with self.subTest(kind=kind, client=name):
                    if kind == 'unix':
                        ctx.check_hostname = False
                    outcome, detail = handshake_outcome(ep, ctx)
                    if outcome != 'handshake':
                        self.assertEqual(detail, b'', f'{name}: served ({outcome})')
                    ok = client_context(cert=self.certs.client_pem, key=self.certs.client_key)
                    ok.check_hostname = kind != 'unix'
                    c = self.client(ep, ctx=ok)
                    c.send(b'good client\n')
                    self.assertEqual(c.recv_exactly(12), b'good client\n')
                    got, end = c.roundtrip(os.urandom(100000))
                    self.assertEqual((len(got), end), (100000, 'close_notify'))
        self.assertIsNone(server.proc.poll())

    def test_openssl_s_client_with_and_without_a_certificate(self):
        if OPENSSL is None:
            self.skipTest('openssl is not installed')
        server, eps = self.serve_tls(['tcp'], opts=('-s', 'daytime'), extra=f'ca={self.certs.ca_pem}')
        where = ['-connect', f'127.0.0.1:{tls_port(eps["tcp"])}', '-CAfile', self.certs.ca_pem, '-quiet']
        t0 = time.time()
        r = s_client([*where, '-cert', self.certs.client_pem, '-key', self.certs.client_key])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertDaytime(r.stdout, t0)
        r = s_client(where)
        self.assertEqual(r.stdout, b'', 'served without a client certificate')


# --------------------------------------------------------------------------- handshake timeout

class HandshakeTimeoutTest(ServeTLSTest):

    def closed_within(self, sock, low, high):
        start = time.monotonic()
        data, how = read_to_close(sock, timeout=high)
        elapsed = time.monotonic() - start
        self.assertEqual(data, b'', 'the server sent something to a client that never said hello')
        self.assertGreaterEqual(elapsed, low, f'closed after {elapsed:.2f}s, before the timeout')
        return elapsed

    def test_silent_client_is_closed_after_the_timeout_without_spinning(self):
        server, eps = self.serve_tls(opts=('-s', 'echo', '--handshake-timeout', '1'))
        for kind, ep in eps.items():
            with self.subTest(kind=kind):
                cpu = cpu_seconds(server.pid)
                raw = plain_connect(ep)
                self.addCleanup(raw.close)
                self.closed_within(raw, 0.8, 5.0)
                used = cpu_seconds(server.pid) - cpu
                self.assertLess(used, 0.2, f'the server used {used:.2f}s of CPU while waiting')
                self.assertServes(ep)

    def test_a_client_stuck_in_the_handshake_is_closed(self):
        server, eps = self.serve_tls(['tcp'], opts=('-s', 'echo', '--handshake-timeout', '1'))
        raw = plain_connect(eps['tcp'])
        self.addCleanup(raw.close)
        raw.sendall(client_hello()[:50])
        self.closed_within(raw, 0.8, 5.0)

    def test_timeout_does_not_apply_after_the_handshake(self):
        server, eps = self.serve_tls(['tcp'], opts=('-s', 'echo', '--handshake-timeout', '1'))
        c = self.client(eps['tcp'])
        c.expect_silence(1.6)
        c.send(b'still here\n')
        self.assertEqual(c.recv_exactly(11), b'still here\n')

    def test_default_is_10_seconds(self):
        server, eps = self.serve_tls(['tcp'])
        raw = plain_connect(eps['tcp'])
        self.addCleanup(raw.close)
        assert_silent(raw, 1.5)                       # still open, nothing sent: not closed at once

    def test_bad_values_are_usage_errors(self):
        for value in ('x', '-1', '', '1s'):
            with self.subTest(value=value):
                r = run_sockit(['serve', '--handshake-timeout', value, self.tls_ep('tcp')])
                self.assertExit(r, 2)


def client_hello():
    """The first flight of a real TLS client (its ClientHello record)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(inc, out, server_hostname='127.0.0.1')
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


# --------------------------------------------------------------------------- bad input

class BadInputTest(ServeTLSTest):

    def test_plaintext_client_on_a_tls_port(self):
        server, eps = self.serve_tls()
        for kind, ep in eps.items():
            with self.subTest(kind=kind):
                raw = plain_connect(ep)
                self.addCleanup(raw.close)
                raw.sendall(b'hello\n')
                data, how = read_to_close(raw, timeout=5.0)
                self.assertNotIn(b'hello', data)
                self.assertTrue(data == b'' or data[:1] == b'\x15', f'not a TLS alert: {data!r}')
                self.assertServes(ep)

    def test_tls_client_on_a_plaintext_port(self):
        for service in ('echo', 'daytime'):
            with self.subTest(service=service):
                server = self.serve('tcp://127.0.0.1:0', 'unix:' + self.path(f'{service}.sock'),
                                    opts=['-s', service])
                for i, ep in enumerate(server.endpoints):
                    with self.assertRaises((ssl.SSLError, ConnectionResetError, AssertionError)):
                        TLSClient(ep, ctx=client_context(verify=False), timeout=5.0).close()
                    c = server.connect(i)
                    if service == 'echo':
                        c.sendall(b'plain\n')
                        self.assertEqual(recv_exactly(c, 6), b'plain\n')
                    else:
                        t0 = time.time()
                        self.assertDaytime(recv_until_eof(c), t0)
                server.stop()

    def test_garbage_and_truncated_hellos_do_not_hurt_the_server(self):
        server, eps = self.serve_tls(opts=('-s', 'echo', '--handshake-timeout', '2'))
        hello = client_hello()
        self.assertEqual(hello[:1], b'\x16')
        cases = [('random', os.urandom(1000)), ('random2', os.urandom(1000)),
                 ('handshake header then garbage', b'\x16\x03\x01\x03\xe8' + os.urandom(1000)),
                 ('huge record length', b'\x16\x03\x01\xff\xff' + os.urandom(100)),
                 ('truncated ClientHello', hello[:50]), ('ClientHello without its last byte', hello[:-1]),
                 ('alert record', b'\x15\x03\x03\x00\x02\x02\x28'), ('empty', b'')]
        for kind, ep in eps.items():
            for name, data in cases:
                with self.subTest(kind=kind, case=name):
                    with plain_connect(ep) as raw:
                        try:                          # the server may reset it at once
                            raw.sendall(data)
                            raw.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        got, how = read_to_close(raw, timeout=6.0)
                    self.assertTrue(got == b'' or got[:1] == b'\x15', f'not a TLS alert: {got[:100]!r}')
                    self.assertIsNone(server.proc.poll(), f'server died: {server.stderr!r}')
                    self.assertServes(ep)

    def test_many_failed_handshakes_then_a_good_client(self):
        server, eps = self.serve_tls(['tcp'])
        for i in range(100):
            raw = plain_connect(eps['tcp'])
            raw.sendall(client_hello()[:60] if i % 2 else b'GET / HTTP/1.0\r\n\r\n')
            raw.close()
        for _ in range(20):                           # clients that reject the server
            with self.assertRaises(ssl.SSLCertVerificationError):
                TLSClient(eps['tcp'], ctx=client_context(ca=self.certs.other_ca_pem))
        self.assertServes(eps['tcp'])
        self.assertIsNone(server.proc.poll())


# --------------------------------------------------------------------------- startup errors

class StartupErrorTest(ServeTLSTest):

    def assertStartFails(self, endpoint, *needles, code=1):
        r = run_sockit(['serve', '-s', 'echo', endpoint])
        self.assertExit(r, code)
        line = r.stderr.decode(errors='replace')
        for needle in needles:
            self.assertIn(needle, line)
        return line

    def test_missing_files(self):
        c, missing = self.certs, self.path('missing.pem')
        for ep in (f'tls://127.0.0.1:0,cert={missing},key={c.server_key}',
                   f'tls://127.0.0.1:0,cert={c.server_pem},key={missing}',
                   f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key},ca={missing}',
                   f'unix:{self.path("m.sock")},tls,cert={missing},key={c.server_key}'):
            with self.subTest(endpoint=ep):
                self.assertStartFails(ep, 'missing.pem', 'no such file or directory')
        self.assertFalse(os.path.lexists(self.path('m.sock')), 'a socket file was left behind')

    def test_unreadable_cert(self):
        if os.geteuid() == 0:
            self.skipTest('root reads a file whatever its mode')
        cert = self.path('unreadable.pem')
        shutil.copy(self.certs.server_pem, cert)
        os.chmod(cert, 0)
        self.assertStartFails(f'tls://127.0.0.1:0,cert={cert},key={self.certs.server_key}',
                              'unreadable.pem', 'permission denied')

    def test_key_that_does_not_match(self):
        c = self.certs
        for key in (c.other_key, c.server2_key):
            with self.subTest(key=os.path.basename(key)):
                self.assertStartFails(f'tls://127.0.0.1:0,cert={c.server_pem},key={key}',
                                      'key does not match the certificate')

    def test_files_that_are_not_what_they_should_be(self):
        c = self.certs
        for ep in (f'tls://127.0.0.1:0,cert={c.notcert_pem},key={c.server_key}',
                   f'tls://127.0.0.1:0,cert={c.garbage_pem},key={c.server_key}',
                   f'tls://127.0.0.1:0,cert={c.server_pem},key={c.garbage_pem}',
                   f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_pem}',
                   f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key},ca={c.garbage_pem}'):
            with self.subTest(endpoint=ep):
                self.assertStartFails(ep)

    def test_nothing_is_served_when_one_endpoint_fails(self):
        port = free_port()
        r = run_sockit(['serve', '-s', 'echo', f'tcp://127.0.0.1:{port}',
                        f'tls://127.0.0.1:0,cert={self.path("missing.pem")}'])
        self.assertExit(r, 1)
        self.assertNotIn(b'listening on', r.stderr)

    def test_tls_without_cert_is_a_usage_error(self):
        for ep in ('tls://127.0.0.1:0', f'tls://127.0.0.1:0,key={self.certs.server_key}',
                   'tcp://127.0.0.1:0,tls', f'unix:{self.path("nc.sock")},tls'):
            with self.subTest(endpoint=ep):
                self.assertStartFails(ep, 'cert', code=2)

    def test_unknown_endpoint_option(self):
        r = run_sockit(['serve', 'tcp://127.0.0.1:0,crt=a.pem'])
        self.assertExit(r, 2, 'sockit: tcp://127.0.0.1:0,crt=a.pem: unknown endpoint option "crt"')
        r = run_sockit(['serve', f'tls://127.0.0.1:0,cert={self.certs.server_pem},bogus=1'])
        self.assertExit(r, 2, f'sockit: tls://127.0.0.1:0,cert={self.certs.server_pem},bogus=1: '
                              f'unknown endpoint option "bogus"')

    def test_options_that_do_not_apply_here_are_usage_errors(self):
        c = self.certs
        tls = f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key}'
        for ep, name in ((f'{tls},verify=none', 'verify'), (f'{tls},sni=localhost', 'sni'),
                         ('udp://127.0.0.1:0,tls', 'tls'), (f'udp://127.0.0.1:0,cert={c.server_pem}', 'cert'),
                         (f'unixgram:{self.path("g.sock")},tls', 'tls'),
                         ('tcp://127.0.0.1:0,mode=600', 'mode'), (f'tcp://127.0.0.1:0,cert={c.server_pem}', 'cert')):
            with self.subTest(endpoint=ep):
                self.assertStartFails(ep, name, code=2)


# --------------------------------------------------------------------------- SIGHUP

class ReloadTest(ServeTLSTest):

    def install(self, pairs):
        """Replace each live file with a copy of the given one (renamed over it: atomic)."""
        for src, dst in pairs:
            tmp = dst + '.new'
            shutil.copy(src, tmp)
            os.replace(tmp, dst)

    def wait_cert(self, ep, der, ctx=None, timeout=5.0):
        """Poll new connections (bounded) until one is served with the certificate der."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            with TLSClient(ep, ctx=ctx or client_context()) as c:
                seen = c.peer_der()
            if seen == der:
                return
            time.sleep(0.05)
        self.fail('new connections never got the reloaded certificate')

    def hup(self, server):
        os.kill(server.pid, signal.SIGHUP)

    def test_reload_certificate_and_key(self):
        c = self.certs
        cert, key = self.path('live.pem'), self.path('live.key')
        self.install([(c.server_pem, cert), (c.server_key, key)])
        server = self.serve(f'tls://127.0.0.1:0,cert={cert},key={key}', opts=['-s', 'echo'])
        ep = server.endpoints[0]
        old = self.client(ep)
        self.assertEqual(old.peer_der(), c.der('server.pem'))
        old.send(b'before\n')
        self.assertEqual(old.recv_exactly(7), b'before\n')

        self.install([(c.server2_pem, cert), (c.server2_key, key)])
        self.hup(server)
        self.wait_cert(ep, c.der('server2.pem'))
        old.send(b'after the reload\n')
        self.assertEqual(old.recv_exactly(17), b'after the reload\n')
        self.assertEqual(old.peer_der(), c.der('server.pem'))
        lines = len(server.stderr.splitlines())

        for bad in ([(c.garbage_pem, cert)], [(c.server_pem, cert), (c.other_key, key)]):
            self.install(bad)
            self.hup(server)
            self.assertTrue(server.wait_stderr(lambda err: len(err.splitlines()) > lines), server.stderr)
            self.assertServes(ep)
            with TLSClient(ep) as fresh:
                self.assertEqual(fresh.peer_der(), c.der('server2.pem'), 'the last good certificate')
            new = server.stderr.splitlines()[lines:]
            self.assertEqual(len(new), 1, new)
            self.assertTrue(log_lines(new[0])[0].startswith(f'sockit: {ep}: reload failed, old certificate kept: '.encode()), new)
            lines += 1
            self.assertIsNone(server.proc.poll())

        self.install([(c.self_pem, cert), (c.self_key, key)])
        self.hup(server)
        self.wait_cert(ep, c.der('self.pem'), ctx=client_context(verify=False))
        self.assertEqual(len(server.stderr.splitlines()), lines, server.stderr)
        old.send(b'old one still works\n')
        self.assertEqual(old.recv_exactly(20), b'old one still works\n')
        self.assertEqual(server.stop(), 0)

    def test_reload_client_ca(self):
        c = self.certs
        ca = self.path('live-ca.pem')
        self.install([(c.ca_pem, ca)])
        server, eps = self.serve_tls(['tcp'], extra=f'ca={ca}')
        good = lambda: client_context(cert=c.client_pem, key=c.client_key)
        other = lambda: client_context(cert=c.badclient_pem, key=c.badclient_key)
        outcome, data = handshake_outcome(eps['tcp'], good())
        self.assertEqual((outcome, data), ('close_notify', b'ping\n'))
        self.install([(c.other_ca_pem, ca)])
        self.hup(server)
        deadline = time.monotonic() + 5.0
        while handshake_outcome(eps['tcp'], other()) != ('close_notify', b'ping\n'):
            self.assertLess(time.monotonic(), deadline, 'the new client CA was never used')
            time.sleep(0.05)
        outcome, data = handshake_outcome(eps['tcp'], good())
        self.assertEqual(data if outcome != 'handshake' else b'', b'', 'client of the old CA still served')


if __name__ == '__main__':
    unittest.main()
