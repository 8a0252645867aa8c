"""The README's example sessions, run as written: each block that follows an
`<!-- example: NAME ... -->` comment is played line by line and every line a
member reads is checked byte for byte.

A chat block: `$ sockit serve ARGS` starts the server; `NAME: nc HOST PORT` connects a member;
`NAME> TEXT` is a line the member sends; `NAME< TEXT` the next line it must read. In a line a
member reads, the port of an endpoint is replaced by the real port of the member who connected
last but the reader.
The example is written so that its order is the server's whatever the timing: each line read
shows that what came before it was handled. Once the block is played, no member has anything
more to read."""

import os
import re
import shlex
import unittest

from helpers import REPO_ROOT, LineReader, ServeTest, assert_silent, read_to_close, setUpModule  # noqa: F401

README = os.path.join(REPO_ROOT, 'README.md')


def example(name):
    """The lines of the README's example block NAME."""
    with open(README, encoding='utf-8') as f:
        text = f.read()
    m = re.search(r'<!-- example: %s\b[^>]*-->\n```\n(.*?)\n```' % re.escape(name), text, re.S)
    if m is None:
        raise AssertionError(f'no example {name!r} in README.md')
    return m.group(1).split('\n')


class ChatExampleTest(ServeTest):

    def test_chat_session(self):
        lines = example('chat')
        command = shlex.split(lines[0].removeprefix('$ sockit '))
        self.assertEqual(command[:3], ['serve', '-s', 'chat'])
        # The README's port, replaced by a free one of the server's choosing.
        server = self.serve('tcp://127.0.0.1:0', opts=command[1:-1], count=1)
        members, ports = {}, {}

        def member(name):
            if name not in members:
                s = server.connect()
                members[name] = (s, LineReader(s))
                ports[name] = s.getsockname()[1]
            return members[name]

        for line in lines[1:]:
            m = re.fullmatch(r'(\w+)(: nc \S+ \d+|> (.*)|< (.*))', line)
            self.assertIsNotNone(m, f'not a line of a chat example: {line!r}')
            name = m.group(1)
            if m.group(2).startswith(': nc'):
                member(name)
            elif m.group(3) is not None:
                member(name)[0].sendall(m.group(3).encode() + b'\n')
            else:
                others = [port for other, port in ports.items() if other != name]
                want = re.sub(r'(tcp://127\.0\.0\.1:)\d+', lambda x: x.group(1) + str(others[-1]),
                              m.group(4))
                self.assertEqual(member(name)[1].line(), (want + '\n').encode(), line)
        for name, (sock, reader) in members.items():
            self.assertEqual(bytes(reader.buf), b'', name)
            if f'{name}> /quit' in lines:
                self.assertEqual(read_to_close(sock), (b'', 'eof'), name)
            else:
                assert_silent(sock, 0.2)


if __name__ == '__main__':
    unittest.main()
