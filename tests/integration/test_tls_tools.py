"""Black-box integration tests for `sockit connect`, `relay` and `bench` over TLS (cli-contract
v0.2: Endpoint options, TLS).

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
Certificates are made at test time (tls_helpers.certs()). TLS peers nobody on the team wrote —
`openssl s_server` (-rev: each line back reversed, the last unterminated one at close_notify),
socat OPENSSL-LISTEN with EXEC:cat, strict Python ssl servers — stand beside `sockit serve` over
TLS, on 127.0.0.1 and UNIX paths in a temporary directory. A test of a feature the build lacks
fails; one that needs a tool that is not installed is skipped.

    cd tests/integration && SOCKIT=build/sockit python3 -m unittest test_tls_tools
"""

import json
import os
import re
import socket
import subprocess
import time
import unittest

from helpers import *  # noqa: F401,F403
from tls_helpers import *  # noqa: F401,F403
from tls_helpers import tls_setup_module as setUpModule  # noqa: F401

BENCH_TIMEOUT = 20.0
REPORT_KEYS = {'requests', 'errors', 'duration_s', 'requests_per_s', 'mb_per_s', 'latency_us'}
TLS_KEYS = {'tls_version', 'tls_cipher'}
# What OpenSSL 3.0 negotiates between two default TLS 1.3 contexts.
TLS_VERSION, TLS_CIPHER = 'TLSv1.3', 'TLS_AES_256_GCM_SHA384'
AFTER = b'reply after your close_notify: '


def strict_tls_handler(conn):
    """A Python TLS server that reads until the client's close_notify (a TCP EOF without one
    fails), then answers AFTER + what it got and ends with its own close_notify."""
    s = server_context().wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
    got = bytearray()
    while True:
        chunk = s.recv(65536)           # b'' only on close_notify; a ragged EOF raises SSLEOFError
        if not chunk:
            break
        got += chunk
    s.sendall(AFTER + bytes(got))
    s.unwrap().close()
    return bytes(got)


class ToolsTest(TLSTest):

    def ca(self, name='ca_pem'):
        return f'ca={getattr(self.certs, name)}'

    def tls_server(self, kinds=('tcp',), service='echo', extra=''):
        """`sockit serve -s SERVICE` on a TLS endpoint of each kind; returns {kind: endpoint}."""
        server = self.serve(*[self.tls_ep(k, extra=extra) for k in kinds], opts=['-s', service])
        return dict(zip(kinds, server.endpoints))

    def rev_server(self, cert='server', extra=()):
        """openssl s_server -rev with cert NAME(.pem/.key); returns its tls:// endpoint."""
        _, port = s_server(self, getattr(self.certs, f'{cert}_pem'), getattr(self.certs, f'{cert}_key'),
                           ['-rev', *extra])
        return f'tls://127.0.0.1:{port}'

    def run_tool(self, command, args, input_=b'', timeout=15.0):
        start = time.monotonic()
        try:
            return subprocess.run([SOCKIT, command, *args], input=input_, capture_output=True,
                                  timeout=timeout, env=server_env())
        except subprocess.TimeoutExpired as e:
            self.fail(f'sockit {command} {args} did not end within {timeout}s (started '
                      f'{time.monotonic() - start:.1f}s ago); stderr {(e.stderr or b"")[:400]!r}')


# --------------------------------------------------------------------------- connect

class ConnectTest(ToolsTest):

    def test_sockit_tls_echo_on_tcp_and_unix(self):
        eps = self.tls_server(('tcp', 'unix') + (('tcp6',) if HAVE_IPV6 else ()))
        data = os.urandom(MIB)
        for kind, ep in eps.items():
            with self.subTest(kind=kind):
                result, _ = self.connect_run([f'{ep},{self.ca()}'], data, timeout=20)
                self.assertClean(result, data)

    def test_stdin_eof_sends_close_notify_and_reading_goes_on(self):
        peer = PyStreamServer(self, strict_tls_handler)
        port = peer.sock.getsockname()[1]
        result, _ = self.connect_run([f'tls://127.0.0.1:{port},{self.ca()}'], b'hello\nno newline')
        self.assertEqual(peer.wait(), [b'hello\nno newline'])
        self.assertClean(result, AFTER + b'hello\nno newline')

    def test_openssl_s_server(self):
        ep = self.rev_server()
        for extra in ('', ',sni=localhost'):
            with self.subTest(extra=extra):
                result, _ = self.connect_run([f'{ep},{self.ca()}{extra}'], b'hello\nworld\nabc')
                self.assertClean(result, b'olleh\ndlrow\ncba\n')

    def test_socat_tls_echo(self):
        _, port = socat_tls_echo(self)
        data = os.urandom(256 * 1024)
        result, _ = self.connect_run([f'tls://127.0.0.1:{port},{self.ca()}'], data, timeout=20)
        self.assertClean(result, data)

    def test_verification_is_on_by_default(self):
        ep = self.rev_server('self')
        result, _ = self.connect_run([ep], b'hello\n')
        self.assertVerifyFailed(result, REASON_SELF_SIGNED)
        self.assertEqual(result.stderr.decode(),
                         f'sockit: connect {ep}: certificate verify failed ({REASON_SELF_SIGNED})\n')

    def test_verify_failures_name_the_reason(self):
        cases = [('self', '', REASON_SELF_SIGNED), ('self', f',{self.ca()}', REASON_SELF_SIGNED),
                 ('server', f',{self.ca("other_ca_pem")}', REASON_NO_ISSUER),
                 ('wronghost', f',{self.ca()},sni=localhost', REASON_HOSTNAME),
                 ('wronghost', f',{self.ca()}', REASON_IP),
                 ('expired', f',{self.ca()}', REASON_EXPIRED)]
        servers = {}
        for cert, opts, reason in cases:
            with self.subTest(cert=cert, opts=opts):
                if cert not in servers:
                    servers[cert] = self.rev_server(cert)
                result, _ = self.connect_run([servers[cert] + opts], b'hello\n')
                self.assertVerifyFailed(result, reason)

    def test_verify_none(self):
        for cert in ('self', 'expired', 'wronghost'):
            with self.subTest(cert=cert):
                result, _ = self.connect_run([f'{self.rev_server(cert)},verify=none'], b'hello\n')
                self.assertClean(result, b'olleh\n')

    def test_sni_is_sent_and_an_ip_literal_sends_none(self):
        # s_server shows server.pem to a client naming `localhost`, self.pem to any other.
        c = self.certs
        ep = self.rev_server('self', ['-servername', 'localhost', '-cert2', c.server_pem, '-key2', c.server_key])
        result, _ = self.connect_run([f'{ep},{self.ca()},sni=localhost'], b'sni\n')
        self.assertClean(result, b'ins\n')
        result, _ = self.connect_run([f'{ep},{self.ca()}'], b'no sni\n')
        self.assertVerifyFailed(result, REASON_SELF_SIGNED)

    def test_client_certificate(self):
        c = self.certs
        ep = self.rev_server('server', ['-Verify', '1', '-verify_return_error', '-CAfile', c.ca_pem])
        mine = f'cert={c.client_pem},key={c.client_key}'
        result, _ = self.connect_run([f'{ep},{self.ca()},{mine}'], b'mutual\n')
        self.assertClean(result, b'lautum\n')
        for opts in ('', f',cert={c.badclient_pem},key={c.badclient_key}'):
            with self.subTest(opts=opts):
                result, _ = self.connect_run([f'{ep},{self.ca()}{opts}'], b'mutual\n')
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertEqual(result.stdout, b'')
                self.assertTrue(result.stderr.startswith(b'sockit: connect tls://'), result.stderr)
                self.assertEqual(result.stderr.count(b'\n'), 1, result.stderr)
        eps = self.tls_server(('tcp', 'unix'), extra=f'ca={c.ca_pem}')      # sockit's own mutual TLS
        for kind, ep in eps.items():
            with self.subTest(kind=kind):
                result, _ = self.connect_run([f'{ep},{self.ca()},{mine}'], b'mutual\n')
                self.assertClean(result, b'mutual\n')

    def test_failures_before_any_byte(self):
        port = free_port()
        result, _ = self.connect_run([f'tls://127.0.0.1:{port}'])
        self.assertExit(result, 1, f'sockit: connect tls://127.0.0.1:{port}: connection refused')
        missing = self.path('missing-ca.pem')
        with socket.socket() as listening:            # a peer that accepts (in the kernel) and is silent
            listening.bind(('127.0.0.1', 0))
            listening.listen()
            result, _ = self.connect_run([f'tls://127.0.0.1:{listening.getsockname()[1]},ca={missing}'])
        self.assertExit(result, 1)
        self.assertIn(b'missing-ca.pem', result.stderr)
        self.assertIn(b'no such file or directory', result.stderr)

    def test_usage_errors(self):
        result, _ = self.connect_run(['tls://127.0.0.1:1,crt=a.pem'])
        self.assertExit(result, 2, 'sockit: tls://127.0.0.1:1,crt=a.pem: unknown endpoint option "crt"')
        for ep, name in (('tls://127.0.0.1:1,mode=600', b'mode'), ('tls://127.0.0.1:1,verify=maybe', b'verify'),
                         ('udp://127.0.0.1:1,tls', b'tls'), ('tcp://127.0.0.1:1,ca=x.pem', b'ca'),
                         ('tcp://127.0.0.1:1,verify=none', b'verify')):
            with self.subTest(endpoint=ep):
                result, _ = self.connect_run([ep])
                self.assertExit(result, 2)
                self.assertIn(name, result.stderr)


# --------------------------------------------------------------------------- relay

class RelayTest(ToolsTest):

    def relay_tls(self, listen, target):
        relay = self.relay(listen, target)
        return relay, relay.endpoints[0]

    def plain_roundtrip(self, sock, data):
        writer = Writer(sock, data)
        writer.start()
        got = recv_until_eof(sock, timeout=30)
        writer.finish()
        if got != data:
            self.fail(f'{len(got)} bytes back instead of {len(data)}; first difference at '
                      f'{first_difference(got, data)}')

    def test_termination_to_tcp_and_unix(self):
        target = self.serve('tcp://127.0.0.1:0', 'unix:' + self.path('echo.sock'), opts=['-s', 'echo'])
        for target_ep in target.endpoints:
            for kind in ('tcp', 'unix'):
                with self.subTest(target=target_ep, listen=kind):
                    _, ep = self.relay_tls(self.tls_ep(kind), target_ep)
                    self.assertRegex(ep, r'^tls://127\.0\.0\.1:\d+$' if kind == 'tcp' else r'^unix:.*,tls$')
                    data = os.urandom(MIB)
                    got, end = self.client(ep).roundtrip(data)
                    self.assertRoundtrip(got, end, data)

    def test_termination_passes_the_half_close_on(self):
        target = self.serve('tcp://127.0.0.1:0')                    # timestamp
        _, ep = self.relay_tls(self.tls_ep('tcp'), target.endpoints[0])
        c = self.client(ep)
        t0 = time.time()
        got, end = c.roundtrip(b'unterminated')
        self.assertStamped(got, b'unterminated\n', t0)
        self.assertEqual(end, 'close_notify')

    def test_origination_to_sockit_and_socat(self):
        eps = self.tls_server(('tcp', 'unix'))
        targets = [f'{ep},{self.ca()}' for ep in eps.values()]
        if SOCAT:
            targets.append(f'tls://127.0.0.1:{socat_tls_echo(self)[1]},{self.ca()}')
        for target in targets:
            with self.subTest(target=target):
                relay, _ = self.relay_tls('tcp://127.0.0.1:0', target)
                self.plain_roundtrip(relay.connect(), os.urandom(MIB))

    def test_origination_half_close_is_a_close_notify(self):
        peer = PyStreamServer(self, strict_tls_handler)
        relay, _ = self.relay_tls('tcp://127.0.0.1:0', f'tls://127.0.0.1:{peer.sock.getsockname()[1]},{self.ca()}')
        c = relay.connect()
        c.sendall(b'through the relay')
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(c), AFTER + b'through the relay')
        self.assertEqual(peer.wait(), [b'through the relay'])
        ep = self.rev_server()                                        # and to openssl s_server
        relay, _ = self.relay_tls('tcp://127.0.0.1:0', f'{ep},{self.ca()}')
        c = relay.connect()
        c.sendall(b'hello\nabc')
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(c), b'olleh\ncba\n')

    def test_tls_to_tls(self):
        eps = self.tls_server()
        _, ep = self.relay_tls(self.tls_ep('tcp'), f'{eps["tcp"]},{self.ca()}')
        data = os.urandom(MIB)
        got, end = self.client(ep).roundtrip(data)
        self.assertRoundtrip(got, end, data)

    def test_target_that_fails_verification_closes_the_client_only(self):
        ep = self.rev_server('self')
        relay, _ = self.relay_tls('tcp://127.0.0.1:0', ep)
        for attempt in range(3):
            with self.subTest(attempt=attempt):
                c = relay.connect()
                c.sendall(b'hello\n')
                data, _ = read_to_close(c, timeout=10)
                self.assertEqual(data, b'')
                self.assertIsNone(relay.proc.poll(), 'the relay died')
        relay, _ = self.relay_tls('tcp://127.0.0.1:0', f'{ep},verify=none')    # the same peer, unverified
        c = relay.connect()
        c.sendall(b'hello\n')
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(c), b'olleh\n')

    def test_plaintext_client_on_a_terminating_relay(self):
        target = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
        _, ep = self.relay_tls(self.tls_ep('tcp'), target.endpoints[0])
        with plain_connect(ep) as raw:
            raw.sendall(b'hello\n')
            data, _ = read_to_close(raw, timeout=5.0)
        self.assertNotIn(b'hello', data)
        self.assertServes(ep)

    def test_usage_errors(self):
        c = self.certs
        for listen, target, name in (('tls://127.0.0.1:0', 'tcp://127.0.0.1:1', b'cert'),
                                     (self.tls_ep('tcp', extra='verify=none'), 'tcp://127.0.0.1:1', b'verify'),
                                     ('tcp://127.0.0.1:0', 'tls://127.0.0.1:1,crt=a.pem', b'crt'),
                                     ('tcp://127.0.0.1:0', f'tls://127.0.0.1:1,key={c.client_key},mode=600', b'mode')):
            with self.subTest(listen=listen, target=target):
                result = self.run_tool('relay', [listen, target])
                self.assertExit(result, 2)
                self.assertIn(name, result.stderr)


# --------------------------------------------------------------------------- bench

class BenchTest(ToolsTest):

    def bench(self, args):
        return self.run_tool('bench', args, timeout=BENCH_TIMEOUT)

    def bench_json(self, args, requests):
        result = self.bench(['--json', *args])
        self.assertEqual(result.returncode, 0, f'stderr {result.stderr!r}, stdout {result.stdout[:300]!r}')
        self.assertEqual(result.stderr, b'')
        report = json.loads(result.stdout)
        self.assertLessEqual(REPORT_KEYS | TLS_KEYS, set(report), report)
        self.assertEqual((report['requests'], report['errors']), (requests, 0), report)
        self.assertEqual((report['tls_version'], report['tls_cipher']), (TLS_VERSION, TLS_CIPHER), report)
        self.assertGreater(report['requests_per_s'], 0, report)
        return report

    def test_text_report_names_protocol_and_cipher(self):
        ep = self.tls_server()['tcp']
        result = self.bench(['-c', '4', '-n', '200', f'{ep},{self.ca()}'])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, b'')
        out = result.stdout.decode()
        for key in ('requests/s', 'MB/s', 'latency us'):
            self.assertEqual(len(re.findall(rf'^{re.escape(key)}\s', out, re.M)), 1, out)
        self.assertRegex(out, r'requests\s+200 in [\d.]+ s, 0 errors')
        self.assertIn(TLS_VERSION, out)
        self.assertIn(TLS_CIPHER, out)

    def test_pipelined_requests_larger_than_the_output_limit(self):
        # 4 x 200000 bytes in flight is more than one connection's default queue.
        ep = self.tls_server(('unix',))['unix']
        self.bench_json(['-c', '2', '-n', '40', '--size', '200000', '--pipeline', '4',
                         f'{ep},{self.ca()}'], 40)

    def test_json_report_on_tcp_and_unix(self):
        eps = self.tls_server(('tcp', 'unix'))
        for kind, ep in eps.items():
            with self.subTest(kind=kind):
                self.bench_json(['-c', '4', '-n', '200', f'{ep},{self.ca()}'], 200)
                self.bench_json(['-c', '2', '-n', '200', '--pipeline', '4', '--size', '16384',
                                 f'{ep},{self.ca()}'], 200)

    def test_connect_mode_one_handshake_per_request(self):
        ep = self.tls_server()['tcp']
        self.bench_json(['--connect', '-c', '2', '-n', '100', f'{ep},{self.ca()}'], 100)
        result = self.bench(['--connect', '-c', '2', '-n', '50', f'{ep},{self.ca()}'])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(TLS_VERSION.encode(), result.stdout)

    def test_independent_tls_echo(self):
        _, port = socat_tls_echo(self)
        self.bench_json(['-c', '2', '-n', '100', f'tls://127.0.0.1:{port},{self.ca()}'], 100)

    def test_self_signed_server_without_ca(self):
        ep = self.rev_server('self')
        for args in (['-c', '1', '-n', '10'], ['--connect', '-c', '1', '-n', '10'], ['--json', '-c', '1', '-n', '10']):
            with self.subTest(args=args):
                result = self.bench([*args, ep])
                self.assertVerifyFailed(result, REASON_SELF_SIGNED, verb='bench')
                self.assertEqual(result.stderr.decode(),
                                 f'sockit: bench {ep}: certificate verify failed ({REASON_SELF_SIGNED})\n')
                if '--json' in args:
                    report = json.loads(result.stdout)
                    self.assertEqual(report['requests'], 0, report)
                    self.assertGreaterEqual(report['errors'], 1, report)

    def test_verify_none_and_wrong_ca(self):
        ep = self.tls_server()['tcp']
        result = self.bench(['-c', '2', '-n', '20', f'{ep},{self.ca("other_ca_pem")}'])
        self.assertVerifyFailed(result, REASON_NO_ISSUER, verb='bench')
        result = self.bench(['-c', '2', '-n', '20', f'{ep},verify=none'])
        self.assertEqual(result.returncode, 0, result.stderr)


if __name__ == '__main__':
    unittest.main()
