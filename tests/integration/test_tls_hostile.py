"""Regression tests, at the command level, for the TLS bugs a security review found at a12c100
(fixed in 358f1f3): hostile or awkward peers of `sockit serve` and `sockit relay` over TLS.

- a partial TLS record (before or after the handshake) made a worker spin at 100% CPU;
- a client Finished split in two, followed by a request, was never opened (handshake timeout);
- --exec over TLS, a client uploading while the command writes: deadlock;
- relay TLS->TCP with a target writing while the client uploads: deadlock;
- --exec over TLS: what the command wrote before it exited, while the client read nothing, was cut
  short, and still ended with a close_notify;
- a target resetting the connection under a TLS relay gave the client a clean close_notify;
- --exec over TLS with the descriptors nearly exhausted: SIGSEGV;
- a TLS server ending with a bare FIN instead of a close_notify went unnoticed by connect
  (fixed later: the socket BIO, not OpenSSL, says whether a FIN came).

Everything runs on 127.0.0.1 and UNIX paths in a temporary directory; every wait is bounded, and
a spin is measured as the server's CPU time (/proc/PID/stat).

    cd tests/integration && SOCKIT=build/sockit python3 -m unittest test_tls_hostile
"""

import fcntl
import os
import resource
import select
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time

from helpers import *  # noqa: F401,F403
from tls_helpers import *  # noqa: F401,F403
from tls_helpers import tls_setup_module as setUpModule  # noqa: F401

SPIN_WINDOW = 1.5       # seconds of wall time a spin is measured over
SPIN_CPU_MAX = 0.3      # CPU seconds a waiting server may use in that window
DEADLOCK_TIMEOUT = 8.0  # bound of a transfer that deadlocked before the fix
STALL = 0.2             # seconds without progress that make an upload stalled


def unread_by_peer(sock):
    """Bytes sent on a UNIX stream socket that the peer has not read yet (SIOCOUTQ)."""
    return struct.unpack('i', fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack('i', 0)))[0]


def wait_until(predicate, what, timeout=TIMEOUT):
    """Poll predicate (bounded); fails with what if it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'{what}: not within {timeout}s')
        time.sleep(0.01)


class HandTLS:
    """A TLS client on memory BIOs whose records the test puts on the socket itself, whole or cut
    where it likes. One thread, a non-blocking socket, every wait bounded.

    end: None while open, then 'close_notify', 'ragged' (a FIN without close_notify), 'reset' or
    'ssl: REASON'."""

    def __init__(self, ep, ctx=None, timeout=TLS_TIMEOUT):
        if ctx is None:
            ctx = client_context()
            ctx.check_hostname = False          # the chain is verified; no name on a UNIX path
        self.sock = plain_connect(ep, timeout)
        self.sock.setblocking(False)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing)
        self.timeout = timeout
        self.plain = bytearray()                # received, not yet taken
        self.end = None
        self.shaken = False

    def produced(self):
        """TLS bytes the engine made and nobody sent yet."""
        return self.outgoing.read()

    def _left(self, deadline, what):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f'{what}: timed out; {len(self.plain)} bytes received, end '
                                 f'{self.end}: {bytes(self.plain[:100])!r}')
        return remaining

    def send_raw(self, data, deadline=None):
        """Puts data (TLS bytes) on the socket."""
        deadline = deadline or time.monotonic() + self.timeout
        view = memoryview(data)
        while view:
            select.select([], [self.sock], [], self._left(deadline, 'sending'))
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                pass

    def _receive(self, out, deadline, what, wait=None):
        """Waits (at most wait seconds) for the socket (readable, or writable while out holds
        bytes), moves what it can; returns what of out is left."""
        left = self._left(deadline, what)
        r, w, _ = select.select([self.sock], [self.sock] if out else [], [],
                                left if wait is None else min(left, wait))
        if w:
            try:
                del out[:self.sock.send(out)]
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                self.end = self.end or 'reset'
                out.clear()
        if r:
            try:
                data = self.sock.recv(MIB)
            except BlockingIOError:
                return out
            except ConnectionResetError:
                self.end = self.end or 'reset'
                return out
            if data:
                self.incoming.write(data)
            else:
                self.incoming.write_eof()
        return out

    def _decrypt(self):
        if self.end is None:
            self.end = read_records(self.obj, self.plain)

    def handshake(self, send_last=True):
        """Runs the handshake; without send_last the client's last flight is left unsent, and
        returned."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.send_raw(self.produced(), deadline)
                self._receive(bytearray(), deadline, 'handshake')
        self.shaken = True
        last = self.produced()
        if send_last:
            self.send_raw(last, deadline)
        return last

    def recv_exactly(self, n):
        deadline = time.monotonic() + self.timeout
        self._decrypt()
        while len(self.plain) < n:
            if self.end:
                raise AssertionError(f'end ({self.end}) after {len(self.plain)} of {n} bytes')
            self.send_raw(self.produced(), deadline)
            self._receive(bytearray(), deadline, f'{n} bytes')
            self._decrypt()
        data = bytes(self.plain[:n])
        del self.plain[:n]
        return data

    def transfer(self, upload, timeout, on_stall=None):
        """Sends upload then a close_notify while reading, until the peer ends. Returns
        (received, end). on_stall() runs once when the upload makes no progress for STALL
        seconds (the peer's buffers and queues are full), or once it is all sent."""
        if not self.shaken:
            self.handshake()
        deadline = time.monotonic() + timeout
        view, sent, out, shut = memoryview(upload), 0, bytearray(), False
        progress = time.monotonic()
        while self.end is None:
            while sent < len(upload) and len(out) < MIB:
                self.obj.write(view[sent:sent + 16384])
                sent = min(sent + 16384, len(upload))
                out += self.produced()
            if sent == len(upload) and not shut:
                shut = True
                try:
                    self.obj.unwrap()           # our close_notify; reading goes on
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
            out += self.produced()
            before = len(out)
            out = self._receive(out, deadline, f'transfer ({sent - len(out)} of {len(upload)} '
                                               f'bytes sent)', wait=0.05)
            if len(out) < before:
                progress = time.monotonic()
            if on_stall and (time.monotonic() - progress > STALL or (shut and not out)):
                on_stall()
                on_stall = None
            self._decrypt()
        data = bytes(self.plain)
        self.plain.clear()
        return data, self.end

    def close(self):
        self.sock.close()


class HostileTest(TLSTest):

    def tls_serve(self, kind='tcp', opts=('-s', 'echo')):
        server = self.serve(self.tls_ep(kind), opts=['--threads', '1', *opts])
        return server, server.endpoints[0]

    def hand_client(self, ep, **kwargs):
        c = HandTLS(ep, **kwargs)
        self.addCleanup(c.close)
        return c

    def assertNoSpin(self, server, what):
        before = cpu_seconds(server.pid)
        time.sleep(SPIN_WINDOW)                 # the window the CPU time is measured over
        used = cpu_seconds(server.pid) - before
        self.assertLess(used, SPIN_CPU_MAX, f'{what}: the server used {used:.2f} s of CPU in '
                                            f'{SPIN_WINDOW} s')


# --------------------------------------------------------------------------- partial records

class PartialRecordTest(HostileTest):

    def test_partial_client_hello_does_not_spin(self):
        server, ep = self.tls_serve()
        c = self.hand_client(ep)
        try:
            c.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = c.produced()
        c.send_raw(hello[:20])                  # a piece of the ClientHello record
        self.assertNoSpin(server, 'a partial ClientHello')
        c.send_raw(hello[20:])                  # the rest: the handshake goes on, then an echo
        c.handshake()
        c.obj.write(b'after the hello\n')
        c.send_raw(c.produced())
        self.assertEqual(c.recv_exactly(16), b'after the hello\n')

    def test_partial_application_record_does_not_spin(self):
        server, ep = self.tls_serve()
        c = self.hand_client(ep)
        c.handshake()
        data = bytes(range(256)) * 4
        c.obj.write(data)
        record = c.produced()
        c.send_raw(record[:10])                 # the first 10 bytes of an application record
        self.assertNoSpin(server, 'a partial application record')
        c.send_raw(record[10:])
        self.assertEqual(c.recv_exactly(len(data)), data)

    def test_client_finished_split_then_a_request_is_served(self):
        # TLS 1.3: the client's Finished in two pieces, the request with the second. The server
        # reads the first piece (polled with SIOCOUTQ on the UNIX socket) before the rest comes.
        # Three clients, one after the other: before the fix most, not all, were never opened.
        server, ep = self.tls_serve('unix', opts=('-s', 'echo', '--handshake-timeout', '2'))
        for attempt in range(3):
            c = self.hand_client(ep)
            finished = c.handshake(send_last=False)
            self.assertEqual(c.obj.version(), 'TLSv1.3')
            c.obj.write(b'ping %d\n' % attempt)
            request = c.produced()
            c.send_raw(finished[:-10])
            wait_until(lambda: unread_by_peer(c.sock) == 0, 'the server reading the first piece')
            c.send_raw(finished[-10:] + request)
            self.assertEqual(c.recv_exactly(7), b'ping %d\n' % attempt, f'client {attempt}')
            c.close()


# --------------------------------------------------------------------------- both ways at once

class BothWaysTest(HostileTest):

    def test_exec_writing_while_the_client_uploads(self):
        # The command writes 2 MB before it reads its input; the client uploads 600 KB meanwhile.
        _, ep = self.tls_serve(opts=('--exec', 'head -c 2000000 /dev/zero; cat >/dev/null'))
        got, end = self.hand_client(ep).transfer(b'u' * 600000, DEADLOCK_TIMEOUT)
        self.assertEqual(len(got), 2000000)
        self.assertEqual(got, bytes(2000000))
        self.assertEqual(end, 'close_notify')

    def test_relay_tls_to_tcp_with_a_target_writing_while_the_client_uploads(self):
        # The target reads nothing until it has sent 4 MB, and starts sending once the client's
        # 16 MB upload has stalled: the relay's queue to the target is full by then, which
        # before the fix stopped its reading from the target too.
        up, down = b'u' * (16 * MIB), os.urandom(4 * MIB)
        stalled = threading.Event()

        def target(conn):
            if not stalled.wait(DEADLOCK_TIMEOUT):
                raise AssertionError('the upload never stalled')
            conn.sendall(down)
            return len(read_all(conn))

        peer = PyStreamServer(self, target, timeout=DEADLOCK_TIMEOUT)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            peer.sock.setsockopt(socket.SOL_SOCKET, opt, 32768)     # the accepted socket's too
        relay = self.relay(self.tls_ep('tcp'), peer.endpoint(), opts=['--threads', '1',
                                                                     '--drain-timeout', '0.2'])
        c = self.hand_client(relay.endpoints[0])
        got, end = c.transfer(up, DEADLOCK_TIMEOUT, on_stall=stalled.set)
        if got != down:
            self.fail(f'{len(got)} bytes from the target instead of {len(down)}; first difference '
                      f'at {first_difference(got, down)}; end {end}')
        self.assertEqual(end, 'close_notify')
        self.assertEqual(peer.wait(), [len(up)])


# --------------------------------------------------------------------------- ends

# Writes 64 KiB chunks to its stdout, the connection, until it stays full for 0.3 s (the library
# has stopped reading it: the client's queue is over its limit), writes the count to the file
# $1, and exits with the rest still unread in the socket.
FILL_AND_EXIT = r'''
import os, select, sys
os.set_blocking(1, False)
n, chunk = 0, bytes(65536)
while True:
    try:
        n += os.write(1, chunk)
    except BlockingIOError:
        if not select.select([], [1], [], 0.3)[1]:
            break
with open(sys.argv[1] + '.tmp', 'w') as f:
    f.write(str(n))
os.rename(sys.argv[1] + '.tmp', sys.argv[1])
'''


class EndTest(HostileTest):

    def test_exec_output_left_at_exit_reaches_a_client_that_reads_later(self):
        script, count = self.path('fill.py'), self.path('count')
        with open(script, 'w') as f:
            f.write(FILL_AND_EXIT)
        server, ep = self.tls_serve('unix', opts=('--exec', f'exec python3 {script} {count}'))
        c = self.client(ep)                     # reads nothing until told to
        wait_until(lambda: os.path.exists(count), 'the command filling the connection', 10)
        # The command is reaped (its end of the socket closed) before anything is read.
        wait_until(lambda: not descendants(server.pid), 'the command reaped')
        with open(count) as f:
            written = int(f.read())
        self.assertGreater(written, 0)
        got, end = c.read_to_close(timeout=10)
        self.assertEqual(len(got), written, f'{len(got)} of the {written} bytes the command wrote; '
                                            f'end {end}')
        self.assertEqual(got, bytes(written))
        self.assertEqual(end, 'close_notify')

    def test_target_reset_under_a_tls_relay_is_no_close_notify(self):
        received = threading.Event()

        def target(conn):
            conn.sendall(b'partial reply')
            if not received.wait(TIMEOUT):
                raise AssertionError('the client never got the reply')
            rst_close(conn)

        peer = PyStreamServer(self, target)
        relay = self.relay(self.tls_ep('tcp'), peer.endpoint(), opts=['--threads', '1',
                                                                     '--drain-timeout', '0.2'])
        c = self.client(relay.endpoints[0])
        self.assertEqual(c.recv_exactly(13), b'partial reply')
        received.set()
        got, end = c.read_to_close()
        self.assertEqual(got, b'')
        self.assertEqual(end, 'ragged', 'a reset target must not look like a clean TLS end')
        peer.wait()


    def connect_to_ending_server(self, clean):
        """`sockit connect` to a Python TLS server that sends a line, then ends with a
        close_notify (clean) or with a bare FIN. stdin stays open until the server has sent its
        line (and, for a FIN, ended)."""
        done = threading.Event()
        ctx = server_context()

        def serve_one(conn):
            s = ctx.wrap_socket(conn, server_side=True)
            s.sendall(b'partial data\n')
            if clean:
                done.set()  # unwrap() waits for connect's close_notify: stdin's end
                s.unwrap().close()
            else:
                s.shutdown(socket.SHUT_RDWR)  # a FIN, no close_notify
                s.close()
            done.set()

        peer = PyStreamServer(self, serve_one)
        port = peer.sock.getsockname()[1]
        proc = subprocess.Popen([SOCKIT, 'connect', f'tls://127.0.0.1:{port},ca={self.certs.ca_pem}'],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=server_env())
        try:
            self.assertTrue(done.wait(TIMEOUT), 'the server never ended')
            out, err = proc.communicate(b'', timeout=TIMEOUT)  # stdin ends only now
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        peer.wait()
        return proc.returncode, out, err, port

    def test_server_without_close_notify_is_reported_by_connect(self):
        code, out, err, port = self.connect_to_ending_server(clean=False)
        self.assertEqual((code, out), (0, b'partial data\n'))
        self.assertEqual(err, f'sockit: connect tls://127.0.0.1:{port}: closed without '
                              f'close_notify (the data may be cut short)\n'.encode())

    def test_server_with_close_notify_is_a_quiet_end(self):
        self.assertEqual(self.connect_to_ending_server(clean=True)[:3],
                         (0, b'partial data\n', b''))


# --------------------------------------------------------------------------- descriptors

class DescriptorTest(HostileTest):

    def open_fds(self, server, left):
        """The server's descriptors; fails once it is gone."""
        if server.proc.poll() is not None:
            self.fail(f'the server died (exit status {server.proc.returncode}) with {left} '
                      f'descriptors left; stderr {server.stderr[-2000:]!r}')
        return sorted(int(n) for n in os.listdir(f'/proc/{server.pid}/fd'))

    def test_exec_over_tls_with_descriptors_nearly_exhausted(self):
        # Each client comes with 1 to 6 descriptors left under the server's soft limit (lowered
        # with prlimit), so that the accept, the socket pair of the TLS bridge, the child's
        # descriptors... fail in turn. The server must go on, and serve once the limit is back.
        server, ep = self.tls_serve(opts=('--exec', 'cat'))
        soft, hard = resource.prlimit(server.pid, resource.RLIMIT_NOFILE)
        base = self.open_fds(server, None)
        self.assertEqual(base, list(range(len(base))))     # the next one is len(base)
        self.addCleanup(lambda: server.proc.poll() is None and
                        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (soft, hard)))
        for left in range(1, 7):
            resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (len(base) + left, hard))
            try:
                outcome = handshake_outcome(ep, payload=b'hi\n', timeout=3)
            except OSError as e:
                outcome = ('error', e)
            self.open_fds(server, left)
            resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (soft, hard))
            # Served, or closed (cleanly when the command could not start): never hung.
            self.assertIn(outcome[0], ('close_notify', 'ragged', 'reset', 'handshake'),
                          f'{left} left: {outcome}')
            if outcome[0] == 'close_notify':
                self.assertIn(outcome[1], (b'hi\n', b''), f'{left} left')
            wait_until(lambda: self.open_fds(server, left) == base,
                       f'the server back to its {len(base)} descriptors')
        with self.client(ep) as c:
            c.send(b'served again\n')
            self.assertEqual(c.recv_exactly(13), b'served again\n')
        self.assertIsNone(server.proc.poll())


if __name__ == '__main__':
    unittest.main()
