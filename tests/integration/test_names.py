"""Peer names are bytes the peer chose: a UNIX client binding a name that holds a LF must not be able
to forge a chat line, a log line or an --exec environment. Every name comes out escaped."""

import os
import socket
import unittest

from helpers import TIMEOUT, LineReader, ServeTest, read_to_close, setUpModule  # noqa: F401

FORGED = 'evil\n[unix#1] you are fired\\'
ESCAPED = 'evil\\x0a[unix#1] you are fired\\\\'


class NameTest(ServeTest):

    def client(self, path, name):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(c.close)
        c.bind(name)
        c.settimeout(TIMEOUT)
        c.connect(path)
        return c

    def test_chat_name_chosen_by_a_unix_client_is_escaped(self):
        path = self.path('chat.sock')
        server = self.serve(f'unix:{path}', opts=['-s', 'chat', '-v'])
        watcher = LineReader(server.connect())
        evil_name = self.path(FORGED)
        evil = self.client(path, evil_name)
        shown = 'unix:' + self.path(ESCAPED)
        self.assertEqual(watcher.line(), f'* {shown} joined\n'.encode())
        evil.sendall(b'hello\n')
        self.assertEqual(watcher.line(), f'[{shown}] hello\n'.encode())
        evil.close()
        self.assertEqual(watcher.line(), f'* {shown} left\n'.encode())
        self.assertTrue(server.wait_stderr(lambda err: f'close {shown}'.encode() in err))
        self.assertEqual(server.stop(), 0)
        # Each log line is one line: the LF of the name never reaches stderr raw.
        for line in server.stderr.decode().splitlines():
            self.assertFalse(line.startswith('[unix#1]'), server.stderr)
        os.unlink(evil_name)

    def test_exec_peer_name_is_escaped(self):
        path = self.path('exec.sock')
        server = self.serve(f'unix:{path}', opts=['--exec', 'printf %s "$SOCKIT_PEER"'])
        evil_name = self.path(FORGED)
        evil = self.client(path, evil_name)
        data, how = read_to_close(evil)
        self.assertEqual((data, how), (('unix:' + self.path(ESCAPED)).encode(), 'eof'))
        self.assertEqual(server.stop(), 0)
        os.unlink(evil_name)


if __name__ == '__main__':
    unittest.main()
