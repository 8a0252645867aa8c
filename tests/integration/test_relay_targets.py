"""Black-box integration tests for `sockit relay LISTEN TARGET...`: several targets, --balance,
failover with back-off, the log of target state, names resolved per connection (--resolve-every).

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
Backends are `sockit serve --exec 'echo NAME'`, so that each reply says which backend answered;
everything is on 127.0.0.x or in a temporary directory.

    cd tests/integration && python3 -m unittest test_relay_targets -v
"""

import os
import shutil
import socket
import subprocess
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

UNSHARE = shutil.which('unshare')


class TargetsTest(SockitTest):

    def relay_to(self, listen, targets, opts=(), prefix=()):
        """A relay from listen to every target, once it is listening."""
        relay = Server([listen, *targets], ['--drain-timeout', '0.2', *opts], command='relay',
                       prefix=prefix)
        self._watch(relay)
        self.addCleanup(relay.stop)
        relay.wait_listening(1)
        return relay

    def backend(self, name, endpoint='tcp://127.0.0.1:0'):
        """A serve that answers every connection (or datagram) with NAME and a newline."""
        return self.serve(endpoint, opts=['--exec', f'echo {name}'])

    def who(self, relay):
        """The name of the backend that answered a new stream client through the relay."""
        with relay.connect() as c:
            return recv_until_eof(c).decode()

    def target_lines(self, relay):
        return [line for line in log_lines(relay.stderr)
                if line.startswith(b'sockit: target ') or line.startswith(b'sockit: connect ')]

    def wait_line(self, relay, line, timeout=TIMEOUT):
        if not relay.wait_stderr(lambda err: line in log_lines(err), timeout):
            self.fail(f'no log line {line!r} within {timeout}s; log: {log_lines(relay.stderr)!r}')


class BalanceTest(TargetsTest):

    def test_roundrobin_over_two_targets_alternates(self):
        a, b = self.backend('A'), self.backend('B')
        relay = self.relay_to('tcp://127.0.0.1:0', [a.endpoints[0], b.endpoints[0]])
        self.assertEqual([self.who(relay) for _ in range(6)], ['A\n', 'B\n'] * 3)
        self.assertEqual(self.target_lines(relay), [])

    def test_roundrobin_over_three_targets_with_workers(self):
        backends = [self.backend(n) for n in 'ABC']
        relay = self.relay_to('tcp://127.0.0.1:0', [s.endpoints[0] for s in backends],
                              opts=['--threads', '3'])
        self.assertEqual(''.join(self.who(relay) for _ in range(9)), 'A\nB\nC\n' * 3)

    def test_roundrobin_between_kinds(self):
        a = self.backend('A', 'unix:' + self.path('a.sock'))
        b = self.backend('B')
        relay = self.relay_to('unix:' + self.path('front.sock'), [a.endpoints[0], b.endpoints[0]])
        self.assertEqual([self.who(relay) for _ in range(4)], ['A\n', 'B\n'] * 2)

    def test_first_uses_only_the_first_while_it_is_up(self):
        a, b = self.backend('A'), self.backend('B')
        relay = self.relay_to('tcp://127.0.0.1:0', [a.endpoints[0], b.endpoints[0]],
                              opts=['--balance', 'first'])
        self.assertEqual([self.who(relay) for _ in range(5)], ['A\n'] * 5)
        a.stop()
        self.assertEqual([self.who(relay) for _ in range(3)], ['B\n'] * 3)
        self.assertEqual(self.target_lines(relay),
                         [f'sockit: target {a.endpoints[0]} down: connection refused (retry in 1 s)'
                          .encode()])


class FailoverTest(TargetsTest):

    def test_refused_target_is_skipped_and_logged_down_once(self):
        a, b = self.backend('A'), self.backend('B')
        dead = f'tcp://127.0.0.1:{free_port()}'
        relay = self.relay_to('tcp://127.0.0.1:0', [a.endpoints[0], dead, b.endpoints[0]])
        # Turns: A, the dead one (so B), B, A, the dead one again (so B), B.
        self.assertEqual(''.join(self.who(relay) for _ in range(6)), 'A\nB\nB\nA\nB\nB\n')
        self.assertEqual(self.target_lines(relay),
                         [f'sockit: target {dead} down: connection refused (retry in 1 s)'.encode()])

    def test_target_comes_back_up_after_the_back_off(self):
        a = self.backend('A')
        port = free_port()
        dead = f'tcp://127.0.0.1:{port}'
        relay = self.relay_to('tcp://127.0.0.1:0', [dead, a.endpoints[0]])
        self.assertEqual(self.who(relay), 'A\n')
        down = f'sockit: target {dead} down: connection refused (retry in 1 s)'.encode()
        self.wait_line(relay, down)
        try:
            self.backend('C', dead)
        except AssertionError:
            self.skipTest(f'port {port} was taken in the meantime')
        up = f'sockit: target {dead} up'.encode()
        answers = set()
        deadline = time.monotonic() + 10
        while up not in log_lines(relay.stderr):
            if time.monotonic() > deadline:
                self.fail(f'{dead} not up again within 10 s; log: {log_lines(relay.stderr)!r}')
            answers.add(self.who(relay))   # every client is served meanwhile
            time.sleep(0.05)
        self.assertLessEqual(answers, {'A\n', 'C\n'})
        self.assertEqual(self.target_lines(relay), [down, up])
        # Up again, it takes its turns.
        got = ''.join(sorted(self.who(relay) for _ in range(4)))
        self.assertEqual(got, 'A\nA\nC\nC\n')

    def test_target_that_times_out_is_skipped(self):
        a = self.backend('A')
        silent = f'tcp://127.0.0.1:{self.full_backlog_port()}'
        relay = self.relay_to('tcp://127.0.0.1:0', [silent, a.endpoints[0]],
                              opts=['--connect-timeout', '0.3', '--balance', 'first'])
        start = time.monotonic()
        self.assertEqual(self.who(relay), 'A\n')
        self.assertGreaterEqual(time.monotonic() - start, 0.3)
        self.assertEqual(self.who(relay), 'A\n')         # down: not waited for again
        self.assertEqual(self.target_lines(relay),
                         [f'sockit: target {silent} down: timed out (retry in 1 s)'.encode()])

    def test_only_one_client_waits_on_the_retry_of_a_silent_target(self):
        # A target that swallows SYNs, first in failover order: once its back-off has passed, one
        # client makes the retry (and waits the connect timeout); the clients that come meanwhile
        # go straight to the next target.
        a = self.backend('A')
        silent = f'tcp://127.0.0.1:{self.full_backlog_port()}'
        relay = self.relay_to('tcp://127.0.0.1:0', [silent, a.endpoints[0]],
                              opts=['--connect-timeout', '3', '--balance', 'first', '--threads', '1'])
        self.assertEqual(self.who(relay), 'A\n')
        self.wait_line(relay, f'sockit: target {silent} down: timed out (retry in 1 s)'.encode())
        time.sleep(1.2)                          # the back-off passes: the next client retries
        probe = relay.connect()                  # accepted first (one worker): it makes the retry
        self.addCleanup(probe.close)
        for _ in range(3):
            start = time.monotonic()
            self.assertEqual(self.who(relay), 'A\n')
            self.assertLess(time.monotonic() - start, 2.0, 'a client waited on the retry')
        self.assertEqual(recv_until_eof(probe).decode(), 'A\n')

    def test_a_name_that_does_not_resolve_at_start_is_down(self):
        a = self.backend('A')
        relay = self.relay_to('tcp://127.0.0.1:0', ['tcp://nonexistent.invalid:80', a.endpoints[0]])
        self.assertEqual(self.target_lines(relay), [b'sockit: target tcp://nonexistent.invalid:80 '
                                                    b'down: name not resolved (retry in 1 s)'])
        self.assertEqual([self.who(relay) for _ in range(3)], ['A\n'] * 3)

    def test_no_target_resolving_at_start_is_exit_1(self):
        result = run_sockit(['relay', 'tcp://127.0.0.1:0', 'tcp://nonexistent.invalid:80',
                             'tcp://nonexistent.invalid:81'])
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertTrue(result.stderr.endswith(
            b'\nsockit: resolve tcp://nonexistent.invalid:81: name not resolved\n'), result.stderr)

    def test_all_targets_down_closes_the_client_and_the_relay_goes_on(self):
        p1, p2 = free_port(), free_port()
        t1, t2 = f'tcp://127.0.0.1:{p1}', f'tcp://127.0.0.1:{p2}'
        relay = self.relay_to('tcp://127.0.0.1:0', [t1, t2])
        self.assertEqual(read_to_close(relay.connect()), (b'', 'eof'))
        self.wait_line(relay, f'sockit: connect {t2}: connection refused'.encode())
        self.assertEqual(self.target_lines(relay),
                         [f'sockit: target {t1} down: connection refused (retry in 1 s)'.encode(),
                          f'sockit: target {t2} down: connection refused (retry in 1 s)'.encode(),
                          f'sockit: connect {t2}: connection refused'.encode()])
        # Both down: each is still tried rather than the client refused without a try.
        self.assertEqual(read_to_close(relay.connect()), (b'', 'eof'))
        self.assertIsNone(relay.proc.poll(), 'relay exited')
        try:
            self.backend('B', t2)
        except AssertionError:
            self.skipTest(f'port {p2} was taken in the meantime')
        self.assertEqual(self.who(relay), 'B\n')
        self.wait_line(relay, f'sockit: target {t2} up'.encode())

    def test_log_json_lines_of_target_state(self):
        a = self.backend('A')
        dead = f'tcp://127.0.0.1:{free_port()}'
        relay = self.relay_to('tcp://127.0.0.1:0', [dead, a.endpoints[0]], opts=['--log-json'])
        self.assertEqual(self.who(relay), 'A\n')
        want = (b'"event":"target_down","peer":"' + dead.encode() +
                b'","reason":"connection refused","message":"target ' + dead.encode() +
                b' down: connection refused (retry in 1 s)","warning":true}')
        if not relay.wait_stderr(lambda err: want in err):
            self.fail(f'no JSON target_down line; stderr {relay.stderr!r}')
        lines = [line for line in relay.stderr.splitlines() if b'target_' in line]
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], rb'^\{"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",')


class ReadmeTest(TargetsTest):

    def connect_answer(self, relay):
        result, _ = self.connect_run([relay.endpoints[0]])
        self.assertEqual((result.returncode, result.stderr), (0, b''))
        return result.stdout

    def test_two_targets_and_failover(self):
        # README, "sockit relay": two `serve --exec 'echo ...'`, a relay to both, `sockit connect`
        # four times with the first backend killed after two (ports chosen here, not 9001/9002).
        one, two = self.backend('one'), self.backend('two')
        relay = self.relay_to('tcp://127.0.0.1:0', [one.endpoints[0], two.endpoints[0]])
        self.assertEqual(self.connect_answer(relay), b'one\n')
        self.assertEqual(self.connect_answer(relay), b'two\n')
        one.stop()
        self.assertEqual(self.connect_answer(relay), b'two\n')
        self.assertEqual(self.connect_answer(relay), b'two\n')
        self.assertEqual(self.target_lines(relay),
                         [f'sockit: target {one.endpoints[0]} down: connection refused (retry in 1 s)'
                          .encode()])


class DatagramTest(TargetsTest):

    def test_roundrobin_over_two_udp_backends(self):
        a, b = self.backend('A', 'udp://127.0.0.1:0'), self.backend('B', 'udp://127.0.0.1:0')
        relay = self.relay_to('udp://127.0.0.1:0', [a.endpoints[0], b.endpoints[0]])
        got = [dgram_request(relay.dgram(), b'who\n') for _ in range(4)]
        self.assertEqual(got, [b'A\n', b'B\n', b'A\n', b'B\n'])

    def test_refused_udp_target_is_down_for_new_flows(self):
        a = self.backend('A', 'udp://127.0.0.1:0')
        dead = f'udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}'
        relay = self.relay_to('udp://127.0.0.1:0', [dead, a.endpoints[0]])
        lost = relay.dgram()
        lost.send(b'to nobody\n')                     # the first flow goes to the dead target
        self.wait_line(relay, f'sockit: target {dead} down: connection refused (retry in 1 s)'
                       .encode())
        # Within the back-off, every new flow goes to A.
        self.assertEqual([dgram_request(relay.dgram(), b'who\n') for _ in range(3)], [b'A\n'] * 3)
        # And the refused client, sending again, gets a flow to A.
        self.assertEqual(dgram_request(lost, b'again\n'), b'A\n')


class TLSTest(TargetsTest):

    def setUp(self):
        super().setUp()
        from tls_helpers import certs
        self.certs = certs()

    def tls_backend(self, name, cert='server'):
        c = self.certs
        ep = f'tls://127.0.0.1:0,cert={getattr(c, cert + "_pem")},key={getattr(c, cert + "_key")}'
        return self.serve(ep, opts=['--exec', f'echo {name}'])

    def by_name(self, server):
        """The backend as a TLS target named localhost, checked against the test CA."""
        port = server.endpoints[0].rsplit(':', 1)[1]
        return f'tls://localhost:{port},ca={self.certs.ca_pem}'

    def test_failover_between_tls_targets_by_name(self):
        wrong, good = self.tls_backend('W', 'wronghost'), self.tls_backend('G')
        dead = f'tls://localhost:{free_port()},ca={self.certs.ca_pem}'
        relay = self.relay_to('tcp://127.0.0.1:0', [dead, self.by_name(wrong), self.by_name(good)],
                              opts=['--balance', 'first'])
        self.assertEqual([self.who(relay) for _ in range(3)], ['G\n'] * 3)
        downs = [line for line in self.target_lines(relay) if b' down: ' in line]
        self.assertEqual(len(downs), 2, downs)
        self.assertTrue(downs[0].startswith(f'sockit: target {dead.split(",")[0]} down: '
                                            .encode()), downs)
        self.assertIn(b'certificate verify failed', downs[1])

    def test_roundrobin_over_tls_targets(self):
        a, b = self.tls_backend('A'), self.tls_backend('B')
        relay = self.relay_to('tcp://127.0.0.1:0', [self.by_name(a), self.by_name(b)])
        self.assertEqual([self.who(relay) for _ in range(4)], ['A\n', 'B\n'] * 2)


class UsageTest(TargetsTest):

    def run_relay(self, args):
        try:
            return run_sockit(['relay', *args])
        except subprocess.TimeoutExpired:
            self.fail(f'sockit relay {args} did not exit')

    def test_a_target_equal_to_listen_among_several(self):
        r = self.run_relay(['tcp://127.0.0.1:9000', 'tcp://127.0.0.1:9001', 'tcp://127.0.0.1:9000'])
        self.assertExit(r, 2, 'sockit: tcp://127.0.0.1:9000: the relay would connect to itself')
        p = self.path('front.sock')
        r = self.run_relay([f'unix:{p}', 'unix:' + self.path('b.sock'), f'unix:{p}'])
        self.assertExit(r, 2, f'sockit: unix:{p}: the relay would connect to itself')
        self.assertFalse(os.path.lexists(p), 'socket file left behind')

    def test_port_0_among_several(self):
        r = self.run_relay(['udp://127.0.0.1:0', 'udp://127.0.0.1:9', 'udp://127.0.0.1:0'])
        self.assertExit(r, 2, 'sockit: udp://127.0.0.1:0: port 0 is no target')

    def test_stream_and_datagram_targets_do_not_mix(self):
        r = self.run_relay(['tcp://127.0.0.1:0', 'tcp://127.0.0.1:9', 'udp://127.0.0.1:9'])
        self.assertExit(r, 2, 'sockit: relay: udp://127.0.0.1:9: LISTEN and TARGET must both be '
                              'stream or both datagram endpoints')

    def test_bad_balance(self):
        for value in ('bogus', '', 'RoundRobin'):
            with self.subTest(value=value):
                r = self.run_relay(['--balance', value, 'tcp://127.0.0.1:0', 'tcp://127.0.0.1:9'])
                self.assertExit(r, 2, f"sockit: relay: --balance: unknown policy '{value}' "
                                      '(roundrobin or first)')

    def test_bad_resolve_every(self):
        for value in ('often', '-1'):
            with self.subTest(value=value):
                r = self.run_relay(['--resolve-every', value, 'tcp://127.0.0.1:0',
                                    'tcp://127.0.0.1:9'])
                self.assertExit(r, 2, f"sockit: --resolve-every: expected seconds 0..1000000, "
                                      f"got '{value}'")

    def test_help_lists_the_options_with_defaults(self):
        r = run_sockit(['relay', '--help'])
        self.assertEqual(r.returncode, 0)
        self.assertIn(b'usage: sockit relay [OPTIONS] LISTEN TARGET...\n', r.stdout)
        self.assertIn(b'--balance POLICY   roundrobin (default) or first', r.stdout)
        self.assertIn(b'(default 0: look it up for each new connection)', r.stdout)
        self.assertIn(b'back-off of 1 s, doubled by each failed\nretry up to 30 s', r.stdout)


class MetricsTest(TargetsTest):

    def scrape(self, endpoint):
        _, _, addr = endpoint_address(endpoint)
        with socket.create_connection(addr, timeout=TIMEOUT) as c:
            c.sendall(b'GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n')
            return recv_until_eof(c).decode()

    def test_a_series_per_target_and_an_up_gauge(self):
        a = self.backend('A')
        dead = f'tcp://127.0.0.1:{free_port()}'
        relay = self.relay_to('tcp://127.0.0.1:0', [a.endpoints[0], dead],
                              opts=['--metrics', 'tcp://127.0.0.1:0'])
        metrics = relay.wait_metrics()
        self.assertEqual([self.who(relay) for _ in range(2)], ['A\n', 'A\n'])
        body = self.scrape(metrics)
        for line in (f'sockit_relay_target_connects_total{{target="{a.endpoints[0]}"}} 2',
                     f'sockit_relay_target_connects_total{{target="{dead}"}} 0',
                     f'sockit_relay_target_connect_failures_total{{target="{a.endpoints[0]}"}} 0',
                     f'sockit_relay_target_connect_failures_total{{target="{dead}"}} 1',
                     '# TYPE sockit_relay_target_up gauge',
                     f'sockit_relay_target_up{{target="{a.endpoints[0]}"}} 1',
                     f'sockit_relay_target_up{{target="{dead}"}} 0'):
            self.assertIn('\n' + line + '\n', body)


HOSTS_NAME = 'sockit-relay-target.test'


@unittest.skipIf(UNSHARE is None, 'unshare(1) not found')
class ResolveTest(TargetsTest):
    """The relay runs in a mount namespace of its own whose /etc/hosts is a file the test
    rewrites (in place) between connections: the name truly resolves to another address."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest('needs root for a private mount namespace (unshare -m)')
        self.hosts = self.path('hosts')
        self.point_to('127.0.0.2')
        probe = subprocess.run([UNSHARE, '-m', 'sh', '-c', 'mount --bind "$0" /etc/hosts && '
                                'getent hosts ' + HOSTS_NAME, self.hosts],
                               capture_output=True, timeout=RUN_TIMEOUT)
        if probe.returncode != 0 or not probe.stdout.startswith(b'127.0.0.2'):
            self.skipTest(f'cannot bind-mount /etc/hosts in a mount namespace: {probe.stderr!r}')

    def point_to(self, address):
        with open(self.hosts, 'w') as f:             # the same file: the bind mount sees it
            f.write(f'127.0.0.1 localhost\n{address} {HOSTS_NAME}\n')

    def backends(self):
        a = self.backend('A', 'tcp://127.0.0.2:0')
        port = a.port()
        try:
            self.backend('B', f'tcp://127.0.0.3:{port}')
        except AssertionError:
            self.skipTest(f'port {port} is taken on 127.0.0.3')
        return port

    def relay_by_name(self, port, opts=(), targets=None):
        prefix = [UNSHARE, '-m', 'sh', '-c', 'mount --bind "$0" /etc/hosts && exec "$@"',
                  self.hosts]
        return self.relay_to('tcp://127.0.0.1:0', targets or [f'tcp://{HOSTS_NAME}:{port}'],
                             opts=opts, prefix=prefix)

    def test_each_connection_resolves_again(self):
        relay = self.relay_by_name(self.backends())
        self.assertEqual(self.who(relay), 'A\n')
        self.point_to('127.0.0.3')
        self.assertEqual(self.who(relay), 'B\n')
        self.assertEqual(self.who(relay), 'B\n')
        self.point_to('127.0.0.2')
        self.assertEqual(self.who(relay), 'A\n')

    def test_resolve_every_reuses_an_answer(self):
        relay = self.relay_by_name(self.backends(), opts=['--resolve-every', '1.5'])
        self.assertEqual(self.who(relay), 'A\n')
        self.point_to('127.0.0.3')
        started = time.monotonic()
        self.assertEqual(self.who(relay), 'A\n')         # the answer of the start, still young
        if time.monotonic() - started > 1.0:
            self.skipTest('too slow to see the answer reused')
        deadline = time.monotonic() + 10
        while self.who(relay) != 'B\n':
            if time.monotonic() > deadline:
                self.fail('the name was not looked up again after --resolve-every')
            time.sleep(0.1)
        self.assertGreaterEqual(time.monotonic() - started, 1.0)

    def test_a_name_that_stops_resolving_fails_over(self):
        numeric = self.backend('N')
        port = self.backends()
        start = time.monotonic()
        missing = subprocess.run(['getent', 'hosts', 'sockit-missing.test'], capture_output=True,
                                 timeout=RUN_TIMEOUT)
        if missing.returncode == 0 or time.monotonic() - start > 1.0:
            self.skipTest('an unknown name does not fail quickly here')
        name = f'tcp://{HOSTS_NAME}:{port}'
        relay = self.relay_by_name(port, targets=[name, numeric.endpoints[0]],
                                   opts=['--balance', 'first'])
        self.assertEqual(self.who(relay), 'A\n')         # the backend at 127.0.0.2, by name
        with open(self.hosts, 'w') as f:
            f.write('127.0.0.1 localhost\n')
        self.assertEqual(self.who(relay), 'N\n')         # the name fails: the numeric target
        self.assertEqual(self.who(relay), 'N\n')
        downs = [line for line in self.target_lines(relay)
                 if line.startswith(f'sockit: target {name} down: '.encode())]
        self.assertEqual(len(downs), 1, self.target_lines(relay))


if __name__ == '__main__':
    unittest.main()
