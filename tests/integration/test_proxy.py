"""Black-box integration tests for the PROXY protocol (HAProxy's v1 and v2) in `sockit serve` and
`sockit relay`: `ENDPOINT,proxy=v1|v2|any` on listening endpoints (tcp, unix, tls) and
`TARGET,proxy=v1|v2` on a relay's target.

Headers are built and parsed in Python (proxy_helpers); the addresses they carry are from the
documentation ranges (203.0.113.0/24, 198.51.100.0/24, 2001:db8::/32) and are never connected to:
every socket is on 127.0.0.1 or a UNIX path in a temporary directory.

    cd tests/integration && SOCKIT=build/sockit python3 -m unittest test_proxy -v
"""

import random
import select
import socket
import ssl
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401
from proxy_helpers import *  # noqa: F401,F403

SRC, DST = '203.0.113.7', '198.51.100.9'
SRC6, DST6 = '2001:db8::1', '2001:db8::2'
SPIN_CPU_MAX = 0.2      # CPU seconds a server waiting for the rest of a header may use in 1 s
EXEC_ENV = 'printf "%s %s\\n" "$SOCKIT_PEER" "$SOCKIT_LOCAL"'


def tls_certs():
    from tls_helpers import certs
    return certs()          # skips the test when openssl is missing


def tls_client_after_header(sock, header, payload, together=True, nbytes=None, timeout=TIMEOUT):
    """On a plain socket: a PROXY header, then a TLS handshake (the header and the ClientHello in
    one send when together), then payload; returns what comes back (nbytes, default
    len(payload))."""
    from tls_helpers import client_context
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(inc, out, server_hostname='127.0.0.1')
    deadline = time.monotonic() + timeout
    if not together:
        sock.sendall(header)
        header = b''
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(header + out.read())
            header = b''
            data = recv_some(sock, deadline)
            inc.write(data)
    obj.write(payload)
    sock.sendall(out.read())
    got = bytearray()
    while len(got) < (len(payload) if nbytes is None else nbytes):
        try:
            got += obj.read(65536)
        except ssl.SSLWantReadError:
            inc.write(recv_some(sock, deadline))
    return bytes(got)


def recv_some(sock, deadline):
    sock.settimeout(max(deadline - time.monotonic(), 0.01))
    data = sock.recv(65536)
    if not data:
        raise AssertionError('EOF during the TLS exchange')
    return data


class Base(ProxyTest):

    def pserve(self, service=('-s', 'echo'), proxy='v2', kind='tcp', opts=()):
        ep = self.endpoint(kind) + f',proxy={proxy}'
        return self.serve(ep, opts=[*service, *opts])

    def exec_env(self, server, header, i=0):
        """SOCKIT_PEER and SOCKIT_LOCAL as the --exec child of a client sending header saw them."""
        s = self.pconnect(server, header, i)
        return recv_until_eof(s).decode()


# --------------------------------------------------------------------------- listening, names

class ListeningTest(Base):

    def test_listening_lines_keep_the_option(self):
        unix = self.path('p.sock')
        server = self.serve('tcp://127.0.0.1:0,proxy=v1', 'tcp://127.0.0.1:0,proxy=v2',
                            'tcp://127.0.0.1:0,proxy=any', f'unix:{unix},proxy=v2', opts=['-s', 'echo'])
        eps = server.endpoints
        for i, v in enumerate(('v1', 'v2', 'any')):
            self.assertRegex(eps[i], r'^tcp://127\.0\.0\.1:[1-9]\d*,proxy=' + v + r'\Z')
        self.assertEqual(eps[3], f'unix:{unix},proxy=v2')

    def test_tls_listening_line(self):
        c = tls_certs()
        server = self.serve(f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key},proxy=v2',
                            opts=['-s', 'echo'])
        self.assertRegex(server.endpoints[0], r'^tls://127\.0\.0\.1:[1-9]\d*,proxy=v2\Z')

    def test_exec_sees_the_header_addresses(self):
        server = self.serve('tcp://127.0.0.1:0,proxy=any', f'unix:{self.path("x.sock")},proxy=any',
                            opts=['--exec', EXEC_ENV])
        cases = [
            (0, v1(SRC, DST, 4242, 443), f'tcp://{SRC}:4242 tcp://{DST}:443\n'),
            (0, v2(SRC, DST, 4242, 443), f'tcp://{SRC}:4242 tcp://{DST}:443\n'),
            (0, v1(SRC6, DST6, 80, 8080), f'tcp://[{SRC6}]:80 tcp://[{DST6}]:8080\n'),
            (0, v2(SRC6, DST6, 80, 8080), f'tcp://[{SRC6}]:80 tcp://[{DST6}]:8080\n'),
            (0, v2('0.0.0.0', '255.255.255.255', 0, 65535), 'tcp://0.0.0.0:0 tcp://255.255.255.255:65535\n'),
            (0, v2_unix(b'/run/client.sock', b'/run/server.sock'), 'unix:/run/client.sock unix:/run/server.sock\n'),
            (0, v2_unix(b'\0client-name', b'/run/s.sock'), 'unix:@client-name unix:/run/s.sock\n'),
            (1, v1(SRC, DST, 4242, 443), f'tcp://{SRC}:4242 tcp://{DST}:443\n'),
            (1, v2(SRC6, DST6, 80, 8080), f'tcp://[{SRC6}]:80 tcp://[{DST6}]:8080\n'),
        ]
        for i, header, want in cases:
            with self.subTest(listener=server.endpoints[i], header=header[:40]):
                self.assertEqual(self.exec_env(server, header, i), want)

    def test_unknown_and_local_keep_the_socket_peer(self):
        server = self.serve('tcp://127.0.0.1:0,proxy=any', opts=['--exec', EXEC_ENV])
        for header in (V1_UNKNOWN, b'PROXY UNKNOWN ignored 1.2.3.4 anything\r\n', V2_LOCAL,
                       v2(SRC, DST, 1, 2, cmd=V2_CMD_LOCAL),
                       v2_raw(V2_CMD_PROXY, 0x00, b'')):   # PROXY, family UNSPEC: ignored too
            with self.subTest(header=header):
                s = self.pconnect(server, header)
                want = f'{sock_name(s, "self")} {sock_name(s)}\n'
                self.assertEqual(recv_until_eof(s).decode(), want)

    def test_chat_names_come_from_the_header(self):
        server = self.pserve(('-s', 'chat'), proxy='v1')
        a = self.pconnect(server, v1('198.51.100.1', DST, 1111, 7000))
        ra = LineReader(a)
        a.sendall(b'/who\n')                        # a is in the room once it is answered
        self.assertEqual(ra.line(), b'* tcp://198.51.100.1:1111\n')
        b = self.pconnect(server, v1(SRC, DST, 4242, 7000))
        self.assertEqual(ra.line(), b'* tcp://203.0.113.7:4242 joined\n')
        b.sendall(b'hi\n')
        self.assertEqual(ra.line(), b'[tcp://203.0.113.7:4242] hi\n')
        b.close()
        self.assertEqual(ra.line(), b'* tcp://203.0.113.7:4242 left\n')

    def test_verbose_log_names_the_header_source(self):
        server = self.serve('tcp://127.0.0.1:0,proxy=v2', opts=['-s', 'echo', '-v'])
        for header, name in ((v2(SRC, DST, 4242, 443), f'tcp://{SRC}:4242'),
                             (v2(SRC6, DST6, 80, 443), f'tcp://[{SRC6}]:80')):
            s = self.pconnect(server, header)
            self.assertEchoes(s)
            s.close()
            head = f'sockit: close {re.escape(name)} on {re.escape(server.endpoints[0])} after '
            close = re.compile((head + r'\d+\.\d{3} s, 5 bytes in, 5 bytes out: peer closed').encode())
            self.assertTrue(server.wait_stderr(lambda e: any(map(close.fullmatch, log_lines(e)))), server.stderr)
            self.assertIn(f'sockit: open {name} on {server.endpoints[0]}'.encode(), log_lines(server.stderr))


# --------------------------------------------------------------------------- the client's data

class DataTest(Base):

    def test_echo_data_with_and_after_the_header(self):
        payload = bytes(range(256)) * 64
        for proxy, header in (('v1', v1(SRC, DST, 1, 2)), ('v2', v2(SRC, DST, 1, 2)),
                              ('any', v1(SRC6, DST6, 1, 2)), ('any', v2(SRC6, DST6, 1, 2)),
                              ('v2', V2_LOCAL), ('v1', V1_UNKNOWN)):
            with self.subTest(proxy=proxy, header=header[:30]):
                server = self.pserve(proxy=proxy)
                s = self.pconnect(server, header, data=payload[:1000])   # one send
                self.assertEqual(recv_exactly(s, 1000), payload[:1000])
                s.sendall(payload[1000:])
                self.assertEqual(recv_exactly(s, len(payload) - 1000), payload[1000:])
                later = self.pconnect(server, header)                     # data in a later send
                self.assertEchoes(later, b'later\n')
                # A header that looks like data after it: a second header is data.
                again = self.pconnect(server, header, data=header)
                self.assertEqual(recv_exactly(again, len(header)), header)

    def test_timestamp_answers_each_line_after_the_header(self):
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                server = self.pserve(('-s', 'timestamp'), proxy='any', kind=kind)
                t0 = time.time()
                s = self.pconnect(server, v2(SRC, DST, 1, 2), data=b'one\ntwo\n')
                r = LineReader(s)
                self.assertStamped(r.line(), b'one\n', t0)
                self.assertStamped(r.line(), b'two\n', t0)
                s.shutdown(socket.SHUT_WR)
                self.assertEqual(recv_until_eof(s), b'')

    def test_v1_header_of_107_bytes_and_the_longest_addresses(self):
        server = self.pserve(proxy='v1', service=('--exec', EXEC_ENV))
        header = b'PROXY UNKNOWN ' + b'x' * 91 + b'\r\n'
        self.assertEqual(len(header), 107)
        s = self.pconnect(server, header)
        self.assertEqual(recv_until_eof(s).decode(), f'{sock_name(s, "self")} {sock_name(s)}\n')
        full = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'
        self.assertEqual(self.exec_env(server, v1(full, full, 65535, 65535)),
                         f'tcp://[{full}]:65535 tcp://[{full}]:65535\n')
        # An IPv4-mapped address is named as the IPv4 one, as on a dual-stack listener.
        self.assertEqual(self.exec_env(server, v1('::ffff:1.2.3.4', '::1', 1, 2)),
                         'tcp://1.2.3.4:1 tcp://[::1]:2\n')

    def test_addresses_of_the_other_family_on_a_one_family_listener(self):
        # A tcp6:// listener told of IPv4 addresses (mapped or not), a tcp4:// one of IPv6
        # ones: each is named with tcp://, a text sockit parses (not tcp6://1.2.3.4:1; the
        # unit test of sk_endpoint_from_addr() parses each back).
        for ep, header, want in (
                ('tcp6://[::1]:0', v1('::ffff:1.2.3.4', '::ffff:5.6.7.8', 1, 2),
                 'tcp://1.2.3.4:1 tcp://5.6.7.8:2\n'),
                ('tcp6://[::1]:0', v2('1.2.3.4', '5.6.7.8', 1, 2), 'tcp://1.2.3.4:1 tcp://5.6.7.8:2\n'),
                ('tcp4://127.0.0.1:0', v1('2001:db8::1', '::1', 1, 2),
                 'tcp://[2001:db8::1]:1 tcp://[::1]:2\n')):
            with self.subTest(ep=ep, header=header):
                proxy = 'v1' if header.startswith(b'PROXY') else 'v2'
                server = self.serve(f'{ep},proxy={proxy}', opts=['--exec', EXEC_ENV])
                self.assertEqual(self.exec_env(server, header), want)
                server.stop()

    def test_v2_header_of_4096_bytes_with_tlvs(self):
        server = self.pserve(proxy='v2')
        tlvs = b'\x04' + struct.pack('!H', 4065) + bytes(4065)          # PP2_TYPE_NOOP
        header = v2(SRC, DST, 1, 2, tlvs=tlvs)
        self.assertEqual(len(header), 4096)
        s = self.pconnect(server, header, data=b'after a big header\n')
        self.assertEqual(recv_exactly(s, 19), b'after a big header\n')
        s2 = self.pconnect(server, v2(SRC, DST, 1, 2, tlvs=b'\x01\x00\x02h2\x04\x00\x00'))   # ALPN, NOOP
        self.assertEchoes(s2)

    def test_services_that_speak_first_wait_for_the_header(self):
        for service in ('daytime', 'time', 'chargen'):
            with self.subTest(service=service):
                server = self.pserve(('-s', service), proxy='v2')
                s = self.pconnect(server)
                assert_silent(s, 0.3)
                t0 = time.time()
                s.sendall(v2(SRC, DST, 1, 2))
                if service == 'daytime':
                    self.assertDaytime(recv_until_eof(s), t0)
                elif service == 'time':
                    self.assertTime(recv_until_eof(s), t0)
                else:
                    self.assertEqual(recv_exactly(s, 74 * 3), chargen_bytes(74 * 3))

    def test_chat_join_waits_for_the_header(self):
        server = self.pserve(('-s', 'chat'), proxy='v2')
        a = self.pconnect(server, v2('198.51.100.1', DST, 1111, 7000))
        ra = LineReader(a)
        a.sendall(b'/who\n')
        self.assertEqual(ra.line(), b'* tcp://198.51.100.1:1111\n')
        b = self.pconnect(server)
        readable, _, _ = select.select([a, b], [], [], 0.3)
        self.assertEqual(readable, [], 'something was said before the header came')
        b.sendall(v2(SRC, DST, 4242, 7000) + b'first words\n')
        self.assertEqual(ra.line(), b'* tcp://203.0.113.7:4242 joined\n')
        self.assertEqual(ra.line(), b'[tcp://203.0.113.7:4242] first words\n')

    def test_header_split_into_single_bytes(self):
        for proxy, header in (('v1', v1(SRC, DST, 4242, 443)), ('v2', v2(SRC, DST, 4242, 443)),
                              ('any', v2(SRC6, DST6, 80, 443)), ('any', v1(SRC6, DST6, 80, 443))):
            with self.subTest(proxy=proxy, header=header[:20]):
                server = self.pserve(('--exec', f'{EXEC_ENV}; cat'), proxy=proxy)
                s = self.pconnect(server)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for k in range(len(header) - 1):
                    s.send(header[k:k + 1])
                    time.sleep(0.003)                  # separate segments: the input
                s.sendall(header[-1:] + b'data\n')     # the last byte and data in one segment
                r = LineReader(s)
                src = f'tcp://[{SRC6}]:80' if proxy == 'any' else f'tcp://{SRC}:4242'
                self.assertTrue(r.line().decode().startswith(src + ' '))
                self.assertEqual(r.line(), b'data\n')

    def test_waiting_for_the_rest_of_a_header_does_not_spin(self):
        for proxy, header in (('v1', v1(SRC, DST, 4242, 443)), ('v2', v2(SRC, DST, 4242, 443))):
            with self.subTest(proxy=proxy):
                server = self.pserve(proxy=proxy, opts=['--threads', '1'])
                s = self.pconnect(server, header[:len(header) // 2])
                before = cpu_seconds(server.pid)
                time.sleep(1.0)                        # the window the CPU time is measured over
                used = cpu_seconds(server.pid) - before
                self.assertLess(used, SPIN_CPU_MAX, f'{used:.2f} s of CPU in 1 s waiting for a header')
                s.sendall(header[len(header) // 2:] + b'rest\n')
                self.assertEqual(recv_exactly(s, 5), b'rest\n')


# --------------------------------------------------------------------------- TLS

class TLSProxyTest(Base):

    def test_header_before_the_tls_handshake(self):
        c = tls_certs()
        server = self.serve(f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key},proxy=v2',
                            f'unix:{self.path("t.sock")},tls,cert={c.server_pem},key={c.server_key},proxy=v1',
                            opts=['-s', 'echo'])
        for i, header in ((0, v2(SRC, DST, 1, 2)), (1, v1(SRC, DST, 1, 2))):
            for together in (True, False):
                with self.subTest(listener=server.endpoints[i], together=together):
                    s = self.pconnect(server, i=i)
                    self.assertEqual(tls_client_after_header(s, header, b'secret\n', together), b'secret\n')

    def test_exec_over_tls_sees_the_header_source(self):
        c = tls_certs()
        server = self.serve(f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key},proxy=any',
                            opts=['--exec', f'read x; {EXEC_ENV}'])
        s = self.pconnect(server)
        want = f'tcp://{SRC}:4242 tcp://{DST}:443\n'.encode()
        self.assertEqual(tls_client_after_header(s, v1(SRC, DST, 4242, 443), b'go\n', nbytes=len(want)),
                         want)

    def test_half_header_on_a_tls_listener_does_not_spin(self):
        c = tls_certs()
        server = self.serve(f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key},proxy=v2',
                            opts=['-s', 'echo', '--threads', '1'])
        header = v2(SRC, DST, 1, 2)
        s = self.pconnect(server, data=header[:15])
        before = cpu_seconds(server.pid)
        time.sleep(1.0)                                 # the window the CPU time is measured over
        used = cpu_seconds(server.pid) - before
        self.assertLess(used, SPIN_CPU_MAX, f'{used:.2f} s of CPU in 1 s waiting for a header')
        self.assertEqual(tls_client_after_header(s, header[15:], b'late\n'), b'late\n')

    def test_tls_handshake_without_a_header_is_refused(self):
        c = tls_certs()
        server = self.serve(f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key},proxy=v2',
                            opts=['-s', 'echo'])
        from tls_helpers import client_context
        s = self.pconnect(server)
        with self.assertRaises((ssl.SSLError, OSError)):
            client_context().wrap_socket(s, server_hostname='127.0.0.1').sendall(b'x')
        good = self.pconnect(server)
        self.assertEqual(tls_client_after_header(good, v2(SRC, DST, 1, 2), b'ok\n'), b'ok\n')


# --------------------------------------------------------------------------- bad headers

V1_BAD = [
    (b'PROXY UNKNOWN ' + b'x' * 93, 'v1 header longer than 107 bytes'),
    (b'PROXY UNKNOWN ' + b'x' * 92 + b'\r\n', 'v1 header longer than 107 bytes'),
    (b'PROXY TCP4 203.0.113.256 10.0.0.1 4242 80\r\n', 'v1 bad source address'),
    (b'PROXY TCP4 2001:db8::1 10.0.0.1 4242 80\r\n', 'v1 bad source address'),
    (b'PROXY TCP4 203.0.113.7 10.0.0 4242 80\r\n', 'v1 bad destination address'),
    (b'PROXY TCP6 203.0.113.7 2001:db8::2 1 2\r\n', 'v1 bad source address'),
    (b'PROXY TCP4 203.0.113.7 10.0.0.1 65536 80\r\n', 'v1 bad source port'),
    (b'PROXY TCP4 203.0.113.7 10.0.0.1 4242 080\r\n', 'v1 bad destination port'),
    (b'PROXY TCP4 203.0.113.7 10.0.0.1 4242 -1\r\n', 'v1 bad destination port'),
    (b'PROXY TCP4 203.0.113.7 10.0.0.1 4242 80\n', 'v1 header ends in LF without CR'),
    (b'PROXY TCP4 203.0.113.7 10.0.0.1 4242 80\rX\n', 'v1 CR not followed by LF'),
    (b'PROXY TCP5 203.0.113.7 10.0.0.1 4242 80\r\n', 'v1 protocol is not TCP4, TCP6 or UNKNOWN'),
    (b'PROXY TCP4 203.0.113.7 10.0.0.1 4242\r\n', 'v1 header missing fields'),
    (b'PROXY TCP4  203.0.113.7 10.0.0.1 4242 80\r\n', 'v1 bad source address'),
    (v2(SRC, DST, 1, 2), 'v2 header, but only v1 is expected'),
    (b'proxy TCP4 203.0.113.7 10.0.0.1 4242 80\r\n', 'not a PROXY protocol header'),
    (b'GET / HTTP/1.0\r\n\r\n', 'not a PROXY protocol header'),
]
ADDR4 = bytes(12)
V2_BAD = [
    (v1(SRC, DST, 1, 2), 'v1 header, but only v2 is expected'),
    (v2_raw(0x11, 0x11, ADDR4), 'v2 version is not 2'),
    (v2_raw(0x31, 0x11, ADDR4), 'v2 version is not 2'),
    (v2_raw(0x22, 0x11, ADDR4), 'v2 command is not LOCAL or PROXY'),
    (v2_raw(0x2f, 0x11, ADDR4), 'v2 command is not LOCAL or PROXY'),
    (v2_raw(0x21, 0x41, ADDR4), 'v2 address family is not UNSPEC, INET, INET6 or UNIX'),
    (v2_raw(0x21, 0x13, ADDR4), 'v2 transport is not UNSPEC, STREAM or DGRAM'),
    (v2_raw(0x21, 0x11, b'', length=4081), 'v2 header longer than 4096 bytes'),
    (v2_raw(0x21, 0x11, b'', length=0xffff), 'v2 header longer than 4096 bytes'),
    (v2_raw(0x21, 0x11, bytes(8)), 'v2 length too short for its addresses'),
    (v2_raw(0x21, 0x21, bytes(12)), 'v2 length too short for its addresses'),
    (v2_raw(0x21, 0x31, bytes(200)), 'v2 length too short for its addresses'),
    (v2_raw(0x21, 0x11, ADDR4 + b'\x04\x00'), 'v2 TLV header cut by the end of the header'),
    (v2_raw(0x21, 0x11, ADDR4 + b'\x04\x00\x05ab'), 'v2 TLV value cut by the end of the header'),
    (b'\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c' + ADDR4, 'not a PROXY protocol header'),
    (b'\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03', 'not a PROXY protocol header'),
]


class BadHeaderTest(Base):

    def setUp(self):
        super().setUp()
        self.server = self.serve('tcp://127.0.0.1:0,proxy=v1', 'tcp://127.0.0.1:0,proxy=v2',
                                 'tcp://127.0.0.1:0,proxy=any',
                                 opts=['-s', 'echo', '-v', '--handshake-timeout', '1', '--threads', '1'])
        self.good = [self.pconnect(self.server, h, i) for i, h in
                     ((0, v1(SRC, DST, 1, 1)), (1, v2(SRC, DST, 2, 2)), (2, V1_UNKNOWN))]
        for g in self.good:
            self.assertEchoes(g)

    def assertStillServing(self, what):
        for g in self.good:
            self.assertEchoes(g, f'after {what}\n'.encode())
        self.assertTrue(process_alive(self.server.pid))

    def assertLogged(self, sock_port, why):
        line = f'sockit: proxy header tcp://127.0.0.1:{sock_port}: {why}\n'.encode()
        self.assertTrue(self.server.wait_stderr(lambda e: line in e),
                        f'{line!r} not in the log: {self.server.stderr[-600:]!r}')

    def bad_client(self, i, data):
        s = self.pconnect(self.server, i=i)
        port = s.getsockname()[1]
        try_send(s, data)
        got, _ = read_to_close(s, timeout=3)
        return got, port

    def test_malformed_headers_close_that_connection_only(self):
        cases = ([(0, d, w) for d, w in V1_BAD] + [(1, d, w) for d, w in V2_BAD]
                 + [(2, d, w) for d, w in V1_BAD[2:14] + V2_BAD[1:] if 'only' not in w])
        for i, data, why in cases:
            with self.subTest(listener=self.server.endpoints[i], header=data[:50]):
                got, port = self.bad_client(i, data)
                self.assertEqual(got, b'', 'a bad header must not be answered')
                self.assertLogged(port, why)
                self.assertStillServing(data[:20])

    def test_connect_and_close_and_a_header_cut_by_eof(self):
        for i, data in ((2, b''), (1, v2(SRC, DST, 1, 2)[:20]), (0, b'PROXY TCP4 203.0.')):
            with self.subTest(data=data):
                s = self.pconnect(self.server, i=i)
                port = s.getsockname()[1]
                if data:
                    s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                self.assertEqual(read_to_close(s, timeout=3)[0], b'')
                self.assertLogged(port, 'closed before its PROXY header')
                self.assertStillServing('eof')

    def test_half_a_header_is_closed_after_the_handshake_timeout(self):
        for i, data in ((0, b'PROXY TCP4 203.0.113.7 '), (1, v2(SRC, DST, 1, 2)[:14]), (2, b'')):
            with self.subTest(data=data):
                t0 = time.monotonic()
                s = self.pconnect(self.server, i=i, data=data)
                port = s.getsockname()[1]
                self.assertStillServing('half a header, still waiting')     # meanwhile
                self.assertEqual(read_to_close(s, timeout=4)[0], b'')
                elapsed = time.monotonic() - t0
                self.assertGreater(elapsed, 0.7, 'closed long before the handshake timeout')
                self.assertLess(elapsed, 3.0, 'not closed at the handshake timeout (1 s)')
                self.assertLogged(port, 'no PROXY header in time')
                self.assertStillServing('a timeout')

    def test_random_and_mutated_headers(self):
        rng = random.Random(20240607)
        valid = [v1(SRC, DST, 4242, 443), v2(SRC, DST, 4242, 443), v1(SRC6, DST6, 1, 65535),
                 v2(SRC6, DST6, 1, 2), V1_UNKNOWN, V2_LOCAL, v2_unix(b'/a', b'/b'),
                 v2(SRC, DST, 1, 2, tlvs=b'\x04\x00\x03abc')]

        def mutate(h):
            h = bytearray(h)
            for _ in range(rng.randint(1, 4)):
                if not h:
                    break
                op, k = rng.randrange(4), rng.randrange(len(h))
                if op == 0:
                    h[k] = rng.randrange(256)
                elif op == 1:
                    del h[k:k + rng.randint(1, 8)]
                elif op == 2:
                    h[k:k] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
                else:
                    h = h[:k]
            return bytes(h)

        inputs = []
        for n in range(1000):
            kind = n % 10
            if kind == 0:           # a valid header and data: echoed exactly
                payload = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
                inputs.append((rng.choice(valid), payload))
            elif kind <= 6:
                inputs.append((mutate(rng.choice(valid)), None))
            elif kind == 7:
                inputs.append((V2_SIG + bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))), None))
            elif kind == 8:
                inputs.append((b'PROXY ' + bytes(rng.randrange(32, 127) for _ in range(rng.randint(0, 120))), None))
            else:
                inputs.append((bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))), None))

        start, batch = time.monotonic(), 50
        for b in range(0, len(inputs), batch):
            socks = []
            for header, payload in inputs[b:b + batch]:
                s = ep_connect(self.server.endpoints[2])
                socks.append(s)
                try_send(s, header + (payload or b''))
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            for s, (header, payload) in zip(socks, inputs[b:b + batch]):
                got, how = read_to_close(s, timeout=5)
                s.close()
                sent = header + (payload or b'')
                if payload is not None:
                    self.assertEqual((got, how), (payload, 'eof'), f'valid header {header[:40]!r}')
                else:
                    self.assertTrue(got == b'' or sent.endswith(got),
                                    f'{got[:60]!r} is not what followed a header in {sent[:80]!r}')
            self.assertLess(time.monotonic() - start, 40, 'the headers took too long')
        self.assertStillServing('1000 headers')


# --------------------------------------------------------------------------- relay

def echo_after_header(conn):
    """A relay target: reads the PROXY header, then echoes until EOF; returns the header."""
    h = read_header(conn)
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return h
        conn.sendall(chunk)


class RelayProxyTest(Base):

    def proxied_relay(self, listen, target_proxy, handler=echo_after_header):
        peer = PyStreamServer(self, handler)
        relay = self.relay(listen, f'{peer.endpoint()},proxy={target_proxy}',
                           opts=['--drain-timeout', '0.2'])
        return relay, peer

    def through(self, relay, header=None, payload=b'through the relay\n', tls=False):
        s = self.pconnect(relay)
        if tls:
            self.assertEqual(tls_client_after_header(s, header, payload), payload)
            s.close()
        else:
            s.sendall((header or b'') + payload)       # the data in the header's segment
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(s), payload)
        return s

    def test_target_gets_the_client_addresses(self):
        for version in ('v1', 'v2'):
            with self.subTest(version=version):
                relay, peer = self.proxied_relay('tcp://127.0.0.1:0', version)
                s = self.through(relay)
                (h,) = peer.wait()
                cport = s.getsockname()[1]
                self.assertEqual(h['version'], int(version[1]))
                self.assertEqual((h['local'], h['family']), (False, socket.AF_INET))
                self.assertEqual((h['src'], h['sport'], h['dst'], h['dport']),
                                 ('127.0.0.1', cport, '127.0.0.1', ep_port(relay.endpoints[0])))

    def test_target_gets_what_the_clients_header_said(self):
        cases = [
            ('v1', v1(SRC, DST, 4242, 443), 'v2', (socket.AF_INET, SRC, 4242, DST, 443)),
            ('v2', v2(SRC, DST, 4242, 443), 'v1', (socket.AF_INET, SRC, 4242, DST, 443)),
            ('any', v2(SRC6, DST6, 80, 8443), 'v1', (socket.AF_INET6, SRC6, 80, DST6, 8443)),
            ('v1', v1(SRC6, DST6, 80, 8443), 'v2', (socket.AF_INET6, SRC6, 80, DST6, 8443)),
        ]
        for listen_proxy, header, target_proxy, want in cases:
            with self.subTest(listen=listen_proxy, header=header[:30], target=target_proxy):
                relay, peer = self.proxied_relay(f'tcp://127.0.0.1:0,proxy={listen_proxy}', target_proxy)
                self.through(relay, header)
                (h,) = peer.wait()
                self.assertEqual(h['version'], int(target_proxy[1]))
                self.assertEqual((h['family'], h['src'], h['sport'], h['dst'], h['dport']), want)

    def test_local_header_passes_on_the_socket_addresses(self):
        for header in (V2_LOCAL, V1_UNKNOWN):
            with self.subTest(header=header):
                relay, peer = self.proxied_relay('tcp://127.0.0.1:0,proxy=any', 'v2')
                s = self.through(relay, header)
                (h,) = peer.wait()
                self.assertEqual((h['src'], h['sport'], h['dst'], h['dport']),
                                 ('127.0.0.1', s.getsockname()[1], '127.0.0.1', ep_port(relay.endpoints[0])))

    def test_unix_addresses(self):
        relay, peer = self.proxied_relay('tcp://127.0.0.1:0,proxy=v2', 'v2')
        self.through(relay, v2_unix(b'/run/c.sock', b'/run/s.sock'))
        (h,) = peer.wait()
        self.assertEqual((h['family'], h['src'].rstrip(b'\0'), h['dst'].rstrip(b'\0')),
                         (socket.AF_UNIX, b'/run/c.sock', b'/run/s.sock'))
        relay, peer = self.proxied_relay('tcp://127.0.0.1:0,proxy=v2', 'v1')
        self.through(relay, v2_unix(b'/run/c.sock', b'/run/s.sock'))
        self.assertEqual(peer.wait()[0]['raw'], V1_UNKNOWN)     # v1 cannot carry UNIX addresses

    def test_tls_target_gets_the_header_before_the_handshake(self):
        from tls_helpers import server_context
        tls_certs()
        ctx = server_context()

        def tls_echo(conn):
            h = read_header(conn)                           # in the clear
            with ctx.wrap_socket(conn, server_side=True) as t:
                got = bytearray()
                while len(got) < 10:
                    chunk = t.recv(100)
                    if not chunk:
                        break
                    got += chunk
                t.sendall(got)
            return h

        peer = PyStreamServer(self, tls_echo)
        relay = self.relay('tcp://127.0.0.1:0', f'tls://127.0.0.1:{peer.sock.getsockname()[1]},proxy=v2,verify=none',
                           opts=['--drain-timeout', '0.2'])
        s = self.pconnect(relay)
        s.sendall(b'encrypted\n')
        self.assertEqual(recv_exactly(s, 10), b'encrypted\n')
        (h,) = peer.wait()
        self.assertEqual((h['version'], h['src'], h['sport'], h['dst'], h['dport']),
                         (2, '127.0.0.1', s.getsockname()[1], '127.0.0.1', ep_port(relay.endpoints[0])))

    def test_tls_listener_with_a_header(self):
        c = tls_certs()
        relay, peer = self.proxied_relay(
            f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key},proxy=v2', 'v1')
        self.assertRegex(relay.endpoints[0], r'^tls://127\.0\.0\.1:\d+,proxy=v2\Z')
        self.through(relay, v2(SRC, DST, 4242, 443), b'over tls\n', tls=True)
        (h,) = peer.wait()
        self.assertEqual(h['raw'], v1(SRC, DST, 4242, 443))


if __name__ == '__main__':
    unittest.main()
