"""A directory on a file system with no space left."""

import errno
import os
import subprocess  # nosec B404  # argument lists only

import fixtures

#: Room for what a test puts there before the file system is filled
#: (the probe's boot disk is well under a megabyte).
SIZE = '16m'
FILLER = 'filler'


class FullDir(fixtures.Fixture):
    """Mount a small tmpfs on ``path``; :meth:`fill` then uses up its space.

    Only root can mount: anyone else gets a failure saying so, since no
    mode bit makes a directory full.
    """

    reason = os.strerror(errno.ENOSPC)

    def __init__(self, path):
        super().__init__()
        self.path = path

    def _setUp(self):
        command = ['mount', '-t', 'tmpfs', '-o', f'size={SIZE},mode=0755',
                   'pcie-sched-full', self.path]
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=30, check=False)
        if result.returncode != 0:
            raise AssertionError(
                f'{" ".join(command)} failed ({result.stderr.strip()}): a '
                f'full cache directory is a small tmpfs, which needs '
                f'CAP_SYS_ADMIN (run the test as root)')
        self.addCleanup(subprocess.run, ['umount', self.path], check=True,
                        timeout=30)

    def fill(self):
        """Write zeros until the file system refuses with ENOSPC."""
        block = bytes(64 * 1024)
        with open(os.path.join(self.path, FILLER), 'wb',
                  buffering=0) as out:
            while True:
                try:
                    out.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(block) == 1:
                        return
                    block = block[:len(block) // 2]
