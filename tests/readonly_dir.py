"""A directory nobody can write to, root included."""

import os
import subprocess  # nosec B404  # argument lists only

import fixtures


class ReadOnlyDir(fixtures.Fixture):
    """Make ``path`` read-only for the current user until cleanup.

    Root ignores mode bits, so for root the directory becomes a read-only
    bind mount of itself (writes fail with EROFS); anyone else gets mode
    0555 (EACCES). ``reason`` is the error text a write then gets.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def _setUp(self):
        if os.geteuid() != 0:
            os.chmod(self.path, 0o555)
            self.addCleanup(os.chmod, self.path, 0o755)
            self.reason = 'Permission denied'
            return
        for command in (['mount', '--bind', self.path, self.path],
                        ['mount', '-o', 'remount,ro,bind', self.path]):
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=30, check=False)
            if result.returncode != 0:
                raise AssertionError(
                    f'{" ".join(command)} failed ({result.stderr.strip()}): '
                    f'a read-only cache directory for root needs a bind '
                    f'mount, i.e. CAP_SYS_ADMIN (util-linux mount); run the '
                    f'test with it, or as a non-root user')
            if command[1] == '--bind':
                self.addCleanup(subprocess.run, ['umount', self.path],
                                check=True, timeout=30)
        self.reason = 'Read-only file system'
