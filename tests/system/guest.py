"""A real Linux guest for guest-side checks: Debian's kernel + busybox.

The kernel package is fetched with ``apt-get download`` (the version
``linux-image-amd64`` depends on) and unpacked, never installed; the
initramfs is busybox-static plus an /init that reports on the serial
console and powers off. Both are cached under ``cache_dir``.
"""

import dataclasses
import glob
import gzip
import hashlib
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
# With pcie_sched_expect=N on the kernel command line, /init waits for N
# virtio devices to be hot-plugged and reports each one's BARs: "BARS-OK"
# when every BAR with a size has an address.
_INIT = f'''#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "{USERSPACE_MARKER} uptime=$(cut -d' ' -f1 /proc/uptime) \\
pci_devices=$(ls /sys/bus/pci/devices | wc -l)"
expect=$(sed -n 's/.*pcie_sched_expect=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
if [ -n "$expect" ]; then
    waited=0
    while [ "$(grep -l 0x1af4 /sys/bus/pci/devices/*/vendor | wc -l)" \\
            -lt "$expect" ] && [ $waited -lt 600 ]; do
        sleep 1; waited=$((waited + 1))
    done
    sleep 3
    for dev in /sys/bus/pci/devices/*; do
        [ "$(cat $dev/vendor)" = 0x1af4 ] || continue
        state=BARS-OK
        while read start end flags; do
            if [ "$flags" != 0x0000000000000000 ] && \\
                    [ "$start" = 0x0000000000000000 ]; then
                state=BARS-MISSING
            fi
        done < $dev/resource
        echo "HOTPLUGGED $(basename $dev) $state"
    done
    echo PCIE-SCHED-REPORT-DONE
fi
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
    #: guest PCI address -> BARS-OK / BARS-MISSING, for hot-plugged devices
    hotplugged: dict = dataclasses.field(default_factory=dict)


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
    recipe = hashlib.sha256(_INIT.encode()).hexdigest()[:12]
    path = os.path.join(cache_dir, f'initrd-{recipe}.gz')
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


def boot(ports, vcpus, cache_dir, timeout=400, hotplug=False):
    """Boot the guest with the plan for ``ports`` root ports (all free).

    With ``hotplug``, once userspace is up a virtio-rng device is
    hot-plugged into every port through QMP and the guest reports each
    device's BARs (:attr:`GuestBoot.hotplugged`).
    """
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
               '-append', 'console=ttyS0 quiet loglevel=4 panic=-1' + (
                   f' pcie_sched_expect={ports}' if hotplug else ''),
               '-qmp', f'unix:{os.path.join(workdir, "qmp.sock")},'
                       f'server=on,wait=off',
               *topology.to_qemu_args(plan)]
    start = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        if hotplug:
            _hotplug_all(plan, serial, os.path.join(workdir, 'qmp.sock'),
                         start + timeout)
        process.wait(timeout=max(start + timeout - time.monotonic(), 1))
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
    hotplugged = dict(re.findall(r'HOTPLUGGED (\S+) (BARS-\w+)', console))
    return GuestBoot(ports, vcpus, bool(match), round(seconds, 1),
                     int(match.group(1)) if match else 0, console[-600:],
                     hotplugged)


def _hotplug_all(plan, serial, qmp_path, deadline):
    import json
    import socket
    while USERSPACE_MARKER not in _read(serial):
        if time.monotonic() > deadline:
            raise GuestError('the guest never reached userspace')
        time.sleep(0.5)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(qmp_path)
        stream = sock.makefile('rw')
        stream.readline()

        def execute(command, **arguments):
            stream.write(json.dumps({'execute': command,
                                     'arguments': arguments}) + '\n')
            stream.flush()
            while True:
                reply = json.loads(stream.readline())
                if 'event' not in reply:
                    return reply

        execute('qmp_capabilities')
        for port in plan.free:
            reply = execute('device_add', driver='virtio-rng-pci',
                            bus=port.qemu_id, id=f'hotplug{port.index}')
            if 'error' in reply:
                raise GuestError(f'device_add into {port.qemu_id}: '
                                 f'{reply["error"]}')


def _read(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read().decode('utf-8', errors='replace')
    except FileNotFoundError:
        return ''
