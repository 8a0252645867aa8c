"""make install and make uninstall, and programs built against what they install.

The build tested is the directory of $SOCKIT (build/, build/asan, build/tsan): `make BUILD=DIR
-o all install` copies that build as it is (make integration builds `all` first). The programs
are compiled with the sanitizer its library was built with (read from its undefined __asan_,
__ubsan_, __tsan_ symbols), since an instrumented library needs the sanitizer's runtime in the
program. Two installs: one under PREFIX=TMP (DESTDIR empty), used through pkg-config as it
stands, for a shared and a --static program; one under DESTDIR=TMP with the default PREFIX,
whose files are listed exactly. Each ends with make uninstall and a check that no file is left.
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from helpers import REPO_ROOT, SOCKIT

BUILD = os.path.relpath(os.path.dirname(SOCKIT), REPO_ROOT)
HEADER = os.path.join(REPO_ROOT, 'include', 'sockit.h')
CC = os.environ.get('CC', 'cc')
PKG_CONFIG = shutil.which('pkg-config')
TOOL_TIMEOUT = 300      # bound for one make or one compiler run

# Prints sk_version(), an endpoint parsed and formatted again, and the libsockit files mapped.
PROGRAM = r'''
#include <stdio.h>
#include <string.h>
#include <sockit.h>

int main(void)
{
    struct sk_endpoint ep;
    char text[SK_ENDPOINT_STRLEN], line[4096];
    const char *why = "";
    FILE *maps;

    if (strcmp(sk_version(), SK_VERSION) != 0) {
        fprintf(stderr, "library %s, header %s\n", sk_version(), SK_VERSION);
        return 1;
    }
    if (sk_endpoint_parse(&ep, "tcp://127.0.0.1:8080", &why) < 0 ||
        sk_endpoint_format(&ep, text, sizeof text) < 0) {
        fprintf(stderr, "endpoint: %s\n", why);
        return 1;
    }
    printf("version %s\nendpoint %s\n", sk_version(), text);
    maps = fopen("/proc/self/maps", "r");
    if (!maps)
        return 1;
    while (fgets(line, sizeof line, maps))
        if (strstr(line, "libsockit") && strchr(line, '/'))
            printf("mapped %s", strchr(line, '/'));
    fclose(maps);
    return 0;
}
'''


def header_version():
    with open(HEADER, encoding='utf-8') as f:
        return re.search(r'^#define SK_VERSION "([^"]+)"', f.read(), re.M).group(1)


def sanitizer_flags():
    """The -fsanitize= flags the build's library was compiled with, as its symbols show."""
    out = subprocess.run(['nm', '-u', os.path.join(REPO_ROOT, BUILD, 'libsockit.so')],
                         capture_output=True, text=True, check=True).stdout
    kinds = [k for k in ('address', 'undefined', 'thread')
             if f' __{"ub" if k == "undefined" else k[0]}san_' in out]
    return [f'-fsanitize={",".join(kinds)}'] if kinds else []


def needed(path):
    """The NEEDED entries of an ELF file."""
    out = subprocess.run(['readelf', '-d', path], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r'\(NEEDED\)\s+Shared library: \[([^]]+)\]', out)


def files_under(root):
    """Every file and link below root (directories left out), relative to it."""
    found = set()
    for top, _, names in os.walk(root):
        found.update(os.path.relpath(os.path.join(top, n), root) for n in names)
    return found


def man_pages():
    man = os.path.join(REPO_ROOT, 'man')
    pages = sorted(os.listdir(man)) if os.path.isdir(man) else []
    return {f'share/man/man{p[-1]}/{p}' for p in pages if p[-2:] in ('.1', '.3')}


@unittest.skipUnless(PKG_CONFIG, 'needs pkg-config')
class InstallTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='sockit-install-')
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.version = header_version()
        self.sanitize = sanitizer_flags()

    def run_tool(self, argv, env=None):
        r = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                           timeout=TOOL_TIMEOUT)
        self.assertEqual(r.returncode, 0, f'{" ".join(argv)}:\n{r.stdout}{r.stderr}')
        return r.stdout

    def make(self, target, **variables):
        """make TARGET for the build under test; -o all: install it as it is, never rebuilt."""
        return self.run_tool(['make', '-s', '-o', 'all', f'BUILD={BUILD}', target]
                             + [f'{k}={v}' for k, v in variables.items()])

    def compile(self, name, flags):
        """Builds PROGRAM as TMP/name with the flags given (a pkg-config output among them)."""
        source = os.path.join(self.tmp, 'program.c')
        with open(source, 'w', encoding='utf-8') as f:
            f.write(PROGRAM)
        exe = os.path.join(self.tmp, name)
        self.run_tool([CC, *self.sanitize, '-o', exe, source, *flags])
        return exe

    def run_program(self, exe, libdir=None):
        """Runs it, checks what it prints; returns the libsockit files it had mapped."""
        env = dict(os.environ)
        if libdir:
            env['LD_LIBRARY_PATH'] = libdir
        lines = self.run_tool([exe], env=env).splitlines()
        self.assertEqual(lines[:2], [f'version {self.version}', 'endpoint tcp://127.0.0.1:8080'])
        return {line.split(' ', 1)[1] for line in lines[2:]}

    def pkg_config(self, pcdir, *args, sysroot=None):
        env = dict(os.environ, PKG_CONFIG_PATH=pcdir)
        if sysroot:
            env['PKG_CONFIG_SYSROOT_DIR'] = sysroot
        return self.run_tool([PKG_CONFIG, *args, 'sockit'], env=env).split()

    def assert_uninstall_leaves_nothing(self, root, **variables):
        self.make('uninstall', **variables)
        self.assertEqual(files_under(root), set())

    def test_prefix_install_links_shared_and_static_programs(self):
        prefix = os.path.join(self.tmp, 'prefix')
        libdir = os.path.join(prefix, 'lib')
        pcdir = os.path.join(libdir, 'pkgconfig')
        self.make('install', PREFIX=prefix)
        self.assertEqual(self.pkg_config(pcdir, '--modversion'), [self.version])
        self.assertEqual(self.pkg_config(pcdir, '--variable=libdir'), [libdir])

        shared = self.compile('shared', self.pkg_config(pcdir, '--cflags', '--libs'))
        self.assertIn('libsockit.so.' + self.version.split('.')[0], needed(shared))
        self.assertEqual(self.run_program(shared, libdir),
                         {os.path.realpath(os.path.join(libdir, 'libsockit.so.' + self.version))})

        # -Bstatic: every library pkg-config --static names is linked from its archive, so the
        # list must be complete; the C library stays shared.
        static = self.compile('static', self.pkg_config(pcdir, '--cflags')
                              + ['-Wl,-Bstatic'] + self.pkg_config(pcdir, '--static', '--libs')
                              + ['-Wl,-Bdynamic'])
        self.assertFalse([n for n in needed(static) if 'sockit' in n or 'ssl' in n])
        self.assertEqual(self.run_program(static, libdir), set())

        self.assert_uninstall_leaves_nothing(prefix, PREFIX=prefix)

    def test_destdir_install_puts_exactly_its_files(self):
        root = os.path.join(self.tmp, 'root')
        self.make('install', DESTDIR=root)
        usr = os.path.join(root, 'usr', 'local')
        so = f'lib/libsockit.so.{self.version}'
        major = 'lib/libsockit.so.' + self.version.split('.')[0]
        expected = {'bin/sockit', so, major, 'lib/libsockit.so', 'lib/libsockit.a',
                    'include/sockit.h', 'lib/pkgconfig/sockit.pc'} | man_pages()
        self.assertEqual(files_under(root), {os.path.join('usr/local', f) for f in expected})
        self.assertEqual(os.readlink(os.path.join(usr, major)), os.path.basename(so))
        self.assertEqual(os.readlink(os.path.join(usr, 'lib/libsockit.so')),
                         os.path.basename(major))
        # The .pc names the final place; a sysroot is how a staged tree is used.
        pcdir = os.path.join(usr, 'lib', 'pkgconfig')
        self.assertEqual(self.pkg_config(pcdir, '--variable=prefix'), ['/usr/local'])
        self.assertIn(f'-I{usr}/include', self.pkg_config(pcdir, '--cflags', sysroot=root))
        self.assertEqual(self.pkg_config(pcdir, '--libs', sysroot=root),
                         [f'-L{usr}/lib', '-lsockit'])
        self.assert_uninstall_leaves_nothing(root, DESTDIR=root)

    def test_build_tree_library_runs_with_ld_library_path(self):
        build = os.path.join(REPO_ROOT, BUILD)
        exe = self.compile('in-tree', [f'-I{REPO_ROOT}/include', f'-L{build}', '-lsockit'])
        self.assertEqual(self.run_program(exe, build),
                         {os.path.realpath(os.path.join(build, 'libsockit.so.' + self.version))})


if __name__ == '__main__':
    unittest.main()
