"""The workers' poller: `--backend epoll|io_uring` and $SOCKIT_BACKEND (serve and relay), and
the fall-back to epoll, with one line under -v, where the kernel refuses io_uring (made so here
by a seccomp filter in the server's process, as a kernel without io_uring or with
kernel.io_uring_disabled set refuses io_uring_setup)."""

import ctypes
import os
import platform
import socket
import struct
import time
import unittest

from helpers import SockitTest, log_lines, recv_exactly, run_sockit, server_env

# <linux/filter.h>, <linux/seccomp.h>, <linux/audit.h>: the few numbers the filter needs.
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7fff0000
SECCOMP_RET_ERRNO = 0x00050000
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06
ARCHES = {'x86_64': (0xc000003e, 425), 'aarch64': (0xc00000b7, 425)}   # audit arch, io_uring_setup
ENOSYS = 38
RING = 'anon_inode:[io_uring]'

_libc = ctypes.CDLL(None, use_errno=True)


class SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]


def refuse_io_uring_filter():
    """The preexec_fn that makes io_uring_setup() fail with ENOSYS in the server, or None."""
    if platform.machine() not in ARCHES:
        return None
    arch, nr = ARCHES[platform.machine()]
    code = [(BPF_LD_W_ABS, 0, 0, 4),                   # seccomp_data.arch
            (BPF_JEQ_K, 1, 0, arch),
            (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
            (BPF_LD_W_ABS, 0, 0, 0),                   # seccomp_data.nr
            (BPF_JEQ_K, 0, 1, nr),
            (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
            (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    buf = ctypes.create_string_buffer(b''.join(struct.pack('=HBBI', *c) for c in code))
    prog = SockFprog(len(code), ctypes.addressof(buf))

    def install():
        if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
           _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog)) != 0:
            os._exit(99)
        install.keep = (buf, prog)
    return install


def rings(pid):
    """How many io_uring instances process pid holds."""
    n = 0
    for fd in os.listdir(f'/proc/{pid}/fd'):
        try:
            n += os.readlink(f'/proc/{pid}/fd/{fd}') == RING
        except OSError:
            pass
    return n


def cpu_seconds(pid):
    """The user and system CPU time process pid has used, in seconds."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def env_with(backend):
    env = server_env()
    env.pop('SOCKIT_BACKEND', None)
    if backend is not None:
        env['SOCKIT_BACKEND'] = backend
    return env


def io_uring_here():
    """Whether this kernel lets this process make an io_uring."""
    fd = _libc.syscall(ARCHES.get(platform.machine(), (0, 425))[1], 1,
                       ctypes.create_string_buffer(120))
    if fd < 0:
        return False
    os.close(fd)
    return True


class BackendTest(SockitTest):

    def echo_once(self, server):
        c = server.connect()
        c.sendall(b'ping\n')
        self.assertEqual(recv_exactly(c, 5), b'ping\n')
        c.close()

    def serve_on(self, opts=(), backend=None, preexec=None):
        server = self.serve('tcp://127.0.0.1:0', opts=('--service', 'echo', '--threads', '2', *opts),
                            count=1, env=env_with(backend), preexec=preexec)
        self.echo_once(server)
        return server

    def test_io_uring_gives_each_worker_a_ring(self):
        if not io_uring_here():
            self.skipTest('io_uring not available here')
        server = self.serve_on(('--backend', 'io_uring'))
        self.assertEqual(rings(server.pid), 2)

    def test_half_closed_client_that_does_not_read_costs_no_cpu(self):
        # chargen writes to a client that has sent its FIN and does not read: the loop must wait.
        # (On io_uring every poll also reports that FIN, POLLRDHUP, to a watcher that only waits
        # to write: a level-triggered poll there would fire at once, forever.)
        for backend in ('epoll', 'io_uring'):
            with self.subTest(backend=backend):
                if backend == 'io_uring' and not io_uring_here():
                    self.skipTest('io_uring not available here')
                server = self.serve('tcp://127.0.0.1:0', count=1, env=env_with(backend),
                                    opts=('--service', 'chargen', '--threads', '1'))
                c = server.connect()
                c.shutdown(socket.SHUT_WR)
                recv_exactly(c, 74)          # it writes; then the client stops reading
                before = cpu_seconds(server.pid)
                time.sleep(1.0)
                used = cpu_seconds(server.pid) - before
                self.assertLess(used, 0.3, f'{used:.2f} s of CPU in 1 s: the loop spins')
                self.assertEqual(recv_exactly(c, 74 * 1000)[:1], b'"')   # it still writes
                c.close()
                server.stop()

    def test_epoll_is_the_default_and_holds_no_ring(self):
        self.assertEqual(rings(self.serve_on().pid), 0)
        self.assertEqual(rings(self.serve_on(('--backend', 'epoll')).pid), 0)

    def test_environment_picks_the_backend_and_the_option_wins(self):
        if not io_uring_here():
            self.skipTest('io_uring not available here')
        self.assertEqual(rings(self.serve_on(backend='io_uring').pid), 2)
        self.assertEqual(rings(self.serve_on(('--backend', 'epoll'), backend='io_uring').pid), 0)
        self.assertEqual(rings(self.serve_on(('--backend', 'io_uring'), backend='epoll').pid), 2)

    def test_refused_io_uring_falls_back_to_epoll_with_one_line(self):
        preexec = refuse_io_uring_filter()
        if preexec is None:
            self.skipTest(f'no seccomp filter made for {platform.machine()}')
        server = self.serve_on(('--backend', 'io_uring', '-v'), preexec=preexec)
        self.assertEqual(rings(server.pid), 0)
        server.stop()
        notes = [line for line in log_lines(server.stderr) if b'io_uring' in line]
        self.assertEqual(notes, [b'sockit: io_uring not available (function not implemented): '
                                 b'using epoll'])

    def test_fall_back_is_silent_without_verbose(self):
        preexec = refuse_io_uring_filter()
        if preexec is None:
            self.skipTest(f'no seccomp filter made for {platform.machine()}')
        server = self.serve_on(('--backend', 'io_uring'), preexec=preexec)
        server.stop()
        self.assertNotIn(b'io_uring', server.stderr)

    def test_unknown_backend_is_a_usage_error(self):
        r = run_sockit(['serve', '--backend', 'kqueue', 'tcp://127.0.0.1:0'], env=env_with(None))
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr, b'sockit: --backend kqueue: not a backend (epoll, io_uring)\n')
        r = run_sockit(['serve', 'tcp://127.0.0.1:0'], env=env_with('kqueue'))
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr, b'sockit: SOCKIT_BACKEND=kqueue: not a backend (epoll, io_uring)\n')

    def test_relay_takes_the_backend_too(self):
        if not io_uring_here():
            self.skipTest('io_uring not available here')
        peer = self.serve('tcp://127.0.0.1:0', opts=('--service', 'echo'), count=1,
                          env=env_with(None))
        relay = self.relay('tcp://127.0.0.1:0', peer.endpoints[0],
                           opts=('--backend', 'io_uring', '--threads', '2'), env=env_with(None))
        self.assertEqual(rings(relay.pid), 2)
        self.echo_once(relay)


if __name__ == '__main__':
    unittest.main()
