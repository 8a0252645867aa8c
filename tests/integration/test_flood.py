"""Floods and hostile peers against line services: chat members that must survive a flood of
empty lines or of long renames, a /nick that another member holds, two resets in one loop
iteration while a member is just under its output limit, and timestamp clients that never read.

Every test is bounded in bytes and time. $FLOOD_OUTPUT_MAX is the server's per-connection output
limit (default 262144, SK_OUTPUT_MAX); set it to 1048576 to run these tests against v0.1.
"""

import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import (MIB, SOCKIT, TIMEOUT, LineReader, SockitTest, inet_endpoint,  # noqa: E402
                     rst_close, recv_exactly, server_env, STAMP_PREFIX_LEN)
from helpers import setUpModule  # noqa: E402,F401

SK_OUTPUT_MAX = 256 * 1024  # the default output limit per connection
# The output limit of the server under test, for the two-resets race (1048576 for v0.1).
OUTPUT_MAX = int(os.environ.get('FLOOD_OUTPUT_MAX', SK_OUTPUT_MAX))
FLOOD_TIMEOUT = 60.0     # bound for a whole flood to get through


class Expected:
    """A stream expected byte for byte, given as (unit, count) segments; checked as it arrives."""

    def __init__(self, name, segments):
        self.name = name
        self.segments = [(unit, count) for unit, count in segments if count > 0]
        self.total = sum(len(u) * n for u, n in self.segments)
        self.got = 0
        self.seg, self.off = 0, 0
        self.big = {}

    def _repeated(self, unit):
        if unit not in self.big:
            self.big[unit] = unit * ((MIB + 2 * len(unit)) // len(unit) + 1)
        return self.big[unit]

    @property
    def done(self):
        return self.got == self.total

    def feed(self, chunk):
        view = memoryview(chunk)
        while view:
            if self.seg >= len(self.segments):
                raise AssertionError(f'{self.name}: {len(view)} bytes more than the {self.total} '
                                     f'expected: {bytes(view[:120])!r}')
            unit, count = self.segments[self.seg]
            n = min(len(view), len(unit) * count - self.off)
            start = self.off % len(unit)
            want = self._repeated(unit)[start:start + n]
            if view[:n] != want:
                at = next(i for i in range(n) if view[i] != want[i])
                raise AssertionError(
                    f'{self.name}: wrong byte at {self.got + at} of {self.total} (line '
                    f'{(self.off + at) // len(unit)} of {unit!r} x {count}): got '
                    f'{bytes(view[max(0, at - 40):at + 80])!r}')
            view = view[n:]
            self.got += n
            self.off += n
            if self.off == len(unit) * count:
                self.seg, self.off = self.seg + 1, 0


def pump(sender, data, readers, timeout=FLOOD_TIMEOUT, block=MIB):
    """Send data on sender (in big non-blocking writes) while every reader reads what it must
    receive (readers: {sock: Expected}). Returns when everything is sent and received; fails when
    a reader is dropped, receives a wrong byte, or the time is up."""
    deadline = time.monotonic() + timeout
    sender.setblocking(False)
    for sock in readers:
        sock.setblocking(False)
    sent = 0
    view = memoryview(data)
    while sent < len(data) or not all(e.done for e in readers.values()):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f'flood not through in {timeout}s: sent {sent} of {len(data)}; '
                                 + ', '.join(f'{e.name} got {e.got} of {e.total}'
                                             for e in readers.values()))
        wlist = [sender] if sent < len(data) else []
        rlist = [s for s, e in readers.items() if not e.done]
        readable, writable, _ = select.select(rlist, wlist, [], min(remaining, 1.0))
        for sock in readable:
            try:
                chunk = sock.recv(MIB)
            except ConnectionResetError:
                chunk = b''
            if not chunk:
                e = readers[sock]
                raise AssertionError(f'{e.name} was dropped after {e.got} of {e.total} bytes '
                                     f'(sender at {sent} of {len(data)})')
            readers[sock].feed(chunk)
        if writable:
            try:
                sent += sender.send(view[sent:sent + block])
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError) as e:
                raise AssertionError(f'the sender was dropped after {sent} of {len(data)} bytes: '
                                     f'{e!r}') from None
    for sock in [sender, *readers]:
        sock.setblocking(True)
        sock.settimeout(TIMEOUT)


class ChatTestBase(SockitTest):

    def chat_server(self, *endpoints):
        return self.serve(*(endpoints or ('tcp://127.0.0.1:0',)), opts=['-s', 'chat'])

    def join(self, server, members, rcvbuf=None, i=0, name=None):
        """A new member; every member already in the room reads its join line.
        Returns (sock, reader, name)."""
        sock = server.connect(i, rcvbuf=rcvbuf)
        if name is None:
            name = inet_endpoint(sock, 'tcp').encode()
        for _, reader, _ in members:
            self.assertEqual(reader.line(), b'* %s joined\n' % name)
        return sock, LineReader(sock), name

    def room(self, server, count):
        members = []
        for _ in range(count):
            members.append(self.join(server, members))
        return members

    def check_alive(self, members):
        """Each member in turn sends a line that every other one receives next."""
        for sock, _, name in members:
            sock.sendall(b'alive\n')
            for other, reader, _ in members:
                if other is not sock:
                    self.assertEqual(reader.line(), b'[%s] alive\n' % name)

    def flood(self, readers, sender, data, segments):
        for _, reader, _ in readers:
            self.assertEqual(reader.buf, b'', 'unread bytes before the flood')
        expected = {sock: Expected(f'reader {name.decode()}', segments)
                    for sock, _, name in readers}
        pump(sender, data, expected)
        self.assertEqual([e.got for e in expected.values()],
                         [sum(len(u) * n for u, n in segments)] * len(readers))



class ChatFloodTest(ChatTestBase):

    def test_flood_of_empty_lines_drops_no_reader(self):
        server = self.chat_server()
        readers = self.room(server, 4)
        sender = self.join(server, readers)
        count = 3 * MIB
        self.flood(readers, sender[0], b'\n' * count, [(b'[%s] \n' % sender[2], count)])
        self.check_alive([*readers, sender])

    def test_many_senders_at_once_drop_no_reader(self):
        """Eight members each send one long line in the same moment: their lines reach the loop in
        one round, and together they are more than a member's whole output limit."""
        server = self.chat_server()
        members = self.room(server, 11)
        senders = members[3:]
        body = b'x' * 60000
        for sock, _, _ in senders:
            sock.sendall(body + b'\n')
        want = {sock: sorted(b'[%s] %s' % (name, body) for other, _, name in senders
                             if other is not sock)
                for sock, _, _ in members}
        got = {sock: bytearray() for sock, _, _ in members}
        need = {sock: sum(len(line) + 1 for line in lines) for sock, lines in want.items()}
        deadline = time.monotonic() + FLOOD_TIMEOUT
        while any(len(got[s]) < need[s] for s in got):
            self.assertLess(time.monotonic(), deadline, 'lines not through in time')
            readable, _, _ = select.select([s for s in got if len(got[s]) < need[s]], [], [], 1.0)
            for sock in readable:
                chunk = sock.recv(MIB)
                self.assertNotEqual(chunk, b'', f'a member was dropped after {len(got[sock])} of '
                                                f'{need[sock]} bytes')
                got[sock] += chunk
        for sock, lines in want.items():
            self.assertEqual(sorted(bytes(got[sock]).split(b'\n')[:-1]), lines)
        self.check_alive(members)

    def test_flood_of_long_renames_drops_no_reader(self):
        server = self.chat_server()
        readers = self.room(server, 4)
        sender = self.join(server, readers)
        a, b = b'a' * 63 + b'1', b'b' * 63 + b'2'
        pairs = 12000           # 2 renames of 71 bytes each: 1.7 MB sent
        data = b'/nick %s\n' % a + b'/nick %s\n/nick %s\n' % (b, a) * pairs + b'done\n'
        self.flood(readers, sender[0], data,
                   [(b'* %s is now %s\n' % (sender[2], a), 1),
                    (b'* %s is now %s\n* %s is now %s\n' % (a, b, b, a), pairs),
                    (b'[%s] done\n' % a, 1)])
        sender_renamed = (sender[0], sender[1], a)
        self.check_alive([*readers, sender_renamed])

    def test_nick_taken_or_invalid_is_refused_to_the_sender_only(self):
        server = self.chat_server()
        (sa, ra, na), (sb, rb, nb), (sc, rc, nc) = self.room(server, 3)
        sa.sendall(b'/nick alice\n')
        self.assertEqual(rb.line(), b'* %s is now alice\n' % na)
        self.assertEqual(rc.line(), b'* %s is now alice\n' % na)
        sb.sendall(b'/nick alice\r\n')
        self.assertEqual(rb.line(), b'* nick alice: taken\n')
        sb.sendall(b'/nick bad name\n')
        self.assertEqual(rb.line(), b'* nick bad name: invalid\n')
        sb.sendall(b'/nick line\x01\n')
        self.assertEqual(rb.line(), b'* nick line\\x01: invalid\n')
        sa.sendall(b'/nick alice\n')          # a member's own name is not taken from it
        self.assertEqual(rb.line(), b'* alice is now alice\n')
        self.assertEqual(rc.line(), b'* alice is now alice\n')
        sb.sendall(b'hi\n')                   # nothing else reached the others
        self.assertEqual(ra.line(), b'[%s] hi\n' % nb)
        self.assertEqual(rc.line(), b'[%s] hi\n' % nb)
        sa.close()
        self.assertEqual(rb.line(), b'* alice left\n')
        self.assertEqual(rc.line(), b'* alice left\n')
        sb.sendall(b'/nick alice\n')          # free again once its holder left
        self.assertEqual(rc.line(), b'* %s is now alice\n' % nb)


def wait_stopped(pid, timeout=TIMEOUT):
    """Until every thread of pid is stopped (state T in /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = set()
        for tid in os.listdir(f'/proc/{pid}/task'):
            with open(f'/proc/{pid}/task/{tid}/stat', 'rb') as f:
                data = f.read()
            states.add(data[data.rindex(b')') + 2:].split()[0])
        if states == {b'T'}:
            return
        time.sleep(0.001)
    raise AssertionError(f'process {pid} did not stop')


def unread(sock):
    """Bytes waiting in sock's receive queue (FIONREAD)."""
    return struct.unpack('i', fcntl.ioctl(sock, termios.FIONREAD, b'\0' * 4))[0]


class Drainer(threading.Thread):
    """Reads (and keeps) whatever reaches a set of sockets, in the background."""

    def __init__(self, socks):
        super().__init__(daemon=True)
        self.lock = threading.Lock()
        self.data = {s: bytearray() for s in socks}
        self.active = set(socks)
        self.stopped = threading.Event()
        self.turns = 0

    def run(self):
        while not self.stopped.is_set():
            with self.lock:
                socks = list(self.active)
            readable, _, _ = select.select(socks, [], [], 0.02)
            for s in readable:
                try:
                    chunk = s.recv(MIB, socket.MSG_DONTWAIT)
                except (BlockingIOError, ConnectionResetError):
                    continue
                with self.lock:
                    self.data[s] += chunk
                    if not chunk:
                        self.active.discard(s)
            with self.lock:
                self.turns += 1

    def release(self, socks):
        """Stops reading socks (the thread has let go of them when this returns)."""
        with self.lock:
            self.active -= set(socks)
            turn = self.turns
        deadline = time.monotonic() + TIMEOUT
        while self.turns < turn + 2 and time.monotonic() < deadline:
            time.sleep(0.005)

    def wait_for(self, sock, predicate, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(bytes(self.data[sock])):
                    return
            time.sleep(0.002)
        raise AssertionError(f'not received in {timeout}s: {bytes(self.data[sock][-200:])!r}')


class TwoResetsTest(ChatTestBase):
    """Defect 1: two members reset in one loop iteration while a third, D, is just under its
    output limit. The first one's "left" line is queued for D; the second one's would pass the
    limit. v0.1 dropped D in the same pass, freed it while it was still on the list of
    connections to flush, and flushed it (a use-after-free that the ASan build reports). Now the
    notice is skipped for D (notices never cost a member its place) and D, which does not read,
    goes at its stall deadline; the library's side of the defect has unit tests of its own
    (tests/unit/hardening.c). The server must live through it either way."""

    LINE = 60000

    def test_two_resets_while_a_member_is_at_its_limit(self):
        # D is on a UNIX socket: what the server wrote and D did not read is all in D's
        # receive queue (no autotuned send buffer on the server's side), so the server's own
        # queue for D is known to the byte.
        server = self.chat_server('tcp://127.0.0.1:0', 'unix:' + self.path('chat.sock'))
        members = self.room(server, 3)
        (sw, rw, nw), x, y = members
        for i, letter in ((1, b'x'), (2, b'y')):
            sock, reader, name = members[i]
            new = letter * 40
            sock.sendall(b'/nick %s\n' % new)
            for other, r, _ in members:
                if other is not sock:
                    self.assertEqual(r.line(), b'* %s is now %s\n' % (name, new))
            members[i] = (sock, reader, new)
        x, y = members[1], members[2]
        helpers = []
        for _ in range((OUTPUT_MAX + 256 * 1024) // self.LINE + 4):
            helpers.append(self.join(server, members + helpers))
        d = self.join(server, members + helpers, rcvbuf=4096, i=1, name=b'unix#1')
        for _, reader, _ in members + helpers:
            self.assertEqual(reader.buf, b'')
        drainer = Drainer([m[0] for m in members + helpers])
        drainer.start()
        self.addCleanup(lambda: (drainer.stopped.set(), drainer.join(TIMEOUT)))

        left = len(b'* %s left\n' % x[2])          # the same for y
        target = OUTPUT_MAX - left - left // 2      # the first fits, the second does not
        sent_to_d = 0

        def pending_of_d():
            return sent_to_d - unread(d[0])

        for n, (sock, _, name) in enumerate(helpers):
            pending = pending_of_d()
            if OUTPUT_MAX - 2 * left < pending <= OUTPUT_MAX - left:
                break
            self.assertLess(pending, target, 'past the window')
            head = b'[%s] ' % name
            size = min(self.LINE, target - pending)
            if size < len(head) + len(b'fill-000 \n'):
                size += self.LINE // 2       # too close for a line: overshoot, aim again
            line = head + (b'fill-%03d ' % n).ljust(size - len(head) - 1, b'z') + b'\n'
            sock.sendall(line[len(head):])
            sent_to_d += len(line)
            drainer.wait_for(sw, lambda data: data.endswith(line))
        else:
            self.fail(f'D not brought into the window; pending {pending_of_d()}')

        drainer.release([x[0], y[0]])
        os.kill(server.pid, signal.SIGSTOP)     # both resets reach it in one iteration
        try:
            wait_stopped(server.pid)
            rst_close(x[0])
            rst_close(y[0])
        finally:
            os.kill(server.pid, signal.SIGCONT)
        for name in (x[2], y[2], d[2]):
            drainer.wait_for(sw, lambda data, name=name: b'* %s left\n' % name in data)
        self.assertIsNone(server.proc.poll(), 'the server died')
        rest = [m for m in members + helpers if m[0] not in (x[0], y[0])]
        newcomer = self.join(server, [])
        for sock, _, _ in rest:
            drainer.wait_for(sock, lambda data: data.endswith(b'* %s joined\n' % newcomer[2]))
        newcomer[0].sendall(b'still here\n')
        drainer.wait_for(sw, lambda data: data.endswith(b'[%s] still here\n' % newcomer[2]))


def vm_rss(pid):
    """Resident set size of pid in bytes (VmRSS of /proc/PID/status)."""
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    raise AssertionError(f'no VmRSS for {pid}')


def built_with_tsan():
    """ThreadSanitizer's shadow memory and allocator make a server's RSS say nothing of its own."""
    with open(SOCKIT, 'rb') as f:
        return b'__tsan_init' in f.read()


class TimestampFloodTest(SockitTest):

    CLIENTS = 100
    PER_CLIENT = 4 * MIB
    STALL = 1.0             # a client whose socket blocks this long has stopped sending

    @unittest.skipIf(built_with_tsan(), 'RSS under ThreadSanitizer measures the sanitizer')
    def test_clients_that_never_read_cost_bounded_memory(self):
        # Under AddressSanitizer, freed memory waits in a quarantine: keep it small here, so
        # that RSS measures what the server holds.
        env = server_env()
        env['ASAN_OPTIONS'] = ':'.join(filter(None, [env.get('ASAN_OPTIONS'),
                                                     'quarantine_size_mb=4']))
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'timestamp', '--threads', '2'],
                            env=env)
        baseline = vm_rss(server.pid)
        clients = [server.connect(rcvbuf=4096) for _ in range(self.CLIENTS)]
        block = b'x\n' * (32 * 1024)
        sent = {c: 0 for c in clients}
        last = {c: time.monotonic() for c in clients}
        for c in clients:
            c.setblocking(False)
        active = set(clients)
        deadline = time.monotonic() + FLOOD_TIMEOUT
        while active:
            self.assertLess(time.monotonic(), deadline, 'clients still sending')
            _, writable, _ = select.select([], list(active), [], 0.2)
            now = time.monotonic()
            for c in writable:
                try:
                    sent[c] += c.send(block[:self.PER_CLIENT - sent[c]])
                    last[c] = now
                except BlockingIOError:
                    pass
                if sent[c] >= self.PER_CLIENT:
                    active.discard(c)
            for c in list(active):
                if now - last[c] >= self.STALL:
                    active.discard(c)
        rss = vm_rss(server.pid)
        # Per client: the output limit (a line's reply past it) and the input kept at a pause
        # (one 64 KiB read), plus as much again for rounding and the partial line; an eighth
        # more for a sanitizer's shadow memory, and the threads' arenas.
        per_client = SK_OUTPUT_MAX + 2 * 64 * 1024
        bound = baseline + 16 * MIB + self.CLIENTS * per_client * 9 // 8
        print(f'\ntimestamp: {self.CLIENTS} clients sent {sum(sent.values()) / MIB:.0f} MiB; '
              f'server RSS {baseline / MIB:.1f} MiB before, {rss / MIB:.1f} MiB after '
              f'(bound {bound / MIB:.1f} MiB)', file=sys.stderr)
        self.assertLess(rss, bound, 'server RSS past what the limits allow')
        fresh = server.connect()
        t0 = time.monotonic()
        fresh.sendall(b'fresh\n')
        reply = recv_exactly(fresh, STAMP_PREFIX_LEN + 6, timeout=2.0)
        self.assertTrue(reply.endswith(b'] fresh\n'), reply)
        self.assertLess(time.monotonic() - t0, 2.0)
        for c in clients:
            c.close()


if __name__ == '__main__':
    unittest.main()
