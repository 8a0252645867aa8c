"""Fault tests of `sockit relay`'s limits: datagram flow floods (many source ports, many source
addresses), flows TARGET never answers, replies too long to carry, and the descriptor budget of
stream relays.

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
Everything is on 127.0.0.0/8 or UNIX paths in a temporary directory. Relays under test run with
one worker, so that their datagrams are taken in the order sent: a reply to a probe sent after a
batch of datagrams means the relay has taken the whole batch.

    python3 -m unittest discover -s tests/integration -v
"""

import os
import re
import resource
import socket
import time

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

FD_LIMIT = 256          # RLIMIT_NOFILE (soft and hard) of the relays under a low limit
# The budget of a relay with one worker, as `sockit relay --help` states it: the limit less 64,
# and 4 per worker (36 for streams, whose worker lends up to 16 pipes).
FD_BUDGET = FD_LIMIT - 64 - 4
FLOW_MAX = FD_BUDGET            # flows of its one worker: 188
SOURCE_MAX = FLOW_MAX // 8      # flows of one source address: 23
STREAM_MAX = (FD_LIMIT - 64 - 36) // 2     # relayed stream connections: 78
BATCH = 48              # datagrams between two probes
PROBE_TIMEOUT = 2.0


def low_fd_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def fd_count(pid):
    return len(os.listdir(f'/proc/{pid}/fd'))


def fd_list(pid):
    """What the descriptors of pid are, for failure messages."""
    found = []
    for fd in sorted(os.listdir(f'/proc/{pid}/fd'), key=int):
        try:
            found.append(f'{fd}:{os.readlink(f"/proc/{pid}/fd/{fd}")}')
        except OSError:
            pass
    return ' '.join(found)


def naming_target(test, family=socket.AF_INET, path=None, answer=lambda payload: True):
    """A datagram target answering PAYLOAD with `PAYLOAD via PORT`, PORT being the relay-side port
    of the flow (so that a flow's identity shows), to the payloads answer() accepts."""
    def handler(srv, payload, address):
        if answer(payload):
            srv.sock.sendto(payload + b' via %d' % address[1], address)
    return PyDgramServer(test, handler, family=family, path=path)


class FlowTest(SockitTest):

    def start_relay(self, listen, target, opts=(), preexec=low_fd_limit):
        relay = Server([listen, target], ['--threads', '1', '--drain-timeout', '0.2', '-v', *opts],
                       command='relay', preexec=preexec)
        self._watch(relay)
        self.addCleanup(relay.stop)
        relay.wait_listening(1)
        return relay

    def client(self, relay, host):
        """A UDP socket on host (any 127.0.0.0/8 address), connected to the relay."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        relay.clients.append(s)
        s.bind((host, 0))
        s.connect(relay.address(0)[2])
        return s

    def request(self, sock, payload, timeout=TIMEOUT):
        """Send payload and return the relay-side port named in the exact reply."""
        reply = dgram_request(sock, payload, timeout)
        m = re.fullmatch(re.escape(payload) + rb' via (\d+)', reply)
        self.assertIsNotNone(m, f'reply {reply[:100]!r} to {payload!r}')
        return int(m.group(1))

    def probe(self, sock, n):
        """A reply on sock: the relay has taken every datagram sent before (bounded retries)."""
        for attempt in range(3):
            try:
                return self.request(sock, b'probe %d.%d' % (n, attempt), timeout=PROBE_TIMEOUT)
            except AssertionError:
                continue
        self.fail(f'no reply to probe {n} through the relay')

    def flood(self, relay, hosts, probe):
        """One datagram from a new port on each of hosts, a probe after each BATCH."""
        address = relay.address(0)[2]
        for i, host in enumerate(hosts):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((host, 0))
                s.sendto(b'flood %d' % i, address)
            if i % BATCH == BATCH - 1:
                self.probe(probe, i)
        self.probe(probe, len(hosts))

    def evictions(self, relay):
        """[(at the worker limit, at the source limit)] of the -v eviction lines so far."""
        pattern = (rb'sockit: relay: evicted \d+ datagram flows? \((\d+) at the limit of '
                   rb'%d per worker, (\d+) at the limit of %d per source address\)'
                   % (FLOW_MAX, SOURCE_MAX))
        return [(int(a), int(b)) for a, b in re.findall(pattern, relay.stderr)]


class FloodTest(FlowTest):

    def test_flood_from_one_address_churns_only_its_own_flows(self):
        target = naming_target(self)
        relay = self.start_relay('udp://127.0.0.1:0', target.endpoint())
        probe = self.client(relay, '127.0.0.3')
        self.probe(probe, -1)
        keeper = self.client(relay, '127.0.0.2')
        kept = self.request(keeper, b'keeper')
        baseline = fd_count(relay.pid) - 2     # the worker is running, with two flows
        start = time.monotonic()
        self.flood(relay, ['127.0.0.1'] * (4 * FLOW_MAX), probe)
        # A new client on the flooding address still gets its exact reply ...
        self.request(self.client(relay, '127.0.0.1'), b'after the flood')
        # ... and the flood never reached the other source's flow.
        self.assertEqual(self.request(keeper, b'keeper again'), kept,
                         'the flow of 127.0.0.2 was ended by a flood from 127.0.0.1')
        self.assertEqual(fd_count(relay.pid) - baseline, SOURCE_MAX + 2,
                         'flows held: those of 127.0.0.1 at its share, the keeper and the probe')
        self.assertTrue(relay.wait_stderr(lambda err: self.evictions(relay)),
                        f'no eviction line under -v: {relay.stderr[-600:]!r}')
        lines = self.evictions(relay)
        self.assertEqual([full for full, _ in lines], [0] * len(lines), 'table limit reached')
        self.assertLessEqual(len(lines), time.monotonic() - start + 2, 'evictions not rate-limited')
        self.assertIn(b'sockit: relay: at most %d datagram flows per worker, %d per source address\n'
                      % (FLOW_MAX, SOURCE_MAX), relay.stderr)

    def test_flood_from_many_addresses_leaves_room_for_a_new_client(self):
        target = naming_target(self)
        relay = self.start_relay('udp://127.0.0.1:0', target.endpoint())
        probe = self.client(relay, '127.0.0.3')
        self.probe(probe, -1)
        baseline = fd_count(relay.pid) - 1     # the worker is running, with one flow
        hosts = [f'127.0.0.{10 + i % 200}' for i in range(4 * 200)]  # 4 flows per address
        self.flood(relay, hosts, probe)
        self.request(self.client(relay, '127.0.0.2'), b'after the flood')
        self.assertEqual(fd_count(relay.pid) - baseline, FLOW_MAX,
                         f'flows held: the worker limit; {fd_list(relay.pid)}')
        self.assertTrue(relay.wait_stderr(lambda err: self.evictions(relay)),
                        f'no eviction line under -v: {relay.stderr[-600:]!r}')
        lines = self.evictions(relay)
        self.assertGreater(sum(full for full, _ in lines), 0)
        self.assertEqual(sum(source for _, source in lines), 0, 'a source reached its share')

    def test_unanswered_flows_end_early_answered_ones_stay(self):
        target = naming_target(self, answer=lambda payload: payload.startswith(b'hello'))
        relay = self.start_relay('udp://127.0.0.1:0', target.endpoint(), opts=['--idle-timeout', '30'],
                                 preexec=None)
        keeper = self.client(relay, '127.0.0.2')
        kept = self.request(keeper, b'hello')
        baseline = fd_count(relay.pid) - 1     # the worker is running, with one flow
        address = relay.address(0)[2]
        for i in range(100):            # flows TARGET never answers
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((f'127.0.0.{10 + i % 50}', 0))
                s.sendto(b'junk %d' % i, address)
        sent = time.monotonic()
        self.assertEqual(self.request(keeper, b'hello again'), kept)
        self.assertGreaterEqual(fd_count(relay.pid) - baseline, 1 + 90, 'unanswered flows not held')
        deadline = sent + 10.0          # 5 s of life, a sweep a second, slack
        while fd_count(relay.pid) - baseline > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(fd_count(relay.pid) - baseline, 1,
                         f'flows TARGET never answered still held after 10 s: {fd_list(relay.pid)}')
        self.assertGreater(time.monotonic() - sent, 4.0, 'unanswered flows ended too soon')
        self.assertEqual(self.request(keeper, b'hello once more'), kept, 'the answered flow ended')


class ReplyTest(FlowTest):

    def test_oversized_unixgram_reply_is_dropped_whole(self):
        path = self.path('target.sock')

        def handler(srv, payload, address):
            srv.sock.sendto(os.urandom(100000) if payload == b'big' else payload, address)

        target = PyDgramServer(self, handler, family=socket.AF_UNIX, path=path)
        target.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        relay = self.start_relay('unixgram:' + self.path('front.sock'), f'unixgram:{path}')
        c = relay.dgram(bufsize=1 << 20)
        c.send(b'big')
        # The first datagram back is the small reply: the long one was not cut to 64 KiB.
        self.assertEqual(dgram_request(c, b'small'), b'small')
        assert_silent(c, 0.2)
        self.assertEqual([p for p, _ in target.received], [b'big', b'small'])
        self.assertEqual(target.errors, [])
        line = (b'sockit: relay: dropped 1 reply from unixgram:%s longer than 65536 bytes '
                b'(the largest: 100000 bytes)\n' % path.encode())
        self.assertTrue(relay.wait_stderr(lambda err: line in err),
                        f'no drop line under -v: {relay.stderr[-600:]!r}')


class RestartTest(FlowTest):

    def test_flows_follow_a_unixgram_target_that_restarts(self):
        """A flow's socket stays connected to the target it first reached: when that one goes and
        a new server binds the path, the relay must not go on sending into nothing."""
        path = self.path('target.sock')

        def handler(srv, payload, address):
            srv.sock.sendto(b're:' + payload, address)

        first = PyDgramServer(self, handler, family=socket.AF_UNIX, path=path)
        relay = self.start_relay('udp://127.0.0.1:0', f'unixgram:{path}')
        c = self.client(relay, '127.0.0.1')
        self.assertEqual(dgram_request(c, b'one'), b're:one')
        first.close()
        os.unlink(path)
        PyDgramServer(self, handler, family=socket.AF_UNIX, path=path)
        self.assertEqual(dgram_request(c, b'two'), b're:two')
        self.assertEqual(dgram_request(c, b'three'), b're:three')


class StreamBudgetTest(FlowTest):

    def test_max_conns_defaults_to_the_descriptor_budget(self):
        target = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'])
        relay = Server(['tcp://127.0.0.1:0', target.endpoints[0]], ['--threads', '1'],
                       command='relay', preexec=low_fd_limit)
        self._watch(relay)
        self.addCleanup(relay.stop)
        relay.wait_listening(1)
        held = []
        for i in range(STREAM_MAX):
            c = relay.connect()
            c.sendall(b'conn %d\n' % i)
            self.assertEqual(recv_exactly(c, len(b'conn %d\n' % i)), b'conn %d\n' % i)
            held.append(c)
        self.assertEqual(recv_until_eof(relay.connect()), b'', 'one connection past the budget')
        held.pop().close()
        for _ in range(50):             # once a slot is free a new client is relayed
            c = relay.connect()
            try:
                c.sendall(b'later\n')
                self.assertEqual(recv_exactly(c, 6), b'later\n')
                break
            except (AssertionError, ConnectionResetError, BrokenPipeError):
                c.close()
                time.sleep(0.05)
        else:
            self.fail('no connection relayed after a slot was freed')

    def test_help_states_the_defaults(self):
        result = run_sockit(['relay', '--help'])
        self.assertEqual(result.returncode, 0)
        for text in (b'stream connections: 300 s; datagram flows: 60 s', b'budget / 2',
                     b'less 64, and 4 per', b'(36 for streams', b'budget / workers',
                     b'after 5 s'):
            self.assertIn(text, result.stdout)
