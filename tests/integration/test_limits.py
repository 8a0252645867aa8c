"""Black-box integration tests for sockit under resource limits: running out of file descriptors.

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
A `sockit serve -s echo --threads 1` runs with RLIMIT_NOFILE 32 and gets more connections than
it can hold. It must neither spin (accept failing with EMFILE over and over) nor lose the
connections still waiting in the backlog: once descriptors are free again they are served.
Everything is on 127.0.0.1.

    python3 -m unittest discover -s tests/integration -v
"""

import os
import resource
import select
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

NOFILE = 32             # descriptor limit of the server
CLIENTS = 60            # connections opened at once: more than the server can hold
FIRST = 30              # closed to free descriptors; none of them can still be waiting
WINDOW = 1.5            # seconds of CPU time measured while nothing happens
MAX_CPU = 0.3           # CPU seconds allowed in that window (a busy loop burns about WINDOW)
CLK_TCK = os.sysconf('SC_CLK_TCK')


def limit_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    with open(f'/proc/{pid}/stat', 'rb') as f:
        data = f.read()
    fields = data[data.rindex(b')') + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def open_fds(pid):
    return len(os.listdir(f'/proc/{pid}/fd'))


class DescriptorLimitTest(SockitTest):

    def limited_server(self, opts=()):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo', '--threads', '1', *opts],
                            preexec=limit_nofile)
        with open(f'/proc/{server.pid}/limits') as f:
            self.assertRegex(f.read(), rf'Max open files\s+{NOFILE}\s+{NOFILE}\s')
        return server

    def echo_once(self, sock, payload, timeout=TIMEOUT):
        sock.sendall(payload)
        self.assertEqual(recv_exactly(sock, len(payload), timeout), payload)

    def exhaust(self, server):
        """Open CLIENTS connections (the kernel completes those the server cannot accept in its
        backlog) and wait until the server has used all its descriptors."""
        clients = [server.connect() for _ in range(CLIENTS)]
        self.echo_once(clients[0], b'first\n')     # served: the first in the accept queue
        deadline = time.monotonic() + TIMEOUT
        while open_fds(server.pid) < NOFILE and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(open_fds(server.pid), NOFILE, 'the server did not use all its descriptors')
        return clients

    def assertIdle(self, server):
        """No busy loop: the server burns (almost) no CPU while nothing happens."""
        before = cpu_seconds(server.pid)
        time.sleep(WINDOW)      # measures the absence of work, not a readiness wait
        used = cpu_seconds(server.pid) - before
        self.assertLess(used, MAX_CPU, f'{used:.2f} s of CPU in {WINDOW} s with no descriptor free: busy loop?')
        self.assertIsNone(server.proc.poll(), f'server exited: {server.stderr[-2000:]!r}')

    def exhaust_and_recover(self, server):
        clients = self.exhaust(server)
        # clients[FIRST] cannot have been accepted: besides stdin, stdout, stderr and its
        # listening socket the server holds at most NOFILE - 4 connections. Its request waits
        # in the socket until the server gets to it.
        clients[FIRST].sendall(b'x\n')
        clients[-1].sendall(b'y\n')
        self.assertIdle(server)
        readable, _, _ = select.select([clients[FIRST], clients[-1]], [], [], 0)
        self.assertEqual(readable, [], 'a connection beyond the limit was answered')

        for c in clients[:FIRST]:
            c.close()
        self.assertEqual(recv_exactly(clients[FIRST], 2, timeout=5.0), b'x\n')
        # Free more: the last connection in the queue gets its turn too.
        for c in clients[FIRST:-10]:
            c.close()
        self.assertEqual(recv_exactly(clients[-1], 2, timeout=5.0), b'y\n')
        self.echo_once(clients[-2], b'more\n')
        # And a new connection once everything is closed.
        for c in clients:
            c.close()
        self.echo_once(server.connect(), b'new\n')
        self.assertEqual(server.stop(), 0)

    def test_out_of_descriptors_pauses_accepting_without_spinning(self):
        server = self.limited_server()
        self.exhaust_and_recover(server)

    def test_verbose_logs_the_pause(self):
        server = self.limited_server(['-v'])
        clients = self.exhaust(server)
        self.assertTrue(server.wait_stderr(lambda err: b'too many open files' in err),
                        f'no "too many open files" in stderr: {server.stderr[-2000:]!r}')
        for c in clients:
            c.close()
        self.exhaust_and_recover(server)


if __name__ == '__main__':
    unittest.main()
