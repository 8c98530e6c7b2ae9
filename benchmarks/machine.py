"""The machine a QEMU benchmark ran on, recorded next to its numbers.

Boot times under TCG depend on the host CPU, on QEMU's and the
firmware's builds, and on what else shares the cores, so every result
file carries them.
"""

import contextlib
import datetime
import os
import platform
import shutil
import subprocess  # nosec B404  # argument lists only, no shell
import tempfile

from pcie_sched import hostinfo

#: Debian packages whose versions decide the firmware's behaviour.
PACKAGES = ('qemu-system-x86', 'qemu-system-arm', 'ovmf', 'seabios',
            'qemu-efi-aarch64')


def cpu_model():
    try:
        with open('/proc/cpuinfo') as handle:
            for line in handle:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def package_versions():
    versions = {}
    for package in PACKAGES:
        try:
            result = subprocess.run(  # nosec B603 B607
                ['dpkg-query', '-W', '-f', '${Version}', package],
                capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            versions[package] = 'unknown (dpkg-query not usable)'
            continue
        versions[package] = (result.stdout.strip()
                             if result.returncode == 0 else 'not installed')
    return versions


def qemu_versions():
    versions = {}
    for arch in ('x86_64', 'aarch64'):
        try:
            versions[arch] = hostinfo.qemu_version(
                hostinfo.qemu_binary(arch))[0]
        except hostinfo.HostError as exc:
            versions[arch] = f'not usable: {exc}'
    return versions


def describe():
    return {'cpu': cpu_model(), 'cores': os.cpu_count(),
            'kernel': platform.release(),
            'python': platform.python_version(),
            'qemu': qemu_versions(), 'packages': package_versions(),
            'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec='seconds'),
            'load_average_at_start': [round(value, 2)
                                      for value in os.getloadavg()]}


def summary(document):
    """One rst paragraph naming the machine."""
    packages = ', '.join(f'{name} {version}' for name, version in
                         sorted(document['packages'].items()))
    load = ' '.join(f'{value:g}' for value in
                    document['load_average_at_start'])
    return (f"Machine: {document['cpu']}, {document['cores']} cores, "
            f"kernel {document['kernel']}, run {document['date']}; "
            f"QEMU {document['qemu'].get('x86_64', '?')}; packages: "
            f"{packages}. Load average at start: {load} (the cores are "
            f"shared with other work, so treat single boots as noisy).")


@contextlib.contextmanager
def scratch_cache():
    """A private probe cache for one run, so nothing measured is reused."""
    cache = tempfile.mkdtemp(prefix='pcie-sched-bench-')
    try:
        yield cache
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def load_average():
    """The 1, 5 and 15 minute load averages, rounded for the record."""
    return [round(value, 2) for value in os.getloadavg()]
