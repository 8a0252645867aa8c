"""Black-box tests of the environment `sockit serve --exec` gives its children (SOCKIT_PROTO,
SOCKIT_PEER*, SOCKIT_LOCAL*, the credentials of a UNIX peer), --exec-timeout on streams, and a
command that exits without reading its input (the client gets the reply and a clean EOF, no reset).

Run from the repository root: SOCKIT=build/sockit python3 -m unittest tests/integration/test_exec_env.py
"""

import os
import re
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import *  # noqa: E402,F401,F403

DUMP = 'env | grep ^SOCKIT_ | sort'
NAMES = ('SOCKIT_PROTO', 'SOCKIT_PEER', 'SOCKIT_LOCAL', 'SOCKIT_PEER_ADDR', 'SOCKIT_PEER_PORT',
         'SOCKIT_LOCAL_ADDR', 'SOCKIT_LOCAL_PORT', 'SOCKIT_PEER_UID', 'SOCKIT_PEER_GID',
         'SOCKIT_PEER_PID')


def parse_env(data):
    """The NAME=VALUE lines of the dump, as a dict (each name once)."""
    env = {}
    for line in data.decode().splitlines():
        name, _, value = line.partition('=')
        if name in env:
            raise AssertionError(f'{name} twice in {data!r}')
        env[name] = value
    return env


def stale_env():
    """The server's environment with every variable sockit sets already set, to stale values."""
    env = server_env()
    for name in NAMES:
        env[name] = 'stale'
    return env


class ExecEnvTest(ServeTest):

    def stream_env(self, server, i=0):
        with server.connect(i) as s:
            local_addr = s.getsockname()
            return parse_env(recv_until_eof(s)), local_addr

    def assertInet(self, env, proto, client, server_addr):
        """The variables of an IP peer at client (the client's own address) and server_addr."""
        host, port = client[:2]
        bracket = f'[{host}]' if ':' in host else host
        shost, sport = server_addr[:2]
        sbracket = f'[{shost}]' if ':' in shost else shost
        self.assertEqual(env, {
            'SOCKIT_PROTO': proto,
            'SOCKIT_PEER': f'{proto}://{bracket}:{port}',
            'SOCKIT_LOCAL': f'{proto}://{sbracket}:{sport}',
            'SOCKIT_PEER_ADDR': host,
            'SOCKIT_PEER_PORT': str(port),
            'SOCKIT_LOCAL_ADDR': shost,
            'SOCKIT_LOCAL_PORT': str(sport),
        })

    # -- streams

    def test_tcp_peer_and_local(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', DUMP])
        env, client = self.stream_env(server)
        self.assertInet(env, 'tcp', client, server.address(0)[2])

    @unittest.skipUnless(HAVE_IPV6, 'no IPv6 loopback')
    def test_tcp6_peer_and_local(self):
        server = self.serve('tcp://[::1]:0', opts=['--exec', DUMP])
        env, client = self.stream_env(server)
        self.assertInet(env, 'tcp', client, server.address(0)[2])

    @unittest.skipUnless(HAVE_IPV6, 'no IPv6 loopback')
    def test_ipv4_client_of_a_dual_stack_listener_is_shown_as_ipv4(self):
        server = self.serve('tcp://:0', opts=['--exec', DUMP])
        with socket.create_connection(('127.0.0.1', server.port(0)), timeout=TIMEOUT) as s:
            client = s.getsockname()
            env = parse_env(recv_until_eof(s))
        self.assertEqual(env['SOCKIT_PEER_ADDR'], '127.0.0.1')
        self.assertEqual(env['SOCKIT_PEER_PORT'], str(client[1]))
        self.assertEqual(env['SOCKIT_PEER'], f'tcp://127.0.0.1:{client[1]}')
        self.assertEqual(env['SOCKIT_LOCAL_ADDR'], '127.0.0.1')

    def test_unix_peer_credentials_are_the_clients(self):
        path = self.path('s.sock')
        server = self.serve('unix:' + path, opts=['--exec', DUMP])
        env, _ = self.stream_env(server)
        self.assertEqual(env, {
            'SOCKIT_PROTO': 'unix',
            'SOCKIT_PEER': 'unix:',
            'SOCKIT_LOCAL': 'unix:' + path,
            'SOCKIT_PEER_ADDR': '',
            'SOCKIT_LOCAL_ADDR': path,
            'SOCKIT_PEER_UID': str(os.getuid()),
            'SOCKIT_PEER_GID': str(os.getgid()),
            'SOCKIT_PEER_PID': str(os.getpid()),
        })

    def test_unix_peer_bound_to_a_path(self):
        path, client_path = self.path('s.sock'), self.path('c.sock')
        server = self.serve('unix:' + path, opts=['--exec', DUMP])
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.bind(client_path)
            s.connect(path)
            env = parse_env(recv_until_eof(s))
        self.assertEqual(env['SOCKIT_PEER'], 'unix:' + client_path)
        self.assertEqual(env['SOCKIT_PEER_ADDR'], client_path)
        self.assertEqual(env['SOCKIT_PEER_PID'], str(os.getpid()))

    def test_unix_paths_with_a_comma_or_two_leading_slashes(self):
        # The ADDR variables hold the path as the endpoint writes it: a comma escaped (not the
        # end of the value), no "//" of the long form added to a path that begins with "//".
        path = self.path('s,x.sock')
        server = self.serve('unix:' + path.replace(',', '\\,'), opts=['--exec', DUMP])
        for client_path, shown in ((self.path('c,y\n'), self.path('c\\,y\\x0a')),
                                   ('/' + self.path('c2'), '/' + self.path('c2'))):
            with self.subTest(client=client_path), socket.socket(socket.AF_UNIX) as s:
                s.settimeout(TIMEOUT)
                s.bind(client_path)
                s.connect(path)
                env = parse_env(recv_until_eof(s))
                self.assertEqual(env['SOCKIT_PEER_ADDR'], shown)
                self.assertEqual(env['SOCKIT_LOCAL_ADDR'], path.replace(',', '\\,'))

    def test_proxy_header_names_the_peer(self):
        server = self.serve('tcp://127.0.0.1:0,proxy=v1', opts=['--exec', DUMP],
                            env=stale_env())
        port = int(server.endpoints[0].split(',')[0].rsplit(':', 1)[1])
        with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as s:
            s.sendall(b'PROXY TCP4 203.0.113.7 192.0.2.1 4242 443\r\n')
            env = parse_env(recv_until_eof(s))
        self.assertEqual(env, {
            'SOCKIT_PROTO': 'tcp',
            'SOCKIT_PEER': 'tcp://203.0.113.7:4242',
            'SOCKIT_LOCAL': 'tcp://192.0.2.1:443',
            'SOCKIT_PEER_ADDR': '203.0.113.7',
            'SOCKIT_PEER_PORT': '4242',
            'SOCKIT_LOCAL_ADDR': '192.0.2.1',
            'SOCKIT_LOCAL_PORT': '443',
        })

    def test_proxy_header_on_a_unix_listener_gives_no_credentials(self):
        path = self.path('p.sock')
        self.serve(f'unix:{path},proxy=v1', opts=['--exec', DUMP])
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect(path)
            s.sendall(b'PROXY TCP4 203.0.113.7 192.0.2.1 4242 443\r\n')
            env = parse_env(recv_until_eof(s))
        self.assertEqual(env['SOCKIT_PEER_ADDR'], '203.0.113.7')
        self.assertEqual(env['SOCKIT_PEER_PORT'], '4242')
        for name in ('SOCKIT_PEER_UID', 'SOCKIT_PEER_GID', 'SOCKIT_PEER_PID'):
            self.assertNotIn(name, env)

    def test_stale_variables_of_the_server_never_reach_a_child(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', DUMP], env=stale_env())
        env, client = self.stream_env(server)
        self.assertInet(env, 'tcp', client, server.address(0)[2])
        self.assertNotIn('stale', env.values())

    def test_other_variables_are_passed_on(self):
        env = server_env()
        env['SOCKIT_OTHER'] = 'kept'
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', DUMP], env=env)
        got, _ = self.stream_env(server)
        self.assertEqual(got['SOCKIT_OTHER'], 'kept')

    # -- datagrams

    def test_udp_datagram(self):
        server = self.serve('udp://127.0.0.1:0', opts=['--exec', DUMP], env=stale_env())
        with server.dgram(0) as s:
            env = parse_env(dgram_request(s, b'x'))
            client = s.getsockname()
        self.assertInet(env, 'udp', client, server.address(0)[2])

    @unittest.skipUnless(HAVE_IPV6, 'no IPv6 loopback')
    def test_udp6_datagram(self):
        server = self.serve('udp://[::1]:0', opts=['--exec', DUMP])
        with server.dgram(0) as s:
            env = parse_env(dgram_request(s, b'x'))
            client = s.getsockname()
        self.assertInet(env, 'udp', client, server.address(0)[2])

    def test_unixgram_datagram_has_no_credentials(self):
        path, client_path = self.path('d.sock'), self.path('dc.sock')
        server = self.serve('unixgram:' + path, opts=['--exec', DUMP], env=stale_env())
        with server.dgram(0, bind_path=client_path) as s:
            env = parse_env(dgram_request(s, b'x'))
        self.assertEqual(env, {
            'SOCKIT_PROTO': 'unixgram',
            'SOCKIT_PEER': 'unixgram:' + client_path,
            'SOCKIT_LOCAL': 'unixgram:' + path,
            'SOCKIT_PEER_ADDR': client_path,
            'SOCKIT_LOCAL_ADDR': path,
        })

    # -- limits and the end of a connection

    def test_exec_timeout_kills_a_stream_command(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', 'echo started; sleep 30',
                                                       '--exec-timeout', '0.5'])
        t0 = time.monotonic()
        with server.connect(0) as s:
            self.assertEqual(recv_exactly(s, 8), b'started\n')
            data, _ = read_to_close(s, timeout=5.0)
        self.assertEqual(data, b'')
        self.assertLess(time.monotonic() - t0, 3.0)
        deadline = time.monotonic() + 3.0
        while children(server.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(children(server.pid), [])

    def test_exec_timeout_kills_the_whole_group_of_a_stream_command(self):
        server = self.serve('unix:' + self.path('t.sock'),
                            opts=['--exec', 'sleep 30 & sleep 30', '--exec-timeout', '0.3'])
        t0 = time.monotonic()
        with server.connect(0) as s:
            data, _ = read_to_close(s, timeout=5.0)
        self.assertEqual(data, b'')
        self.assertLess(time.monotonic() - t0, 3.0)
        deadline = time.monotonic() + 3.0
        while descendants(server.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(descendants(server.pid), {})

    def no_reset(self, kind):
        server = self.serve(self.endpoint(kind), opts=['--exec', 'echo hi'])
        t0 = time.monotonic()
        with server.connect(0) as s:
            s.settimeout(10.0)
            try:
                s.sendall(bytes(MIB))
            except (BrokenPipeError, ConnectionResetError) as e:
                self.fail(f'sending failed: {e!r}')
            data, how = read_to_close(s, timeout=10.0)
        self.assertEqual((data, how), (b'hi\n', 'eof'))
        self.assertLess(time.monotonic() - t0, 10.0)

    def test_unread_input_does_not_reset_the_reply_on_tcp(self):
        self.no_reset('tcp')

    def test_unread_input_does_not_reset_the_reply_on_unix(self):
        self.no_reset('unix')

    def test_reply_then_eof_after_a_late_send(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', 'echo hi'])
        with server.connect(0) as s:
            self.assertEqual(recv_exactly(s, 3), b'hi\n')
            s.sendall(b'late data\n' * 1000)
            self.assertEqual(recv_until_eof(s), b'')

    def test_a_client_that_keeps_the_connection_open_is_closed_in_time(self):
        # After the command's exit the server reads the client's input away for 3 s at most: a client
        # that goes on sending and never closes is closed when that bound passes, not before.
        server = self.serve('tcp://127.0.0.1:0', opts=['--exec', 'echo hi', '-v'])
        with server.connect(0) as s:
            s.sendall(b'x' * 100000)
            self.assertEqual(recv_exactly(s, 3), b'hi\n')
            self.assertEqual(read_to_close(s, timeout=5.0), (b'', 'eof'))
            peer = 'tcp://%s:%d' % s.getsockname()
            closed = re.compile(r'close %s on \S+ after (\d+\.\d+) s, ' % re.escape(peer))
            deadline = time.monotonic() + 10.0
            found = None
            while found is None and time.monotonic() < deadline:
                try:
                    s.send(b'y' * 1000)
                except OSError:
                    pass
                server.wait_stderr(lambda err: closed.search(err.decode()), timeout=0.2)
                found = closed.search(server.stderr.decode())
        self.assertIsNotNone(found, server.stderr)
        self.assertGreaterEqual(float(found.group(1)), 3.0, found.group(0))
        self.assertLess(float(found.group(1)), 8.0, found.group(0))
        with server.connect(0) as s2:
            self.assertEqual(recv_until_eof(s2), b'hi\n')

if __name__ == '__main__':
    unittest.main()
