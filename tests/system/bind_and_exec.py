"""Bind-mount files over others, then become a command.

    bind_and_exec.py SOURCE:TARGET [SOURCE:TARGET ...] -- COMMAND [ARGS...]

A SOURCE of ``tmpfs`` mounts an empty tmpfs on TARGET instead. Meant to
run inside ``unshare --mount --propagation private``, so the mounts are
seen by COMMAND and its children only. See
:meth:`tests.system.libvirt_support.LibvirtDaemon._isolated` for why.
"""

import os
import subprocess  # nosec B404  # argument lists only
import sys


def main(argv):
    split = argv.index('--')
    for pair in argv[:split]:
        source, target = pair.split(':', 1)
        if source == 'tmpfs':
            command = ['mount', '-t', 'tmpfs', '-o', 'mode=0755', 'tmpfs',
                       target]
        else:
            command = ['mount', '--bind', source, target]
        subprocess.run(command, check=True, timeout=30)
    command = argv[split + 1:]
    os.execvp(command[0], command)


if __name__ == '__main__':
    main(sys.argv[1:])
