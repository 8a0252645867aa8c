"""UNIX socket files in directories others can write to: a live socket of another service is never
taken over, two servers starting together never both get the path, and a mode is never applied by a
path a link could be swapped into."""

import os
import pwd
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
import unittest

from helpers import (SETPRIV, START_TIMEOUT, TIMEOUT, Server, ServeTest, children, run_sockit,
                     server_env, setUpModule)  # noqa: F401  (setUpModule is run by unittest)

STRACE = shutil.which('strace')


def nobody_ids():
    try:
        pw = pwd.getpwnam('nobody')
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


@unittest.skipUnless(os.geteuid() == 0 and SETPRIV and nobody_ids(), 'needs root, setpriv and nobody')
class ForeignSocketTest(ServeTest):
    """A root-owned socket with mode 0700 in a directory anyone may write: an unprivileged sockit
    gets EACCES when it probes it, which means someone is there, not that the file is stale."""

    def setUp(self):
        super().setUp()
        os.chmod(self.tmp, 0o777)   # writable by all, no sticky bit: the case that matters

    def as_nobody(self):
        uid, gid = nobody_ids()
        return [SETPRIV, f'--reuid={uid}', f'--regid={gid}', '--clear-groups']

    def root_service(self, path, socktype):
        s = socket.socket(socket.AF_UNIX, socktype)
        self.addCleanup(s.close)
        s.bind(path)
        if socktype == socket.SOCK_STREAM:
            s.listen(8)
        os.chmod(path, 0o700)
        return s

    def test_unreachable_live_socket_is_address_in_use(self):
        for scheme, socktype in (('unix', socket.SOCK_STREAM), ('unixgram', socket.SOCK_DGRAM)):
            with self.subTest(scheme=scheme):
                path = self.path(f'root-{scheme}.sock')
                service = self.root_service(path, socktype)
                before = os.lstat(path)
                r = run_sockit(['serve', '-s', 'echo', f'{scheme}:{path}'], prefix=self.as_nobody())
                self.assertExit(r, 1, f'sockit: bind {scheme}:{path}: address in use')
                after = os.lstat(path)
                self.assertEqual((after.st_dev, after.st_ino), (before.st_dev, before.st_ino))
                self.assertEqual(stat.S_IMODE(after.st_mode), 0o700)
                self.assert_still_served(service, path, socktype)
                self.assertEqual([n for n in os.listdir(self.tmp) if n.startswith('.sockit-')], [])

    def assert_still_served(self, service, path, socktype):
        c = socket.socket(socket.AF_UNIX, socktype)
        self.addCleanup(c.close)
        c.settimeout(TIMEOUT)
        c.connect(path)
        c.send(b'still mine')
        service.settimeout(TIMEOUT)
        if socktype == socket.SOCK_STREAM:
            conn, _ = service.accept()
            self.addCleanup(conn.close)
            conn.settimeout(TIMEOUT)
            self.assertEqual(conn.recv(64), b'still mine')
        else:
            self.assertEqual(service.recv(64), b'still mine')


class RacingStartTest(ServeTest):
    """Servers started on one path at the same moment: exactly one serves it, every time."""

    ROUNDS = 15

    def test_only_one_of_two_racing_servers_gets_the_path(self):
        for round_ in range(self.ROUNDS):
            with self.subTest(round=round_):
                path = self.path(f'race-{round_}.sock')
                servers = [Server([f'unix:{path}'], ['-s', 'echo']) for _ in range(2)]
                for s in servers:
                    self.addCleanup(s.stop)
                winners = []
                for s in servers:
                    try:
                        s.wait_listening(1, timeout=START_TIMEOUT)
                        winners.append(s)
                    except AssertionError:
                        self.assertEqual(s.proc.wait(TIMEOUT), 1, s.stderr)
                        self.assertEqual(s.stderr, f'sockit: bind unix:{path}: address in use\n'.encode())
                self.assertEqual(len(winners), 1, [s.stderr for s in servers])
                # The winner really is the one at the path.
                c = winners[0].connect()
                c.sendall(b'hello')
                self.assertEqual(c.recv(16), b'hello')
                self.assertEqual(winners[0].stop(), 0)
                self.assertFalse(os.path.lexists(path))


@unittest.skipUnless(STRACE, 'needs strace')
class ModeTest(ServeTest):

    def test_mode_is_never_applied_by_path(self):
        """The mode goes to the socket file through a descriptor of that file: a symlink swapped in
        at the path cannot redirect it. strace shows every chmod sockit makes."""
        for scheme in ('unix', 'unixgram'):
            with self.subTest(scheme=scheme):
                path = self.path(f'mode-{scheme}.sock')
                trace = self.path(f'trace-{scheme}')
                # LeakSanitizer (in the ASan build) cannot run under ptrace.
                env = dict(server_env(), ASAN_OPTIONS='detect_leaks=0')
                server = self.serve(f'{scheme}:{path}', opts=['--unix-mode', '660'], env=env,
                                    prefix=[STRACE, '-f', '-qq', '-o', trace,
                                            '-e', 'trace=chmod,fchmod,fchmodat,bind'])
                self.assertEqual(stat.S_IMODE(os.lstat(path).st_mode), 0o660)
                # strace exits with its tracee's status: signal sockit itself.
                (sockit, _), = children(server.pid)
                os.kill(sockit, signal.SIGTERM)
                self.assertEqual(server.proc.wait(TIMEOUT), 0)
                server.stop()
                with open(trace) as f:
                    calls = f.read()
                by_path = [line for line in calls.splitlines()
                           if 'chmod' in line and path in line]
                self.assertEqual(by_path, [], calls)
                # The socket had its owner's mode when it was bound: no one else could use it
                # before it had its own.
                self.assertRegex(calls, r'fchmod\((\d+), 0?600\)\s+= 0(.|\n)*bind\(\1, \{sa_family=AF_UNIX, '
                                        r'sun_path="' + re.escape(path) + '"')

    def test_exact_mode_whatever_the_umask(self):
        for scheme in ('unix', 'unixgram'):
            with self.subTest(scheme=scheme):
                path = self.path(f'umask-{scheme}.sock')
                server = self.serve(f'{scheme}:{path}', opts=['--unix-mode', '666'],
                                    preexec=lambda: os.umask(0o077))
                self.assertEqual(stat.S_IMODE(os.lstat(path).st_mode), 0o666)
                self.assertEqual(server.stop(), 0)

    def test_mode_watched_while_starting_is_never_wider(self):
        """A watcher looks at the path as fast as it can while servers start: the file exists only
        with its owner's mode or the mode asked for, never the umask's."""
        path = self.path('watched.sock')
        seen, stop = set(), threading.Event()

        def watch():
            while not stop.is_set():
                try:
                    seen.add(stat.S_IMODE(os.lstat(path).st_mode))
                except FileNotFoundError:
                    pass

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        try:
            for _ in range(5):
                server = self.serve(f'unixgram:{path}', opts=['--unix-mode', '640'],
                                    preexec=lambda: os.umask(0))
                self.assertEqual(server.stop(), 0)
        finally:
            stop.set()
            t.join(TIMEOUT)
        self.assertTrue(seen <= {0o600, 0o640}, sorted(oct(m) for m in seen))


@unittest.skipUnless(STRACE, 'needs strace')
class SlowStartTest(ServeTest):

    def test_server_that_loses_its_path_while_starting_says_so(self):
        """A is held between its bind and its listen (strace delays its bind's return) longer than
        the grace a refusing socket gets; B takes the path as stale. A must then see the file is
        not its own: exit 1, address in use, and B's file left alone."""
        path = self.path('slow.sock')
        env = dict(server_env(), ASAN_OPTIONS='detect_leaks=0')
        a = Server([f'unix:{path}'], ['-s', 'echo'], env=env,
                   prefix=[STRACE, '-f', '-qq', '-o', '/dev/null',
                           '-e', 'inject=bind:delay_exit=600000'])
        self.addCleanup(a.stop)
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.lexists(path):            # A has bound: its window is open
            self.assertLess(time.monotonic(), deadline, 'A never bound')
            time.sleep(0.005)
        b = self.serve(f'unix:{path}', opts=['-s', 'echo'])
        self.assertEqual(a.proc.wait(START_TIMEOUT), 1, a.stderr)
        a.stop()
        self.assertEqual(a.stderr, f'sockit: bind unix:{path}: address in use\n'.encode())
        c = b.connect()
        c.sendall(b'B answers')
        self.assertEqual(c.recv(64), b'B answers')
        self.assertEqual(b.stop(), 0)
        self.assertFalse(os.path.lexists(path))


class PrivateDirectoryTest(ServeTest):

    def test_private_directory_swapped_for_a_link_redirects_nothing(self):
        """While a stale file sits in the private directory (the grace of its check), the directory
        is renamed away and a link to another directory put in its place: nothing there may be
        removed, and nothing may be left behind."""
        os.chmod(self.tmp, 0o777)
        victim = tempfile.mkdtemp(prefix='sockit-victim-')
        self.addCleanup(shutil.rmtree, victim, True)
        with open(os.path.join(victim, 'old'), 'w') as f:
            f.write('precious\n')
        path = self.path('s.sock')
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(path)                            # stale
        server = Server([f'unix:{path}'], ['-s', 'echo'])
        self.addCleanup(server.stop)
        deadline = time.monotonic() + START_TIMEOUT
        private = None
        while private is None:
            self.assertLess(time.monotonic(), deadline, 'no private directory seen')
            names = [n for n in os.listdir(self.tmp) if n.startswith('.sockit-')]
            private = names[0] if names else None
        os.rename(self.path(private), self.path('moved-away'))
        os.symlink(victim, self.path(private))
        # Swapped before the server held the directory by a descriptor (a slow start: a
        # sanitizer), the link is refused and nothing is served; after, the server goes on.
        # Either way nothing of the victim's is touched and nothing is left behind.
        server._read_stderr(lambda: b'listening on' in server.stderr or
                            b'not a directory' in server.stderr, time.monotonic() + START_TIMEOUT)
        if b'not a directory' in server.stderr:
            self.assertEqual(server.proc.wait(START_TIMEOUT), 1, server.stderr)
            self.assertEqual(server.stderr, f'sockit: bind unix:{path}: not a directory\n'.encode())
        else:
            server.wait_listening(1)
            self.assertEqual(server.stop(), 0)
        with open(os.path.join(victim, 'old')) as f:
            self.assertEqual(f.read(), 'precious\n')
        self.assertEqual(os.listdir(victim), ['old'])
        os.unlink(self.path(private))
        self.assertEqual(os.listdir(self.path('moved-away')), [])


class AbstractModeTest(ServeTest):

    def test_unix_mode_on_abstract_name_is_usage_error(self):
        r = run_sockit(['serve', '--unix-mode', '600', 'unix:@sockit-mode-test'])
        self.assertExit(r, 2, 'sockit: unix:@sockit-mode-test: --unix-mode does not apply to an '
                              'abstract name')


class StaleTest(ServeTest):

    def test_stale_file_is_replaced_and_no_private_directory_is_left(self):
        for scheme, socktype in (('unix', socket.SOCK_STREAM), ('unixgram', socket.SOCK_DGRAM)):
            with self.subTest(scheme=scheme):
                path = self.path(f'stale-{scheme}.sock')
                with socket.socket(socket.AF_UNIX, socktype) as s:
                    s.bind(path)            # closed without unlinking: stale
                server = self.serve(f'{scheme}:{path}', opts=['-s', 'echo'])
                self.assertEqual(server.stop(), 0)
                self.assertFalse(os.path.lexists(path))
                self.assertEqual(os.listdir(self.tmp), [])

    def test_file_put_at_the_path_after_start_is_left_at_exit(self):
        path = self.path('replaced.sock')
        server = self.serve(f'unix:{path}')
        os.unlink(path)
        with open(path, 'w') as f:
            f.write('not sockit\'s\n')
        self.assertEqual(server.stop(), 0)
        with open(path) as f:
            self.assertEqual(f.read(), 'not sockit\'s\n')
        self.assertEqual(os.listdir(self.tmp), ['replaced.sock'])


if __name__ == '__main__':
    unittest.main()
