"""What a probe run may leave behind: QEMU processes and temp dirs."""

import glob
import os

PROBE_PREFIX = 'pcie-sched-probe-'


def probe_processes(root):
    """PIDs of QEMU processes a probe started with temp dirs under root.

    Tests run in parallel, so each test gives its probes a private temp
    root and looks only for what lives there.
    """
    found = []
    for path in glob.glob('/proc/[0-9]*/cmdline'):
        try:
            with open(path, 'rb') as handle:
                cmdline = handle.read().replace(b'\0', b' ')
        except OSError:
            continue
        marker = os.path.join(root, PROBE_PREFIX).encode()
        if b'qemu-system' in cmdline and marker in cmdline:
            found.append(int(path.split('/')[2]))
    return found


def probe_temp_dirs(root):
    return glob.glob(os.path.join(root, PROBE_PREFIX + '*'))
