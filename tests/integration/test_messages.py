"""Messages a new user meets first: an IPv4-mapped literal, a link-local address with its zone, and
a UNIX path written as unix://tmp/x (relative: tmp/x). Each says what is meant, in one line."""

import socket
import unittest

from helpers import TIMEOUT, ServeTest, recv_exactly, run_sockit, setUpModule  # noqa: F401


class V4MappedTest(ServeTest):

    def test_v4_mapped_literal_is_served_as_ipv4(self):
        server = self.serve('tcp://[::ffff:127.0.0.1]:0', opts=['-s', 'echo'], count=1)
        self.assertEqual(server.endpoints[0], f'tcp://127.0.0.1:{server.port()}')
        with socket.create_connection(('127.0.0.1', server.port()), timeout=TIMEOUT) as c:
            c.sendall(b'mapped\n')
            self.assertEqual(recv_exactly(c, 7), b'mapped\n')
        self.assertEqual(server.stop(), 0)

    def test_v4_mapped_literal_with_an_ipv6_only_scheme_is_a_usage_error(self):
        self.assertExit(run_sockit(['serve', 'udp6://[::ffff:127.0.0.1]:0']), 2,
                        'sockit: udp6://[::ffff:127.0.0.1]:0: IPv4-mapped address with an '
                        'IPv6-only scheme (it is IPv4: drop the 6 from the scheme)')

    def test_connect_to_a_v4_mapped_literal_reaches_the_ipv4_server(self):
        server = self.serve('tcp://127.0.0.1:0', opts=['-s', 'echo'], count=1)
        result = run_sockit(['connect', '-z', f'tcp://[::ffff:127.0.0.1]:{server.port()}'])
        self.assertEqual((result.returncode, result.stderr), (0, b''))


class ZoneTest(ServeTest):

    def test_bind_failure_keeps_the_zone(self):
        # fe80::1 is on no interface here: the bind fails, and the message names the zone given.
        self.assertExit(run_sockit(['serve', 'tcp://[fe80::1%lo]:0']), 1,
                        'sockit: bind tcp://[fe80::1%lo]:0: address not available')


class RelativeUnixPathTest(ServeTest):

    def test_unix_double_slash_is_a_relative_path_and_the_message_says_so(self):
        self.assertExit(run_sockit(['serve', 'unix://no-such-dir.sockit/x']), 1,
                        'sockit: bind unix:no-such-dir.sockit/x: no such file or directory '
                        '(a path relative to the working directory; an absolute one begins '
                        'with /, as in unix:/no-such-dir.sockit/x)')

    def test_connect_to_a_missing_relative_path_gets_the_same_hint(self):
        self.assertExit(run_sockit(['connect', 'unixgram:no-such-dir.sockit/y']), 1,
                        'sockit: connect unixgram:no-such-dir.sockit/y: no such file or '
                        'directory (a path relative to the working directory; an absolute '
                        'one begins with /, as in unixgram:/no-such-dir.sockit/y)')

    def test_a_path_written_relative_gets_no_hint(self):
        for path in ('./no-such-dir.sockit/x', '../no-such-dir.sockit/x'):
            self.assertExit(run_sockit(['serve', f'unix:{path}']), 1,
                            f'sockit: bind unix:{path}: no such file or directory')

    def test_absolute_path_gets_no_hint(self):
        missing = self.path('none/x')
        self.assertExit(run_sockit(['serve', f'unix:{missing}']), 1,
                        f'sockit: bind unix:{missing}: no such file or directory')

    def test_usage_explains_relative_paths(self):
        result = run_sockit(['--help'])
        self.assertEqual(result.returncode, 0)
        self.assertIn(b'  A PATH not beginning with / is relative to the working directory, also '
                      b'after\n  //: unix://tmp/x is tmp/x, unix:///tmp/x is /tmp/x.\n', result.stdout)


if __name__ == '__main__':
    unittest.main()
