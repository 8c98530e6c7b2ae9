"""What a probe run may leave behind: QEMU processes and temp dirs."""

import glob
import os
import tempfile

PROBE_PREFIX = 'pcie-sched-probe-'


def probe_processes():
    """PIDs of QEMU processes started by a probe (by their temp dir)."""
    found = []
    for path in glob.glob('/proc/[0-9]*/cmdline'):
        try:
            with open(path, 'rb') as handle:
                cmdline = handle.read().replace(b'\0', b' ')
        except OSError:
            continue
        if b'qemu-system' in cmdline and PROBE_PREFIX.encode() in cmdline:
            found.append(int(path.split('/')[2]))
    return found


def probe_temp_dirs():
    return glob.glob(os.path.join(tempfile.gettempdir(), PROBE_PREFIX + '*'))
