"""Shared helpers for the black-box integration tests of sockit (serve, connect, relay).

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
"""

import ctypes
import itertools
import os
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
import unittest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOCKIT = os.path.abspath(os.path.join(REPO_ROOT, os.environ.get('SOCKIT', 'build/sockit')))

TIMEOUT = 5.0           # default bound for any single socket operation
START_TIMEOUT = 10.0    # bound for a server to print its `listening on` lines
STOP_TIMEOUT = 5.0      # bound for a server to exit after SIGTERM/SIGINT
RUN_TIMEOUT = 5.0       # bound for a sockit invocation that is expected to exit by itself
DEFAULT_PORT = 21567
RFC868_OFFSET = 2208988800
MIB = 1 << 20

SOCAT = shutil.which('socat')
SETPRIV = shutil.which('setpriv')

DAYS = ('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')
MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')
DATE_PATTERN = (rb'(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)'
                rb' [ 123]\d \d\d:\d\d:\d\d \d{4}')
STAMP_PREFIX_LEN = len(b'[Tue Nov 24 06:43:31 2026] ')   # ctime text is fixed width
CHARGEN_RING = bytes(range(0x20, 0x7f))                  # the 95 printable ASCII characters


def _ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(('::1', 0))
        return True
    except OSError:
        return False


HAVE_IPV6 = _ipv6_loopback_available()
STREAM_KINDS = ('tcp', 'unix', 'unix-abstract') + (('tcp6',) if HAVE_IPV6 else ())
DGRAM_KINDS = ('udp', 'unixgram', 'unixgram-abstract') + (('udp6',) if HAVE_IPV6 else ())

_unique = itertools.count()
_LINGERING = []     # stderr pipes still held open by processes a server left behind


# A log line of serve and relay: "2026-12-01T23:59:59.123Z sockit: LINE".
LOG_STAMP = re.compile(rb'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?=sockit: )')


def log_lines(stderr):
    """The log lines of a server's stderr, each checked for its timestamp and given without it."""
    lines = []
    for line in stderr.splitlines():
        m = LOG_STAMP.match(line)
        if m:
            lines.append(line[m.end():])
    return lines


def abstract_name(tag):
    """A Linux abstract socket name, unique for this test process."""
    return f'@sockit-test-{os.getpid()}-{next(_unique)}-{tag}'


def setUpModule():
    if not os.access(SOCKIT, os.X_OK):
        raise RuntimeError(f'sockit binary not found or not executable: {SOCKIT} (set $SOCKIT)')


# --------------------------------------------------------------------------- helpers

def server_env(tz='UTC'):
    env = dict(os.environ)
    env['TZ'] = tz
    return env


def ctime_text(t, utc_offset=0):
    """C's ctime() text (without newline) for unix time t in a zone utc_offset seconds east."""
    tm = time.gmtime(int(t) + utc_offset)
    return (f'{DAYS[tm.tm_wday]} {MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} '
            f'{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {tm.tm_year}').encode()


def ctime_texts_between(t0, t1, utc_offset=0, slack=1):
    return {ctime_text(t, utc_offset) for t in range(int(t0) - slack, int(t1) + slack + 1)}


def chargen_line(i):
    """Line i (0-based) of the RFC 864 pattern, CRLF included."""
    start = (1 + i) % len(CHARGEN_RING)
    return bytes(CHARGEN_RING[(start + k) % len(CHARGEN_RING)] for k in range(72)) + b'\r\n'


def chargen_bytes(n):
    out = bytearray()
    i = 0
    while len(out) < n:
        out += chargen_line(i)
        i += 1
    return bytes(out[:n])


def endpoint_address(ep):
    """(family, type, address) for a canonical endpoint as printed by sockit."""
    for scheme, stype in (('unixgram:', socket.SOCK_DGRAM), ('unix:', socket.SOCK_STREAM)):
        if ep.startswith(scheme):
            path = ep[len(scheme):]
            if path.startswith('@'):
                return socket.AF_UNIX, stype, '\0' + path[1:]
            return socket.AF_UNIX, stype, path
    m = re.fullmatch(r'(tcp|udp)[46]?://(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d+)', ep)
    if not m:
        raise AssertionError(f'not a canonical endpoint: {ep!r}')
    stype = socket.SOCK_STREAM if m.group(1) == 'tcp' else socket.SOCK_DGRAM
    if m.group(2) is not None:
        return socket.AF_INET6, stype, (m.group(2), int(m.group(4)))
    return socket.AF_INET, stype, (m.group(3), int(m.group(4)))


def inet_endpoint(sock, scheme):
    """Canonical endpoint of a socket's own address, e.g. tcp://127.0.0.1:54321."""
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        return f'{scheme}://[{host}]:{port}'
    return f'{scheme}://{host}:{port}'


def _recv_some(sock, size, deadline, got=b''):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise AssertionError(f'timed out; received so far ({len(got)} bytes): {bytes(got[:200])!r}')
    sock.settimeout(remaining)
    try:
        return sock.recv(size)
    except socket.timeout:
        raise AssertionError(
            f'timed out; received so far ({len(got)} bytes): {bytes(got[:200])!r}') from None


def recv_exactly(sock, n, timeout=TIMEOUT):
    """Exactly n bytes from a stream socket; fails on EOF or timeout."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        chunk = _recv_some(sock, min(n - len(buf), MIB), deadline, buf)
        if not chunk:
            raise AssertionError(f'EOF after {len(buf)} of {n} bytes: {bytes(buf[:200])!r}')
        buf += chunk
    return bytes(buf)


def read_to_close(sock, timeout=TIMEOUT, limit=64 * MIB):
    """Read until the peer closes. Returns (data, 'eof' | 'reset')."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        try:
            chunk = _recv_some(sock, MIB, deadline, buf)
        except ConnectionResetError:
            return bytes(buf), 'reset'
        if not chunk:
            return bytes(buf), 'eof'
        buf += chunk
        if len(buf) > limit:
            raise AssertionError(f'more than {limit} bytes without the peer closing')


def recv_until_eof(sock, timeout=TIMEOUT):
    """Everything until a clean EOF (a reset fails)."""
    data, how = read_to_close(sock, timeout)
    if how != 'eof':
        raise AssertionError(f'connection reset instead of a clean EOF after {data[:200]!r}')
    return data


def dgram_request(sock, payload, timeout=TIMEOUT):
    """Send one datagram on a connected socket and return the reply datagram."""
    sock.send(payload)
    sock.settimeout(timeout)
    try:
        return sock.recv(256 * 1024)
    except socket.timeout:
        raise AssertionError(f'no reply datagram to {payload[:60]!r} within {timeout}s') from None


def assert_silent(sock, seconds):
    """Nothing at all may arrive on sock within seconds (used where silence is the expectation)."""
    readable, _, _ = select.select([sock], [], [], seconds)
    if readable:
        try:
            data = sock.recv(65536)
        except OSError as e:
            data = e
        raise AssertionError(f'expected nothing within {seconds}s, got {data!r}')


def rst_close(sock):
    """Close with SO_LINGER 0 so that the peer gets a RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    sock.close()


def send_without_blocking(sock, block, total):
    """Send block repeatedly (up to total bytes), stopping as soon as the socket would block."""
    sock.setblocking(False)
    sent = 0
    try:
        while sent < total:
            sent += sock.send(block)
    except (BlockingIOError, BrokenPipeError, ConnectionResetError):
        pass
    sock.setblocking(True)
    return sent


def port_free(port):
    """True when both TCP and UDP 127.0.0.1:port can be bound right now."""
    for stype in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, stype) as s:
            if stype == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                return False
    return True


def children(pid):
    """[(child_pid, state)] of the processes whose parent is pid, from /proc."""
    result = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b')') + 2:].split()
        if int(fields[1]) == pid:
            result.append((int(entry), fields[0].decode()))
    return result


def process_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b')') + 2:].split()[0] not in (b'Z', b'X')


def descendants(pid):
    """{pid: cmdline} of every live process below pid."""
    found, todo = {}, [pid]
    while todo:
        for child, state in children(todo.pop()):
            if state in ('Z', 'X'):
                continue
            try:
                with open(f'/proc/{child}/cmdline', 'rb') as f:
                    found[child] = f.read().replace(b'\0', b' ').strip()
            except OSError:
                continue
            todo.append(child)
    return found


def run_sockit(args, timeout=RUN_TIMEOUT, prefix=(), env=None):
    return subprocess.run([*prefix, SOCKIT, *args], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, env=env or server_env())


class LineReader:
    """Line-at-a-time reading from a stream socket, with a deadline per line."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def line(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b'\n')
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            chunk = _recv_some(self.sock, MIB, deadline, self.buf)
            if not chunk:
                raise AssertionError(f'EOF while waiting for a line; pending {bytes(self.buf[:200])!r}')
            self.buf += chunk


class Writer(threading.Thread):
    """Sends data (then optionally shuts down the write side) in the background."""

    def __init__(self, sock, data, shutdown=True, timeout=30.0):
        super().__init__(daemon=True)
        self.sock, self.data, self.shutdown, self.timeout = sock, data, shutdown, timeout
        self.error = None

    def run(self):
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(self.data)
            if self.shutdown:
                self.sock.shutdown(socket.SHUT_WR)
        except Exception as e:      # reported by finish()
            self.error = e

    def finish(self, timeout=30.0):
        self.join(timeout)
        if self.is_alive():
            raise AssertionError('writer thread did not finish')
        if self.error:
            raise AssertionError(f'writer failed: {self.error!r}')


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent():
    """In a child before exec: SIGTERM when the test process dies, so that
    a killed test run leaves no server behind."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_setup(preexec):
    """The preexec_fn for a server: die_with_parent, then preexec (if any)."""
    if preexec is None:
        return die_with_parent

    def setup():
        die_with_parent()
        preexec()
    return setup


class Server:
    """A `sockit serve` (or `sockit relay`: command='relay') process: its listening endpoints,
    client helpers, and stopping it."""

    LISTENING = 'listening on '

    def __init__(self, endpoints=(), options=(), env=None, prefix=(), command='serve', preexec=None):
        """preexec, if given, runs in the child before exec, after die_with_parent (e.g. setrlimit)."""
        self.argv = [*prefix, SOCKIT, command, *options, *endpoints]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env or server_env(),
                                     preexec_fn=_child_setup(preexec))
        self.clients = []
        self._err = bytearray()
        self._drain = None
        self._stopped = False
        self.returncode = None

    # -- stderr

    @property
    def stderr(self):
        return bytes(self._err)

    @property
    def endpoints(self):
        """Endpoints of all `listening on` lines seen so far, in order."""
        return [line[len(self.LISTENING):] for line in self.stderr.decode(errors='replace').splitlines()
                if line.startswith(self.LISTENING)]

    def _read_stderr(self, until, deadline):
        """Read stderr (select with a deadline) until until() holds. Returns False on EOF."""
        fd = self.proc.stderr.fileno()
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return False
                self._err += chunk
        return True

    def wait_listening(self, count, timeout=START_TIMEOUT):
        """Wait for `count` listening lines; then keep draining stderr in the background."""
        deadline = time.monotonic() + timeout
        open_ = self._read_stderr(lambda: len(self.endpoints) >= count, deadline)
        if len(self.endpoints) < count:
            if not open_:
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            raise AssertionError(f'{self.argv}: expected {count} listening lines within {timeout}s; '
                                 f'exit status {self.proc.poll()}, stderr {self.stderr!r}')
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()
        return self.endpoints

    def _drain_stderr(self):
        fd = self.proc.stderr.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self._err += chunk

    METRICS = 'metrics on '

    def wait_metrics(self, timeout=START_TIMEOUT):
        """The endpoint of the `metrics on` line (--metrics), once printed; after wait_listening()."""
        def found(err):
            return [line[len(self.METRICS):] for line in err.decode(errors='replace').splitlines()
                    if line.startswith(self.METRICS)]
        if not self.wait_stderr(found, timeout):
            raise AssertionError(f'{self.argv}: no `metrics on` line within {timeout}s; '
                                 f'exit status {self.proc.poll()}, stderr {self.stderr!r}')
        return found(self.stderr)[0]

    def wait_stderr(self, predicate, timeout=TIMEOUT):
        """Poll (bounded) until predicate(stderr bytes) holds; returns whether it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.stderr):
                return True
            time.sleep(0.02)
        return predicate(self.stderr)

    # -- stopping

    def stop(self, sig=signal.SIGTERM, close_clients=True, timeout=STOP_TIMEOUT):
        """Signal the server, wait for it (SIGKILL after timeout) and return its exit status."""
        if close_clients:
            for c in self.clients:
                c.close()
        if self._stopped:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
                self.returncode = 'killed after timeout'
        if self.returncode is None:
            self.returncode = self.proc.returncode
        if self._drain is not None:
            self._drain.join(2.0)
        else:
            self._read_stderr(lambda: False, time.monotonic() + 2.0)
        if self._drain is None or not self._drain.is_alive():
            self.proc.stderr.close()
        else:
            # A leftover process still holds the pipe; keep it open while the thread reads it.
            _LINGERING.append(self.proc.stderr)
        self._stopped = True
        return self.returncode

    @property
    def pid(self):
        return self.proc.pid

    # -- clients

    def index(self, prefix):
        for i, ep in enumerate(self.endpoints):
            if ep.startswith(prefix):
                return i
        raise AssertionError(f'no endpoint starting with {prefix!r} in {self.endpoints}')

    def address(self, i):
        return endpoint_address(self.endpoints[i])

    def port(self, i=0):
        return self.address(i)[2][1]

    def connect(self, i=0, timeout=TIMEOUT, rcvbuf=None):
        """A stream client connected to endpoint i."""
        family, stype, addr = self.address(i)
        if stype != socket.SOCK_STREAM:
            raise AssertionError(f'{self.endpoints[i]} is not a stream endpoint')
        s = socket.socket(family, socket.SOCK_STREAM)
        self.clients.append(s)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(addr)
        return s

    def dgram(self, i=0, bind_path=None, bufsize=None, timeout=TIMEOUT):
        """A datagram client bound to an address of its own and connected to endpoint i.

        UNIX datagram clients autobind an abstract address unless bind_path is given."""
        family, stype, addr = self.address(i)
        if stype != socket.SOCK_DGRAM:
            raise AssertionError(f'{self.endpoints[i]} is not a datagram endpoint')
        s = socket.socket(family, socket.SOCK_DGRAM)
        self.clients.append(s)
        if bufsize:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        if family == socket.AF_UNIX:
            s.bind(bind_path or '')
        elif family == socket.AF_INET6:
            s.bind(('::1', 0))
        else:
            s.bind(('127.0.0.1', 0))
        s.settimeout(timeout)
        s.connect(addr)
        return s


class ServeTest(unittest.TestCase):
    """Base class: a temporary directory and servers that are always stopped."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='sockit-it-')
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def endpoint(self, kind):
        if kind == 'tcp':
            return 'tcp://127.0.0.1:0'
        if kind == 'tcp6':
            return 'tcp://[::1]:0'
        if kind == 'udp':
            return 'udp://127.0.0.1:0'
        if kind == 'udp6':
            return 'udp://[::1]:0'
        if kind == 'unix':
            return 'unix:' + self.path(f'stream-{next(_unique)}.sock')
        if kind == 'unixgram':
            return 'unixgram:' + self.path(f'dgram-{next(_unique)}.sock')
        if kind == 'unix-abstract':
            return 'unix:' + abstract_name('s')
        if kind == 'unixgram-abstract':
            return 'unixgram:' + abstract_name('d')
        raise ValueError(kind)

    def serve(self, *endpoints, opts=(), count=None, env=None, prefix=(), preexec=None):
        """Start sockit serve and wait for one listening line per endpoint (2 for the default)."""
        server = Server(endpoints, opts, env=env, prefix=prefix, preexec=preexec)
        self.addCleanup(server.stop)
        server.wait_listening(count if count is not None else (len(endpoints) or 2))
        return server

    def serve_kinds(self, kinds, opts=(), env=None):
        """One server listening on an endpoint of each kind; returns (server, {kind: index})."""
        server = self.serve(*[self.endpoint(k) for k in kinds], opts=opts, env=env)
        return server, {k: i for i, k in enumerate(kinds)}

    def stamp_request(self, sock, line, utc_offset=0):
        """Send one timestamp line and check the exact reply."""
        t0 = time.time()
        sock.sendall(line)
        reply = recv_exactly(sock, STAMP_PREFIX_LEN + len(line))
        self.assertStamped(reply, line, t0, utc_offset=utc_offset)

    def chat_pair(self, server):
        """Two chat clients, both in the room. Returns [(sock, reader, name)] * 2.

        The server may register the two in either order, so exactly one of them is told
        that the other joined."""
        members = []
        for _ in range(2):
            sock = server.connect()
            members.append((sock, LineReader(sock), inet_endpoint(sock, 'tcp').encode()))
        (sa, ra, na), (sb, rb, nb) = members
        readable, _, _ = select.select([sa, sb], [], [], TIMEOUT)
        if not readable:
            self.fail('neither chat client was told that the other joined')
        if sa in readable:
            self.assertEqual(ra.line(), b'* %s joined\n' % nb)
        else:
            self.assertEqual(rb.line(), b'* %s joined\n' % na)
        return members

    def assertStamped(self, data, body, t0, t1=None, utc_offset=0):
        """data == b'[DATE] ' + body, DATE the ctime text of a moment between t0 and t1 (or now)."""
        t1 = time.time() if t1 is None else t1
        self.assertRegex(data, rb'^\[' + DATE_PATTERN + rb'\] ')
        self.assertEqual(data[STAMP_PREFIX_LEN:], body)
        self.assertIn(data[1:STAMP_PREFIX_LEN - 2], ctime_texts_between(t0, t1, utc_offset))

    def assertDaytime(self, data, t0):
        self.assertRegex(data, rb'^' + DATE_PATTERN + rb'\r\n\Z')
        self.assertIn(data[:-2], ctime_texts_between(t0, time.time()))

    def assertTime(self, data, t0):
        self.assertEqual(len(data), 4, data)
        value = struct.unpack('>I', data)[0]
        low = (int(t0) - 2 + RFC868_OFFSET) % 2 ** 32
        self.assertLessEqual((value - low) % 2 ** 32, int(time.time()) - int(t0) + 4,
                             f'RFC 868 time {value} is not within 2 s of now')

    def assertExit(self, result, code, stderr=None):
        """A finished sockit run: exit code, empty stdout, exactly one `sockit: ` line on stderr."""
        self.assertEqual(result.returncode, code, f'stderr: {result.stderr!r}')
        self.assertEqual(result.stdout, b'')
        self.assertTrue(result.stderr.startswith(b'sockit: '), result.stderr)
        self.assertTrue(result.stderr.endswith(b'\n'), result.stderr)
        self.assertEqual(result.stderr.count(b'\n'), 1, result.stderr)
        if stderr is not None:
            self.assertEqual(result.stderr, stderr.encode() + b'\n')


# --------------------------------------------------------------------------- peers written here
# Servers in plain Python, for talking to sockit with something sockit did not write.

ASAN_MARKERS = (b'ERROR: AddressSanitizer', b'ERROR: LeakSanitizer', b'runtime error')


def free_port(stype=socket.SOCK_STREAM, host='127.0.0.1'):
    """A port on host that nothing listens on right now (bound once, then closed)."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    with socket.socket(family, stype) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def sock_endpoint(sock, scheme):
    """The endpoint sockit would use to reach a bound Python socket."""
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        if isinstance(name, bytes):                     # abstract
            return f'{scheme}:@{name[1:].decode()}'
        return f'{scheme}:{name}'
    return inet_endpoint(sock, scheme)


class PyStreamServer:
    """A listening stream socket in Python. A background thread accepts `count` connections, one
    after the other, and calls handler(conn) for each; its return values end up in results."""

    def __init__(self, test, handler, family=socket.AF_INET, path=None, count=1, timeout=TIMEOUT):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        test.addCleanup(self.close)
        if family == socket.AF_UNIX:
            self.sock.bind(path)
        else:
            self.sock.bind(('::1' if family == socket.AF_INET6 else '127.0.0.1', 0))
        self.sock.listen(8)
        self.sock.settimeout(timeout * 2)
        self.handler, self.count, self.timeout = handler, count, timeout
        self.results, self.errors = [], []
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def endpoint(self, scheme=None):
        return sock_endpoint(self.sock, scheme or ('unix' if self.sock.family == socket.AF_UNIX else 'tcp'))

    def _run(self):
        for _ in range(self.count):
            try:
                conn, _ = self.sock.accept()
            except OSError as e:
                self.errors.append(e)
                return
            self.accepted.set()
            with conn:
                conn.settimeout(self.timeout)
                try:
                    self.results.append(self.handler(conn))
                except Exception as e:      # reported by wait()
                    self.errors.append(e)

    def wait(self, timeout=TIMEOUT * 2):
        """The handlers' results once every connection was handled; fails on errors or timeout."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f'Python server still busy after {timeout}s; results so far {self.results!r}')
        if self.errors:
            raise AssertionError(f'Python server failed: {self.errors!r}')
        return self.results

    def close(self):
        self.sock.close()
        self.thread.join(TIMEOUT * 2)


def read_all(conn, limit=64 * MIB):
    """Everything until EOF on a Python-side connection (its own timeout applies to each recv)."""
    buf = bytearray()
    while True:
        chunk = conn.recv(MIB)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise AssertionError(f'more than {limit} bytes without EOF')


class PyDgramServer:
    """A datagram socket in Python. handler(sock, payload, address) answers each datagram; every
    (payload, address) received is recorded in `received`."""

    def __init__(self, test, handler, family=socket.AF_INET, path=None, lifetime=60.0, port=0):
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        test.addCleanup(self.close)
        if family == socket.AF_UNIX:
            self.sock.bind(path)
        else:
            self.sock.bind(('::1' if family == socket.AF_INET6 else '127.0.0.1', port))
        self.sock.settimeout(0.05)
        self.handler, self.lifetime = handler, lifetime
        self.received, self.errors, self.timers = [], [], []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def endpoint(self, scheme=None):
        return sock_endpoint(self.sock, scheme or ('unixgram' if self.sock.family == socket.AF_UNIX else 'udp'))

    def _run(self):
        deadline = time.monotonic() + self.lifetime
        while not self.stopped.is_set() and time.monotonic() < deadline:
            try:
                payload, address = self.sock.recvfrom(256 * 1024)
            except socket.timeout:
                continue
            except OSError as e:
                if not self.stopped.is_set():
                    self.errors.append(e)
                return
            with self.lock:
                self.received.append((payload, address))
            try:
                self.handler(self, payload, address)
            except OSError as e:
                self.errors.append(e)

    def reply_later(self, delay, payload, address):
        timer = threading.Timer(delay, self._send_quietly, (payload, address))
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    def _send_quietly(self, payload, address):
        try:
            self.sock.sendto(payload, address)
        except OSError:
            pass

    def sources(self):
        with self.lock:
            return [address for _, address in self.received]

    def close(self):
        self.stopped.set()
        for timer in self.timers:
            timer.cancel()
        self.thread.join(TIMEOUT)
        self.sock.close()


class SockitTest(ServeTest):
    """ServeTest plus `sockit relay` and `sockit connect` runs; every server and relay started here
    is checked for sanitizer reports once it has stopped."""

    def full_backlog_port(self):
        """A loopback port whose SYNs go unanswered, or a skip: Linux drops a SYN while the accept
        queue is full, so a listener with backlog 0 and one unaccepted connection never answers."""
        lsn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(lsn.close)
        lsn.bind(('127.0.0.1', 0))
        lsn.listen(0)
        port = lsn.getsockname()[1]
        first = socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT)
        self.addCleanup(first.close)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.3)
        try:
            probe.connect(('127.0.0.1', port))
            self.skipTest('a full accept queue still completes connections here')
        except socket.timeout:
            pass
        finally:
            probe.close()
        return port

    def _watch(self, server):
        def check():
            server.stop()
            for marker in ASAN_MARKERS:
                if marker in server.stderr:
                    self.fail(f'{server.argv}: {marker.decode()} in stderr:\n'
                              f'{server.stderr.decode(errors="replace")[:4000]}')
        self.addCleanup(check)

    def serve(self, *endpoints, opts=(), count=None, env=None, prefix=(), preexec=None):
        server = Server(endpoints, opts, env=env, prefix=prefix, preexec=preexec)
        self._watch(server)
        self.addCleanup(server.stop)
        server.wait_listening(count if count is not None else (len(endpoints) or 2))
        return server

    def relay(self, listen, target, opts=(), env=None):
        """Start `sockit relay [opts] LISTEN TARGET` and wait for its `listening on` line."""
        relay = Server([listen, target], opts, env=env, command='relay')
        self._watch(relay)
        self.addCleanup(relay.stop)
        relay.wait_listening(1)
        return relay

    def connect_run(self, args, input_=b'', timeout=10.0, env=None):
        """Run `sockit connect ARGS` with input_ on stdin. Returns (CompletedProcess, seconds)."""
        start = time.monotonic()
        try:
            result = subprocess.run([SOCKIT, 'connect', *args], input=input_, capture_output=True,
                                    timeout=timeout, env=env or server_env())
        except subprocess.TimeoutExpired as e:
            self.fail(f'sockit connect {args} did not exit within {timeout}s; '
                      f'stdout {(e.stdout or b"")[:200]!r}, stderr {(e.stderr or b"")[:400]!r}')
        return result, time.monotonic() - start

    def assertClean(self, result, stdout):
        """A successful run: exit 0, exactly this stdout, nothing on stderr."""
        self.assertEqual(result.returncode, 0, f'stderr: {result.stderr!r}')
        if result.stdout != stdout:
            self.fail(f'stdout differs: {len(result.stdout)} bytes instead of {len(stdout)}; '
                      f'got {result.stdout[:120]!r}..., expected {stdout[:120]!r}...; '
                      f'first difference at {first_difference(result.stdout, stdout)}')
        self.assertEqual(result.stderr, b'')


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))
