"""`sockit help` and `sockit help COMMAND`, against `sockit --help` and `sockit COMMAND --help`.

The commands come from the list `sockit --help` prints, so that a command added to sockit is
checked here without this file changing; the ones of the contract must be among them.
"""

import unittest

from helpers import *  # noqa: F401,F403
from helpers import setUpModule  # noqa: F401

CONTRACT_COMMANDS = ('serve', 'connect', 'relay', 'bench', 'help')


def usage_commands(usage):
    """The command names of the `commands:` section of a usage text."""
    names, listing = [], False
    for line in usage.decode().splitlines():
        if line == 'commands:':
            listing = True
        elif listing and not line.strip():
            break
        elif listing:
            names.append(line.split()[0])
    return names


class HelpTest(ServeTest):

    def help_run(self, args):
        """A run that prints help: exit 0, nothing on stderr, some stdout. Returns its stdout."""
        result = run_sockit(args)
        self.assertEqual(result.returncode, 0, f'{args}: stderr {result.stderr!r}')
        self.assertEqual(result.stderr, b'', args)
        self.assertNotEqual(result.stdout, b'', args)
        return result.stdout

    def commands(self):
        return usage_commands(self.help_run(['--help']))

    def test_help_is_the_usage(self):
        self.assertEqual(self.help_run(['help']), self.help_run(['--help']))

    def test_help_is_listed(self):
        names = self.commands()
        for name in CONTRACT_COMMANDS:
            self.assertIn(name, names)
        self.assertEqual(len(names), len(set(names)), names)

    def test_help_command_is_its_help(self):
        for name in self.commands():
            if name == 'help':
                continue
            with self.subTest(command=name):
                text = self.help_run(['help', name])
                self.assertEqual(text, self.help_run([name, '--help']))
                self.assertEqual(text, self.help_run([name, '-h']))
                self.assertTrue(text.startswith(b'usage: sockit ' + name.encode() + b' '), text[:80])

    def test_help_of_help_is_the_usage(self):
        usage = self.help_run(['--help'])
        for args in (['help', 'help'], ['help', '--help'], ['help', '-h']):
            with self.subTest(args=args):
                self.assertEqual(self.help_run(args), usage)

    def test_unknown_command(self):
        self.assertExit(run_sockit(['help', 'nosuch']), 2,
                        "sockit: help: unknown command 'nosuch' (try 'sockit --help')")

    def test_unknown_command_is_worded_as_without_help(self):
        # The same words as `sockit nosuch`, with the command that found it in front.
        alone = run_sockit(['nosuch'])
        self.assertExit(alone, 2, "sockit: unknown command 'nosuch' (try 'sockit --help')")
        self.assertEqual(run_sockit(['help', 'nosuch']).stderr,
                         alone.stderr.replace(b'sockit: ', b'sockit: help: ', 1))

    def test_empty_command_name(self):
        self.assertExit(run_sockit(['help', '']), 2,
                        "sockit: help: unknown command '' (try 'sockit --help')")

    def test_unknown_option(self):
        self.assertExit(run_sockit(['help', '--bogus']), 2,
                        "sockit: help: unknown option '--bogus' (try 'sockit --help')")

    def test_two_arguments(self):
        for args in (['help', 'serve', 'connect'], ['help', 'nosuch', 'serve'],
                     ['help', 'serve', '--help'], ['help', 'help', 'help']):
            with self.subTest(args=args):
                self.assertExit(run_sockit(args), 2,
                                "sockit: help: expected at most one COMMAND (try 'sockit --help')")


if __name__ == '__main__':
    unittest.main()
