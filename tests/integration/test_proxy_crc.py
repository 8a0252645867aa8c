"""PROXY v2 headers with a CRC32C TLV (PP2_TYPE_CRC32C): believed when the checksum is right, the
connection closed (and logged) when it is wrong; and HAProxy's own (`proxy-v2-options crc32c`)
accepted, with the client's real address as the peer.

    cd tests/integration && SOCKIT=build/sockit python3 -m unittest test_proxy_crc -v
"""

import os
import shutil
import socket
import struct
import subprocess
import time
import unittest

from helpers import TIMEOUT, free_port, read_to_close, recv_exactly, setUpModule  # noqa: F401
from proxy_helpers import ProxyTest, v2

HAPROXY = shutil.which('haproxy')
SRC, DST = '203.0.113.7', '198.51.100.9'


def crc32c(data):
    """CRC-32C (Castagnoli), bit by bit."""
    c = 0xffffffff
    for byte in data:
        c ^= byte
        for _ in range(8):
            c = (c >> 1) ^ (0x82f63b78 if c & 1 else 0)
    return c ^ 0xffffffff


def v2_with_crc(src, dst, sport, dport, wrong=False):
    """A v2 header with a NOOP TLV and a CRC32C TLV, its checksum right (or off by one bit)."""
    tlvs = b'\x04\x00\x02ok' + b'\x03\x00\x04' + bytes(4)
    blank = v2(src, dst, sport, dport, tlvs=tlvs)
    crc = crc32c(blank) ^ (1 if wrong else 0)
    return blank[:-4] + struct.pack('!I', crc)


class CrcTest(ProxyTest):

    def test_check_value(self):
        self.assertEqual(crc32c(b'123456789'), 0xe3069283)

    def test_right_checksum_is_believed_and_a_wrong_one_closes_that_connection(self):
        server = self.serve('tcp://127.0.0.1:0,proxy=v2', opts=['--exec', 'echo "$SOCKIT_PEER"', '-v'])
        good = self.pconnect(server, v2_with_crc(SRC, DST, 4242, 80))
        self.assertEqual(read_to_close(good), (f'tcp://{SRC}:4242\n'.encode(), 'eof'))
        bad = self.pconnect(server, v2_with_crc(SRC, DST, 4243, 80, wrong=True))
        port = bad.getsockname()[1]
        self.assertEqual(read_to_close(bad)[0], b'')
        line = f'sockit: proxy header tcp://127.0.0.1:{port}: v2 CRC32C checksum mismatch\n'.encode()
        self.assertTrue(server.wait_stderr(lambda e: line in e), server.stderr[-400:])
        again = self.pconnect(server, v2_with_crc(SRC, DST, 4244, 80))
        self.assertEqual(read_to_close(again), (f'tcp://{SRC}:4244\n'.encode(), 'eof'))


@unittest.skipIf(HAPROXY is None, 'haproxy is not installed')
class HAProxyCrcTest(ProxyTest):

    def haproxy(self, backend_port):
        port = free_port()
        cfg = os.path.join(self.tmp, 'haproxy.cfg')
        with open(cfg, 'w') as f:
            f.write('global\n    maxconn 100\ndefaults\n    mode tcp\n    timeout connect 2s\n'
                    '    timeout client 10s\n    timeout server 10s\n'
                    f'frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n'
                    f'backend be\n    server s1 127.0.0.1:{backend_port} send-proxy-v2 '
                    'proxy-v2-options crc32c\n')
        log = open(os.path.join(self.tmp, 'haproxy.log'), 'wb')
        self.addCleanup(log.close)
        proc = subprocess.Popen([HAPROXY, '-f', cfg, '-db'], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log)
        self.addCleanup(proc.wait, TIMEOUT)
        self.addCleanup(proc.terminate)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            self.assertIsNone(proc.poll(), 'haproxy exited')
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.05)
        self.fail('haproxy did not listen')

    def test_haproxy_checksummed_header_gives_the_real_client(self):
        server = self.serve('tcp://127.0.0.1:0,proxy=v2', opts=['-s', 'echo', '-v'])
        port = self.haproxy(int(server.endpoints[0].split(',')[0].rsplit(':', 1)[1]))
        with socket.socket() as c:
            c.settimeout(TIMEOUT)
            c.bind(('127.0.0.5', 0))
            c.connect(('127.0.0.1', port))
            c.sendall(b'through haproxy\n')
            self.assertEqual(recv_exactly(c, 16), b'through haproxy\n')
            peer = 'tcp://127.0.0.5:%d' % c.getsockname()[1]
        self.assertTrue(server.wait_stderr(lambda e: f'close {peer} on '.encode() in e),
                        server.stderr[-400:])
        self.assertNotIn(b'CRC32C', server.stderr)


if __name__ == '__main__':
    unittest.main()
