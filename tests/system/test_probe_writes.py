"""The probe writes nowhere but its cache directory and its temp directory.

The CLI, and every QEMU it starts, runs under ``strace -f`` (bindep.txt:
strace); every system call that creates, opens for writing, renames or
removes a file is collected with the directory it resolves against, and
each must land under the configured cache directory or ``TMPDIR``. HOME
points at an empty directory that must stay empty.
"""

import os
import re
import shutil
import subprocess
import sys

import fixtures
import testtools

# Calls that change the file system; openat only with a write flag.
_CHANGING = re.compile(
    r'^\d+\s+(?:(open|openat)\(.*O_(?:WRONLY|RDWR|CREAT)|'
    r'(mkdir|mkdirat|rename|renameat2?|unlink|unlinkat|rmdir|creat|'
    r'symlink|symlinkat|link|linkat|truncate|chmod|fchmodat)\()')
# A path argument: "path", optionally after a directory fd shown by -y
# as 3</some/dir>.
_PATH = re.compile(r'(?:(?:AT_FDCWD|\d+<([^>]*)>),\s*)?"([^"]*)"')
# Traced: only what changes the file system, and -z keeps only calls
# that succeeded (so no call is split into unfinished/resumed lines).
_CALLS = ('open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2,'
          'unlink,unlinkat,rmdir,symlink,symlinkat,link,linkat,truncate,'
          'chmod,fchmodat')
# Devices QEMU and Python may open for writing without creating anything.
_DEVICES = ('/dev/null', '/dev/tty', '/dev/kvm', '/dev/urandom')


def changed_paths(trace_text, cwd):
    """Absolute paths the traced processes changed (successful calls)."""
    paths = []
    for line in trace_text.splitlines():
        if not _CHANGING.match(line) or re.search(r'= -1 E', line):
            continue
        for directory, name in _PATH.findall(line):
            base = directory or cwd
            paths.append(os.path.normpath(os.path.join(base, name)))
    return paths


class TestProbeWritesStayInside(testtools.TestCase):

    def test_only_cache_and_temp_dirs_change(self):
        strace = shutil.which('strace')
        self.assertIsNotNone(strace, 'strace missing: install the Debian '
                                     'package strace (bindep.txt)')
        self.useFixture(fixtures.Timeout(600, gentle=True))
        root = self.useFixture(fixtures.TempDir()).path
        cache, temp, home, cwd = (os.path.join(root, name) for name in
                                  ('cache', 'tmp', 'home', 'cwd'))
        for path in (cache, temp, home, cwd):
            os.mkdir(path)
        trace = os.path.join(root, 'trace')
        result = subprocess.run(
            [strace, '-f', '-qq', '-y', '-z', '-e', f'trace={_CALLS}',
             '-o', trace, sys.executable, '-m',
             'pcie_sched.cmd.main', 'probe', '--ports', '2', '--cache-dir',
             cache, '--format', 'json'],
            cwd=cwd, capture_output=True, timeout=500,
            env=dict(os.environ, HOME=home, TMPDIR=temp,
                     PYTHONDONTWRITEBYTECODE='1',
                     PYTHONPATH=os.pathsep.join(sys.path)))
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn(b'"booted"', result.stdout)
        with open(trace, errors='replace') as handle:
            changed = changed_paths(handle.read(), cwd)
        # The run did write (payload, variable store, serial log, cache).
        self.assertTrue(any(path.startswith(cache + os.sep)
                            for path in changed), changed)
        self.assertTrue(any(path.startswith(temp + os.sep)
                            for path in changed), changed)
        # os.makedirs walks the parents of the cache directory; those
        # calls fail with EEXIST and are not changes.
        inside = (cache + os.sep, temp + os.sep)
        outside = sorted({path for path in changed
                          if not path.startswith(inside)
                          and path not in (cache, temp)
                          and not path.startswith(_DEVICES)})
        self.assertEqual([], outside)
        self.assertEqual([], os.listdir(home))
        self.assertEqual([], os.listdir(cwd))
        self.assertEqual([], os.listdir(temp))


class TestChangedPaths(testtools.TestCase):
    """The trace reader itself: what counts as a change, and where."""

    def test_reads_strace_lines(self):
        trace = '\n'.join([
            '10 openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3'
            '</etc/passwd>',
            '10 openat(AT_FDCWD, "/var/x", O_WRONLY|O_CREAT, 0644) = 4',
            '10 openat(AT_FDCWD, "rel", O_RDWR) = 5',
            '11 unlinkat(3</w/tmp/p>, "vars.fd", 0) = 0',
            '11 mkdir("/tmp", 0755) = -1 EEXIST (File exists)',
            '12 renameat2(AT_FDCWD, "/c/.a", AT_FDCWD, "/c/a", 0) = 0',
        ])
        self.assertEqual(
            ['/var/x', '/cwd/rel', '/w/tmp/p/vars.fd', '/c/.a', '/c/a'],
            changed_paths(trace, '/cwd'))
