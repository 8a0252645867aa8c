"""Sockets sockit does not make itself: fd:N (a descriptor the test passes, as a parent would), sd:
(systemd's socket activation, through systemd-socket-activate), and the kinds made by the kernel's
own protocols: mptcp:// (multipath TCP) and unixpacket: (SOCK_SEQPACKET).

Every server here waits on its `listening on` lines; only 127.0.0.1 and UNIX sockets in a
temporary directory are used; every process started is ended by its PID."""

import os
import shutil
import socket
import subprocess
import time
import unittest

from helpers import (SOCKIT, START_TIMEOUT, TIMEOUT, PyStreamServer, Server, SockitTest, _child_setup,
                     dgram_request, free_port, read_all, recv_exactly, run_sockit, server_env,
                     setUpModule)  # noqa: F401  (setUpModule is run by unittest)

SOCKET_ACTIVATE = shutil.which('systemd-socket-activate')
UNSHARE = shutil.which('unshare')
IPPROTO_MPTCP = getattr(socket, 'IPPROTO_MPTCP', 262)


def mptcp_available():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP).close()
        return True
    except OSError:
        return False


class PassingServer(Server):
    """A Server whose process is given descriptors (pass_fds), or runs under a wrapper such as
    systemd-socket-activate (prefix)."""

    def __init__(self, endpoints=(), options=(), pass_fds=(), prefix=(), env=None, command='serve'):
        self.argv = [*prefix, SOCKIT, command, *options, *endpoints]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env or server_env(),
                                     pass_fds=tuple(pass_fds), preexec_fn=_child_setup(None))
        self.clients = []
        self._err = bytearray()
        self._drain = None
        self._stopped = False
        self.returncode = None

    def wait_stderr_lines(self, prefix, count, timeout=START_TIMEOUT):
        """Reads stderr until count lines start with prefix (before wait_listening())."""
        def seen():
            return sum(line.startswith(prefix) for line in self.stderr.decode(errors='replace').splitlines())
        self._read_stderr(lambda: seen() >= count, time.monotonic() + timeout)
        if seen() < count:
            raise AssertionError(f'{self.argv}: no {count} lines {prefix!r} within {timeout}s: {self.stderr!r}')

    def sockit_lines(self):
        return [line for line in self.stderr.decode(errors='replace').splitlines()
                if line.startswith('sockit: ')]


def tcp_listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(('127.0.0.1', 0))
    s.listen(16)
    return s


def echo_once(test, sock, payload):
    sock.settimeout(TIMEOUT)
    sock.sendall(payload)
    test.assertEqual(recv_exactly(sock, len(payload)), payload)


class InheritTest(SockitTest):

    def start(self, endpoints, options=('-s', 'echo'), pass_fds=(), prefix=(), env=None, count=None,
              command='serve'):
        server = PassingServer(endpoints, options, pass_fds, prefix, env, command)
        self._watch(server)
        self.addCleanup(server.stop)
        if count is not None:
            server.wait_listening(count)
        return server

    def finished(self, server, timeout=TIMEOUT):
        """The exit status of a server expected to exit by itself."""
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f'{server.argv} still running after {timeout}s: {server.stderr!r}')
        server.stop()
        return server.returncode


# --------------------------------------------------------------------------- fd:N

class FdTest(InheritTest):

    def test_serve_fd_tcp_with_two_threads(self):
        listener = tcp_listener()
        self.addCleanup(listener.close)
        port = listener.getsockname()[1]
        server = self.start([f'fd:{listener.fileno()}'], ['-s', 'echo', '--threads', '2'],
                            pass_fds=[listener.fileno()], count=1)
        self.assertEqual(server.endpoints, [f'tcp://127.0.0.1:{port}'])
        clients = [socket.create_connection(('127.0.0.1', port), TIMEOUT) for _ in range(6)]
        for i, c in enumerate(clients):
            self.addCleanup(c.close)
            echo_once(self, c, b'through an inherited socket %d\n' % i)
        self.assertEqual(server.stop(), 0)

    def test_serve_fd_udp_and_unix_kinds(self):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(('127.0.0.1', 0))
        path = self.path('inherited.sock')
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(path)
        unix.listen(8)
        for s in (udp, unix):
            self.addCleanup(s.close)
        server = self.start([f'fd:{udp.fileno()}', f'fd:{unix.fileno()}'],
                            pass_fds=[udp.fileno(), unix.fileno()], count=2)
        self.assertEqual(server.endpoints, [f'udp://127.0.0.1:{udp.getsockname()[1]}', f'unix:{path}'])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.bind(('127.0.0.1', 0))
            c.connect(udp.getsockname())
            self.assertEqual(dgram_request(c, b'a datagram'), b'a datagram')
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)
            echo_once(self, c, b'over the inherited unix socket')
        self.assertEqual(server.stop(), 0)
        self.assertTrue(os.path.exists(path), 'sockit removed a socket file it did not make')

    def test_relay_from_fd_to_tcp(self):
        def upper(conn):
            conn.sendall(read_all(conn).upper())
        target = PyStreamServer(self, upper)
        listener = tcp_listener()
        self.addCleanup(listener.close)
        relay = self.start([f'fd:{listener.fileno()}', target.endpoint()], options=(),
                           pass_fds=[listener.fileno()], count=1, command='relay')
        self.assertEqual(relay.endpoints, [f'tcp://127.0.0.1:{listener.getsockname()[1]}'])
        with socket.create_connection(listener.getsockname(), TIMEOUT) as c:
            c.sendall(b'relayed')
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(read_all(c), b'RELAYED')
        target.wait()

    def assertBindFails(self, endpoint, reason, pass_fds=()):
        server = self.start([endpoint], pass_fds=pass_fds)
        self.assertEqual(self.finished(server), 1, server.stderr)
        lines = server.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, server.stderr)
        self.assertTrue(lines[0].startswith(f'sockit: bind {endpoint}: {reason}'), lines[0])

    def test_fd_that_cannot_serve_is_exit_1_with_one_line(self):
        connected = tcp_listener()
        self.addCleanup(connected.close)
        client = socket.create_connection(connected.getsockname(), TIMEOUT)
        self.addCleanup(client.close)
        with open(self.path('regular'), 'w') as regular:
            cases = [(client.fileno(), 'socket is not listening'), (regular.fileno(), 'not a socket')]
            for fd, reason in cases:
                with self.subTest(reason=reason):
                    self.assertBindFails(f'fd:{fd}', reason, pass_fds=[fd])
        # A descriptor the process was not given.
        self.assertBindFails('fd:200', 'bad file descriptor')

    def test_fd_as_a_connecting_endpoint_is_a_usage_error(self):
        for args in (['connect', 'fd:3'], ['relay', 'tcp://127.0.0.1:0', 'sd:web'],
                     ['connect', 'fd:3,cert=a.pem']):
            with self.subTest(args=args):
                r = run_sockit(args)
                self.assertExit(r, 2)
                self.assertIn(b'can only listen', r.stderr)


# --------------------------------------------------------------------------- sd:

@unittest.skipUnless(SOCKET_ACTIVATE, 'needs systemd-socket-activate (Debian package systemd)')
class SystemdTest(InheritTest):
    """systemd-socket-activate binds the sockets, waits for a first client, then execs sockit with
    LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES set, as systemd does."""

    def activate(self, sockets, names, endpoints, options=('-s', 'echo'), datagram=False):
        prefix = [SOCKET_ACTIVATE, *(['--datagram'] if datagram else []),
                  *[f'--listen={s}' for s in sockets], f'--fdname={":".join(names)}']
        server = self.start(endpoints, options, prefix=prefix)
        server.wait_stderr_lines('Listening on ', len(sockets))
        return server

    def test_sd_serves_every_socket_passed(self):
        port, path = free_port(), self.path('activated.sock')
        server = self.activate([f'127.0.0.1:{port}', path], ['web', 'local'], ['sd:'])
        first = socket.create_connection(('127.0.0.1', port), TIMEOUT)   # starts sockit
        self.addCleanup(first.close)
        server.wait_listening(2)
        self.assertEqual(server.endpoints, [f'tcp://127.0.0.1:{port}', f'unix:{path}'])
        echo_once(self, first, b'the client that woke it up')
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)
            echo_once(self, c, b'over the passed unix socket')
        self.assertEqual(server.stop(), 0)
        self.assertTrue(os.path.exists(path), 'sockit removed the socket file systemd made')

    def test_sd_name_picks_the_sockets_of_that_name(self):
        port, path = free_port(), self.path('named.sock')
        server = self.activate([f'127.0.0.1:{port}', path], ['web', 'local'], ['sd:local'])
        socket.create_connection(('127.0.0.1', port), TIMEOUT).close()
        server.wait_listening(1)
        self.assertEqual(server.endpoints, [f'unix:{path}'])
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)
            echo_once(self, c, b'picked by name')

    def test_sd_datagram_socket(self):
        port = free_port(socket.SOCK_DGRAM)
        server = self.activate([f'127.0.0.1:{port}'], ['dns'], ['sd:dns'], datagram=True)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.bind(('127.0.0.1', 0))
            c.connect(('127.0.0.1', port))
            c.send(b'wake up')              # queued until sockit reads it
            server.wait_listening(1)
            self.assertEqual(server.endpoints, [f'udp://127.0.0.1:{port}'])
            c.settimeout(TIMEOUT)
            self.assertEqual(c.recv(64), b'wake up')
            self.assertEqual(dgram_request(c, b'and again'), b'and again')

    def test_sd_unknown_name_is_exit_1_with_one_line(self):
        port = free_port()
        server = self.activate([f'127.0.0.1:{port}'], ['web'], ['sd:nope'])
        try:
            # Only starts sockit, which exits at once and resets the connection, at times
            # before a connect with a timeout has read its outcome.
            socket.create_connection(('127.0.0.1', port), TIMEOUT).close()
        except ConnectionResetError:
            pass
        self.assertEqual(self.finished(server), 1, server.stderr)
        lines = server.sockit_lines()
        self.assertEqual(len(lines), 1, server.stderr)
        self.assertTrue(lines[0].startswith('sockit: bind sd:nope: no socket '), lines[0])
        self.assertNotIn(b'listening on', server.stderr)

    def test_exec_children_do_not_see_listen_variables(self):
        port = free_port()
        server = self.activate([f'127.0.0.1:{port}'], ['web'], ['sd:'], options=('--exec', 'env'))
        with socket.create_connection(('127.0.0.1', port), TIMEOUT) as c:
            server.wait_listening(1)
            c.settimeout(TIMEOUT)
            env = read_all(c)
        self.assertIn(b'SOCKIT_PEER=tcp://127.0.0.1:', env)
        self.assertNotIn(b'LISTEN_', env)


class SystemdNothingPassedTest(InheritTest):

    def test_sd_with_nothing_passed_is_exit_1_with_one_line(self):
        env = {k: v for k, v in server_env().items() if not k.startswith('LISTEN_')}
        for endpoint in ('sd:', 'sd:web'):
            with self.subTest(endpoint=endpoint):
                r = run_sockit(['serve', '-s', 'echo', endpoint], env=env)
                self.assertExit(r, 1)
                self.assertTrue(r.stderr.startswith(f'sockit: bind {endpoint}: no sockets passed by systemd'
                                                    .encode()), r.stderr)

    def test_listen_pid_of_another_process_is_not_ours(self):
        env = dict(server_env(), LISTEN_PID='1', LISTEN_FDS='1', LISTEN_FDNAMES='web')
        r = run_sockit(['serve', '-s', 'echo', 'sd:'], env=env)
        self.assertExit(r, 1)
        self.assertTrue(r.stderr.startswith(b'sockit: bind sd:: no sockets passed by systemd'), r.stderr)


# --------------------------------------------------------------------------- mptcp, unixpacket

class MptcpTest(InheritTest):

    def test_serve_mptcp_echoes(self):
        if not mptcp_available():
            r = run_sockit(['serve', '-s', 'echo', 'mptcp://127.0.0.1:0'])
            self.assertExit(r, 1, 'sockit: bind mptcp://127.0.0.1:0: multipath TCP not available')
            return
        server = self.start(['mptcp://127.0.0.1:0'], ['-s', 'echo', '--threads', '2'], count=1)
        self.assertRegex(server.endpoints[0], r'^mptcp://127\.0\.0\.1:\d+$')
        port = int(server.endpoints[0].rsplit(':', 1)[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP) as c:
            c.settimeout(TIMEOUT)
            c.connect(('127.0.0.1', port))
            echo_once(self, c, b'over multipath TCP')
        with socket.create_connection(('127.0.0.1', port), TIMEOUT) as c:   # plain TCP falls back
            echo_once(self, c, b'over plain TCP')

    @unittest.skipUnless(os.geteuid() == 0 and UNSHARE and os.path.exists('/proc/sys/net/mptcp/enabled'),
                         'needs root, unshare and a kernel with MPTCP (to turn it off in a namespace)')
    def test_mptcp_off_is_exit_1_with_the_reason(self):
        """A network namespace with net.mptcp.enabled = 0: socket(IPPROTO_MPTCP) fails there as
        on a kernel without it."""
        script = 'echo 0 > /proc/sys/net/mptcp/enabled && exec "$0" serve -s echo mptcp://127.0.0.1:0'
        r = subprocess.run([UNSHARE, '--net', 'sh', '-c', script, SOCKIT], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=TIMEOUT, env=server_env())
        self.assertExit(r, 1, 'sockit: bind mptcp://127.0.0.1:0: multipath TCP not available')


class UnixPacketTest(InheritTest):

    def packet_client(self, path):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(c.close)
        c.settimeout(TIMEOUT)
        c.connect(path)
        return c

    def test_serve_unixpacket_binds_accepts_and_removes_its_file(self):
        path = self.path('packet.sock')
        server = self.start([f'unixpacket:{path}'], count=1)
        self.assertEqual(server.endpoints, [f'unixpacket:{path}'])
        c = self.packet_client(path)
        c.send(b'one message')
        self.assertEqual(c.recv(64), b'one message')
        self.assertEqual(server.stop(), 0)
        self.assertFalse(os.path.lexists(path))

    def test_abstract_unixpacket(self):
        name = f'sockit-test-{os.getpid()}-packet'
        server = self.start([f'unixpacket:@{name}'], count=1)
        self.assertEqual(server.endpoints, [f'unixpacket:@{name}'])
        self.packet_client('\0' + name)

    def test_stale_unixpacket_file_is_replaced_and_a_live_one_is_not(self):
        stale, live = self.path('stale.sock'), self.path('live.sock')
        for path in (stale, live):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.bind(path)
            s.listen(4)
            if path == stale:
                s.close()
            else:
                self.addCleanup(s.close)
        r = run_sockit(['serve', '-s', 'echo', f'unixpacket:{live}'])
        self.assertExit(r, 1, f'sockit: bind unixpacket:{live}: address in use')
        server = self.start([f'unixpacket:{stale}'], count=1)
        self.assertEqual(server.endpoints, [f'unixpacket:{stale}'])
        self.packet_client(stale)


if __name__ == '__main__':
    unittest.main()
