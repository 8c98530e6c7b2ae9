"""A real Linux guest for guest-side checks: Debian's kernel + busybox.

The kernel package is fetched with ``apt-get download`` (the version
``linux-image-amd64`` depends on) and unpacked, never installed; the
initramfs is busybox-static plus an /init that reports on the serial
console and powers off. Both are cached under ``cache_dir``.
"""

import dataclasses
import glob
import gzip
import os
import re
import shutil
import subprocess
import tempfile
import time

from pcie_sched import hostinfo
from pcie_sched import probe
from pcie_sched import topology

USERSPACE_MARKER = 'PCIE-SCHED-USERSPACE-UP'
_INIT = f'''#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "{USERSPACE_MARKER} uptime=$(cut -d' ' -f1 /proc/uptime) \\
pci_devices=$(ls /sys/bus/pci/devices | wc -l)"
poweroff -f
'''


class GuestError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class GuestBoot:
    ports: int
    vcpus: int
    userspace: bool
    seconds: float
    pci_devices: int
    console_tail: str


def _run(args, cwd=None, timeout=600):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise GuestError(f'{" ".join(args)} failed: {result.stderr[-500:]}')
    return result.stdout


def kernel(cache_dir):
    """Path of Debian's amd64 kernel image, downloaded once."""
    found = glob.glob(os.path.join(cache_dir, 'kernel', 'boot',
                                   'vmlinuz-*-amd64'))
    if found:
        return found[0]
    if shutil.which('apt-get') is None:
        raise GuestError('apt-get not found: the guest kernel comes from '
                         "Debian's linux-image-amd64")
    depends = _run(['apt-cache', 'depends', 'linux-image-amd64'])
    match = re.search(r'Depends: (linux-image-[0-9][^\s]*-amd64)', depends)
    if not match:
        raise GuestError('cannot resolve linux-image-amd64 (run apt-get '
                         f'update): {depends[:300]}')
    os.makedirs(cache_dir, exist_ok=True)
    workdir = tempfile.mkdtemp(dir=cache_dir)
    try:
        os.chmod(workdir, 0o755)  # apt's _apt user writes the download
        _run(['apt-get', 'download', match.group(1)], cwd=workdir)
        deb = glob.glob(os.path.join(workdir, '*.deb'))[0]
        unpacked = os.path.join(workdir, 'kernel')
        _run(['dpkg-deb', '-x', deb, unpacked])
        os.replace(unpacked, os.path.join(cache_dir, 'kernel'))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return kernel(cache_dir)


def initramfs(cache_dir):
    path = os.path.join(cache_dir, 'initrd.gz')
    if os.path.exists(path):
        return path
    busybox = '/bin/busybox'
    if not os.path.exists(busybox):
        raise GuestError('/bin/busybox not found: install the Debian package '
                         'busybox-static')
    if shutil.which('cpio') is None:
        raise GuestError('cpio not found: install the Debian package cpio')
    workdir = tempfile.mkdtemp(dir=cache_dir)
    try:
        root = os.path.join(workdir, 'root')
        for folder in ('bin', 'proc', 'sys', 'dev'):
            os.makedirs(os.path.join(root, folder))
        shutil.copy(busybox, os.path.join(root, 'bin', 'busybox'))
        with open(os.path.join(root, 'init'), 'w') as handle:
            handle.write(_INIT)
        os.chmod(os.path.join(root, 'init'), 0o755)
        files = subprocess.run(['find', '.'], cwd=root, capture_output=True,
                               check=True, timeout=60).stdout
        archive = subprocess.run(['cpio', '-o', '-H', 'newc'], cwd=root,
                                 input=files, capture_output=True,
                                 check=True, timeout=60).stdout
        staged = os.path.join(workdir, 'initrd.gz')
        with gzip.open(staged, 'wb') as handle:
            handle.write(archive)
        os.replace(staged, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return path


def boot(ports, vcpus, cache_dir, timeout=400):
    """Boot the guest with the plan for ``ports`` root ports (all free)."""
    fw = hostinfo.firmware('x86_64', 'uefi')
    plan = topology.plan(ports, (), 'x86_64', 'q35')
    vmlinuz = kernel(cache_dir)
    initrd = initramfs(cache_dir)
    workdir = tempfile.mkdtemp(prefix=probe.TEMP_PREFIX)
    serial = os.path.join(workdir, 'serial.log')
    variables = os.path.join(workdir, 'vars.fd')
    shutil.copyfile(fw.variables, variables)
    command = [hostinfo.qemu_binary('x86_64'), '-machine', 'q35', '-accel',
               'tcg', '-smp', str(vcpus), '-m', '1024', '-nodefaults',
               '-display', 'none', '-net', 'none', '-serial',
               f'file:{serial}',
               '-drive', f'if=pflash,format=raw,readonly=on,file={fw.code}',
               '-drive', f'if=pflash,format=raw,file={variables}',
               '-kernel', vmlinuz, '-initrd', initrd,
               '-append', 'console=ttyS0 quiet loglevel=4 panic=-1',
               *topology.to_qemu_args(plan)]
    start = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        probe._stop(process)
        seconds = time.monotonic() - start
        with open(serial, 'rb') as handle:
            console = probe.clean_console(
                handle.read().decode('utf-8', errors='replace'))
        shutil.rmtree(workdir, ignore_errors=True)
    match = re.search(USERSPACE_MARKER + r' uptime=\S+ pci_devices=(\d+)',
                      console)
    return GuestBoot(ports, vcpus, bool(match), round(seconds, 1),
                     int(match.group(1)) if match else 0, console[-600:])
