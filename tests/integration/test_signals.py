"""However many SIGTERMs arrive while sockit stops, it ends with exit 0: a signal that comes after
the server has given its signals back (the last instants of an exit, long under AddressSanitizer)
must not end the process by the signal's default action instead."""

import os
import signal
import subprocess
import time
import unittest

from helpers import SOCKIT, START_TIMEOUT, Server, ServeTest, server_env, setUpModule  # noqa: F401


class SignalStormTest(ServeTest):

    def storm(self, args, rounds=5):
        for _ in range(rounds):
            proc = subprocess.Popen([SOCKIT, *args], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    env=server_env())
            self.addCleanup(proc.kill)
            self.addCleanup(proc.stderr.close)
            line = proc.stderr.readline()
            self.assertTrue(line.startswith(b'listening on '), line)
            deadline = time.monotonic() + START_TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    break
                time.sleep(0.0005)
            self.assertEqual(proc.wait(timeout=START_TIMEOUT), 0)

    def test_serve_exits_0_under_repeated_sigterm(self):
        self.storm(['serve', '-s', 'echo', 'tcp://127.0.0.1:0'])

    def test_relay_exits_0_under_repeated_sigterm(self):
        target = Server(['tcp://127.0.0.1:0'], ['-s', 'echo'])
        self.addCleanup(target.stop)
        target.wait_listening(1)
        self.storm(['relay', 'tcp://127.0.0.1:0', target.endpoints[0]])


if __name__ == '__main__':
    unittest.main()
