"""Black-box integration tests for `sockit bench`.

The binary under test is $SOCKIT (default build/sockit, relative to the repository root).
Targets are `sockit serve -s echo` on every endpoint kind and small Python servers that misbehave
on purpose (a flipped byte, a lost datagram, extra bytes, an early close). Everything is on
127.0.0.1, ::1, UNIX paths in a temporary directory or abstract names carrying the test's pid.
Every bench run has a time limit; a run that does not end by itself is killed and fails the test.

    python3 -m unittest discover -s tests/integration -v
"""

import json
import os
import pty
import re
import select
import socket
import subprocess
import threading
import time
import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

BENCH_TIMEOUT = 5.0     # bound for a bench run that should take well under a second
LATENCY_KEYS = ('p50', 'p90', 'p99', 'p99_9', 'max')
REPORT_KEYS = {'requests', 'errors', 'duration_s', 'requests_per_s', 'mb_per_s', 'mb_per_s_up', 'mb_per_s_down',
               'bytes_sent', 'bytes_received', 'latency_us', 'histogram'}
ALL_KINDS = STREAM_KINDS + DGRAM_KINDS
NUMBER = r'(\d+(?:\.\d+)?)'


class BenchTest(SockitTest):
    """SockitTest plus `sockit bench` runs and checks of their report."""

    def bench(self, args, timeout=BENCH_TIMEOUT):
        """Run `sockit bench ARGS` (stdin /dev/null, stdout and stderr pipes).
        Returns (CompletedProcess, seconds); a run that outlives timeout is killed and fails."""
        start = time.monotonic()
        try:
            result = subprocess.run([SOCKIT, 'bench', *args], stdin=subprocess.DEVNULL,
                                    capture_output=True, timeout=timeout, env=server_env())
        except subprocess.TimeoutExpired as e:
            self.fail(f'sockit bench {" ".join(args)} did not end within {timeout}s; '
                      f'stdout {(e.stdout or b"")[:300]!r}, stderr {(e.stderr or b"")[:300]!r}')
        return result, time.monotonic() - start

    def bench_json(self, args, timeout=BENCH_TIMEOUT):
        """Run `sockit bench --json ARGS`; returns (CompletedProcess, report dict, seconds)."""
        result, seconds = self.bench(['--json', *args], timeout)
        return result, self.report(result), seconds

    def report(self, result):
        """The one JSON object on stdout, checked for its keys, types and percentile order."""
        try:
            report = json.loads(result.stdout)
        except ValueError as e:
            self.fail(f'stdout is not one JSON object ({e}): {result.stdout[:400]!r}, '
                      f'stderr {result.stderr[:300]!r}')
        self.assertIsInstance(report, dict, result.stdout)
        # --rate adds the rate asked and achieved, --merge the count of results merged, TLS its
        # protocol, cipher and resumptions.
        optional = {'rate_asked', 'rate_achieved', 'merged', 'tls_version', 'tls_cipher', 'tls_resumed'}
        self.assertEqual(set(report) - optional, REPORT_KEYS, result.stdout)
        self.assertEqual('rate_asked' in report, 'rate_achieved' in report, result.stdout)
        self.assertIsInstance(report['latency_us'], dict, result.stdout)
        self.assertEqual(set(report['latency_us']), set(LATENCY_KEYS), result.stdout)
        for key in ('requests', 'errors'):
            self.assertIs(type(report[key]), int, f'{key} is not an integer: {result.stdout!r}')
            self.assertGreaterEqual(report[key], 0, result.stdout)
        for key in ('requests', 'errors', 'bytes_sent', 'bytes_received'):
            self.assertIs(type(report[key]), int, f'{key} is not an integer: {result.stdout!r}')
        for key in ('duration_s', 'requests_per_s', 'mb_per_s', 'mb_per_s_up', 'mb_per_s_down'):
            self.assertIn(type(report[key]), (int, float), f'{key} is not a number: {result.stdout!r}')
            self.assertGreaterEqual(report[key], 0, result.stdout)
        latency = [report['latency_us'][k] for k in LATENCY_KEYS]
        for value in latency:
            self.assertIn(type(value), (int, float), f'latency is not a number: {result.stdout!r}')
            self.assertGreaterEqual(value, 0, result.stdout)
        self.assertEqual(latency, sorted(latency), f'p50 <= p90 <= p99 <= p99_9 <= max: {result.stdout!r}')
        # mb_per_s is both directions: up (sent) plus down (received), each printed to 0.001.
        self.assertAlmostEqual(report['mb_per_s'], report['mb_per_s_up'] + report['mb_per_s_down'], delta=0.0021)
        hist = report['histogram']
        self.assertEqual((hist['unit'], hist['sub_bits']), ('us', 7), hist)
        self.assertEqual(sum(c for _, c in hist['counts']), hist['total'], hist)
        self.assertEqual(hist['total'], report['requests'], report)
        self.assertEqual(hist['max'], report['latency_us']['max'], report)
        return report

    def assertSuccess(self, result, report, requests):
        """Exit 0, nothing on stderr, exactly `requests` requests, no errors, a positive rate."""
        self.assertEqual(result.returncode, 0, f'stderr {result.stderr!r}, stdout {result.stdout!r}')
        self.assertEqual(result.stderr, b'')
        self.assertEqual(report['requests'], requests, report)
        self.assertEqual(report['errors'], 0, report)
        self.assertGreater(report['requests_per_s'], 0, report)
        self.assertGreater(report['mb_per_s'], 0, report)
        # An echo: every byte sent came back.
        self.assertEqual(report['bytes_sent'], report['bytes_received'], report)
        self.assertGreater(report['bytes_sent'], 0, report)
        self.assertGreater(report['latency_us']['max'], 0, report)

    def assertBenchFailed(self, result, endpoint):
        """Exit 1 and exactly one stderr line `sockit: bench ENDPOINT: REASON`; returns REASON."""
        self.assertEqual(result.returncode, 1, f'stderr {result.stderr!r}, stdout {result.stdout[:300]!r}')
        prefix = f'sockit: bench {endpoint}: '.encode()
        self.assertTrue(result.stderr.startswith(prefix), f'{result.stderr!r} does not start with {prefix!r}')
        self.assertTrue(result.stderr.endswith(b'\n'), result.stderr)
        self.assertEqual(result.stderr.count(b'\n'), 1, result.stderr)
        reason = result.stderr[len(prefix):-1]
        self.assertNotEqual(reason.strip(), b'', result.stderr)
        return reason

    def echo_server(self, kinds):
        """`sockit serve -s echo` on one endpoint of each kind; returns {kind: endpoint}."""
        server, idx = self.serve_kinds(kinds, opts=['-s', 'echo'])
        return {kind: server.endpoints[i] for kind, i in idx.items()}


# --------------------------------------------------------------------------- against sockit serve -s echo

class EchoTest(BenchTest):

    def test_json_report_on_every_endpoint_kind(self):
        endpoints = self.echo_server(ALL_KINDS)
        for kind in ALL_KINDS:
            with self.subTest(kind=kind):
                result, report, _ = self.bench_json(['-n', '2000', '-c', '4', endpoints[kind]])
                self.assertSuccess(result, report, 2000)
                self.assertGreater(report['duration_s'], 0, report)

    def test_request_rate_matches_count_and_duration(self):
        # requests_per_s is requests / duration_s (duration_s printed with at least ms resolution).
        endpoints = self.echo_server(['tcp'])
        result, report, seconds = self.bench_json(['-n', '2000', '-c', '4', endpoints['tcp']])
        self.assertSuccess(result, report, 2000)
        self.assertLessEqual(report['duration_s'], seconds + 0.001, f'longer than the whole run: {report}')
        low = 2000 / (report['duration_s'] + 0.0005)
        high = 2000 / max(report['duration_s'] - 0.0005, 1e-9)
        self.assertTrue(low * 0.99 <= report['requests_per_s'] <= high * 1.01, report)

    def test_pipeline_8_on_every_endpoint_kind(self):
        endpoints = self.echo_server(ALL_KINDS)
        for kind in ALL_KINDS:
            with self.subTest(kind=kind):
                result, report, _ = self.bench_json(['-n', '2000', '-c', '4', '--pipeline', '8',
                                                     endpoints[kind]])
                self.assertSuccess(result, report, 2000)

    def test_one_byte_requests_on_every_endpoint_kind(self):
        endpoints = self.echo_server(ALL_KINDS)
        for kind in ALL_KINDS:
            with self.subTest(kind=kind):
                result, report, _ = self.bench_json(['-n', '2000', '-c', '4', '--size', '1', endpoints[kind]])
                self.assertSuccess(result, report, 2000)

    def test_64_kib_requests_on_streams(self):
        endpoints = self.echo_server(STREAM_KINDS)
        for kind in STREAM_KINDS:
            with self.subTest(kind=kind):
                result, report, _ = self.bench_json(['-n', '2000', '-c', '4', '--size', '65536',
                                                     endpoints[kind]], timeout=10.0)
                self.assertSuccess(result, report, 2000)

    def test_60000_byte_datagrams(self):
        # UDP: -c 3, because a UDP socket's default receive buffer (208 KiB) holds only three
        # 60000-byte datagrams; a fourth arriving before the server reads is dropped by the
        # kernel, which is UDP working as designed. UNIX datagrams are never dropped: -c 4.
        kinds = [k for k in DGRAM_KINDS if k in ('udp', 'udp6', 'unixgram')]
        endpoints = self.echo_server(kinds)
        for kind in kinds:
            with self.subTest(kind=kind):
                conns = '4' if kind == 'unixgram' else '3'
                result, report, _ = self.bench_json(['-n', '2000', '-c', conns, '--size', '60000',
                                                     endpoints[kind]])
                self.assertSuccess(result, report, 2000)

    def test_largest_udp_datagram_65507(self):
        endpoints = self.echo_server(['udp'])
        result, report, _ = self.bench_json(['-n', '200', '-c', '2', '--size', '65507', endpoints['udp']])
        self.assertSuccess(result, report, 200)

    def test_unixgram_more_requests_in_flight_than_the_receive_queue_holds(self):
        # A UNIX datagram socket queues few datagrams (net.unix.max_dgram_qlen, 10 by default);
        # a sender then gets EAGAIN and must wait until it may send, not lose the request.
        # (-c 4 --pipeline 8 is in test_pipeline_8_on_every_endpoint_kind.)
        endpoints = self.echo_server(['unixgram'])
        for args in (['-c', '16'], ['-c', '1', '--pipeline', '16']):
            with self.subTest(args=args):
                result, report, _ = self.bench_json(['-n', '200', *args, endpoints['unixgram']], timeout=2.0)
                self.assertSuccess(result, report, 200)

    def test_two_threads(self):
        kinds = ['tcp', 'udp', 'unix']
        endpoints = self.echo_server(kinds)
        for kind in kinds:
            with self.subTest(kind=kind):
                result, report, _ = self.bench_json(['-n', '2000', '--threads', '2', '-c', '4',
                                                     endpoints[kind]])
                self.assertSuccess(result, report, 2000)

    def test_count_not_divisible_by_connections(self):
        endpoints = self.echo_server(['tcp', 'udp'])
        for kind in ('tcp', 'udp'):
            for args in (['-n', '2001', '-c', '4'], ['-n', '2001', '-c', '4', '--pipeline', '8']):
                with self.subTest(kind=kind, args=args):
                    result, report, _ = self.bench_json([*args, endpoints[kind]])
                    self.assertSuccess(result, report, 2001)

    def test_count_smaller_than_connections_times_pipeline(self):
        # -n is the total: with fewer requests than connections (or pipeline slots) some
        # connections send nothing, and the run still ends once the last reply is in.
        endpoints = self.echo_server(['tcp', 'udp'])
        for kind in ('tcp', 'udp'):
            for args, n in ((['-n', '3', '-c', '10'], 3), (['-n', '1', '-c', '2'], 1),
                            (['-n', '5', '-c', '2', '--pipeline', '8'], 5)):
                with self.subTest(kind=kind, args=args):
                    result, report, _ = self.bench_json([*args, endpoints[kind]], timeout=3.0)
                    self.assertSuccess(result, report, n)

    def test_connect_churn(self):
        # Repeated: a run that does not end is not always the first one.
        endpoints = self.echo_server(['tcp', 'unix'])
        for kind in ('tcp', 'unix'):
            for attempt in range(5):
                with self.subTest(kind=kind, attempt=attempt):
                    result, report, _ = self.bench_json(['--connect', '-n', '200', '-c', '2',
                                                         endpoints[kind]], timeout=3.0)
                    self.assertSuccess(result, report, 200)

    def test_duration_run_ends_on_time(self):
        endpoints = self.echo_server(['tcp', 'udp'])
        for kind in ('tcp', 'udp'):
            with self.subTest(kind=kind):
                result, report, seconds = self.bench_json(['-d', '0.5', '-c', '4', endpoints[kind]],
                                                          timeout=8.0)
                self.assertLess(seconds, 4.0, report)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stderr, b'')
                self.assertGreater(report['requests'], 0, report)
                self.assertEqual(report['errors'], 0, report)
                self.assertGreaterEqual(report['duration_s'], 0.5, report)
                self.assertLessEqual(report['duration_s'], seconds + 0.001, report)

    def test_duration_is_measured_not_a_timer_tick(self):
        # One request over one loopback connection takes well under a millisecond; the reported
        # duration (and so requests/s) must describe the run, not a coarse timer. Best of five.
        endpoints = self.echo_server(['tcp'])
        durations = []
        for _ in range(5):
            result, report, seconds = self.bench_json(['-n', '1', '-c', '1', endpoints['tcp']])
            self.assertSuccess(result, report, 1)
            durations.append(report['duration_s'])
        self.assertLess(min(durations), 0.025,
                        f'-n 1 -c 1 reported duration_s {durations} (requests_per_s {report["requests_per_s"]}, '
                        f'latency max {report["latency_us"]["max"]} us)')

    def test_text_report(self):
        endpoints = self.echo_server(['tcp', 'unixgram'])
        for kind in ('tcp', 'unixgram'):
            with self.subTest(kind=kind):
                result, _ = self.bench(['-n', '2000', '-c', '4', endpoints[kind]])
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stderr, b'')
                lines = result.stdout.decode().splitlines()
                self.assertTrue(result.stdout.endswith(b'\n'), result.stdout)
                rate = [l for l in lines if l.startswith('requests/s')]
                mbs = [l for l in lines if l.startswith('MB/s')]
                lat = [l for l in lines if l.startswith('latency us')]
                self.assertEqual((len(rate), len(mbs), len(lat)), (1, 1, 1), result.stdout)
                m = re.fullmatch(r'requests/s\s+' + NUMBER, rate[0])
                self.assertIsNotNone(m, rate[0])
                self.assertGreater(float(m.group(1)), 0)
                m = re.fullmatch(r'MB/s\s+up\s+{0}\s+down\s+{0}\s+both\s+{0}'.format(NUMBER), mbs[0])
                self.assertIsNotNone(m, mbs[0])
                up, down, both = (float(v) for v in m.groups())
                self.assertGreater(up, 0)
                self.assertEqual(up, down, mbs[0])
                self.assertAlmostEqual(both, up + down, delta=0.0021)
                m = re.fullmatch(r'latency us\s+p50\s+{0}\s+p90\s+{0}\s+p99\s+{0}\s+p99\.9\s+{0}\s+max\s+{0}'
                                 .format(NUMBER), lat[0])
                self.assertIsNotNone(m, lat[0])
                values = [float(v) for v in m.groups()]
                self.assertEqual(values, sorted(values), lat[0])
                self.assertGreater(values[-1], 0, lat[0])

    def test_no_progress_when_stderr_is_not_a_terminal(self):
        # Longer than the once-a-second progress interval, stderr a pipe: nothing on it.
        endpoints = self.echo_server(['tcp'])
        result, report, seconds = self.bench_json(['-d', '1.2', '-c', '2', endpoints['tcp']], timeout=8.0)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, b'')
        self.assertGreater(report['requests'], 0)
        self.assertGreaterEqual(seconds, 1.2)

    def test_progress_when_stderr_is_a_terminal(self):
        endpoints = self.echo_server(['tcp'])
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen([SOCKIT, 'bench', '--json', '-d', '1.2', '-c', '2', endpoints['tcp']],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                                    env=server_env())
            os.close(slave)
            slave = None
            progress = bytearray()
            deadline = time.monotonic() + 8.0
            while time.monotonic() < deadline:
                readable, _, _ = select.select([master], [], [], deadline - time.monotonic())
                if not readable:
                    break
                try:
                    chunk = os.read(master, 4096)
                except OSError:         # EIO: the last holder of the terminal is gone
                    break
                if not chunk:
                    break
                progress += chunk
            try:
                stdout, _ = proc.communicate(timeout=3.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
                self.fail(f'bench with a terminal on stderr did not end; stderr so far {bytes(progress)!r}')
        finally:
            os.close(master)
            if slave is not None:
                os.close(slave)
        self.assertEqual(proc.returncode, 0, bytes(progress))
        self.assertIn(b'requests/s', progress, 'no progress on a terminal stderr')
        report = json.loads(stdout)
        self.assertGreater(report['requests'], 0)
        self.assertEqual(report['errors'], 0)
        for marker in ASAN_MARKERS:
            self.assertNotIn(marker, progress)


# --------------------------------------------------------------------------- peers that lie

class PyEchoLiar:
    """A TCP echo server in Python for `size`-byte requests that lies on purpose.

    reply(k, n, request) gives the bytes to send for the k-th request over all connections
    (from 1), the n-th of its connection, or None to close that connection instead."""

    def __init__(self, test, reply, size=64):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        test.addCleanup(self.close)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.reply, self.size = reply, size
        self.requests = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = []
        self.errors = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def endpoint(self):
        return inet_endpoint(self.sock, 'tcp')

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn):
        with conn:
            conn.settimeout(TIMEOUT)
            buf = bytearray()
            n = 0
            try:
                while True:
                    chunk = conn.recv(MIB)
                    if not chunk:
                        return
                    buf += chunk
                    while len(buf) >= self.size:
                        request = bytes(buf[:self.size])
                        del buf[:self.size]
                        with self.lock:
                            self.requests += 1
                            k = self.requests
                        n += 1
                        out = self.reply(k, n, request)
                        if out is None:
                            return
                        conn.sendall(out)
            except (ConnectionError, socket.timeout):
                return
            except OSError as e:
                self.errors.append(e)

    def close(self):
        self.stopped.set()
        self.acceptor.join(TIMEOUT)
        self.sock.close()
        for t in self.threads:
            t.join(TIMEOUT)


class MisbehavingPeerTest(BenchTest):

    def test_flipped_byte_in_every_100th_reply(self):
        flipped = []

        def reply(k, n, request):
            if k % 100 == 0:
                flipped.append(k)
                return bytes([request[0] ^ 0x20]) + request[1:]
            return request
        liar = PyEchoLiar(self, reply)
        result, _ = self.bench(['-n', '1000', '-c', '1', '--size', '64', liar.endpoint()])
        self.assertBenchFailed(result, liar.endpoint())
        self.assertGreaterEqual(len(flipped), 1)

        flipped.clear()
        result, report, _ = self.bench_json(['-n', '1000', '-c', '1', '--size', '64', liar.endpoint()])
        self.assertBenchFailed(result, liar.endpoint())
        self.assertGreaterEqual(report['errors'], 1, report)
        self.assertLessEqual(report['errors'], len(flipped), f'{report}; {len(flipped)} replies were altered')

    def test_lost_udp_replies_count_as_errors(self):
        # Every 10th datagram goes unanswered; bench gives up on each after about a second.
        dropped = []

        def handler(server, payload, address):
            if len(server.received) % 10 == 0:
                dropped.append(len(server.received))
                return
            server.sock.sendto(payload, address)
        peer = PyDgramServer(self, handler)
        result, report, seconds = self.bench_json(['-n', '100', '-c', '10', peer.endpoint()], timeout=10.0)
        self.assertBenchFailed(result, peer.endpoint())
        self.assertEqual(len(peer.received), 100)
        self.assertEqual(len(dropped), 10)
        self.assertEqual(report['errors'], 10, report)
        self.assertLess(seconds, 6.0, report)

    def test_extra_bytes_after_a_reply(self):
        def reply(k, n, request):
            return request + b'!' if n == 5 else request
        liar = PyEchoLiar(self, reply)
        # After the extra byte every later reply on that connection is off by one: the run
        # must still end promptly (without the lie this run takes well under a second).
        for args in (['-n', '1000', '-c', '1'], ['-n', '1000', '-c', '1', '--pipeline', '4']):
            with self.subTest(args=args):
                result, report, _ = self.bench_json([*args, liar.endpoint()], timeout=2.0)
                self.assertBenchFailed(result, liar.endpoint())
                self.assertGreaterEqual(report['errors'], 1, report)

    def test_close_after_the_5th_reply(self):
        def reply(k, n, request):
            return None if n == 6 else request
        liar = PyEchoLiar(self, reply)
        for args in (['-n', '1000', '-c', '1'], ['-n', '1000', '-c', '3'],
                     ['-n', '1000', '-c', '2', '--pipeline', '4']):
            with self.subTest(args=args):
                result, report, _ = self.bench_json([*args, liar.endpoint()])
                self.assertBenchFailed(result, liar.endpoint())
                self.assertGreaterEqual(report['errors'], 1, report)
                self.assertLess(report['requests'], 1000, report)

    def test_close_after_the_5th_reply_text_mode(self):
        def reply(k, n, request):
            return None if n == 6 else request
        liar = PyEchoLiar(self, reply)
        result, _ = self.bench(['-n', '1000', '-c', '1', liar.endpoint()])
        self.assertBenchFailed(result, liar.endpoint())

    def test_connection_refused(self):
        port = free_port()
        endpoint = f'tcp://127.0.0.1:{port}'
        result, _ = self.bench(['-n', '10', '-c', '1', endpoint])
        self.assertEqual(self.assertBenchFailed(result, endpoint), b'connection refused')
        result, report, _ = self.bench_json(['-n', '10', '-c', '3', endpoint])
        self.assertEqual(self.assertBenchFailed(result, endpoint), b'connection refused')
        self.assertGreaterEqual(report['errors'], 1, report)
        self.assertEqual(report['requests'], 0, report)

    def test_udp_port_unreachable_is_refused(self):
        port = free_port(socket.SOCK_DGRAM)
        endpoint = f'udp://127.0.0.1:{port}'
        result, report, seconds = self.bench_json(['-n', '10', '-c', '1', endpoint])
        self.assertEqual(self.assertBenchFailed(result, endpoint), b'connection refused')
        self.assertEqual(report['requests'], 0, report)


# --------------------------------------------------------------------------- command line

class UsageTest(BenchTest):

    def test_usage_errors_exit_2_with_one_line(self):
        tcp = f'tcp://127.0.0.1:{free_port()}'
        cases = [
            [],
            ['-n', '10'],
            ['foo://127.0.0.1:1'],
            ['tcp://127.0.0.1'],
            ['tcp://:5'],
            ['tcp4://[::1]:5'],
            [tcp, tcp],
            ['-c', '0', tcp],
            ['-c', 'x', tcp],
            ['-c'],
            ['--pipeline', '0', tcp],
            ['--size', '0', tcp],
            ['-n', '0', tcp],
            ['--threads', '0', tcp],
            ['--connect', 'udp://127.0.0.1:9'],
            ['--connect', 'unixgram:@sockit-test-none'],
            ['--connect', '--pipeline', '2', tcp],
            ['--size', '70000', 'udp://127.0.0.1:9'],
            ['--size', '65508', 'udp://127.0.0.1:9'],
            ['--bogus', tcp],
            ['-x', tcp],
        ]
        for args in cases:
            with self.subTest(args=args):
                result, _ = self.bench(args)
                self.assertExit(result, 2)

    def test_help(self):
        for flag in ('--help', '-h'):
            with self.subTest(flag=flag):
                result, _ = self.bench([flag])
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stderr, b'')
                self.assertTrue(result.stdout.startswith(b'usage: sockit bench'), result.stdout[:200])
                for option in (b'-c N', b'-d SECONDS', b'-n COUNT', b'--size', b'--pipeline', b'--threads',
                               b'--connect', b'--json'):
                    self.assertIn(option, result.stdout)


if __name__ == '__main__':
    unittest.main()
