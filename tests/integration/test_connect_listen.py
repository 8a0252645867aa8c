"""Black-box tests for `sockit connect -l` (listen, take one client, then behave as connect) and
`-k` (one client after another), on every kind of endpoint, and the option combinations refused.

The binary under test is $SOCKIT (default build/sockit, relative to the repository root). The
clients are nc (netcat-openbsd, where installed), `sockit connect` itself and plain Python sockets,
all on 127.0.0.1 or UNIX paths in a temporary directory.

    cd tests/integration && python3 -m unittest test_connect_listen -v
"""

import errno
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

NC = shutil.which('nc')
LISTENING = b'listening on '


class Listener:
    """A `sockit connect -l ARGS` process: its stdin (a pipe unless given), its stdout and stderr
    read in the background, its `listening on` endpoint."""

    def __init__(self, test, args, stdin=subprocess.PIPE):
        self.proc = subprocess.Popen([SOCKIT, 'connect', '-l', *args], stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=server_env())
        self.out, self.err = bytearray(), bytearray()
        self.lock = threading.Lock()
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err),
                                         daemon=True)]
        for t in self.readers:
            t.start()
        test.addCleanup(self.reap)
        self.test = test

    def _read(self, pipe, buf):
        while True:
            try:
                chunk = os.read(pipe.fileno(), 65536)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                buf += chunk

    def wait_for(self, predicate, what, timeout=TIMEOUT):
        """Poll (bounded) until predicate(stdout, stderr) holds; fails with what otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(bytes(self.out), bytes(self.err)):
                    return
            time.sleep(0.01)
        self.test.fail(f'{what} not seen within {timeout}s; stdout {bytes(self.out)[:300]!r}, '
                       f'stderr {bytes(self.err)[:300]!r}, exit {self.proc.poll()}')

    def endpoint(self):
        """The endpoint of the `listening on` line, once printed."""
        self.wait_for(lambda out, err: b'\n' in err, 'a listening line', START_TIMEOUT)
        line = bytes(self.err).split(b'\n')[0]
        self.test.assertTrue(line.startswith(LISTENING), bytes(self.err))
        return line[len(LISTENING):].decode()

    def wait_stdout(self, data, timeout=TIMEOUT):
        self.wait_for(lambda out, err: len(out) >= len(data), f'stdout {data!r}', timeout)
        self.test.assertEqual(bytes(self.out), data)

    def finish(self, timeout=TIMEOUT):
        """(exit status, stdout, stderr) once the process has ended by itself."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.test.fail(f'sockit connect -l did not exit within {timeout}s; '
                           f'stdout {bytes(self.out)[:300]!r}, stderr {bytes(self.err)[:300]!r}')
        for t in self.readers:
            t.join(TIMEOUT)
        return self.proc.returncode, bytes(self.out), bytes(self.err)

    def send_stdin(self, data, close=True):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        if close:
            self.proc.stdin.close()

    def reap(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        for t in self.readers:
            t.join(TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def connected(family, stype, addr, bind=None, timeout=TIMEOUT):
    s = socket.socket(family, stype)
    try:
        if bind is not None:
            s.bind(bind)
        s.settimeout(timeout)
        s.connect(addr)
    except OSError:
        s.close()
        raise
    return s


class ListenTest(SockitTest):

    def listen(self, args, stdin=subprocess.PIPE):
        return Listener(self, args, stdin=stdin)

    def assertListened(self, listener, stdout, code=0):
        """The listener ended by itself with this exit status and stdout, and stderr holding only
        its listening line."""
        got_code, out, err = listener.finish()
        self.assertEqual((got_code, out), (code, stdout), err)
        self.assertEqual(err.count(b'\n'), 1, err)
        self.assertTrue(err.startswith(LISTENING), err)


class StreamListenTest(ListenTest):

    @unittest.skipIf(NC is None, 'nc is not installed')
    def test_tcp_port_0_reached_by_nc(self):
        lsn = self.listen(['tcp://127.0.0.1:0'])
        ep = lsn.endpoint()
        self.assertRegex(ep, r'^tcp://127\.0\.0\.1:\d+$')
        self.assertNotEqual(ep, 'tcp://127.0.0.1:0')
        port = ep.rsplit(':', 1)[1]
        lsn.send_stdin(b'to the client\n\x00\xff')
        nc = subprocess.run([NC, '-N', '-w', '5', '127.0.0.1', port], input=b'to the listener\n\x01',
                            capture_output=True, timeout=RUN_TIMEOUT)
        self.assertEqual((nc.returncode, nc.stdout), (0, b'to the client\n\x00\xff'), nc.stderr)
        self.assertListened(lsn, b'to the listener\n\x01')

    def test_tcp_reached_by_sockit_connect(self):
        lsn = self.listen(['tcp://127.0.0.1:0'])
        ep = lsn.endpoint()
        data = bytes(range(256)) * 512     # more than a pipe holds: written as it is read
        writer = threading.Thread(target=lsn.send_stdin, args=(data,), daemon=True)
        writer.start()
        self.addCleanup(writer.join, TIMEOUT)
        result, _ = self.connect_run([ep], b'from connect\n' * 1000)
        self.assertClean(result, data)
        self.assertListened(lsn, b'from connect\n' * 1000)

    def test_the_listener_is_gone_after_its_client(self):
        lsn = self.listen(['tcp://127.0.0.1:0'], stdin=subprocess.DEVNULL)
        family, _, addr = endpoint_address(lsn.endpoint())
        with connected(family, socket.SOCK_STREAM, addr) as c:
            c.sendall(b'one')
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(c), b'')
        self.assertListened(lsn, b'one')
        with self.assertRaises(ConnectionRefusedError):
            connected(family, socket.SOCK_STREAM, addr).close()

    def check_second_client_refused(self, ep):
        """As nc -l: once the first client is served, the listener no longer listens, so the
        kernel refuses another one (ECONNREFUSED) while the first goes on."""
        lsn = self.listen([ep])
        family, _, addr = endpoint_address(lsn.endpoint())
        first = connected(family, socket.SOCK_STREAM, addr)
        self.addCleanup(first.close)
        first.sendall(b'first\n')
        lsn.wait_stdout(b'first\n')     # read after the listener stopped listening
        for _ in range(2):
            with socket.socket(family, socket.SOCK_STREAM) as second:
                second.settimeout(TIMEOUT)
                self.assertEqual(errno.errorcode.get(second.connect_ex(addr)), 'ECONNREFUSED')
        first.sendall(b'still served\n')
        lsn.wait_stdout(b'first\nstill served\n')
        lsn.send_stdin(b'bye\n')
        first.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(first), b'bye\n')
        self.assertListened(lsn, b'first\nstill served\n')

    def test_a_second_tcp_client_is_refused(self):
        self.check_second_client_refused('tcp://127.0.0.1:0')

    def test_a_second_unix_client_is_refused_and_the_file_removed_at_exit(self):
        path = self.path('r.sock')
        self.check_second_client_refused(f'unix:{path}')
        self.assertFalse(os.path.lexists(path), 'the socket file was left behind')

    def test_client_half_close_first_then_stdin_still_sent(self):
        lsn = self.listen(['tcp://127.0.0.1:0'])
        family, _, addr = endpoint_address(lsn.endpoint())
        with connected(family, socket.SOCK_STREAM, addr) as c:
            c.sendall(b'question\n')
            c.shutdown(socket.SHUT_WR)
            lsn.wait_stdout(b'question\n')
            lsn.send_stdin(b'answer\n')
            self.assertEqual(recv_until_eof(c), b'answer\n')
        self.assertListened(lsn, b'question\n')

    def test_unix_socket_file_made_then_removed(self):
        path = self.path('l.sock')
        lsn = self.listen([f'unix:{path}'])
        self.assertEqual(lsn.endpoint(), f'unix:{path}')
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        lsn.send_stdin(b'srv\n')
        result, _ = self.connect_run([f'unix:{path}'], b'cli\n')
        self.assertClean(result, b'srv\n')
        self.assertListened(lsn, b'cli\n')
        self.assertFalse(os.path.lexists(path), 'the socket file was left behind')

    def test_unix_path_holding_a_file_is_left_alone(self):
        path = self.path('taken')
        with open(path, 'wb') as f:
            f.write(b'mine')
        result, _ = self.connect_run(['-l', f'unix:{path}'])
        self.assertExit(result, 1)
        self.assertTrue(result.stderr.startswith(f'sockit: bind unix:{path}: '.encode()), result.stderr)
        with open(path, 'rb') as f:
            self.assertEqual(f.read(), b'mine')

    def test_abstract_unix(self):
        name = abstract_name('listen')
        lsn = self.listen([f'unix:{name}'])
        self.assertEqual(lsn.endpoint(), f'unix:{name}')
        lsn.send_stdin(b'abstract\n')
        with connected(socket.AF_UNIX, socket.SOCK_STREAM, '\0' + name[1:]) as c:
            c.sendall(b'hello')
            c.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(c), b'abstract\n')
        self.assertListened(lsn, b'hello')

    def test_unixpacket_messages_each_way(self):
        path = self.path('p.sock')
        lsn = self.listen([f'unixpacket:{path}'])
        lsn.endpoint()
        with connected(socket.AF_UNIX, socket.SOCK_SEQPACKET, path) as c:
            c.send(b'one')
            c.send(b'two\n')
            lsn.wait_stdout(b'one\ntwo\n')
            lsn.send_stdin(b'back 1\nback 2\n')
            self.assertEqual((c.recv(100), c.recv(100)), (b'back 1', b'back 2'))
            self.assertEqual(c.recv(100), b'')     # stdin ended: shut down
            c.shutdown(socket.SHUT_WR)
        self.assertListened(lsn, b'one\ntwo\n')
        self.assertFalse(os.path.lexists(path))

    def test_hex_dump_of_an_exchange(self):
        lsn = self.listen(['-x', 'tcp://127.0.0.1:0'])
        family, _, addr = endpoint_address(lsn.endpoint())
        with connected(family, socket.SOCK_STREAM, addr) as c:
            c.sendall(b'hello\n')
            lsn.wait_stdout(b'hello\n')
            lsn.send_stdin(b'hi\n')
            self.assertEqual(recv_until_eof(c), b'hi\n')
        code, out, err = lsn.finish()
        self.assertEqual((code, out), (0, b'hello\n'))
        self.assertEqual(err.decode().split('\n')[1:], [
            '< 00000000  68 65 6c 6c 6f 0a' + ' ' * 33 + 'hello.',
            '> 00000000  68 69 0a' + ' ' * 42 + 'hi.',
            ''])

    def test_tls_listener_with_sockit_connect(self):
        from tls_helpers import certs
        c = certs()
        lsn = self.listen([f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key}'])
        ep = lsn.endpoint()
        self.assertRegex(ep, r'^tls://127\.0\.0\.1:\d+$')
        lsn.send_stdin(b'secret from the listener\n')
        result, _ = self.connect_run([f'{ep},ca={c.ca_pem}'], b'secret from the client\n')
        self.assertClean(result, b'secret from the listener\n')
        self.assertListened(lsn, b'secret from the client\n')

    def test_quiet_prints_no_listening_line(self):
        path = self.path('q.sock')
        lsn = self.listen(['-q', f'unix:{path}'], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        result, _ = self.connect_run([f'unix:{path}'], b'quiet\n')
        self.assertClean(result, b'')
        self.assertEqual(lsn.finish(), (0, b'quiet\n', b''))

    def test_sigterm_while_waiting_for_a_client(self):
        path = self.path('w.sock')
        lsn = self.listen([f'unix:{path}'], stdin=subprocess.DEVNULL)
        lsn.endpoint()
        lsn.proc.send_signal(signal.SIGTERM)
        code, out, err = lsn.finish()
        self.assertEqual((code, out), (0, b''))
        self.assertFalse(os.path.lexists(path))

    def test_readme_example(self):
        # README: `sockit connect -l tcp://127.0.0.1:0 > got` on one side, the other sends.
        lsn = self.listen(['tcp://127.0.0.1:0'], stdin=subprocess.DEVNULL)
        ep = lsn.endpoint()
        result, _ = self.connect_run([ep], b'hello over -l\n')
        self.assertClean(result, b'')
        self.assertListened(lsn, b'hello over -l\n')


class KeepTest(ListenTest):

    def test_three_clients_in_turn_with_stdin_ended(self):
        lsn = self.listen(['-k', 'tcp://127.0.0.1:0'], stdin=subprocess.DEVNULL)
        family, _, addr = endpoint_address(lsn.endpoint())
        expected = b''
        for i in range(3):
            with connected(family, socket.SOCK_STREAM, addr) as c:
                # stdin has ended: the client's read side is shut at once.
                self.assertEqual(recv_until_eof(c), b'')
                c.sendall(b'client %d\n' % i)
                c.shutdown(socket.SHUT_WR)
                expected += b'client %d\n' % i
                lsn.wait_stdout(expected)
        self.assertIsNone(lsn.proc.poll(), 'connect -l -k ended by itself')
        lsn.proc.send_signal(signal.SIGTERM)
        code, out, err = lsn.finish()
        self.assertEqual((code, out), (0, b'client 0\nclient 1\nclient 2\n'), err)
        self.assertEqual(err.count(b'\n'), 1, err)

    @unittest.skipIf(NC is None, 'nc is not installed')
    def test_nc_clients_wait_in_the_backlog(self):
        lsn = self.listen(['-k', 'tcp://127.0.0.1:0'], stdin=subprocess.DEVNULL)
        family, _, addr = endpoint_address(lsn.endpoint())
        first = connected(family, socket.SOCK_STREAM, addr)
        self.addCleanup(first.close)
        first.sendall(b'first\n')
        lsn.wait_stdout(b'first\n')
        # Two nc clients arrive while the first is served: they wait, then go in turn.
        ncs = [subprocess.Popen([NC, '-N', '-w', '5', *map(str, addr)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(2)]
        for i, nc in enumerate(ncs):
            nc.stdin.write(b'nc %d\n' % i)
            nc.stdin.close()
        time.sleep(0.2)     # they are connected, not served (a negative check: nothing may come)
        self.assertEqual(bytes(lsn.out), b'first\n')
        first.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(first), b'')
        lsn.wait_for(lambda out, err: out.count(b'\n') == 3, 'three lines')
        for nc in ncs:
            self.assertEqual(nc.wait(TIMEOUT), 0)
            nc.stdout.close()
            nc.stderr.close()
        self.assertIn(bytes(lsn.out), (b'first\nnc 0\nnc 1\n', b'first\nnc 1\nnc 0\n'))
        lsn.proc.send_signal(signal.SIGINT)
        self.assertEqual(lsn.finish()[0], 0)

    def test_stdin_goes_to_the_current_client_then_later_ones_are_shut(self):
        lsn = self.listen(['-k', 'tcp://127.0.0.1:0'])
        family, _, addr = endpoint_address(lsn.endpoint())
        with connected(family, socket.SOCK_STREAM, addr) as c:
            c.sendall(b'a\n')
            lsn.wait_stdout(b'a\n')
            lsn.send_stdin(b'for a\n', close=False)
            self.assertEqual(recv_exactly(c, 6), b'for a\n')
            c.shutdown(socket.SHUT_WR)
            lsn.send_stdin(b'still a\n')    # stdin ends here
            self.assertEqual(recv_until_eof(c), b'still a\n')
        with connected(family, socket.SOCK_STREAM, addr) as c:
            self.assertEqual(recv_until_eof(c), b'')
            c.sendall(b'b\n')
            c.shutdown(socket.SHUT_WR)
            lsn.wait_stdout(b'a\nb\n')
        lsn.proc.send_signal(signal.SIGTERM)
        self.assertEqual(lsn.finish()[:2], (0, b'a\nb\n'))

    def test_unix_socket_file_removed_at_the_end(self):
        path = self.path('k.sock')
        lsn = self.listen(['-k', f'unix:{path}'], stdin=subprocess.DEVNULL)
        lsn.endpoint()
        for i in range(3):
            result, _ = self.connect_run([f'unix:{path}'], b'%d' % i)
            self.assertClean(result, b'')
            lsn.wait_stdout(b'012'[:i + 1])
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        lsn.proc.send_signal(signal.SIGINT)
        self.assertEqual(lsn.finish()[:2], (0, b'012'))
        self.assertFalse(os.path.lexists(path))


class DatagramListenTest(ListenTest):

    def check_dgram(self, ep, family, bind):
        lsn = self.listen(['-w', '0.3', ep])
        family, _, addr = endpoint_address(lsn.endpoint())
        with connected(family, socket.SOCK_DGRAM, addr, bind=bind) as c, \
                socket.socket(family, socket.SOCK_DGRAM) as other:
            if family == socket.AF_UNIX:
                other.bind('')
            c.send(b'first\n')
            lsn.wait_stdout(b'first\n')
            try:
                other.sendto(b'intruder\n', addr)    # not the first sender: dropped
            except PermissionError:                  # or refused (UNIX)
                pass
            c.send(b'second')
            lsn.wait_stdout(b'first\nsecond\n')
            lsn.send_stdin(b'reply 1\nreply 2')
            self.assertEqual((c.recv(100), c.recv(100)), (b'reply 1\n', b'reply 2'))
        self.assertListened(lsn, b'first\nsecond\n')
        return lsn

    def test_udp(self):
        self.check_dgram('udp://127.0.0.1:0', socket.AF_INET, ('127.0.0.1', 0))

    def test_unixgram(self):
        path = self.path('g.sock')
        self.check_dgram(f'unixgram:{path}', socket.AF_UNIX, self.path('client.sock'))
        self.assertFalse(os.path.lexists(path))

    def test_udp_with_sockit_connect_and_hex(self):
        lsn = self.listen(['-x', '-w', '0.3', 'udp://127.0.0.1:0'])
        ep = lsn.endpoint()
        client = subprocess.Popen([SOCKIT, 'connect', '-w', '0.5', ep], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (client.poll() is None and client.kill(), client.wait(TIMEOUT)))
        client.stdin.write(b'ping\n')
        client.stdin.flush()
        lsn.wait_stdout(b'ping\n')
        lsn.send_stdin(b'pong\n')
        code, out, err = lsn.finish()      # pong sent, then -w passed
        c_out, c_err = client.communicate(timeout=TIMEOUT)
        self.assertEqual((client.returncode, c_out, c_err), (0, b'pong\n', b''))
        self.assertEqual((code, out), (0, b'ping\n'))
        self.assertEqual(err.decode().split('\n')[1:], [
            '< 00000000  70 69 6e 67 0a' + ' ' * 36 + 'ping.',
            '> 00000000  70 6f 6e 67 0a' + ' ' * 36 + 'pong.',
            ''])

    def test_a_flood_from_another_sender_around_the_first_datagram_is_never_printed(self):
        # Datagrams of another sender queued between the first datagram and the moment the socket
        # is connected to its sender stay in the socket: they are dropped, not printed.
        lsn = self.listen(['-w', '0.3', 'udp://127.0.0.1:0'])
        _, _, addr = endpoint_address(lsn.endpoint())
        stop = threading.Event()

        def flood():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                for _ in range(20000):
                    if stop.is_set():
                        return
                    try:
                        other.sendto(b'intruder\n', addr)
                    except OSError:
                        pass
        flooder = threading.Thread(target=flood)
        with connected(socket.AF_INET, socket.SOCK_DGRAM, addr) as c:
            c.send(b'first\n')                  # the first sender, before any intruder
            flooder.start()
            flooder.join(TIMEOUT)
            c.send(b'second\n')
            lsn.wait_for(lambda out, err: b'second\n' in out, 'the second datagram')
            stop.set()
            lsn.send_stdin(b'')
        code, out, _ = lsn.finish()
        self.assertEqual((code, out[:200]), (0, b'first\nsecond\n'))

    def test_unnamed_unix_sender_cannot_be_answered(self):
        path = self.path('u.sock')
        lsn = self.listen([f'unixgram:{path}'], stdin=subprocess.DEVNULL)
        lsn.endpoint()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
            c.sendto(b'anonymous\n', path)
        code, out, err = lsn.finish()
        self.assertEqual((code, out), (1, b''))
        self.assertEqual(err.split(b'\n', 1)[1],
                         b"sockit: connect -l: the first datagram's sender has no address to answer\n")


class UsageTest(ListenTest):

    def test_combinations_refused(self):
        for args, line in (
                (['-k', 'tcp://127.0.0.1:9'], 'sockit: connect: -k needs -l'),
                (['-l', '-z', 'tcp://127.0.0.1:0'], 'sockit: connect: -l and -z exclude each other'),
                (['-l', '-s', '127.0.0.2', 'tcp://127.0.0.1:0'],
                 'sockit: connect: -l and -s exclude each other (-l binds ENDPOINT itself)'),
                (['-l', '-k', 'udp://127.0.0.1:0'],
                 'sockit: connect: -k takes stream endpoints only, not udp://127.0.0.1:0')):
            with self.subTest(args=args):
                result, _ = self.connect_run(args)
                self.assertExit(result, 2, line)

    def test_listen_without_cert_on_tls_is_a_usage_error(self):
        result, _ = self.connect_run(['-l', 'tls://127.0.0.1:0'])
        self.assertExit(result, 2, 'sockit: tls://127.0.0.1:0: tls needs cert=FILE when listening')

    def test_bind_failure_is_exit_1(self):
        with socket.socket() as taken:
            taken.bind(('127.0.0.1', 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            result, _ = self.connect_run(['-l', f'tcp://127.0.0.1:{port}'])
        self.assertExit(result, 1, f'sockit: bind tcp://127.0.0.1:{port}: address in use')


if __name__ == '__main__':
    unittest.main()
