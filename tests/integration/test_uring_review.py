"""Defects found in review of the io_uring paths of stream connections (--backend io_uring).

A reply of at most 16 KiB goes through the ring as a send with MSG_DONTWAIT; to a socket that is
full it ends at once with -EAGAIN, and the connection must then wait for room to write, as on
epoll, not send again at once (a busy loop for as long as the peer does not read)."""

import array
import fcntl
import os
import socket
import tempfile
import termios
import time
import unittest

from helpers import SockitTest, server_env

PIECE = b'p' * 1000


def cpu_ms(pid):
    """The time on CPU of every thread of pid, in milliseconds (schedstat: nanoseconds)."""
    total = 0
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{tid}/schedstat') as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total / 1e6


def unread(sock):
    """The bytes waiting in sock's receive queue (SIOCINQ)."""
    buf = array.array('i', [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    return buf[0]


class UringReviewTest(SockitTest):

    def serve_echo(self, backend, path):
        env = server_env()
        env['SOCKIT_BACKEND'] = backend
        return self.serve(f'unix://{path}', opts=('--service', 'echo', '--threads', '1'),
                          count=1, env=env)

    def backed_up_client(self, server):
        """A client that sends pieces and never reads, until the server can no longer echo all of
        them (its socket is full); what it keeps is at most a piece or a few."""
        c = server.connect()
        sent = 0
        for _ in range(2000):
            c.sendall(PIECE)
            sent += len(PIECE)
            deadline = time.monotonic() + 0.5
            while unread(c) < sent and time.monotonic() < deadline:
                time.sleep(0.005)
            if unread(c) < sent:
                return c
        self.fail('the echo never backed up')

    def idle_cpu(self, backend):
        with tempfile.TemporaryDirectory() as d:
            server = self.serve_echo(backend, os.path.join(d, 'e.sock'))
            self.backed_up_client(server)
            before = cpu_ms(server.proc.pid)
            time.sleep(1.0)
            return cpu_ms(server.proc.pid) - before

    def test_reply_to_a_full_socket_waits_for_room_epoll(self):
        self.assertLess(self.idle_cpu('epoll'), 100)

    def test_reply_to_a_full_socket_waits_for_room_io_uring(self):
        # With the busy loop: about 1000 ms of CPU in that second.
        self.assertLess(self.idle_cpu('io_uring'), 100)


if __name__ == '__main__':
    unittest.main()
