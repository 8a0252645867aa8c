"""Black-box tests for the netcat options of `sockit connect`: -z, -C, -i, --strip-lf, datagram lines
sent with their LF, and a broken or failing stdout.

The binary under test is $SOCKIT (default build/sockit, relative to the repository root). Peers are
`sockit serve`, plain Python sockets and, where installed, nc (netcat-openbsd), all on 127.0.0.1 or
UNIX paths in a temporary directory.

    python3 -m unittest discover -s tests/integration -v
"""

import os
import shutil
import socket
import subprocess
import threading
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

NC = shutil.which('nc')


def holding(test, before=lambda conn: None):
    """A handler that runs before(conn), reads to sockit's EOF, then keeps its side open until
    the test ends (bounded): a peer that never closes first."""
    release = threading.Event()
    test.addCleanup(release.set)

    def handler(conn):
        before(conn)
        got = read_all(conn)
        release.wait(TIMEOUT * 2)
        return got
    return handler, release


class NcTest(SockitTest):

    def start(self, args, stdin=subprocess.PIPE, stdout=subprocess.PIPE):
        """`sockit connect ARGS` left running; killed and reaped at cleanup."""
        proc = subprocess.Popen([SOCKIT, 'connect', *args], stdin=stdin, stdout=stdout,
                                stderr=subprocess.PIPE, env=server_env())

        def reap():
            if proc.poll() is None:
                proc.kill()
            proc.wait(TIMEOUT)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        self.addCleanup(reap)
        return proc

    def finish(self, proc, timeout=TIMEOUT):
        """The exit status and stderr of a started connect, which must end within timeout."""
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f'sockit connect did not exit within {timeout}s')
        return proc.returncode, proc.stderr.read()


class ZeroTest(NcTest):

    def test_z_accepting_stream_endpoints_exit_0_with_nothing_sent(self):
        for family in (socket.AF_INET, socket.AF_UNIX):
            with self.subTest(family=family.name):
                peer = PyStreamServer(self, read_all, family=family,
                                      path=self.path(f'z-{family.name}.sock'))
                result, _ = self.connect_run(['-z', peer.endpoint()], b'never sent\n')
                self.assertClean(result, b'')
                self.assertEqual(peer.wait(), [b''])

    def test_z_verbose_says_connected(self):
        peer = PyStreamServer(self, read_all)
        result, _ = self.connect_run(['-z', '-v', peer.endpoint()])
        self.assertEqual((result.returncode, result.stdout), (0, b''))
        self.assertEqual(result.stderr, f'sockit: connected to {peer.endpoint()}\n'.encode())
        peer.wait()

    def test_z_refused_is_exit_1_in_one_line(self):
        port = free_port()
        ep = f'tcp://127.0.0.1:{port}'
        result, _ = self.connect_run(['-z', ep])
        self.assertExit(result, 1, f'sockit: connect {ep}: connection refused')

    def test_z_missing_unix_path(self):
        ep = f'unix:{self.path("none.sock")}'
        result, _ = self.connect_run(['-z', ep])
        self.assertExit(result, 1, f'sockit: connect {ep}: no such file or directory')

    def test_z_bounded_by_w(self):
        port = self.full_backlog_port()
        ep = f'tcp://127.0.0.1:{port}'
        result, elapsed = self.connect_run(['-z', '-w', '0.5', ep])
        self.assertExit(result, 1)
        self.assertTrue(result.stderr.startswith(f'sockit: connect {ep}: '.encode()), result.stderr)
        self.assertIn(b'timed out', result.stderr)
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 3.0)

    def test_z_on_a_datagram_endpoint_is_a_usage_error(self):
        for ep in ('udp://127.0.0.1:9', f'unixgram:{self.path("g.sock")}'):
            with self.subTest(endpoint=ep):
                result, _ = self.connect_run(['-z', ep])
                self.assertExit(result, 2, f'sockit: connect: -z checks stream endpoints only, not {ep}')

    @unittest.skipIf(NC is None, 'nc is not installed')
    def test_z_agrees_with_nc(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
        port = server.port(0)
        closed = free_port()
        for p, code in ((port, 0), (closed, 1)):
            with self.subTest(port=p):
                nc = subprocess.run([NC, '-z', '127.0.0.1', str(p)], capture_output=True, timeout=RUN_TIMEOUT)
                result, _ = self.connect_run(['-z', f'tcp://127.0.0.1:{p}'])
                self.assertEqual((nc.returncode, result.returncode), (code, code), result.stderr)


class CrlfTest(NcTest):

    def test_c_sends_crlf_and_keeps_an_existing_crlf(self):
        peer = PyStreamServer(self, read_all)
        result, _ = self.connect_run(['-C', peer.endpoint()], b'a\nb\r\nc\r\rd\n\n\rend')
        self.assertClean(result, b'')
        self.assertEqual(peer.wait(), [b'a\r\nb\r\nc\r\rd\r\n\r\n\rend'])

    def test_without_c_bytes_pass_unchanged(self):
        peer = PyStreamServer(self, read_all)
        result, _ = self.connect_run([peer.endpoint()], b'a\nb\r\n')
        self.assertClean(result, b'')
        self.assertEqual(peer.wait(), [b'a\nb\r\n'])

    def test_c_cr_and_lf_in_separate_reads(self):
        # A CR at the end of one read and its LF at the start of the next stay one CRLF.
        peer = PyStreamServer(self, read_all)
        proc = self.start(['-C', peer.endpoint()])
        self.assertTrue(peer.accepted.wait(TIMEOUT), 'sockit connect never connected')
        proc.stdin.write(b'x\r')
        proc.stdin.flush()
        time.sleep(0.2)   # two reads on sockit's side (ordering, not readiness)
        proc.stdin.write(b'\ny\n')
        proc.stdin.close()
        self.assertEqual(self.finish(proc), (0, b''))
        self.assertEqual(peer.wait(), [b'x\r\ny\r\n'])

    def test_c_large_input_through_echo(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
        data = b'0123456789abcdef\n' * 20000
        result, _ = self.connect_run(['-C', server.endpoints[0]], data, timeout=15)
        self.assertClean(result, data.replace(b'\n', b'\r\n'))

    def test_c_on_datagrams(self):
        peer = PyDgramServer(self, lambda srv, p, a: None)
        result, _ = self.connect_run(['-C', '-w', '0.2', peer.endpoint()], b'a\nb\r\n\nc')
        self.assertClean(result, b'')
        self.assertEqual([p for p, _ in peer.received], [b'a\r\n', b'b\r\n', b'\r\n', b'c'])

    def test_c_with_strip_lf_sends_no_line_end(self):
        peer = PyDgramServer(self, lambda srv, p, a: None)
        result, _ = self.connect_run(['-C', '--strip-lf', '-w', '0.2', peer.endpoint()], b'a\nb\n')
        self.assertClean(result, b'')
        self.assertEqual([p for p, _ in peer.received], [b'a', b'b'])


class IdleTest(NcTest):

    def test_banner_server_and_dev_null_returns_when_it_closes(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'daytime'])
        t0 = time.time()
        proc = self.start([server.endpoints[0]], stdin=subprocess.DEVNULL)
        code, err = self.finish(proc)
        self.assertEqual((code, err), (0, b''))
        self.assertDaytime(proc.stdout.read(), t0)

    def test_i_ends_a_session_with_a_peer_that_never_closes(self):
        # stdin is /dev/null: the sending side is shut down at once, the peer holds its side open.
        handler, release = holding(self, lambda conn: conn.sendall(b'banner\n'))
        peer = PyStreamServer(self, handler)
        start = time.monotonic()
        proc = self.start(['-i', '0.5', peer.endpoint()], stdin=subprocess.DEVNULL)
        code, err = self.finish(proc)
        elapsed = time.monotonic() - start
        self.assertEqual((code, err, proc.stdout.read()), (0, b'', b'banner\n'))
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 3.0)
        release.set()
        self.assertEqual(peer.wait(), [b''])

    def test_i_with_stdin_open_and_a_silent_discard_server(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'discard'])
        start = time.monotonic()
        proc = self.start(['-i', '0.4', server.endpoints[0]])
        proc.stdin.write(b'dropped\n')
        proc.stdin.flush()
        code, err = self.finish(proc)
        elapsed = time.monotonic() - start
        self.assertEqual((code, err, proc.stdout.read()), (0, b'', b''))
        self.assertGreaterEqual(elapsed, 0.35)
        self.assertLess(elapsed, 3.0)

    def test_i_restarts_while_data_moves(self):
        # A byte every 0.15 s for about 1.2 s, then silence: -i 0.5 must outlast the trickle.
        def trickle(conn):
            for i in range(8):
                conn.sendall(b'%d' % i)
                time.sleep(0.15)

        handler, release = holding(self, trickle)
        peer = PyStreamServer(self, handler)
        start = time.monotonic()
        proc = self.start(['-i', '0.5', peer.endpoint()], stdin=subprocess.DEVNULL)
        code, err = self.finish(proc)
        elapsed = time.monotonic() - start
        self.assertEqual((code, err, proc.stdout.read()), (0, b'', b'01234567'))
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 4.0)
        release.set()
        peer.wait()

    def test_i_counts_an_upload_to_a_slow_reader_as_moving(self):
        # 1 MiB over a UNIX socket (whose kernel queue does not grow) to a peer that reads
        # 32 KiB every 0.1 s, about 3 s in all, under -i 0.4: stdin waits for the queue, and
        # what is queued, here or in the kernel, goes down all the while: not idle, nothing lost.
        data = bytes(range(256)) * 4096

        def slow(conn):
            got = bytearray()
            while True:
                chunk = conn.recv(32768)
                if not chunk:
                    return bytes(got)
                got += chunk
                time.sleep(0.1)

        peer = PyStreamServer(self, slow, family=socket.AF_UNIX, path=self.path('slow.sock'))
        proc = self.start(['-i', '0.4', peer.endpoint()])
        proc.stdin.write(data)
        proc.stdin.close()
        code, err = self.finish(proc, timeout=TIMEOUT * 2)
        self.assertEqual((code, err), (0, b''))
        self.assertEqual(peer.wait(), [data])

    def test_i_on_datagrams_with_stdin_open(self):
        peer = PyDgramServer(self, lambda srv, p, a: None)
        start = time.monotonic()
        proc = self.start(['-i', '0.4', peer.endpoint()])
        proc.stdin.write(b'one\n')
        proc.stdin.flush()
        code, err = self.finish(proc)
        elapsed = time.monotonic() - start
        self.assertEqual((code, err, proc.stdout.read()), (0, b'', b''))
        self.assertGreaterEqual(elapsed, 0.35)
        self.assertLess(elapsed, 3.0)
        self.assertEqual([p for p, _ in peer.received], [b'one\n'])

    def test_bad_idle_is_a_usage_error(self):
        for value in ('soon', '-1'):
            with self.subTest(value=value):
                result, _ = self.connect_run(['-i', value, 'tcp://127.0.0.1:9'])
                self.assertExit(result, 2)


class StdoutTest(NcTest):

    def test_closed_pipe_under_chargen_exits_quietly(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'chargen'])
        proc = self.start([server.endpoints[0]], stdin=subprocess.DEVNULL)
        got = os.read(proc.stdout.fileno(), 10)
        self.assertTrue(got, 'no chargen output')
        proc.stdout.close()
        self.assertEqual(self.finish(proc), (0, b''))

    def test_head_c_10_in_a_shell_pipeline(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'chargen'])
        script = f'set -o pipefail; "$0" connect {server.endpoints[0]} </dev/null | head -c 10'
        result = subprocess.run(['bash', '-c', script, SOCKIT], capture_output=True,
                                timeout=RUN_TIMEOUT, env=server_env())
        self.assertEqual((result.returncode, result.stdout, result.stderr),
                         (0, chargen_bytes(10), b''))

    def test_failing_stdout_is_a_stdout_error(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'chargen'])
        with open('/dev/full', 'wb') as full:
            proc = self.start([server.endpoints[0]], stdin=subprocess.DEVNULL, stdout=full)
            code, err = self.finish(proc)
        self.assertEqual((code, err), (1, b'sockit: stdout: no space left on device\n'))

    def test_failing_stdout_on_datagrams(self):
        server = self.serve('udp://127.0.0.1:0', opts=['-s', 'echo'])
        with open('/dev/full', 'wb') as full:
            proc = self.start(['-w', '2', server.endpoints[0]], stdout=full)
            proc.stdin.write(b'x\n')
            proc.stdin.close()
            code, err = self.finish(proc)
        self.assertEqual((code, err), (1, b'sockit: stdout: no space left on device\n'))

    def test_closed_pipe_on_datagrams_exits_quietly(self):
        server = self.serve('udp://127.0.0.1:0', opts=['-s', 'echo'])
        proc = self.start(['-w', '3', server.endpoints[0]])
        proc.stdout.close()
        proc.stdin.write(b'x\n')
        proc.stdin.close()
        self.assertEqual(self.finish(proc), (0, b''))


class DatagramLfTest(NcTest):

    def test_each_line_keeps_its_lf(self):
        peer = PyDgramServer(self, lambda srv, p, a: None)
        result, _ = self.connect_run(['-w', '0.2', peer.endpoint()], b'a\n\nbb\nlast')
        self.assertClean(result, b'')
        self.assertEqual([p for p, _ in peer.received], [b'a\n', b'\n', b'bb\n', b'last'])

    def test_strip_lf_gives_the_old_datagrams(self):
        peer = PyDgramServer(self, lambda srv, p, a: None)
        result, _ = self.connect_run(['--strip-lf', '-w', '0.2', peer.endpoint()], b'a\n\nbb\nlast')
        self.assertClean(result, b'')
        self.assertEqual([p for p, _ in peer.received], [b'a', b'', b'bb', b'last'])

    @unittest.skipIf(shutil.which('bc') is None, 'bc is not installed')
    def test_bc_behind_exec_answers(self):
        server = self.serve('udp://127.0.0.1:0', opts=['--exec', 'bc -l'])
        result, _ = self.connect_run(['-w', '2', server.endpoints[0]], b'2+3\n')
        self.assertClean(result, b'5\n')

    @unittest.skipIf(NC is None, 'nc is not installed')
    def test_same_datagrams_as_nc(self):
        peer = PyDgramServer(self, lambda srv, p, a: None)
        port = peer.sock.getsockname()[1]
        nc = subprocess.run([NC, '-u', '-w', '1', '127.0.0.1', str(port)], input=b'one\ntwo\n',
                            capture_output=True, timeout=RUN_TIMEOUT)
        self.assertEqual(nc.returncode, 0, nc.stderr)
        deadline = time.monotonic() + TIMEOUT
        while len(peer.received) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        with peer.lock:
            from_nc = b''.join(p for p, _ in peer.received)
            peer.received.clear()
        result, _ = self.connect_run(['-w', '0.2', peer.endpoint()], b'one\ntwo\n')
        self.assertClean(result, b'')
        # nc may send both lines in one datagram: the bytes on the wire are the same.
        self.assertEqual(b''.join(p for p, _ in peer.received), from_nc)
        self.assertEqual([p for p, _ in peer.received], [b'one\n', b'two\n'])


class HelpTest(NcTest):

    def test_help_lists_every_option_with_its_default(self):
        result, _ = self.connect_run(['--help'])
        self.assertEqual((result.returncode, result.stderr), (0, b''))
        lines = result.stdout.decode().split('\n')
        for opt in ('--wait', '--zero', '--crlf', '--idle', '--strip-lf', '--quiet', '--verbose'):
            with self.subTest(option=opt):
                at = next((i for i, line in enumerate(lines) if opt in line), None)
                self.assertIsNotNone(at, f'{opt} missing from --help')
                text = ' '.join(lines[at:at + 3])
                self.assertIn('default', text)


if __name__ == '__main__':
    unittest.main()
