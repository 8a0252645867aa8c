"""The example units of contrib/systemd, run as systemd would run them: their Listen*= lines and
FileDescriptorName= given to systemd-socket-activate (with the port and the directory of the test
in place of 7007 and /run/sockit), their ExecStart= run with the sockit under test, and a client
on every socket. So the units (and the README's example, which shows them) are what is tested.
"""

import os
import shlex
import socket
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401
from test_inherit import SOCKET_ACTIVATE, InheritTest, echo_once

UNITS = os.path.join(REPO_ROOT, 'contrib', 'systemd')


def read_unit(name):
    """A unit file as {section: {key: [values]}} (keys repeat, as Listen*= lines do)."""
    unit = {}
    section = None
    with open(os.path.join(UNITS, name), encoding='utf-8') as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(('#', ';')):
                continue
            if line.startswith('['):
                section = unit.setdefault(line.strip('[]'), {})
                continue
            key, _, value = line.partition('=')
            section.setdefault(key.strip(), []).append(value.strip())
    return unit


@unittest.skipUnless(SOCKET_ACTIVATE, 'needs systemd-socket-activate (Debian package systemd)')
class ContribUnitsTest(InheritTest):

    def localize(self, listen, port):
        """The unit's address with the test's port, its path in the test's directory."""
        if listen.startswith('/'):
            return self.path(os.path.basename(listen))
        host, _, _ = listen.rpartition(':')
        return f'{host}:{port}'

    def exec_start(self):
        argv = shlex.split(read_unit('sockit-echo.service')['Service']['ExecStart'][0])
        self.assertEqual(argv[0], '/usr/bin/sockit')
        return argv[1:]

    def test_stream_unit_and_service(self):
        sock = read_unit('sockit-echo.socket')['Socket']
        listens = sock['ListenStream']
        self.assertEqual(len(listens), 3, 'the example has several Listen lines')
        names = sock['FileDescriptorName'] * len(listens)
        port = free_port()
        if not HAVE_IPV6:
            listens = [l for l in listens if not l.startswith('[')]
        where = [self.localize(l, port) for l in listens]
        args = self.exec_start()
        self.assertEqual(args[-1], 'sd:')
        prefix = [SOCKET_ACTIVATE, *[f'--listen={w}' for w in where],
                  f'--fdname={":".join(names[:len(where)])}']
        server = self.start(args[-1:], args[1:-1], prefix=prefix)
        server.wait_stderr_lines('Listening on ', len(where))
        first = socket.create_connection(('127.0.0.1', port), TIMEOUT)   # starts the service
        self.addCleanup(first.close)
        server.wait_listening(len(where))
        expected = [f'unix:{w}' if w.startswith('/') else f'tcp://{w}' for w in where]
        self.assertEqual(server.endpoints, expected)
        echo_once(self, first, b'woken by the first client')
        for w in where[1:]:
            if w.startswith('/'):
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.settimeout(TIMEOUT)
                c.connect(w)
            else:
                host, _, p = w.rpartition(':')
                c = socket.create_connection((host.strip('[]'), int(p)), TIMEOUT)
            with c:
                echo_once(self, c, f'over {w}'.encode())
        self.assertEqual(server.stop(), 0)
        unix = [w for w in where if w.startswith('/')]
        self.assertTrue(all(os.path.exists(u) for u in unix), 'a socket file systemd made was removed')

    def test_datagram_unit_names_its_socket(self):
        sock = read_unit('sockit-echo-udp.socket')['Socket']
        self.assertEqual(sock['Service'], ['sockit-echo.service'])
        port = free_port(socket.SOCK_DGRAM)
        where = [self.localize(l, port) for l in sock['ListenDatagram']]
        prefix = [SOCKET_ACTIVATE, '--datagram', *[f'--listen={w}' for w in where],
                  f'--fdname={sock["FileDescriptorName"][0]}']
        args = self.exec_start()
        # The service adopts every socket; sd:NAME picks this unit's alone.
        server = self.start([f'sd:{sock["FileDescriptorName"][0]}'], args[1:-1], prefix=prefix)
        server.wait_stderr_lines('Listening on ', len(where))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(TIMEOUT)
            c.sendto(b'first datagram', ('127.0.0.1', port))   # starts the service
            server.wait_listening(1)
            self.assertEqual(server.endpoints, [f'udp://127.0.0.1:{port}'])
            self.assertEqual(c.recv(100), b'first datagram')


if __name__ == '__main__':
    unittest.main()
