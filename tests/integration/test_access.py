"""Black-box integration tests for access control and limits in `sockit serve`: `--allow` and
`--deny` (CIDR blocks, uid:N, gid:N), `--max-per-source N`, and `--user USER[:GROUP]`, on TCP,
UNIX stream, UDP and UNIX datagram endpoints, and with a PROXY header naming the peer.

Clients are on 127.0.0.1, ::1 (when the host has it) and UNIX paths in a temporary directory;
addresses from the documentation ranges only ever appear inside PROXY headers.

    cd tests/integration && SOCKIT=build/sockit python3 -m unittest test_access -v
"""

import grp
import os
import pwd
import socket
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401
from proxy_helpers import *  # noqa: F401,F403

DGRAM_SILENCE = 0.5     # seconds a refused datagram's (absent) reply is waited for


def served(sock, payload=b'ping\n', timeout=2.0):
    """True when an echo server answers payload on sock, False when it closes (EOF or reset)."""
    try:
        sock.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        return False
    got, how = b'', None
    deadline = time.monotonic() + timeout
    while len(got) < len(payload):
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(len(payload) - len(got))
        except ConnectionResetError:
            chunk = b''
        except socket.timeout:
            raise AssertionError(f'neither an answer nor a close within {timeout}s: {got!r}') from None
        if not chunk:
            if got:
                raise AssertionError(f'closed after a partial answer {got!r}')
            return False
        got += chunk
    if got != payload:
        raise AssertionError(f'answer {got!r} instead of {payload!r}')
    return True


def nobody():
    try:
        return pwd.getpwnam('nobody')
    except KeyError:
        raise unittest.SkipTest('no user nobody') from None


def proc_status(pid):
    """{field: value} of /proc/PID/status."""
    with open(f'/proc/{pid}/status') as f:
        return dict(line.rstrip('\n').split(':\t', 1) for line in f if ':\t' in line)


class AccessTest(ProxyTest):

    def echo(self, *endpoints, opts=()):
        return self.serve(*endpoints, opts=['-s', 'echo', *opts])

    def client(self, server, i=0, family=None, addr=None):
        """A stream client of endpoint i (optionally to another address on the same port)."""
        if addr is None:
            return self.pconnect(server, i=i)
        s = socket.socket(family, socket.SOCK_STREAM)
        server.clients.append(s)
        s.settimeout(TIMEOUT)
        s.connect(addr)
        return s

    def assertServed(self, sock, what=''):
        self.assertTrue(served(sock), f'{what}: refused, expected to be served')

    def assertNotServed(self, sock, what=''):
        self.assertTrue(closed_at_once(sock), f'{what}: expected to be closed at once, unread')

    def poll_served(self, connect, what, timeout=TIMEOUT):
        """Connects (connect()) again and again until one is served; fails after timeout."""
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            s = connect()
            if served(s):
                return s
            s.close()
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.fail(f'{what}: never served again within {timeout}s')


# --------------------------------------------------------------------------- CIDR rules

class CidrTest(AccessTest):

    def test_deny_refuses_at_once(self):
        server = self.echo('tcp://127.0.0.1:0', opts=['--deny', '127.0.0.1', '-v'])
        s = self.client(server)
        port = s.getsockname()[1]
        t0 = time.monotonic()
        self.assertNotServed(s, 'a silent client')
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertFalse(served(self.client(server)), 'a client that sends')
        line = f'sockit: refused tcp://127.0.0.1:{port}: access rules\n'.encode()
        self.assertTrue(server.wait_stderr(lambda e: line in e), server.stderr)
        self.assertTrue(process_alive(server.pid))

    def test_allow_and_deny_on_tcp(self):
        cases = [
            (['--allow', '10.0.0.0/8'], False),
            (['--allow', '127.0.0.0/8'], True),
            (['--allow', '127.0.0.1/32'], True),
            (['--allow', '127.0.0.2'], False),
            (['--allow', '0.0.0.0/0'], True),
            (['--allow', '::/0'], False),                       # IPv6 rules name IPv6 peers only
            (['--allow', '::ffff:127.0.0.0/104'], True),        # an IPv4-mapped block is IPv4
            (['--allow', '127.0.0.0/8', '--deny', '127.0.0.1'], False),     # deny wins
            (['--deny', '127.0.0.1', '--allow', '127.0.0.1'], False),
            (['--allow', '10.0.0.0/8', '--allow', '127.0.0.1'], True),      # repeatable
            (['--deny', '10.0.0.0/8', '--deny', '127.0.0.0/8'], False),
            (['--deny', '10.0.0.0/8'], True),
            (['--deny', '::1/128'], True),
        ]
        for opts, ok in cases:
            with self.subTest(opts=opts):
                server = self.echo('tcp://127.0.0.1:0', opts=opts)
                s = self.client(server)
                if ok:
                    self.assertServed(s)
                else:
                    self.assertNotServed(s)

    @unittest.skipUnless(HAVE_IPV6, 'no IPv6 loopback')
    def test_ipv6_loopback(self):
        for opts, v6_ok, v4_ok in ((['--deny', '::1/128'], False, True), (['--allow', '::1'], True, False),
                                   (['--deny', '::/0'], False, True)):
            with self.subTest(opts=opts):
                server = self.echo('tcp://[::1]:0', 'tcp://127.0.0.1:0', opts=opts)
                self.assertEqual(served(self.client(server, 0)), v6_ok, '::1 client')
                self.assertEqual(served(self.client(server, 1)), v4_ok, '127.0.0.1 client')

    def test_ipv4_client_of_a_dual_stack_listener(self):
        for opts, v4_ok, v6_ok in ((['--deny', '127.0.0.1'], False, True),
                                   (['--allow', '127.0.0.0/8'], True, False)):
            with self.subTest(opts=opts):
                server = self.echo('tcp://:0', opts=opts)
                port = ep_port(server.endpoints[0])
                v4 = self.client(server, family=socket.AF_INET, addr=('127.0.0.1', port))
                self.assertEqual(served(v4), v4_ok, f'127.0.0.1 client of {server.endpoints[0]}')
                if HAVE_IPV6 and server.endpoints[0].startswith('tcp://[::]:'):
                    v6 = self.client(server, family=socket.AF_INET6, addr=('::1', port))
                    self.assertEqual(served(v6), v6_ok, '::1 client')

    def test_rules_on_a_proxy_listener_apply_to_the_header_address(self):
        server = self.echo('tcp://127.0.0.1:0,proxy=v2', 'tcp://127.0.0.1:0,proxy=v1',
                           opts=['--deny', '203.0.113.0/24', '--deny', '2001:db8:bad::/48',
                                 '--deny', '127.0.0.1', '-v'])
        for i, header, ok in ((0, v2('203.0.113.7', '10.0.0.1', 4242, 80), False),
                              (0, v2('198.51.100.1', '10.0.0.1', 4242, 80), True),
                              (0, v2('2001:db8:bad::1', '2001:db8::2', 1, 2), False),
                              (0, v2('2001:db8:900d::1', '2001:db8::2', 1, 2), True),
                              (0, v2('::ffff:203.0.113.7', '::1', 1, 2), False),   # IPv4-mapped
                              (0, V2_LOCAL, False),             # the socket's own peer: 127.0.0.1
                              (1, v1('203.0.113.200', '10.0.0.1', 1, 80), False),
                              (1, v1('198.51.100.1', '10.0.0.1', 1, 80), True),
                              (1, V1_UNKNOWN, False)):
            with self.subTest(header=header):
                s = self.pconnect(server, header, i)
                self.assertEqual(served(s), ok)
        line = b'sockit: refused tcp://203.0.113.7:4242: access rules\n'
        self.assertTrue(server.wait_stderr(lambda e: line in e), server.stderr)

    def test_allow_on_a_proxy_listener(self):
        server = self.echo('tcp://127.0.0.1:0,proxy=any', opts=['--allow', '198.51.100.0/24'])
        self.assertServed(self.pconnect(server, v1('198.51.100.77', '10.0.0.1', 1, 2)))
        self.assertServed(self.pconnect(server, v2('198.51.100.78', '10.0.0.1', 1, 2)))
        self.assertServed(self.pconnect(server, v1('::ffff:198.51.100.79', '::1', 1, 2)))
        self.assertFalse(served(self.pconnect(server, v2('203.0.113.7', '10.0.0.1', 1, 2))))
        self.assertFalse(served(self.pconnect(server, V2_LOCAL)), 'LOCAL: 127.0.0.1 is not allowed')

    def test_malformed_rules_are_usage_errors(self):
        cases = [
            ('--allow', '10.0.0.0/33', 'prefix length out of range 0..32'),
            ('--deny', '1.2.3', 'not an IP address, CIDR block, uid:N or gid:N'),
            ('--allow', 'uid:x', 'uid is not a decimal number'),
            ('--allow', '', 'empty rule'),
            ('--deny', 'gid:', 'no number after gid:'),
            ('--allow', 'uid:01', 'uid with a leading zero'),
            ('--allow', 'uid:4294967295', 'uid out of range 0..4294967294'),
            ('--deny', '10.0.0.1/8', 'host bits set past the prefix length'),
            ('--deny', '10.0.0.0/', "no prefix length after '/'"),
            ('--deny', '10.0.0.0/8/8', "more than one '/'"),
            ('--deny', '/8', "no address before '/'"),
            ('--deny', 'localhost/8', "not an IP address before '/'"),
            ('--allow', '::1/129', 'prefix length out of range 0..128'),
            ('--allow', '[::1]', 'not an IP address, CIDR block, uid:N or gid:N'),
            ('--allow', '10.0.0.0/08', 'prefix length with a leading zero'),
        ]
        for opt, rule, why in cases:
            with self.subTest(opt=opt, rule=rule):
                r = run_sockit(['serve', '-s', 'echo', opt, rule, 'tcp://127.0.0.1:0'])
                self.assertExit(r, 2, f'sockit: {opt} {rule}: {why}')


# --------------------------------------------------------------------------- UNIX, datagrams

class UnixAndDgramTest(AccessTest):

    def test_uid_and_gid_rules_on_unix(self):
        uid, gid = os.getuid(), os.getgid()
        other = 12345 if uid != 12345 else 12346
        cases = [
            (['--allow', f'uid:{uid}'], True), (['--deny', f'uid:{uid}'], False),
            (['--allow', f'uid:{other}'], False), (['--deny', f'uid:{other}'], True),
            (['--allow', f'gid:{gid}'], True), (['--deny', f'gid:{gid}'], False),
            (['--allow', f'gid:{other}'], False),
            (['--allow', f'uid:{other}', '--allow', f'gid:{gid}'], True),
            (['--allow', f'uid:{uid}', '--deny', f'gid:{gid}'], False),
            (['--deny', '127.0.0.1'], True),                # a CIDR rule does not name a UNIX peer
            (['--allow', '127.0.0.0/8'], False),            # with any --allow only those matching
        ]
        for opts, ok in cases:
            with self.subTest(opts=opts):
                server = self.echo(self.endpoint('unix'), opts=opts)
                self.assertEqual(served(self.client(server)), ok)

    def test_refused_datagrams_get_no_reply(self):
        eps = ['udp://127.0.0.1:0', self.endpoint('unixgram')] + (['udp://[::1]:0'] if HAVE_IPV6 else [])
        server = self.echo(*eps, opts=['--deny', '127.0.0.1'])
        denied = server.dgram(0)
        denied.send(b'from a denied sender')
        for i in range(1, len(eps)):
            with self.subTest(endpoint=server.endpoints[i]):
                self.assertEqual(dgram_request(server.dgram(i), b'allowed'), b'allowed')
        assert_silent(denied, DGRAM_SILENCE)
        denied.send(b'again')
        assert_silent(denied, DGRAM_SILENCE / 2)

    def test_allowed_datagrams_are_answered(self):
        server = self.echo('udp://127.0.0.1:0', opts=['--allow', '127.0.0.0/8', '--deny', '10.0.0.0/8'])
        self.assertEqual(dgram_request(server.dgram(), b'hello'), b'hello')
        refusing = self.echo('udp://127.0.0.1:0', opts=['--allow', '10.0.0.0/8'])
        s = refusing.dgram()
        s.send(b'hello')
        assert_silent(s, DGRAM_SILENCE)


# --------------------------------------------------------------------------- --max-per-source

class PerSourceTest(AccessTest):

    def test_max_per_source_on_tcp(self):
        server = self.echo('tcp://127.0.0.1:0', opts=['--max-per-source', '2', '-v'])
        first, second = self.client(server), self.client(server)
        self.assertServed(first)
        self.assertServed(second)
        extra = self.client(server)
        port = extra.getsockname()[1]
        self.assertNotServed(extra, 'the third connection')
        line = f'sockit: refused tcp://127.0.0.1:{port}: too many connections from this source\n'
        self.assertTrue(server.wait_stderr(lambda e: line.encode() in e), server.stderr)
        self.assertServed(second, 'a held connection after a refusal')
        first.close()
        self.poll_served(lambda: self.client(server), 'after one of the two closed')
        self.assertNotServed(self.client(server), 'a third one again')
        self.assertServed(second)

    def test_max_per_source_counts_the_header_source(self):
        server = self.echo('tcp://127.0.0.1:0,proxy=v2', opts=['--max-per-source', '1'])
        a = self.pconnect(server, v2('203.0.113.7', '10.0.0.1', 1000, 80))
        self.assertServed(a)
        self.assertFalse(served(self.pconnect(server, v2('203.0.113.7', '10.0.0.1', 1001, 80))),
                         'the same source address on another port')
        self.assertFalse(served(self.pconnect(server, v2('::ffff:203.0.113.7', '::1', 1000, 80))),
                         'the same source as an IPv4-mapped IPv6 address')
        b = self.pconnect(server, v2('203.0.113.8', '10.0.0.1', 1000, 80))
        c = self.pconnect(server, v2('2001:db8::7', '2001:db8::1', 1000, 80))
        self.assertServed(b, 'another source')
        self.assertServed(c, 'an IPv6 source')
        a.close()
        self.poll_served(lambda: self.pconnect(server, v2('203.0.113.7', '10.0.0.1', 1002, 80)),
                         '203.0.113.7 after its connection closed')
        self.assertServed(b)

    def test_max_per_source_counts_an_ipv4_client_once_across_listeners(self):
        server = self.echo('tcp://:0', 'tcp://127.0.0.1:0', opts=['--max-per-source', '1'])
        held = self.client(server, 1)
        self.assertServed(held)
        via_dual = self.client(server, family=socket.AF_INET, addr=('127.0.0.1', ep_port(server.endpoints[0])))
        self.assertNotServed(via_dual, f'127.0.0.1 again, through {server.endpoints[0]}')
        self.assertServed(held)

    def test_relay_applies_the_rules(self):
        target = self.echo('tcp://127.0.0.1:0')
        denying = self.relay('tcp://127.0.0.1:0', target.endpoints[0], opts=['--deny', '127.0.0.0/8'])
        self.assertNotServed(self.client(denying), 'relay --deny 127.0.0.0/8')
        limited = self.relay('tcp://127.0.0.1:0,proxy=v1', target.endpoints[0],
                             opts=['--max-per-source', '1', '--allow', '203.0.113.0/24'])
        a = self.pconnect(limited, v1('203.0.113.7', '10.0.0.1', 1, 2))
        self.assertServed(a)
        self.assertFalse(served(self.pconnect(limited, v1('203.0.113.7', '10.0.0.1', 3, 2))), 'second')
        self.assertFalse(served(self.pconnect(limited, v1('198.51.100.1', '10.0.0.1', 1, 2))), 'not allowed')
        self.assertServed(self.pconnect(limited, v1('203.0.113.8', '10.0.0.1', 1, 2)))
        self.assertServed(a)

    def test_max_per_source_on_unix_counts_the_uid(self):
        server = self.echo(self.endpoint('unix'), opts=['--max-per-source', '1'])
        a = self.client(server)
        self.assertServed(a)
        self.assertNotServed(self.client(server), 'a second connection of the same uid')
        a.close()
        self.poll_served(lambda: self.client(server), 'after the first closed')


# --------------------------------------------------------------------------- --user

def privileged_free_port():
    for port in range(1023, 600, -1):       # bounded: at most 423 tries
        if port_free(port):
            return port
    raise unittest.SkipTest('no free port below 1024')


class UserTest(AccessTest):

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest('--user needs root')
        self.pw = nobody()

    def assertRunsAs(self, pid, uid, gid):
        for task in os.listdir(f'/proc/{pid}/task'):        # every thread
            st = proc_status(f'{pid}/task/{task}')
            self.assertEqual(st['Uid'].split(), [str(uid)] * 4, f'thread {task}')
            self.assertEqual(st['Gid'].split(), [str(gid)] * 4, f'thread {task}')
            self.assertEqual(st['Groups'].strip(), '', f'thread {task}: supplementary groups')

    def test_user_nobody_on_a_privileged_port(self):
        port = privileged_free_port()
        server = self.echo(f'tcp://127.0.0.1:{port}', opts=['--user', 'nobody'])
        self.assertEqual(server.endpoints, [f'tcp://127.0.0.1:{port}'])
        self.assertRunsAs(server.pid, self.pw.pw_uid, self.pw.pw_gid)
        self.assertServed(self.client(server))

    def test_user_and_group(self):
        try:
            gr = grp.getgrnam('nogroup')
        except KeyError:
            self.skipTest('no group nogroup')
        for spec, gid in (('nobody:nogroup', gr.gr_gid), (f'{self.pw.pw_uid}:{gr.gr_gid}', gr.gr_gid),
                          (str(self.pw.pw_uid), self.pw.pw_gid), ('nobody:0', 0)):
            with self.subTest(spec=spec):
                server = self.echo(f'tcp://127.0.0.1:{privileged_free_port()}', opts=['--user', spec])
                self.assertRunsAs(server.pid, self.pw.pw_uid, gid)
                self.assertServed(self.client(server))

    def test_exec_children_run_as_the_user(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--user', 'nobody', '--exec', 'id -u; id -g; id -G'])
        s = self.client(server)
        want = f'{self.pw.pw_uid}\n{self.pw.pw_gid}\n{self.pw.pw_gid}\n'.encode()
        self.assertEqual(recv_until_eof(s), want)

    def test_socket_file_is_removed_at_exit(self):
        # The contract: files the server created are removed when it exits. In a sticky,
        # world-writable directory (as /tmp) the user could remove a file of its own.
        os.chmod(self.tmp, 0o1777)
        path = self.path('dropped.sock')
        server = self.echo(f'unix:{path}', opts=['--user', 'nobody'])
        self.assertServed(self.client(server))
        self.assertEqual(server.stop(), 0)
        self.assertFalse(os.path.exists(path), f'{path} left behind after --user nobody; stderr '
                                               f'{server.stderr!r}')

    def test_unknown_user_or_group_binds_nothing(self):
        port = free_port()
        for spec, msg in (('no-such-user-xyz', "no such user 'no-such-user-xyz'"),
                          ('nobody:no-such-group', "no such group 'no-such-group'"),
                          ('no-such-user-xyz:nogroup', "no such user 'no-such-user-xyz'"),
                          (':nogroup', 'expected USER or USER:GROUP')):
            with self.subTest(spec=spec):
                r = run_sockit(['serve', '-s', 'echo', '--user', spec, f'tcp://127.0.0.1:{port}'])
                self.assertExit(r, 1, f'sockit: --user {spec}: {msg}')
                self.assertTrue(port_free(port), 'the port was left bound')


if __name__ == '__main__':
    unittest.main()
