"""sockit across hosts behind a real HAProxy, in network namespaces.

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
Each test builds a small network of its own with `ip netns` and veth pairs, all on private
addresses, nothing in the test's own namespace:

    client  10.203.1.2/24, 10.203.1.3/24, fd00:203:1::2/64
       |  veth
    lb      10.203.1.1/24, fd00:203:1::1/64   HAProxy 2.6 (Debian's), mode tcp, send-proxy-v2
       |  veth            \\  veth
    b1      10.203.2.2/24    b2  10.203.3.2/24      (lb: 10.203.2.1/24, 10.203.3.1/24)

The backends run `sockit serve ... tcp://ADDR:PORT,proxy=v2`: they must see the client
namespace's addresses, never HAProxy's. Clients are `sockit bench` (run with `ip netns exec`) and
Python sockets made inside the client namespace (setns(2) in a short-lived thread: a socket keeps
the namespace it was made in). The namespaces carry the test's pid in their names; every process,
namespace and veth a test made is removed by its cleanups, whatever failed. Without root,
`ip netns` or haproxy the tests are skipped, with the reason printed.

    python3 -m unittest discover -s tests/integration -p test_netns.py -v
"""

import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

IP = shutil.which('ip')
HAPROXY = shutil.which('haproxy')
IP_TIMEOUT = 10.0           # bound for one `ip` command
BENCH_TIMEOUT = 30.0        # bound for one `sockit bench` run (well under a second here)
READY_TIMEOUT = 10.0        # bound for HAProxy's frontend to accept

CLIENT4, CLIENT4_B, LB4 = '10.203.1.2', '10.203.1.3', '10.203.1.1'
CLIENT6, LB6 = 'fd00:203:1::2', 'fd00:203:1::1'
LB_B1, B1 = '10.203.2.1', '10.203.2.2'
LB_B2, B2 = '10.203.3.1', '10.203.3.2'
ECHO_PORT, CHAT_PORT = 7000, 7001               # on the backends
FRONT_ECHO, FRONT_CHAT = 8000, 8001             # HAProxy's frontends

PROXY_V2_SIGNATURE = b'\r\n\r\n\x00\r\nQUIT\n'
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_counter = iter(range(1, 1 << 30))


# --------------------------------------------------------------------------- namespaces

def ip(*args, check=True):
    """Run `ip ARGS` (bounded); fails with its stderr unless check is False."""
    try:
        r = subprocess.run([IP, *args], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=IP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f'ip {" ".join(args)} did not end within {IP_TIMEOUT}s') from None
    if check and r.returncode != 0:
        raise AssertionError(f'ip {" ".join(args)}: exit {r.returncode}: '
                             f'{r.stderr.decode(errors="replace").strip()}')
    return r


def netns_exec(name):
    """The prefix that runs a command inside namespace name (it execs: the PID is the command's)."""
    return (IP, 'netns', 'exec', name)


def in_netns(name, fn):
    """fn() run in a new thread that first joins network namespace name; returns its result.
    Only that thread changes namespace; a socket it makes stays in that namespace for good."""
    result = {}

    def run():
        try:
            fd = os.open(f'/run/netns/{name}', os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f'setns {name}: {os.strerror(err)}')
            finally:
                os.close(fd)
            result['value'] = fn()
        except BaseException as e:          # re-raised in the caller
            result['error'] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    if thread.is_alive():
        raise AssertionError(f'no result from namespace {name} within {TIMEOUT}s')
    if 'error' in result:
        raise result['error']
    return result['value']


def no_dad():
    """In the calling thread's namespace: no IPv6 duplicate address detection on interfaces made
    from now on. Otherwise the link-local addresses stay tentative for a second, and the first
    IPv6 SYN waits for neighbour discovery and a retransmission."""
    for conf in ('all', 'default'):
        try:
            with open(f'/proc/sys/net/ipv6/conf/{conf}/accept_dad', 'w') as f:
                f.write('0')
        except FileNotFoundError:       # no IPv6 in this kernel
            return


_unavailable = []


def netns_unavailable():
    """Why namespaces cannot be used here, or None; found out (and printed) once per process."""
    if not _unavailable:
        _unavailable.append(_probe_netns())
        if _unavailable[0]:
            print(f'\n{__name__}: skipped: {_unavailable[0]}', file=sys.stderr)
    return _unavailable[0]


def _probe_netns():
    if os.geteuid() != 0:
        return 'needs root for ip netns'
    if IP is None:
        return 'ip (iproute2) is not installed'
    if HAPROXY is None:
        return 'haproxy is not installed'
    name = f'sockit-it-{os.getpid()}-probe'
    r = ip('netns', 'add', name, check=False)
    if r.returncode != 0:
        return f'ip netns add fails: {r.stderr.decode(errors="replace").strip()}'
    ip('netns', 'del', name, check=False)
    return None


class Network:
    """The four namespaces and their veth pairs (see the module's docstring). Everything is
    created inside the namespaces (no interface ever appears in the test's own namespace), and
    deleting the namespaces removes the veths with them."""

    ROLES = ('client', 'lb', 'b1', 'b2')

    def __init__(self, test):
        tag = f'{os.getpid()}-{next(_counter)}'
        self.ns = {}
        for role in self.ROLES:
            name = f'sockit-it-{tag}-{role}'
            ip('netns', 'add', name)
            test.addCleanup(ip, 'netns', 'del', name, check=False)
            self.ns[role] = name
            ip('-n', name, 'link', 'set', 'lo', 'up')
            in_netns(name, no_dad)
        c, lb, b1, b2 = (self.ns[r] for r in self.ROLES)
        for here, there, other, peer in ((c, 'c0', lb, 'l0'), (lb, 'l1', b1, 'b0'), (lb, 'l2', b2, 'b0')):
            ip('-n', here, 'link', 'add', there, 'type', 'veth', 'peer', 'name', peer, 'netns', other)
        for name, dev, addr in ((c, 'c0', CLIENT4), (c, 'c0', CLIENT4_B), (lb, 'l0', LB4),
                                (lb, 'l1', LB_B1), (b1, 'b0', B1), (lb, 'l2', LB_B2), (b2, 'b0', B2)):
            ip('-n', name, 'addr', 'add', f'{addr}/24', 'dev', dev)
        # The IPv6 leg (client to HAProxy) where the kernel has IPv6; nodad: usable at once.
        self.ipv6 = all(ip('-n', name, 'addr', 'add', f'{addr}/64', 'dev', dev, 'nodad',
                           check=False).returncode == 0
                        for name, dev, addr in ((c, 'c0', CLIENT6), (lb, 'l0', LB6)))
        links = ((c, 'c0'), (lb, 'l0'), (lb, 'l1'), (lb, 'l2'), (b1, 'b0'), (b2, 'b0'))
        for name, dev in links:
            ip('-n', name, 'link', 'set', dev, 'up')
        # The kernel turns a link on (carrier, qdisc) a little later; until then packets are
        # dropped and the first IPv6 neighbour solicitation costs a one-second retransmission.
        deadline = time.monotonic() + IP_TIMEOUT
        for name, dev in links:
            while json.loads(ip('-j', '-n', name, 'link', 'show', 'dev', dev).stdout)[0]['operstate'] != 'UP':
                if time.monotonic() > deadline:
                    raise AssertionError(f'{dev} in {name} is not up within {IP_TIMEOUT}s')
                time.sleep(0.01)

    def socket(self, role, family=socket.AF_INET, source=None):
        """A TCP socket made in namespace role, bound to (source, 0) when source is given."""
        def make():
            s = socket.socket(family, socket.SOCK_STREAM)
            if source is not None:
                s.bind((source, 0))
            return s
        return in_netns(self.ns[role], make)


# --------------------------------------------------------------------------- HAProxy

def haproxy_config(frontends, v6):
    """mode tcp; frontends: [(name, port, balance, [(server, addr, port)])]."""
    lines = ['global',
             '    maxconn 1000',
             'defaults',
             '    mode tcp',
             '    timeout connect 2s',
             '    timeout client 30s',
             '    timeout server 30s']
    for name, port, balance, servers in frontends:
        lines += [f'frontend fe_{name}',
                  f'    bind {LB4}:{port}']
        if v6:
            lines.append(f'    bind [{LB6}]:{port}')
        lines += [f'    default_backend be_{name}',
                  f'backend be_{name}',
                  f'    balance {balance}']
        lines += [f'    server {server} {addr}:{sport} send-proxy-v2' for server, addr, sport in servers]
    return '\n'.join(lines) + '\n'


class HAProxy:
    """`haproxy -f CFG -db` (foreground) in the load balancer's namespace, output to a file."""

    def __init__(self, test, net, config):
        self.net = net
        self.cfg = os.path.join(test.tmp, 'haproxy.cfg')
        with open(self.cfg, 'w') as f:
            f.write(config)
        self.log_path = os.path.join(test.tmp, 'haproxy.log')
        with open(self.log_path, 'wb') as log:
            self.proc = subprocess.Popen([*netns_exec(net.ns['lb']), HAPROXY, '-f', self.cfg, '-db'],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         preexec_fn=die_with_parent)
        test.addCleanup(self.stop)

    @property
    def log(self):
        with open(self.log_path, 'rb') as f:
            return f.read().decode(errors='replace')

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)

    def connect(self, port, family=socket.AF_INET, source=None, timeout=READY_TIMEOUT):
        """A client socket in the client namespace connected to the frontend on port. Polls (with
        a deadline) until HAProxy accepts: this is also how a test waits for HAProxy to be up."""
        addr = (LB6 if family == socket.AF_INET6 else LB4, port)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f'haproxy exited with {self.proc.returncode}:\n{self.log}')
            s = self.net.socket('client', family, source)
            s.settimeout(TIMEOUT)
            try:
                s.connect(addr)
                return s
            except OSError as e:
                s.close()
                if time.monotonic() > deadline:
                    raise AssertionError(f'haproxy did not accept on {addr} within {timeout}s '
                                         f'({e}):\n{self.log}') from None
                time.sleep(0.02)


# --------------------------------------------------------------------------- a Python backend
# Used to check the scaffolding on its own: HAProxy really sends a PROXY v2 header with the
# client namespace's address. Failures of the sockit tests below then point at sockit.

def parse_proxy_v2(conn):
    """Read one PROXY v2 header from conn: (command, (src_addr, src_port), (dst_addr, dst_port))."""
    head = recv_exactly(conn, 16)
    if head[:12] != PROXY_V2_SIGNATURE:
        raise AssertionError(f'not a PROXY v2 header: {head!r}')
    ver_cmd, fam, length = struct.unpack('!BBH', head[12:])
    if ver_cmd >> 4 != 2:
        raise AssertionError(f'PROXY version {ver_cmd >> 4}')
    body = recv_exactly(conn, length)
    if fam == 0x11:             # TCP over IPv4
        src, dst, sport, dport = struct.unpack('!4s4sHH', body[:12])
        family = socket.AF_INET
    elif fam == 0x21:           # TCP over IPv6
        src, dst, sport, dport = struct.unpack('!16s16sHH', body[:36])
        family = socket.AF_INET6
    else:
        raise AssertionError(f'PROXY v2 family/protocol byte {fam:#x}')
    return (ver_cmd & 0xf, (socket.inet_ntop(family, src), sport),
            (socket.inet_ntop(family, dst), dport))


class PyProxyEcho:
    """A Python echo server in a backend namespace that first reads a PROXY v2 header; records
    each connection's header in `headers`."""

    def __init__(self, test, net, role, addr, port):
        def listen():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.listen(16)
            return s
        self.sock = in_netns(net.ns[role], listen)
        self.headers, self.errors = [], []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        test.addCleanup(self.close)

    def _accept(self):
        self.sock.settimeout(0.05)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            try:
                conn.settimeout(TIMEOUT)
                self.headers.append(parse_proxy_v2(conn))
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    conn.sendall(chunk)
            except Exception as e:      # checked by the test
                self.errors.append(e)

    def close(self):
        self.stopped.set()
        self.thread.join(TIMEOUT)
        self.sock.close()


# --------------------------------------------------------------------------- the tests

def peer_text(host, port):
    """The canonical endpoint sockit gives a TCP peer."""
    return f'tcp://[{host}]:{port}' if ':' in host else f'tcp://{host}:{port}'


OPEN_LINE = re.compile(r'^sockit: open (\S+) on ', re.M)
HOST_OF = re.compile(r'^tcp://(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):\d+$')


def open_peers(stderr):
    """The peer host of every `sockit: open PEER` line of a -v server, in order."""
    hosts = []
    text = b'\n'.join(log_lines(stderr)).decode(errors='replace')
    for ep in OPEN_LINE.findall(text):
        m = HOST_OF.match(ep)
        hosts.append((m.group(1) or m.group(2)) if m else ep)
    return hosts


class NetnsTest(SockitTest):

    @classmethod
    def setUpClass(cls):
        reason = netns_unavailable()
        if reason:
            raise unittest.SkipTest(reason)

    def setUp(self):
        super().setUp()
        self.net = Network(self)

    def haproxy(self, *frontends):
        return HAProxy(self, self.net, haproxy_config(frontends, self.net.ipv6))

    def backend(self, role, service, addr, port):
        """`sockit serve -v -s SERVICE tcp://ADDR:PORT,proxy=v2` in namespace role."""
        endpoint = f'tcp://{addr}:{port},proxy=v2'
        server = self.serve(endpoint, opts=['-v', '-s', service, '--threads', '2',
                                            '--drain-timeout', '0.5'],
                            prefix=netns_exec(self.net.ns[role]))
        self.assertEqual(server.endpoints, [endpoint])
        return server

    def client(self, sock):
        self.addCleanup(sock.close)
        return sock

    def echo_once(self, sock, payload):
        sock.sendall(payload)
        self.assertEqual(recv_exactly(sock, len(payload)), payload)

    def bench(self, target, args):
        """`sockit bench --json ARGS TARGET` in the client namespace; returns its report."""
        argv = [*netns_exec(self.net.ns['client']), SOCKIT, 'bench', '--json', *args, target]
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=BENCH_TIMEOUT, env=server_env())
        except subprocess.TimeoutExpired as e:
            self.fail(f'{argv} did not end within {BENCH_TIMEOUT}s; stderr {(e.stderr or b"")[:400]!r}')
        self.assertEqual(r.returncode, 0, f'{argv}: stdout {r.stdout[:400]!r}, stderr {r.stderr[:400]!r}')
        return json.loads(r.stdout)


class ScaffoldingTest(NetnsTest):
    """The network and HAProxy alone, with Python backends: a failure here is the machine's."""

    def test_haproxy_sends_the_client_address_in_proxy_v2(self):
        backends = [PyProxyEcho(self, self.net, 'b1', B1, ECHO_PORT),
                    PyProxyEcho(self, self.net, 'b2', B2, ECHO_PORT)]
        lb = self.haproxy(('echo', FRONT_ECHO, 'roundrobin',
                           [('b1', B1, ECHO_PORT), ('b2', B2, ECHO_PORT)]))
        families = [socket.AF_INET] + ([socket.AF_INET6] if self.net.ipv6 else [])
        expected = []
        for family in families:
            for i in range(4):
                c = self.client(lb.connect(FRONT_ECHO, family))
                self.echo_once(c, b'hello %d through haproxy\n' % i)
                host, port = c.getsockname()[:2]
                front = c.getpeername()[:2]
                expected.append((1, (host, port), front))
                c.close()
        deadline = time.monotonic() + TIMEOUT
        while sum(len(b.headers) for b in backends) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.02)
        for b in backends:
            self.assertEqual(b.errors, [])
            self.assertGreater(len(b.headers), 0, 'roundrobin left a backend unused')
        self.assertEqual(sorted(h for b in backends for h in b.headers), sorted(expected))


class BenchThroughHAProxyTest(NetnsTest):

    def test_bench_round_robin_over_two_backends(self):
        backends = {'b1': self.backend('b1', 'echo', B1, ECHO_PORT),
                    'b2': self.backend('b2', 'echo', B2, ECHO_PORT)}
        lb = self.haproxy(('echo', FRONT_ECHO, 'roundrobin',
                           [('b1', B1, ECHO_PORT), ('b2', B2, ECHO_PORT)]))
        probe = self.client(lb.connect(FRONT_ECHO))     # waits for HAProxy; one connection
        self.echo_once(probe, b'probe\n')
        probe.close()
        runs = [(f'tcp://{LB4}:{FRONT_ECHO}', 4000, ['-c', '8'], CLIENT4)]
        if self.net.ipv6:
            runs.append((f'tcp://[{LB6}]:{FRONT_ECHO}', 1000, ['-c', '8', '--size', '4096'], CLIENT6))
        for target, count, args, _ in runs:
            with self.subTest(target=target):
                report = self.bench(target, ['-n', str(count), *args])
                self.assertEqual((report['requests'], report['errors']), (count, 0), report)
        # One `open` line per connection, each naming the client namespace's address: the probe,
        # then 8 connections a run, which round robin spreads evenly over the two backends.
        connections = 1 + 8 * len(runs)
        deadline = time.monotonic() + TIMEOUT
        while True:
            seen = {role: open_peers(b.stderr) for role, b in backends.items()}
            if sum(len(peers) for peers in seen.values()) >= connections or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.assertEqual(sum(len(peers) for peers in seen.values()), connections, seen)
        for role, b in backends.items():
            with self.subTest(backend=role):
                log = b.stderr.decode(errors='replace')
                for lb_side in (LB_B1, LB_B2):
                    self.assertNotIn(lb_side, log, f'{role} names HAProxy instead of the client')
                self.assertEqual(set(seen[role]) - {CLIENT4, CLIENT6}, set(), log)
                for _, _, _, client in runs:
                    self.assertGreaterEqual(seen[role].count(client), 4, log)


class ChatThroughHAProxyTest(NetnsTest):

    def test_chat_names_are_the_clients_addresses(self):
        chat = self.backend('b1', 'chat', B1, CHAT_PORT)
        lb = self.haproxy(('chat', FRONT_CHAT, 'roundrobin', [('b1', B1, CHAT_PORT)]))
        sources = [(socket.AF_INET, CLIENT4), (socket.AF_INET, CLIENT4_B)]
        if self.net.ipv6:
            sources.append((socket.AF_INET6, CLIENT6))
        members = []

        def join(family, source):
            sock = self.client(lb.connect(FRONT_CHAT, family, source))
            name = peer_text(*sock.getsockname()[:2]).encode()
            members.append((sock, LineReader(sock), name))

        # The first two may be registered in either order: exactly one is told of the other.
        join(*sources[0])
        join(*sources[1])
        (sa, ra, na), (sb, rb, nb) = members
        readable, _, _ = select.select([sa, sb], [], [], TIMEOUT)
        self.assertTrue(readable, 'neither chat client was told that the other joined')
        if sa in readable:
            self.assertEqual(ra.line(), b'* %s joined\n' % nb)
        else:
            self.assertEqual(rb.line(), b'* %s joined\n' % na)
        for family, source in sources[2:]:
            join(family, source)
            for _, reader, _ in members[:-1]:
                self.assertEqual(reader.line(), b'* %s joined\n' % members[-1][2])

        # Each member in turn sends lines of many lengths; every other member gets each of
        # them, exactly, under the sender's real address; the sender gets nothing back.
        for i, (sock, _, name) in enumerate(members):
            lines = [b'line %d of %d: %s\n' % (k, i, bytes(0x21 + (k + j) % 94 for j in range(k * 97 % 3000)))
                     for k in range(40)]
            sock.sendall(b''.join(lines))
            for j, (_, reader, _) in enumerate(members):
                if j == i:
                    continue
                for line in lines:
                    self.assertEqual(reader.line(), b'[%s] %s' % (name, line))
        for sock, reader, name in members:
            self.assertEqual(bytes(reader.buf), b'', name)
            assert_silent(sock, 0.1)

        gone, _, gone_name = members.pop()
        gone.close()
        for _, reader, _ in members:
            self.assertEqual(reader.line(), b'* %s left\n' % gone_name)
        log = chat.stderr.decode(errors='replace')
        self.assertNotIn(LB_B1, log, 'the chat server names HAProxy instead of the client')
        self.assertEqual(set(open_peers(chat.stderr)), {source for _, source in sources}, log)


if __name__ == '__main__':
    unittest.main()


class ReadmeExampleTest(unittest.TestCase):
    """The README's HAProxy example is the configuration these tests run."""

    def test_readme_haproxy_example_is_the_tested_config(self):
        with open(os.path.join(REPO_ROOT, 'README.md'), encoding='utf-8') as f:
            text = f.read()
        block = text.split('<!-- haproxy-example -->\n```\n', 1)[1].split('```\n', 1)[0]
        servers = [('b1', B1, ECHO_PORT), ('b2', B2, ECHO_PORT)]
        self.assertEqual(block, haproxy_config([('echo', FRONT_ECHO, 'roundrobin', servers)], False))
        self.assertIn(f'sockit serve -v -s echo tcp://{B1}:{ECHO_PORT},proxy=v2\n', text)
        self.assertIn(f'listening on tcp://{B1}:{ECHO_PORT},proxy=v2\n', text)
