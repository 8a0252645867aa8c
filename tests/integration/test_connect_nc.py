"""Black-box tests for the netcat options of `sockit connect`: -z, -C, -i, -s, -x, --strip-lf,
datagram lines sent with their LF, and a broken or failing stdout (-l and -k: test_connect_listen).

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
        # A CR at the end of one read and its LF at the start of the next stay one CRLF. The LF
        # is written to the pipe only once the peer has the CR: sockit read them apart.
        first = threading.Event()

        def handler(conn):
            got = b''
            while len(got) < 2:
                chunk = conn.recv(16)
                if not chunk:
                    break
                got += chunk
            first.set()
            return got, read_all(conn)

        peer = PyStreamServer(self, handler)
        proc = self.start(['-C', peer.endpoint()])
        proc.stdin.write(b'x\r')
        proc.stdin.flush()
        self.assertTrue(first.wait(TIMEOUT), 'the peer never got the CR')
        proc.stdin.write(b'\ny\n')
        proc.stdin.close()
        self.assertEqual(self.finish(proc), (0, b''))
        self.assertEqual(peer.wait(), [(b'x\r', b'\ny\r\n')])

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


def dump(direction, offset, data):
    """The -x line of data (at most 16 bytes) at offset, in the layout of hexdump -C."""
    cells = [f'{b:02x} ' for b in data] + ['   '] * (16 - len(data))
    text = ''.join(chr(b) if 0x20 <= b < 0x7f else '.' for b in data)
    return f'{direction} {offset:08x}  ' + ''.join(cells[:8]) + ' ' + ''.join(cells[8:]) + ' ' + text


class HexTest(NcTest):

    def test_x_against_echo(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
        result, _ = self.connect_run(['-x', server.endpoints[0]], b'hello\n')
        self.assertEqual((result.returncode, result.stdout), (0, b'hello\n'), result.stderr)
        # The example of the contract, written out, and dump() agreeing with it.
        self.assertEqual(result.stderr.decode(), dump('>', 0, b'hello\n') + '\n' + dump('<', 0, b'hello\n') + '\n')
        self.assertEqual(result.stderr,
                         b'> 00000000  68 65 6c 6c 6f 0a                                 hello.\n'
                         b'< 00000000  68 65 6c 6c 6f 0a                                 hello.\n')

    def test_x_two_lines_for_20_bytes_after_the_crlf_conversion(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
        sent = b'a\r\n0123456789abc\x7f\x00XYZ\r\n'
        result, _ = self.connect_run(['-C', '-x', server.endpoints[0]], b'a\n0123456789abc\x7f\x00XYZ\n')
        self.assertEqual((result.returncode, result.stdout), (0, sent), result.stderr)
        self.assertEqual(result.stderr.decode().split('\n'), [
            '> 00000000  61 0d 0a 30 31 32 33 34  35 36 37 38 39 61 62 63  a..0123456789abc',
            '> 00000010  7f 00 58 59 5a 0d 0a                              ..XYZ..',
            dump('<', 0, sent[:16]), dump('<', 16, sent[16:]), ''])

    def test_x_on_datagrams_one_dump_each(self):
        server = self.serve('udp://127.0.0.1:0', opts=['-s', 'echo'])
        result, _ = self.connect_run(['-x', '-w', '0.5', server.endpoints[0]], b'ab\ncd\n')
        self.assertEqual((result.returncode, result.stdout), (0, b'ab\ncd\n'), result.stderr)
        self.assertEqual(result.stderr.decode().split('\n'), [
            dump('>', 0, b'ab\n'), dump('>', 3, b'cd\n'), dump('<', 0, b'ab\n'), dump('<', 3, b'cd\n'), ''])

    def test_x_on_messages_one_dump_each(self):
        path = self.path('x.sock')
        server = self.serve(f'unixpacket:{path}', opts=['-s', 'echo'])
        result, _ = self.connect_run(['-x', server.endpoints[0]], b'one\ntwo\n')
        self.assertEqual((result.returncode, result.stdout), (0, b'one\ntwo\n'), result.stderr)
        self.assertEqual(result.stderr.decode().split('\n'), [
            dump('>', 0, b'one'), dump('>', 3, b'two'), dump('<', 0, b'one'), dump('<', 3, b'two'), ''])


def peer_and_bytes(conn):
    return conn.getpeername(), read_all(conn)


class SourceTest(NcTest):

    def test_s_ipv4_host_seen_by_the_peer(self):
        peer = PyStreamServer(self, peer_and_bytes)
        result, _ = self.connect_run(['-s', '127.0.0.2', peer.endpoint()], b'from .2\n')
        self.assertClean(result, b'')
        [(addr, got)] = peer.wait()
        self.assertEqual((addr[0], got), ('127.0.0.2', b'from .2\n'))

    def test_s_host_and_port(self):
        peer = PyStreamServer(self, peer_and_bytes)
        port = free_port(host='127.0.0.2')
        result, _ = self.connect_run(['-s', f'127.0.0.2:{port}', peer.endpoint()], b'x')
        self.assertClean(result, b'')
        self.assertEqual(peer.wait(), [(('127.0.0.2', port), b'x')])

    def test_s_seen_by_exec(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', 'echo "$SOCKIT_PEER_ADDR $SOCKIT_PEER_PORT"'])
        port = free_port(host='127.0.0.2')
        result, _ = self.connect_run(['-s', f'127.0.0.2:{port}', server.endpoints[0]])
        self.assertClean(result, f'127.0.0.2 {port}\n'.encode())

    @unittest.skipUnless(HAVE_IPV6, 'no IPv6 loopback')
    def test_s_ipv6_literal_and_bracketed_with_port(self):
        port = free_port(host='::1')
        for source, expected in (('::1', None), ('[::1]', None), (f'[::1]:{port}', port)):
            with self.subTest(source=source):
                peer = PyStreamServer(self, peer_and_bytes, family=socket.AF_INET6)
                result, _ = self.connect_run(['-s', source, peer.endpoint()], b'v6')
                self.assertClean(result, b'')
                [(addr, got)] = peer.wait()
                self.assertEqual((addr[0], got), ('::1', b'v6'))
                if expected is not None:
                    self.assertEqual(addr[1], expected)

    def test_s_with_z(self):
        peer = PyStreamServer(self, peer_and_bytes)
        result, _ = self.connect_run(['-z', '-s', '127.0.0.2', peer.endpoint()])
        self.assertClean(result, b'')
        self.assertEqual(peer.wait()[0][0][0], '127.0.0.2')

    def test_s_over_tls_seen_in_the_servers_log(self):
        from tls_helpers import certs
        c = certs()
        server = self.serve(f'tls://127.0.0.1:0,cert={c.server_pem},key={c.server_key}',
                            opts=['-v', '-s', 'echo'])
        port = free_port(host='127.0.0.2')
        result, _ = self.connect_run(['-s', f'127.0.0.2:{port}', f'{server.endpoints[0]},ca={c.ca_pem}'],
                                     b'over tls\n')
        self.assertClean(result, b'over tls\n')
        opened = f'sockit: open tcp://127.0.0.2:{port} on {server.endpoints[0]}'.encode()
        self.assertTrue(server.wait_stderr(lambda err: opened in log_lines(err)), server.stderr)

    def test_s_on_udp_gets_the_reply(self):
        peer = PyDgramServer(self, lambda srv, p, a: srv.sock.sendto(p.upper(), a))
        result, _ = self.connect_run(['-s', '127.0.0.2', '-w', '2', '-i', '1', peer.endpoint()], b'up\n')
        self.assertClean(result, b'UP\n')
        self.assertEqual(peer.sources()[0][0], '127.0.0.2')

    def test_s_unixgram_path_gets_the_replies(self):
        server_path, source = self.path('g.sock'), self.path('me.sock')
        peer = PyDgramServer(self, lambda srv, p, a: srv.sock.sendto(p.upper(), a),
                             family=socket.AF_UNIX, path=server_path)
        result, _ = self.connect_run(['-s', source, '-w', '2', '-i', '1', peer.endpoint()], b'a\nb\n')
        self.assertClean(result, b'A\nB\n')
        self.assertEqual(peer.sources(), [source, source])
        self.assertFalse(os.path.lexists(source), 'the source socket file was left behind')

    def test_s_unixgram_abstract_name(self):
        name = abstract_name('src')
        peer = PyDgramServer(self, lambda srv, p, a: srv.sock.sendto(p.upper(), a),
                             family=socket.AF_UNIX, path=self.path('ga.sock'))
        result, _ = self.connect_run(['-s', name, '-w', '2', '-i', '1', peer.endpoint()], b'q\n')
        self.assertClean(result, b'Q\n')
        self.assertEqual(peer.sources(), [b'\0' + name[1:].encode()])

    def test_s_unix_stream_path(self):
        source = self.path('client.sock')
        peer = PyStreamServer(self, peer_and_bytes, family=socket.AF_UNIX, path=self.path('s.sock'))
        result, _ = self.connect_run(['-s', source, peer.endpoint()], b'named')
        self.assertClean(result, b'')
        self.assertEqual(peer.wait(), [(source, b'named')])
        self.assertFalse(os.path.lexists(source))

    def test_s_bind_failures_are_exit_1(self):
        with socket.socket() as taken:
            taken.bind(('127.0.0.2', 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            file_path = self.path('a-file')
            with open(file_path, 'wb') as f:
                f.write(b'mine')
            for args, line in (
                    (['-s', f'127.0.0.2:{port}', 'tcp://127.0.0.1:9'],
                     f'sockit: bind tcp://127.0.0.2:{port}: address in use'),
                    (['-s', '192.0.2.1', 'tcp://127.0.0.1:9'],
                     'sockit: bind tcp://192.0.2.1:0: address not available'),
                    (['-s', '::1', 'tcp://127.0.0.1:9'],
                     'sockit: bind tcp://[::1]:0: not of the address family of tcp://127.0.0.1:9'),
                    (['-s', '127.0.0.2', 'udp6://[::1]:9'],
                     'sockit: bind udp6://127.0.0.2:0: no address of that family'),
                    (['-s', file_path, f'unix:{self.path("none.sock")}'],
                     f'sockit: bind unix:{file_path}: address in use')):
                with self.subTest(args=args):
                    result, _ = self.connect_run(args)
                    self.assertExit(result, 1, line)
        with open(file_path, 'rb') as f:
            self.assertEqual(f.read(), b'mine')

    def test_s_malformed_is_a_usage_error(self):
        for source, line in (('127.0.0.1:99999', 'sockit: connect: -s 127.0.0.1:99999: port out of range 0..65535'),
                             ('', 'sockit: connect: -s : empty')):
            with self.subTest(source=source):
                result, _ = self.connect_run(['-s', source, 'tcp://127.0.0.1:9'])
                self.assertExit(result, 2, line)


class IdleTest(NcTest):

    def test_banner_server_and_dev_null_returns_when_it_closes(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'daytime'])
        t0 = time.time()
        proc = self.start([server.endpoints[0]], stdin=subprocess.DEVNULL)
        code, err = self.finish(proc)
        self.assertEqual((code, err), (0, b''))
        self.assertDaytime(proc.stdout.read(), t0)

    def assertIdleEnd(self, args, stdout, at_least, below):
        """connect ARGS with stdin /dev/null ends by itself: exit 0, nothing on stderr, exactly
        stdout, after at_least and within below seconds."""
        start = time.monotonic()
        proc = self.start(args, stdin=subprocess.DEVNULL)
        code, err = self.finish(proc)
        elapsed = time.monotonic() - start
        self.assertEqual((code, err, proc.stdout.read()), (0, b'', stdout))
        self.assertGreaterEqual(elapsed, at_least)
        self.assertLess(elapsed, below)

    def test_i_ends_a_session_with_a_peer_that_never_closes(self):
        # stdin is /dev/null: the sending side is shut down at once, the peer holds its side open.
        handler, release = holding(self, lambda conn: conn.sendall(b'banner\n'))
        peer = PyStreamServer(self, handler)
        self.assertIdleEnd(['-i', '0.5', peer.endpoint()], b'banner\n', 0.45, 3.0)
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
        self.assertIdleEnd(['-i', '0.5', peer.endpoint()], b'01234567', 1.5, 4.0)
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
        while time.monotonic() < deadline:    # all 8 bytes, in one datagram or two
            with peer.lock:
                if sum(len(p) for p, _ in peer.received) >= 8:
                    break
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

    def test_help_lists_the_netcat_options_with_their_defaults(self):
        result, _ = self.connect_run(['--help'])
        self.assertEqual((result.returncode, result.stderr), (0, b''))
        lines = result.stdout.decode().split('\n')
        for short, opt in (('-l', '--listen'), ('-k', '--keep-open'), ('-s', '--source'), ('-x', '--hex')):
            with self.subTest(option=opt):
                at = next((i for i, line in enumerate(lines) if f'{short}, {opt}' in line), None)
                self.assertIsNotNone(at, f'{opt} missing from --help')
                end = next(i for i in range(at + 1, len(lines)) if not lines[i].startswith(' ' * 10))
                self.assertIn('(default: ', ' '.join(lines[at:end]))
        self.assertIn(dump('>', 0, b'hi\n'), result.stdout.decode())


if __name__ == '__main__':
    unittest.main()
