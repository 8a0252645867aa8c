"""Black-box integration tests for systemd's notification protocol in `sockit serve` and
`sockit relay`: with NOTIFY_SOCKET set (a path, or an abstract name written @NAME) they send
READY=1 once listening, RELOADING=1 + MONOTONIC_USEC then READY=1 on SIGHUP, and STOPPING=1 when
they begin to stop; an unusable NOTIFY_SOCKET is an error, and --exec commands never see it.

The notification socket is a Python AF_UNIX datagram socket in a temporary directory (or an
abstract name carrying the test's pid); servers listen on 127.0.0.1.

    cd tests/integration && SOCKIT=build/sockit python3 -m unittest test_notify -v
"""

import os
import select
import signal
import socket
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401


class NotifyTest(SockitTest):

    def notify_socket(self, abstract=False, name=None):
        """(socket, NOTIFY_SOCKET value) of a fresh datagram socket to be notified on."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        if abstract:
            name = name or abstract_name('notify')[1:]
            s.bind(b'\0' + name.encode())
            return s, '@' + name
        path = self.path('notify.sock')
        s.bind(path)
        return s, path

    def env(self, value):
        env = server_env()
        env['NOTIFY_SOCKET'] = value
        return env

    def message(self, sock, what, timeout=TIMEOUT):
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            self.fail(f'no notification within {timeout}s (waiting for {what})')
        return sock.recv(4096)

    def assertNothingMore(self, sock):
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            self.fail(f'an unexpected notification: {sock.recv(4096)!r}')

    def start(self, command, env, target=None):
        """A server (serve -s echo, or relay to target) whose READY=1 is not yet read."""
        if command == 'serve':
            server = Server(['tcp://127.0.0.1:0'], ['-s', 'echo'], env=env)
        else:
            server = Server(['tcp://127.0.0.1:0', target], [], env=env, command='relay')
        self._watch(server)
        self.addCleanup(server.stop)
        return server

    def echo_target(self):
        return self.serve(self.endpoint('unix'), opts=['-s', 'echo']).endpoints[0]

    def round_trip(self, server, payload=b'ping\n'):
        c = server.connect()
        c.sendall(payload)
        self.assertEqual(recv_exactly(c, len(payload)), payload)
        c.close()

    def assertReload(self, server, sock, after_usec=0):
        t0 = int(time.monotonic() * 1e6)
        server.proc.send_signal(signal.SIGHUP)
        msg = self.message(sock, 'RELOADING=1')
        t1 = int(time.monotonic() * 1e6)
        self.assertRegex(msg, rb'\ARELOADING=1\nMONOTONIC_USEC=[1-9]\d*\Z')
        usec = int(msg.split(b'=')[-1])
        self.assertTrue(t0 <= usec <= t1, f'MONOTONIC_USEC={usec} not within [{t0}, {t1}]')
        self.assertGreater(usec, after_usec)
        self.assertEqual(self.message(sock, 'READY=1 after the reload'), b'READY=1')
        return usec

    def lifecycle(self, command, abstract):
        sock, value = self.notify_socket(abstract)
        server = self.start(command, self.env(value),
                            target=self.echo_target() if command == 'relay' else None)
        self.assertEqual(self.message(sock, 'READY=1', START_TIMEOUT), b'READY=1')
        # The `listening on` line was written before READY=1 was sent: it is in the pipe.
        fd = server.proc.stderr.fileno()
        readable, _, _ = select.select([fd], [], [], 0)
        self.assertTrue(readable, 'READY=1 before the listening line')
        server._err += os.read(fd, 65536)
        self.assertEqual(len(server.endpoints), 1, server.stderr)
        server.wait_listening(1)
        self.round_trip(server)
        self.assertNothingMore(sock)
        usec = self.assertReload(server, sock)
        self.round_trip(server)
        self.assertReload(server, sock, usec)
        self.round_trip(server)
        self.assertIsNone(server.proc.poll())
        server.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.message(sock, 'STOPPING=1'), b'STOPPING=1')
        # It ends by itself: a second SIGTERM (server.stop()) could land after sk_server_free()
        # gave the signals back, and kill it.
        server.proc.wait(STOP_TIMEOUT)
        self.assertEqual(server.stop(), 0)
        self.assertNothingMore(sock)
        self.assertEqual(server.stderr, f'listening on {server.endpoints[0]}\n'.encode())

    def test_serve_path(self):
        self.lifecycle('serve', abstract=False)

    def test_serve_abstract(self):
        self.lifecycle('serve', abstract=True)

    def test_relay_path(self):
        self.lifecycle('relay', abstract=False)

    def test_relay_abstract(self):
        self.lifecycle('relay', abstract=True)

    def test_longest_abstract_name(self):
        # The longest value sd_notify(3) takes: 107 characters, '@' included (it wants room for a
        # NUL after the name, as for a path).
        name = f'sockit-test-{os.getpid()}-'
        name += 'n' * (106 - len(name))
        sock, value = self.notify_socket(abstract=True, name=name)
        server = self.start('serve', self.env(value))
        server.wait_listening(1)
        self.assertEqual(self.message(sock, 'READY=1'), b'READY=1')
        self.round_trip(server)

    def test_unusable_notify_socket(self):
        port = free_port()
        long_path = '/' + 'x' * 120
        for value, why in (('vsock:2:1234', 'address family not supported'),
                           ('notify.sock', 'address family not supported'),
                           (long_path, 'path too long for a UNIX socket (max 107 bytes)')):
            for argv in (['serve', '-s', 'echo', f'tcp://127.0.0.1:{port}'],
                         ['relay', f'tcp://127.0.0.1:{port}', 'tcp://127.0.0.1:9']):
                with self.subTest(value=value[:20], command=argv[0]):
                    r = run_sockit(argv, env=self.env(value))
                    self.assertExit(r, 1, f'sockit: NOTIFY_SOCKET={value}: {why}')
                    self.assertTrue(port_free(port), 'the port was left bound')

    def test_nobody_listening_is_no_matter(self):
        env = self.env(self.path('nobody-here.sock'))
        for command in ('serve', 'relay'):
            with self.subTest(command=command):
                server = self.start(command, env, target=self.echo_target() if command == 'relay' else None)
                server.wait_listening(1)
                self.round_trip(server)
                server.proc.send_signal(signal.SIGHUP)
                self.round_trip(server)
                self.assertEqual(server.stop(), 0)
                self.assertEqual(server.stderr, f'listening on {server.endpoints[0]}\n'.encode())

    def test_empty_notify_socket_is_unset(self):
        server = self.start('serve', self.env(''))
        server.wait_listening(1)
        self.round_trip(server)
        self.assertEqual(server.stop(), 0)

    def test_exec_children_do_not_see_notify_socket(self):
        sock, value = self.notify_socket()
        env = self.env(value)
        for cmd, check in (('echo "${NOTIFY_SOCKET-unset}"', lambda out: self.assertEqual(out, b'unset\n')),
                           ('env', lambda out: self.assertNotIn(b'NOTIFY_SOCKET', out))):
            with self.subTest(cmd=cmd):
                server = self.serve('tcp://127.0.0.1:0', opts=['--exec', cmd], env=env)
                self.assertEqual(self.message(sock, 'READY=1'), b'READY=1')
                out = recv_until_eof(server.connect())
                check(out)
                if cmd == 'env':
                    self.assertIn(b'\nSOCKIT_PEER=tcp://127.0.0.1:', b'\n' + out)   # env did run
                self.assertEqual(server.stop(), 0)
                self.assertEqual(self.message(sock, 'STOPPING=1'), b'STOPPING=1')
                self.assertNothingMore(sock)


if __name__ == '__main__':
    unittest.main()
