"""Integration tests for `sockit bench --rate` (the open loop), the histogram of `--json` and
`sockit bench --merge FILE...`.

The point of --rate: a server that stalls once must show the stall in the percentiles, where the
closed loop hides it (each connection waits for its reply before it sends again, so a stall
delays one request only). The point of --merge: percentiles of several runs from their summed
histograms, never from averaged percentiles; the tests compute them in Python from the JSON.

    SOCKIT=build/sockit python3 -m unittest test_bench_rate -v   (in tests/integration)
"""

import copy
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
import unittest

from helpers import *  # noqa: F401,F403
from tls_helpers import *  # noqa: F401,F403
from tls_helpers import tls_setup_module as setUpModule  # noqa: F401
import test_bench

STALL = 0.2             # seconds the stalling server sleeps, once
SUB_HALF = 64           # the histogram: 2^(sub_bits - 1) linear steps per power of two


def slot_top(slot):
    """The highest latency (us) of a histogram slot, as sockit's histogram.c defines it."""
    if slot < 2 * SUB_HALF:
        return slot
    shift = slot // SUB_HALF - 1
    return ((slot - shift * SUB_HALF + 1) << shift) - 1


def quantile(hist, q):
    """sockit's percentile of a --json histogram: the top of the slot holding rank ceil(q * total),
    at most the max."""
    if hist['total'] == 0:
        return 0
    rank = max(int(q * hist['total'] + 0.999999), 1)
    seen = 0
    for slot, count in hist['counts']:
        seen += count
        if seen >= rank:
            return min(slot_top(slot), hist['max'])
    return hist['max']


def summed(hists):
    """The histogram of several --json histograms added slot by slot."""
    counts = {}
    for h in hists:
        for slot, count in h['counts']:
            counts[slot] = counts.get(slot, 0) + count
    return {'total': sum(h['total'] for h in hists), 'max': max(h['max'] for h in hists),
            'counts': sorted([s, c] for s, c in counts.items())}


def at_least(hist, us):
    """How many latencies of the histogram are surely >= us (their slot starts there or above)."""
    return sum(c for s, c in hist['counts'] if s >= 1 and slot_top(s - 1) + 1 >= us)


def stalling_server(test, nth):
    """A Python TCP echo (one thread per connection) that sleeps STALL seconds once, before it
    answers the nth request of all, and answers every other one at once."""
    def reply(k, n, request):
        if k == nth:
            time.sleep(STALL)
        return request
    return test_bench.PyEchoLiar(test, reply)


class RateTest(test_bench.BenchTest):

    def latency(self, report):
        return report['latency_us']

    # ------------------------------------------------------------------------ the contract's proof

    def test_a_stall_shows_under_rate_and_hides_in_the_closed_loop(self):
        # 2000 requests on one connection: p99.9 is the 3rd highest latency (rank 1998), so one
        # slow request alone cannot reach it. Closed loop: the stall delays the stalled request
        # only. Open loop at 2000/s: requests are due every 500 us; those due during the stall
        # go out after it and count from their scheduled time, so the 2nd and 3rd highest are
        # at least 199.5 and 199 ms, in the histogram slot that reaches 200.7 ms (percentiles are
        # reported as the top of their slot, never below the values in it).
        closed = stalling_server(self, nth=1000)
        result, report, _ = self.bench_json(['-n', '2000', '-c', '1', closed.endpoint()], timeout=10.0)
        self.assertSuccess(result, report, 2000)
        self.assertGreaterEqual(self.latency(report)['max'], 200000, report['latency_us'])
        self.assertLess(self.latency(report)['p99_9'], 200000, report['latency_us'])
        self.assertLessEqual(at_least(report['histogram'], 100000), 1, report['latency_us'])

        opened = stalling_server(self, nth=1000)
        result, report, seconds = self.bench_json(['--rate', '2000', '-n', '2000', '-c', '1',
                                                   opened.endpoint()], timeout=10.0)
        self.assertSuccess(result, report, 2000)
        self.assertGreaterEqual(self.latency(report)['p99_9'], 200000, report['latency_us'])
        self.assertGreaterEqual(self.latency(report)['max'], 200000, report['latency_us'])
        # Every request due in the first half of the stall waited 100 ms or more: about 200.
        self.assertGreaterEqual(at_least(report['histogram'], 100000), 150, report['histogram'])
        self.assertEqual(report['rate_asked'], 2000.0, report)
        self.assertGreaterEqual(seconds, 0.95, 'the schedule of 2000 at 2000/s takes a second')

    # ------------------------------------------------------------------------ the rate kept

    def test_achieved_rate_on_one_tcp_connection(self):
        # A closed loop makes tens of thousands of requests a second here; --rate 2000 -d 2 makes
        # the 4000 requests of its schedule, no more, no fewer.
        ep = self.echo_server(['tcp'])['tcp']
        result, report, seconds = self.bench_json(['--rate', '2000', '-d', '2', '-c', '1', ep], timeout=10.0)
        self.assertSuccess(result, report, 4000)
        self.assertEqual(report['rate_asked'], 2000.0, report)
        self.assertTrue(1800 <= report['rate_achieved'] <= 2100, report)
        self.assertTrue(1800 <= report['requests_per_s'] <= 2100, report)
        self.assertTrue(1.99 <= report['duration_s'] <= seconds, report)
        self.assertEqual(report['bytes_sent'], 4000 * 64, report)

    def test_rate_on_streams_and_datagrams_with_threads(self):
        # -n with --rate: the count is exact; 1000 at 4000/s take at least 0.25 s less one interval.
        # (A closed loop sends these 1000 in a few tens of milliseconds.)
        kinds = ['tcp', 'unix', 'udp', 'unixgram']
        endpoints = self.echo_server(kinds)
        for kind in kinds:
            with self.subTest(kind=kind):
                result, report, _ = self.bench_json(['--rate', '4000', '-n', '1000', '-c', '4', '--threads', '2',
                                                     '--pipeline', '4', endpoints[kind]], timeout=10.0)
                self.assertSuccess(result, report, 1000)
                self.assertGreaterEqual(report['duration_s'], 0.249, report)
                self.assertTrue(2000 <= report['rate_achieved'] <= 4200, report)

    def test_fewer_requests_than_connections(self):
        ep = self.echo_server(['tcp'])['tcp']
        result, report, _ = self.bench_json(['--rate', '100', '-n', '3', '-c', '10', ep])
        self.assertSuccess(result, report, 3)
        self.assertGreaterEqual(report['duration_s'], 0.019, report)

    def test_text_report_gives_the_rate_asked_and_achieved(self):
        ep = self.echo_server(['tcp'])['tcp']
        result, _ = self.bench(['--rate', '1000', '-n', '300', '-c', '2', ep])
        self.assertEqual((result.returncode, result.stderr), (0, b''), result.stdout)
        lines = [l for l in result.stdout.decode().splitlines() if l.startswith('rate ')]
        self.assertEqual(len(lines), 1, result.stdout)
        m = re.fullmatch(r'rate\s+1000\.0/s asked, (\d+\.\d)/s achieved', lines[0])
        self.assertIsNotNone(m, lines[0])
        self.assertTrue(600 <= float(m.group(1)) <= 1050, lines[0])

    def test_a_server_that_never_answers_ends_the_run_with_every_request_an_error(self):
        # 50 requests due in 0.5 s; the first is sent and never answered, the pipeline (1) holds
        # back the other 49. Sending stops 2 s after the schedule, the reply is awaited 2 s more.
        lsn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(lsn.close)
        lsn.bind(('127.0.0.1', 0))
        lsn.listen(8)
        ep = inet_endpoint(lsn, 'tcp')
        result, report, seconds = self.bench_json(['--rate', '100', '-d', '0.5', '-c', '1', ep], timeout=10.0)
        self.assertBenchFailed(result, ep)
        self.assertEqual((report['requests'], report['errors']), (0, 50), report)
        self.assertLess(seconds, 8.0)

    def test_lost_udp_replies_count_as_errors(self):
        # Every 10th datagram goes unanswered; bench gives up on each after about a second, and
        # every request of the schedule is then answered or counted as an error, exactly.
        def handler(server, payload, address):
            if len(server.received) % 10 != 0:
                server.sock.sendto(payload, address)
        peer = PyDgramServer(self, handler)
        result, report, seconds = self.bench_json(['--rate', '200', '-n', '100', '-c', '10', peer.endpoint()],
                                                  timeout=15.0)
        self.assertBenchFailed(result, peer.endpoint())
        self.assertGreaterEqual(report['errors'], 1, report)
        self.assertEqual(report['requests'] + report['errors'], 100, report)
        self.assertLess(seconds, 8.0, report)

    def test_sigint_ends_a_rate_run_early_without_errors(self):
        # The rest of the schedule, cut short by the user, is not counted as errors.
        fifth = threading.Event()

        def reply(k, n, request):
            if k == 5:
                fifth.set()
            return request
        peer = test_bench.PyEchoLiar(self, reply)
        proc = subprocess.Popen([SOCKIT, 'bench', '--json', '--rate', '100', '-d', '30', '-c', '1',
                                 peer.endpoint()], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=server_env())
        try:
            self.assertTrue(fifth.wait(TIMEOUT), 'no 5th request within the timeout')
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        self.assertEqual((proc.returncode, stderr), (0, b''), stdout)
        report = json.loads(stdout)
        self.assertEqual(report['errors'], 0, report)
        self.assertTrue(5 <= report['requests'] < 3000, report)


class RateTLSTest(TLSTest, test_bench.BenchTest):

    def test_rate_over_tls(self):
        server = self.serve(self.tls_ep('tcp'), opts=['-s', 'echo'])
        ep = f'{server.endpoints[0]},ca={self.certs.ca_pem}'
        result, report, _ = self.bench_json(['--rate', '1000', '-n', '500', '-c', '2', ep], timeout=10.0)
        self.assertEqual((result.returncode, result.stderr), (0, b''), result.stdout)
        self.assertEqual((report['requests'], report['errors']), (500, 0), report)
        self.assertTrue(600 <= report['rate_achieved'] <= 1050, report)


# --------------------------------------------------------------------------- --merge

class MergeTest(test_bench.BenchTest):

    def save(self, name, report):
        path = self.path(name)
        with open(path, 'w') as f:
            json.dump(report, f)
        return path

    def merge(self, files, json_out=True):
        result = subprocess.run([SOCKIT, 'bench', '--merge', *(['--json'] if json_out else []), *files],
                                capture_output=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        return result

    def merged(self, files):
        result = self.merge(files)
        self.assertEqual((result.returncode, result.stderr), (0, b''), result.stdout)
        return json.loads(result.stdout)

    def assertPercentilesFrom(self, report, hist):
        want = {k: quantile(hist, q) for k, q in (('p50', 0.5), ('p90', 0.9), ('p99', 0.99),
                                                 ('p99_9', 0.999))}
        want['max'] = hist['max']
        self.assertEqual(report['latency_us'], want)

    def test_two_generators_merge_into_sums_and_the_summed_histogram(self):
        ep = self.echo_server(['tcp'])['tcp']
        runs = []
        for n in ('1000', '1500'):
            result, report, _ = self.bench_json(['-n', n, '-c', '2', ep])
            self.assertSuccess(result, report, int(n))
            runs.append(report)
        files = [self.save(f'r{i}.json', r) for i, r in enumerate(runs)]
        out = self.merged(files)
        self.assertEqual((out['requests'], out['errors'], out['merged']), (2500, 0, 2), out)
        self.assertEqual(out['bytes_sent'], runs[0]['bytes_sent'] + runs[1]['bytes_sent'])
        self.assertEqual(out['bytes_received'], runs[0]['bytes_received'] + runs[1]['bytes_received'])
        self.assertEqual(out['duration_s'], max(r['duration_s'] for r in runs))
        self.assertAlmostEqual(out['requests_per_s'], sum(r['requests_per_s'] for r in runs), delta=0.2)
        hist = summed([r['histogram'] for r in runs])
        self.assertEqual({k: out['histogram'][k] for k in ('total', 'max', 'counts')}, hist)
        self.assertPercentilesFrom(out, hist)
        # A merged report merges again, to the same.
        again = self.merged([self.save('m.json', out)])
        self.assertEqual(again['histogram'], out['histogram'])
        self.assertEqual(again['latency_us'], out['latency_us'])

    def test_a_fast_and_a_stalled_result_merge_from_the_histogram_not_averages(self):
        # Two open loops at 2000/s: against sockit's echo (fast) and against a server that
        # stalls once (about a fifth of its requests slow). The merged p99 is the 40th slowest
        # of the 4000, so at least the stalled run's 40th slowest (its p98), whatever the fast
        # run's latencies were on a loaded machine; the average of the two p99s is below that
        # as soon as the fast run's p99 is.
        ep = self.echo_server(['tcp'])['tcp']
        result, fast, _ = self.bench_json(['--rate', '2000', '-n', '2000', '-c', '1', ep], timeout=10.0)
        self.assertSuccess(result, fast, 2000)
        stall = stalling_server(self, nth=500)
        result, slow, _ = self.bench_json(['--rate', '2000', '-n', '2000', '-c', '1', stall.endpoint()],
                                          timeout=10.0)
        self.assertSuccess(result, slow, 2000)
        out = self.merged([self.save('fast.json', fast), self.save('slow.json', slow)])
        hist = summed([fast['histogram'], slow['histogram']])
        self.assertPercentilesFrom(out, hist)
        self.assertEqual((out['requests'], out['errors']), (4000, 0), out)
        self.assertEqual(out['rate_asked'], 4000.0, out)
        slow_p98 = quantile(slow['histogram'], 0.98)
        self.assertGreaterEqual(slow_p98, 150000, slow['latency_us'])    # the stall shows
        self.assertGreaterEqual(out['latency_us']['p99'], slow_p98, (out['latency_us'], slow_p98))
        if fast['latency_us']['p99'] < slow_p98:
            averaged = (fast['latency_us']['p99'] + slow['latency_us']['p99']) / 2
            self.assertGreater(out['latency_us']['p99'], averaged, (out['latency_us'], averaged))

    def test_text_report(self):
        ep = self.echo_server(['udp'])['udp']
        files = []
        for i in range(3):
            result, report, _ = self.bench_json(['-n', '300', '-c', '2', ep])
            self.assertSuccess(result, report, 300)
            files.append(self.save(f'{i}.json', report))
        result = self.merge(files, json_out=False)
        self.assertEqual((result.returncode, result.stderr), (0, b''), result.stdout)
        out = result.stdout.decode()
        self.assertRegex(out, r'(?m)^merged\s+3 results$')
        self.assertRegex(out, r'(?m)^requests\s+900 in [\d.]+ s, 0 errors$')
        self.assertRegex(out, r'(?m)^latency us\s+p50 \d+')

    def test_errors_in_the_results_merged_make_exit_1(self):
        ep = self.echo_server(['tcp'])['tcp']
        result, report, _ = self.bench_json(['-n', '100', '-c', '1', ep])
        self.assertSuccess(result, report, 100)
        report['errors'] = 3
        result = self.merge([self.save('e.json', report)])
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(json.loads(result.stdout)['errors'], 3)
        self.assertEqual(result.stderr, b'sockit: bench --merge: 3 errors in the results merged\n')

    def test_bad_files_exit_1_with_one_line_naming_the_file(self):
        ep = self.echo_server(['tcp'])['tcp']
        result, good, _ = self.bench_json(['-n', '100', '-c', '1', ep])
        self.assertSuccess(result, good, 100)
        result, rated, _ = self.bench_json(['--rate', '1000', '-n', '100', '-c', '1', ep])
        self.assertSuccess(result, rated, 100)
        good_file = self.save('good.json', good)

        def edited(change):
            r = copy.deepcopy(good)
            change(r)
            return r
        cases = {
            'not-json': 'requests/s 5\n',
            'empty': '',
            'truncated': json.dumps(good)[:-5],
            'trailing': json.dumps(good) + ' x',
            'array': '[1, 2]',
            'no-histogram': edited(lambda r: r.pop('histogram')),
            'other-scheme': edited(lambda r: r['histogram'].update(sub_bits=6)),
            'other-unit': edited(lambda r: r['histogram'].update(unit='ns')),
            'counts-off': edited(lambda r: r['histogram'].update(total=r['histogram']['total'] + 1)),
            'slot-range': edited(lambda r: r['histogram']['counts'].append([99999, 1])),
            'requests-off': edited(lambda r: r.update(requests=r['requests'] + 1)),
            'negative': edited(lambda r: r.update(errors=-1)),
            'no-requests': edited(lambda r: r.pop('requests')),
        }
        for name, content in cases.items():
            with self.subTest(case=name):
                path = self.path(name)
                with open(path, 'w') as f:
                    f.write(content if isinstance(content, str) else json.dumps(content))
                result = self.merge([good_file, path])
                self.assertExit(result, 1)
                self.assertTrue(result.stderr.startswith(f'sockit: bench --merge: {path}: '.encode()),
                                result.stderr)
        for name, path in (('missing', self.path('none.json')), ('directory', self.tmp)):
            with self.subTest(case=name):
                result = self.merge([good_file, path])
                self.assertExit(result, 1)
                self.assertTrue(result.stderr.startswith(f'sockit: bench --merge: {path}: '.encode()),
                                result.stderr)
        # Crafted to cost time, memory or a wrong sum: each refused with its reason, at once.
        top = 2 ** 64 - 1
        crafted = {
            'many-keys': ('{' + ','.join(f'"k{i}":0' for i in range(100000)) + '}',
                          'too many members in an object'),
            'many-values': ('[' + ','.join(['0'] * 300000) + ']', 'too many values'),
            'infinite': (json.dumps(good).replace('"duration_s": ', '"duration_s": 1e999, "x": '),
                         'a number out of range'),
            'overflow': (json.dumps(edited(lambda r: (r.update(requests=top), r['histogram'].update(
                total=top, counts=[[r['histogram']['counts'][-1][0], top]])))),
                         'its counts overflow the sum'),
        }
        for name, (content, why) in crafted.items():
            with self.subTest(case=name):
                path = self.path(name)
                with open(path, 'w') as f:
                    f.write(content)
                t0 = time.monotonic()
                result = self.merge([good_file, path])
                self.assertExit(result, 1)
                self.assertIn(f'sockit: bench --merge: {path}: '.encode(), result.stderr)
                self.assertIn(why.encode(), result.stderr)
                self.assertLess(time.monotonic() - t0, 5.0)
        with self.subTest(case='open and closed loop'):
            rated_file = self.save('rated.json', rated)
            result = self.merge([good_file, rated_file])
            self.assertExit(result, 1)
            self.assertTrue(result.stderr.startswith(f'sockit: bench --merge: {rated_file}: '.encode()),
                            result.stderr)


class ReadmeExampleTest(test_bench.BenchTest):

    def test_the_readme_merge_example_runs_as_written(self):
        # The block after `<!-- example: bench-merge -->` in README.md: its two generators run
        # side by side against a sockit echo (its port replaced), then the merge; the output has
        # the README's lines, with the same counts (the measured figures vary).
        with open(os.path.join(REPO_ROOT, 'README.md'), encoding='utf-8') as f:
            m = re.search(r'<!-- example: bench-merge\b[^>]*-->\n```\n(.*?)\n```', f.read(), re.S)
        self.assertIsNotNone(m, 'no bench-merge example in README.md')
        lines = m.group(1).split('\n')
        commands = [l[2:] for l in lines if l.startswith('$ ')]
        expected = [l for l in lines if not l.startswith('$ ')]
        self.assertEqual(len(commands), 3, lines)
        ep = self.echo_server(['tcp'])['tcp']

        def argv(command):
            words = shlex.split(command.removeprefix('wait; ').removesuffix(' &'))
            self.assertEqual(words[:2], ['sockit', 'bench'], command)
            out = None
            if '>' in words:
                out = self.path(words[words.index('>') + 1])
                words = words[:words.index('>')]
            words = [ep if w.startswith('tcp://') else w for w in words]
            return [SOCKIT, *words[1:]], out
        procs = []
        for command in commands[:2]:
            args, out = argv(command)
            with open(out, 'wb') as f:
                procs.append(subprocess.Popen(args, stdout=f, stderr=subprocess.PIPE,
                                              stdin=subprocess.DEVNULL))
        for proc in procs:
            _, err = proc.communicate(timeout=20)
            self.assertEqual((proc.returncode, err), (0, b''))
        args, _ = argv(commands[2])
        result = subprocess.run(args, capture_output=True, timeout=RUN_TIMEOUT, cwd=self.tmp)
        self.assertEqual((result.returncode, result.stderr), (0, b''), result.stdout)
        got = result.stdout.decode().splitlines()
        self.assertEqual(len(got), len(expected), (got, expected))
        number = re.compile(r'\d+\.\d+|\d+')
        for want, line in zip(expected, got):
            self.assertEqual(number.sub('N', line), number.sub('N', want), (line, want))
            # The counts are the schedule's: exact.
            if want.startswith(('merged', 'requests ', 'rate ')):
                fixed = number.findall(want)[:1] if want.startswith('rate') else number.findall(want)
                if want.startswith('requests '):
                    fixed = [fixed[0], fixed[2]]
                for value in fixed:
                    self.assertIn(value, number.findall(line), (line, want))


class UsageTest(test_bench.BenchTest):

    def test_bad_rate_and_merge_arguments_exit_2_with_one_line(self):
        tcp = f'tcp://127.0.0.1:{free_port()}'
        bad_rate = "sockit: bench: --rate: expected requests per second, more than 0 and at most 10000000, got '{}'"
        cases = [(['--rate', v, tcp], bad_rate.format(v)) for v in ('0', '-5', 'fast', '', '10x', 'nan', '1e12')]
        cases += [
            (['--rate', '100', '--connect', tcp], 'sockit: bench: --rate does not go with --connect'),
            (['--merge'], 'sockit: bench: --merge: expected one FILE or more'),
            (['--merge', '--json'], 'sockit: bench: --merge: expected one FILE or more'),
            (['--merge', '-c', '2', 'a.json'], 'sockit: bench: --merge takes no option but --json'),
            (['--merge', '--rate', '10', 'a.json'], 'sockit: bench: --merge takes no option but --json'),
        ]
        for args, stderr in cases:
            with self.subTest(args=args):
                result, _ = self.bench(args)
                self.assertExit(result, 2, stderr)
        result, _ = self.bench(['--rate'])
        self.assertExit(result, 2)

    def test_help_lists_rate_and_merge_with_defaults(self):
        result, _ = self.bench(['--help'])
        self.assertEqual(result.returncode, 0, result.stderr)
        text = result.stdout.decode()
        self.assertIn('sockit bench --merge [--json] FILE...', text)
        # Each option's entry runs to the next line that starts with an option.
        blocks = {}
        for line in text.splitlines():
            m = re.match(r' {2,6}(?:-\w, )?(--?[\w-]+)', line)
            if m:
                name = m.group(1)
                blocks[name] = line.strip()
            elif blocks and line.startswith('        '):
                blocks[name] += ' ' + line.strip()
        for option in ('--rate', '--merge', '--json'):
            self.assertIn(option, blocks, text)
            self.assertIn('default', blocks[option], blocks[option])
        self.assertIn('not with --connect', blocks['--rate'])


if __name__ == '__main__':
    unittest.main()
