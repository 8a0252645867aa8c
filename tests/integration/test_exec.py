"""Black-box tests of `sockit serve --exec`: what the children inherit, how they are limited
(--max-children, --idle-timeout, --exec-timeout), payloads larger than a pipe, and a system
without pidfd_open(2).

Run from the repository root: SOCKIT=build/sockit python3 -m unittest tests/integration/test_exec.py
"""

import errno
import fcntl
import os
import re
import resource
import socket
import subprocess
import sys
import termios
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import *  # noqa: E402,F401,F403
from helpers import _child_setup  # noqa: E402

TOOLS = os.path.join(REPO_ROOT, 'tests', 'tools')
CC = shutil.which('cc')
NOBODY_UID = 60000 + os.getpid() % 4000     # a user of this test alone, for pipe quotas
F_GETPIPE_SZ = 1032


class FdServer(Server):
    """A Server started with extra descriptors inherited (subprocess pass_fds)."""

    def __init__(self, endpoints, options, pass_fds, prefix=()):
        self.argv = [*prefix, SOCKIT, 'serve', *options, *endpoints]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=server_env(), pass_fds=pass_fds,
                                     preexec_fn=_child_setup(None))
        self.clients = []
        self._err = bytearray()
        self._drain = None
        self._stopped = False
        self.returncode = None


def wait_until(predicate, timeout=TIMEOUT, what='condition'):
    """Poll predicate (bounded) until it holds; fails after timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'{what}: not within {timeout}s')
        time.sleep(0.01)


def fd_listing(output):
    """{fd: target} from `ls -l /proc/self/fd` output."""
    return dict(re.findall(r' (\d+) -> (.*)$', output.decode(errors='replace'), re.M))


def reachable_by_others(path):
    """Whether any user may execute path: every directory above it searchable by others."""
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def unsent_bytes(sock):
    """Bytes a UNIX socket sent that the receiver has not read yet (SIOCOUTQ)."""
    return struct.unpack('i', fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b'\0' * 4))[0]


class ExecTest(SockitTest):

    def serve_exec(self, cmd, *endpoints, opts=()):
        return self.serve(*endpoints, opts=['--exec', cmd, *opts])

    def assertGone(self, pid):
        """The process pid ends (killed and reaped) within a bound."""
        wait_until(lambda: not process_alive(pid), what=f'process {pid} still running')

    def read_pid(self, sock):
        line = LineReader(sock).line()
        self.assertRegex(line, rb'^\d+\n$')
        return int(line)


class DescriptorTest(ExecTest):

    def test_leaked_parent_descriptors_stay_out_of_the_command(self):
        # sockit's own parent leaks a pipe, /dev/null and a socket into it, above every
        # descriptor of this process; the command sees 0, 1, 2 and the directory `ls`
        # opened itself (the lowest free, 3).
        r, w = os.pipe()
        null = os.open('/dev/null', os.O_RDONLY)
        a, b = socket.socketpair()
        base = max(os.listdir('/proc/self/fd'), key=int)
        leaked = {int(base) + 10: r, int(base) + 40: null, int(base) + 100: a.fileno()}
        for target, fd in leaked.items():
            os.dup2(fd, target, inheritable=False)
            self.addCleanup(os.close, target)
        for fd in (r, w, null):
            os.close(fd)
        a.close()
        b.close()
        kinds = ['tcp', 'unix', 'udp', 'unixgram']
        server = FdServer([self.endpoint(k) for k in kinds], ['--exec', 'exec ls -l /proc/self/fd'],
                          pass_fds=list(leaked))
        self._watch(server)
        self.addCleanup(server.stop)
        server.wait_listening(len(kinds))
        for i, kind in enumerate(kinds):
            with self.subTest(kind=kind):
                if kind in ('tcp', 'unix'):
                    output = recv_until_eof(server.connect(i))
                else:
                    output = dgram_request(server.dgram(i), b'')
                fds = fd_listing(output)
                self.assertEqual(sorted(fds, key=int), ['0', '1', '2', '3'], output)
                self.assertRegex(fds['3'], r'^/proc/\d+/fd$')
                if kind in ('tcp', 'unix'):
                    self.assertRegex(fds['0'], r'^socket:\[\d+\]$')
                    self.assertEqual(fds['1'], fds['0'])
                else:
                    self.assertRegex(fds['0'], r'^pipe:\[\d+\]$')
                    self.assertRegex(fds['1'], r'^pipe:\[\d+\]$')
                    self.assertNotEqual(fds['0'], fds['1'])


class NoPidfdTest(ExecTest):

    def launcher(self):
        if CC is None:
            self.skipTest('no C compiler to build tests/tools/no-pidfd.c')
        exe = self.path('no-pidfd')
        build = subprocess.run([CC, '-O2', '-o', exe, os.path.join(TOOLS, 'no-pidfd.c')],
                               capture_output=True, timeout=60)
        self.assertEqual(build.returncode, 0, build.stderr)
        # The filter works, and only on pidfd_open: Python sees ENOSYS there and runs otherwise.
        probe = subprocess.run([exe, sys.executable, '-c',
                                'import os\ntry:\n os.pidfd_open(os.getpid())\n'
                                'except OSError as e:\n print(e.errno)'],
                               capture_output=True, timeout=RUN_TIMEOUT)
        self.assertEqual(probe.stdout, b'%d\n' % errno.ENOSYS, probe.stderr)
        return exe

    def run_under(self, exe, args):
        try:
            return run_sockit(args, prefix=[exe])
        except subprocess.TimeoutExpired as e:
            self.fail(f'sockit {args} still running after {e.timeout}s without pidfd_open; '
                      f'stderr {e.stderr!r}')

    def test_exec_without_pidfd_open_fails_at_start(self):
        exe = self.launcher()
        for endpoint in ('tcp://127.0.0.1:0', 'udp://127.0.0.1:0'):
            with self.subTest(endpoint=endpoint):
                result = self.run_under(exe, ['serve', '--exec', 'cat', endpoint])
                self.assertExit(result, 1, 'sockit: serve: --exec needs pidfd_open(2): '
                                           'function not implemented')

    def test_other_services_run_without_pidfd_open(self):
        exe = self.launcher()
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'], prefix=[exe])
        c = server.connect()
        c.sendall(b'still served\n')
        self.assertEqual(recv_exactly(c, 13), b'still served\n')


class MaxChildrenTest(ExecTest):

    def test_stream_clients_past_the_limit_wait_for_a_child(self):
        server = self.serve_exec('echo start; read x; echo "got $x"', 'tcp://127.0.0.1:0',
                                 opts=['--max-children', '2'])
        first, second = server.connect(), server.connect()
        for c in (first, second):
            self.assertEqual(recv_exactly(c, 6), b'start\n')
        third = server.connect()            # connected: it waits in the backlog
        assert_silent(third, 0.5)
        shells = [p for p, cmd in descendants(server.pid).items() if cmd.startswith(b'sh ')]
        self.assertEqual(len(shells), 2, descendants(server.pid))
        first.sendall(b'one\n')
        self.assertEqual(recv_until_eof(first), b'got one\n')
        self.assertEqual(recv_exactly(third, 6), b'start\n')
        third.sendall(b'three\n')
        self.assertEqual(recv_until_eof(third), b'got three\n')
        second.sendall(b'two\n')
        self.assertEqual(recv_until_eof(second), b'got two\n')

    def test_datagrams_past_the_limit_are_dropped(self):
        started = self.path('started')
        for name in 'abcdef':
            os.mkfifo(self.path(f'gate.{name}'))
        # Each child records its payload, then waits for its gate to be opened.
        cmd = (f'p=$(cat); echo "$p" >> {started}; read r < {self.tmp}/gate.$p; '
               f'printf "%s %s" "$p" "$r"')
        server = self.serve_exec(cmd, 'unixgram:' + self.path('d.sock'),
                                 opts=['--max-children', '2', '--exec-timeout', '30', '-v'])
        u = server.dgram(0)

        def started_names():
            try:
                with open(started) as f:
                    return f.read().split()
            except FileNotFoundError:
                return []

        u.send(b'a')
        u.send(b'b')
        wait_until(lambda: sorted(started_names()) == ['a', 'b'], what='two children started')
        for name in (b'c', b'd', b'e'):
            u.send(name)
        # The server has read all three (a UNIX sender's queue empties as the receiver reads).
        wait_until(lambda: unsent_bytes(u) == 0, what='datagrams read by the server')
        for name in ('a', 'b'):
            self.open_gate(name)
        replies = {u.recv(100), u.recv(100)}
        self.assertEqual(replies, {b'a ok', b'b ok'})
        u.send(b'f')
        wait_until(lambda: started_names()[2:] == ['f'], what='a child for a later datagram')
        self.open_gate('f')
        self.assertEqual(u.recv(100), b'f ok')
        assert_silent(u, 0.2)
        self.assertEqual(sorted(started_names()), ['a', 'b', 'f'])
        drops = re.findall(rb'exec: datagram from .* dropped: --max-children 2 reached '
                           rb'\((\d+) dropped in all\)\n', server.stderr)
        self.assertEqual(drops, [b'1'], server.stderr)   # three drops within a second: one line

    def open_gate(self, name):
        """Write 'ok' into the child's FIFO, once the child has opened it."""
        path = self.path(f'gate.{name}')
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        os.write(fd, b'ok\n')
        os.close(fd)

    def test_options_without_exec_are_usage_errors(self):
        for opt in ('--max-children', '--exec-timeout'):
            with self.subTest(opt=opt):
                try:
                    result = run_sockit(['serve', '-s', 'echo', opt, '1', 'tcp://127.0.0.1:0'])
                except subprocess.TimeoutExpired:
                    self.fail(f'serve -s echo {opt} 1 served instead of a usage error')
                self.assertExit(result, 2, f'sockit: serve: {opt} needs --exec')


class TimeoutTest(ExecTest):

    def test_idle_stream_command_is_killed(self):
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                server = self.serve_exec('echo $$; exec sleep 100', self.endpoint(kind),
                                         opts=['--idle-timeout', '0.5'])
                c = server.connect()
                start = time.monotonic()
                pid = self.read_pid(c)
                data, _ = read_to_close(c, timeout=TIMEOUT)
                elapsed = time.monotonic() - start
                self.assertEqual(data, b'')
                self.assertGreaterEqual(elapsed, 0.45)
                self.assertLess(elapsed, 3.0)
                self.assertGone(pid)
                server.stop()

    def test_what_the_command_leaves_running_goes_with_it(self):
        """A shell that exits leaving `cmd &` behind: the background work would hold the client's
        socket past every limit (--max-children, --idle-timeout); it is killed with the group."""
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                server = self.serve_exec('sleep 100 & echo $!; echo hi', self.endpoint(kind),
                                         opts=['--max-children', '1'])
                c = server.connect()
                reader = LineReader(c)
                background = int(reader.line())
                self.assertEqual(reader.line(), b'hi\n')
                data, how = read_to_close(c, timeout=TIMEOUT)
                self.assertEqual((data, how), (b'', 'eof'))
                self.assertGone(background)
                # The one child allowed is free again: the next client is served at once.
                c2 = server.connect()
                self.assertGone(self.read_pid(c2))
                server.stop()

    def test_traffic_either_way_keeps_a_command_alive(self):
        # 1.6 s of traffic one way with --idle-timeout 0.5: lines the client sends (the
        # command answers only at the end), then lines the command writes on its own; each
        # connection ends only when its command does.
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind, direction='client sends'):
                server = self.serve_exec('wc -l', self.endpoint(kind), opts=['--idle-timeout', '0.5'])
                c = server.connect()
                for i in range(8):
                    c.sendall(b'%d\n' % i)
                    time.sleep(0.2)
                c.shutdown(socket.SHUT_WR)
                self.assertEqual(recv_until_eof(c), b'8\n')
                server.stop()
            with self.subTest(kind=kind, direction='command sends'):
                server = self.serve_exec('for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.2; done',
                                         self.endpoint(kind), opts=['--idle-timeout', '0.5'])
                c = server.connect()
                self.assertEqual(recv_until_eof(c), b''.join(b'%d\n' % i for i in range(1, 9)))
                server.stop()

    def test_exec_timeout_kills_a_stream_command(self):
        for kind in ('tcp', 'unix'):
            with self.subTest(kind=kind):
                # The shell waits for its own child: the whole group must go.
                server = self.serve_exec('echo $$; sleep 100; echo never', self.endpoint(kind),
                                         opts=['--exec-timeout', '0.5', '--idle-timeout', '0'])
                c = server.connect()
                start = time.monotonic()
                pid = self.read_pid(c)
                wait_until(lambda: any(cmd.startswith(b'sleep') for cmd in descendants(pid).values()),
                           what='sleep started')
                procs = descendants(server.pid)
                data, _ = read_to_close(c, timeout=TIMEOUT)
                elapsed = time.monotonic() - start
                self.assertEqual(data, b'')
                self.assertGreaterEqual(elapsed, 0.45)
                self.assertLess(elapsed, 3.0)
                for p in procs:
                    self.assertGone(p)
                server.stop()

    def test_streams_have_no_exec_timeout_by_default(self):
        # Datagram commands are killed after 5 s by default; a stream command is not.
        server = self.serve_exec('sleep 5.3; echo survived', 'tcp://127.0.0.1:0')
        self.assertEqual(recv_until_eof(server.connect(), timeout=10), b'survived\n')


class PayloadTest(ExecTest):

    def test_large_datagram_reaches_the_command_whole(self):
        server, idx = self.serve_kinds(['udp', 'unixgram'], opts=['--exec', 'wc -c'])
        for kind in ('udp', 'unixgram'):
            with self.subTest(kind=kind):
                u = server.dgram(idx[kind], bufsize=256 * 1024)
                self.assertEqual(dgram_request(u, b'x' * 60000), b'60000\n')

    def test_reply_larger_than_a_datagram_is_not_sent_cut(self):
        server = self.serve('unixgram:' + self.path('big.sock'),
                            opts=['-v', '--exec', 'if [ "$(cat)" = big ]; then head -c 70000 '
                                                  '/dev/zero; else echo small; fi'])
        u = server.dgram(0, bufsize=256 * 1024)
        u.send(b'big')
        self.assertEqual(dgram_request(u, b'x'), b'small\n')
        assert_silent(u, 0.2)
        line = b'sockit: exec: reply of more than 65536 bytes does not fit a datagram, not sent\n'
        self.assertTrue(server.wait_stderr(lambda err: line in err), server.stderr[-400:])

    def test_command_that_stops_reading_gets_what_it_read(self):
        server = self.serve_exec('head -c 5', 'udp://127.0.0.1:0')
        u = server.dgram(0)
        self.assertEqual(dgram_request(u, bytes(range(256)) * 234), bytes(range(5)))
        self.assertEqual(dgram_request(u, b'again'), b'again')

    def test_payload_larger_than_a_small_pipe(self):
        # Past its pipe quota (fs.pipe-user-pages-soft) an unprivileged user's new pipes get
        # two pages. A holder process of a user of this test alone uses up the quota, then
        # sockit runs as that user, so its pipe to the command holds 8 KiB.
        setpriv = shutil.which('setpriv')
        if os.geteuid() != 0 or setpriv is None:
            self.skipTest('needs root and setpriv to run sockit as a user over its pipe quota')
        if not reachable_by_others(SOCKIT):
            self.skipTest('binary not executable by others')
        with open('/proc/sys/fs/pipe-user-pages-soft') as f:
            soft = int(f.read())
        if soft == 0:
            self.skipTest('no pipe quota on this system')
        as_user = [setpriv, f'--reuid={NOBODY_UID}', f'--regid={NOBODY_UID}', '--clear-groups']
        pipe_size = self.use_up_pipe_quota(soft)
        if pipe_size >= 60000:
            self.skipTest(f'pipes over the quota still hold {pipe_size} bytes')
        server = self.serve('udp://127.0.0.1:0', opts=['--exec', 'wc -c'], prefix=as_user)
        u = server.dgram(0, bufsize=256 * 1024)
        self.assertEqual(dgram_request(u, b'y' * 60000), b'60000\n')

    def use_up_pipe_quota(self, soft):
        """Forks a holder that becomes NOBODY_UID and keeps enough pipes to pass that user's
        quota until the test ends. Returns the size of a pipe that user makes now."""
        report_r, report_w = os.pipe()
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:                                # the holder: plain system calls, then exit
            try:
                os.close(report_r)
                os.close(hold_w)
                os.setgroups([])
                os.setgid(NOBODY_UID)
                os.setuid(NOBODY_UID)
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                pipes = [os.pipe() for _ in range(soft // 16 + 8)]
                r, w = os.pipe()
                os.write(report_w, b'%d\n' % fcntl.fcntl(w, F_GETPIPE_SZ))
                os.read(hold_r, 1)
                del pipes
            finally:
                os._exit(0)
        os.close(report_w)
        os.close(hold_r)
        self.addCleanup(os.waitpid, pid, 0)
        self.addCleanup(os.close, hold_w)
        with os.fdopen(report_r, 'rb') as f:
            line = f.readline()
        if not line:
            self.skipTest('could not use up a pipe quota here')
        return int(line)


if __name__ == '__main__':
    unittest.main()
