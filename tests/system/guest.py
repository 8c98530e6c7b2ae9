"""A real Linux guest for guest-side checks: Debian's kernel + busybox.

The kernel package is fetched with ``apt-get download`` (the version
``linux-image-amd64`` or ``linux-image-arm64`` depends on) and unpacked,
never installed; the initramfs is busybox-static plus an /init that
reports on the serial console and powers off. Everything is cached under
``cache_dir``. arm64 packages come from a private apt state under
``cache_dir`` (its own package lists with the arm64 architecture), so the
host needs neither ``dpkg --add-architecture`` nor root.
"""

import dataclasses
import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from pcie_sched import hostinfo
from pcie_sched import probe
from pcie_sched import topology

USERSPACE_MARKER = 'PCIE-SCHED-USERSPACE-UP'
WATCH_BEGIN = 'PCIE-SCHED-WATCH-BEGIN'
WATCH_END = 'PCIE-SCHED-WATCH-END'
DEBIAN_ARCH = {'x86_64': 'amd64', 'aarch64': 'arm64'}
#: What the guest's console is on, per architecture.
CONSOLE = {'x86_64': 'ttyS0', 'aarch64': 'ttyAMA0'}
#: The virtio PCI driver stack and virtio-rng, in load order (each after
#: the modules it needs; Debian ships no modules.dep in the package).
#: Modules the kernel has built in are left out (see _modules).
VIRTIO_MODULES = (
    ('CONFIG_VIRTIO', 'drivers/virtio/virtio.ko'),
    ('CONFIG_VIRTIO', 'drivers/virtio/virtio_ring.ko'),
    ('CONFIG_VIRTIO_PCI_LIB', 'drivers/virtio/virtio_pci_modern_dev.ko'),
    ('CONFIG_VIRTIO_PCI_LIB_LEGACY',
     'drivers/virtio/virtio_pci_legacy_dev.ko'),
    ('CONFIG_VIRTIO_PCI', 'drivers/virtio/virtio_pci.ko'),
    ('CONFIG_HW_RANDOM_VIRTIO', 'drivers/char/hw_random/virtio-rng.ko'),
    # virtio-net and virtio-blk, for the NICs and disks nova plugs in
    # (tests/e2e).
    ('CONFIG_FAILOVER', 'net/core/failover.ko'),
    ('CONFIG_NET_FAILOVER', 'drivers/net/net_failover.ko'),
    ('CONFIG_VIRTIO_NET', 'drivers/net/virtio_net.ko'),
    ('CONFIG_VIRTIO_BLK', 'drivers/block/virtio_blk.ko'),
)
# /init loads the modules listed in /modules, then reports how many
# interrupts the kernel has set up (/sys/kernel/irq: every descriptor,
# requested or only reserved) and how many have a handler
# (/proc/interrupts rows with a number). With pcie_sched_expect=N on the
# kernel command line it waits for N virtio devices to be hot-plugged and
# reports each one's BARs ("BARS-OK" when every BAR with a size has an
# address), the driver bound to it and how many MSI/MSI-X vectors it got.
# With pcie_sched_watch instead it never powers off: whenever the set of
# virtio devices (with their BARs, drivers, vectors and NIC MAC addresses)
# has changed and then stayed the same for a second, it prints the whole
# set between WATCH_BEGIN and WATCH_END lines, for a guest that something
# else (nova) hot-plugs into and reboots.
_INIT = f'''#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
for module in $(cat /modules); do insmod /lib/$module; done
irqs() {{
    echo "irqs=$(ls /sys/kernel/irq | wc -l)" \\
        "handled=$(grep -c '^ *[0-9]*:' /proc/interrupts)" \\
        "msi=$(grep -c MSI /proc/interrupts)"
}}
echo "{USERSPACE_MARKER} uptime=$(cut -d' ' -f1 /proc/uptime) \\
pci_devices=$(ls /sys/bus/pci/devices | wc -l) $(irqs)"
grep -q pcie_sched_dump_irqs /proc/cmdline && cat /proc/interrupts
virtio_state() {{
    for dev in /sys/bus/pci/devices/*; do
        [ "$(cat $dev/vendor)" = 0x1af4 ] || continue
        state=BARS-OK
        while read start end flags; do
            if [ "$flags" != 0x0000000000000000 ] && \\
                    [ "$start" = 0x0000000000000000 ]; then
                state=BARS-MISSING
            fi
        done < $dev/resource
        driver=none
        [ -e $dev/driver ] && driver=$(basename $(readlink $dev/driver))
        vectors=0
        [ -d $dev/msi_irqs ] && vectors=$(ls $dev/msi_irqs | wc -l)
        mac=none
        for address in $dev/virtio*/net/*/address; do
            [ -e $address ] && mac=$(cat $address)
        done
        function=none
        for bound in $dev/virtio*/driver; do
            [ -e $bound ] && function=$(basename $(readlink $bound))
        done
        echo "DEVICE $(basename $dev) $state driver=$driver" \\
            "virtio_driver=$function vectors=$vectors mac=$mac"
    done
}}
expect=$(sed -n 's/.*pcie_sched_expect=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
if [ -n "$expect" ]; then
    waited=0
    while [ "$(grep -l 0x1af4 /sys/bus/pci/devices/*/vendor | wc -l)" \\
            -lt "$expect" ] && [ $waited -lt 900 ]; do
        sleep 1; waited=$((waited + 1))
    done
    # Drivers bind and take their vectors after a device appears: wait
    # until every virtio device has a driver and no vector was added for
    # a second (at most 60 s), rather than for a fixed time.
    last=none
    settled=0
    while [ $settled -lt 60 ]; do
        unbound=0
        vectors=0
        for dev in /sys/bus/pci/devices/*; do
            [ "$(cat $dev/vendor)" = 0x1af4 ] || continue
            [ -e $dev/driver ] || unbound=$((unbound + 1))
            [ -d $dev/msi_irqs ] && \
                vectors=$((vectors + $(ls $dev/msi_irqs | wc -l)))
        done
        [ ! -s /modules ] && break
        [ $unbound -eq 0 ] && [ "$vectors" = "$last" ] && break
        last=$vectors
        sleep 1; settled=$((settled + 1))
    done
    virtio_state | sed 's/^DEVICE /HOTPLUGGED /'
    echo "PCIE-SCHED-REPORT-DONE $(irqs)"
fi
if grep -q pcie_sched_watch /proc/cmdline; then
    printed=""
    previous=""
    seq=0
    while true; do
        current=$(virtio_state)
        if [ "$current" = "$previous" ] && [ "$current" != "$printed" ]; then
            seq=$((seq + 1))
            echo "{WATCH_BEGIN} seq=$seq"
            echo "$current"
            echo "{WATCH_END} seq=$seq"
            printed=$current
        fi
        previous=$current
        sleep 1
    done
fi
poweroff -f
'''


class GuestError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Device:
    """A virtio device the guest found behind a port."""

    bars: str
    driver: str
    vectors: int


@dataclasses.dataclass(frozen=True)
class GuestBoot:
    ports: int
    vcpus: int
    userspace: bool
    seconds: float
    pci_devices: int
    console_tail: str
    #: guest PCI address -> BARS-OK / BARS-MISSING, for virtio devices
    hotplugged: dict = dataclasses.field(default_factory=dict)
    #: guest PCI address -> Device, for virtio devices
    devices: dict = dataclasses.field(default_factory=dict)
    #: interrupt counts when userspace came up and after the hot-plug:
    #: {'irqs': descriptors, 'handled': with a handler, 'msi': MSI rows}
    irqs_at_boot: dict = dataclasses.field(default_factory=dict)
    irqs_at_end: dict = dataclasses.field(default_factory=dict)
    arch: str = 'x86_64'

    @property
    def with_vectors(self) -> int:
        """Devices whose driver bound and that got MSI/MSI-X vectors."""
        return sum(1 for device in self.devices.values()
                   if device.driver != 'none' and device.vectors > 0)


def _run(args, cwd=None, timeout=600):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise GuestError(f'{" ".join(args)} failed: {result.stderr[-500:]}')
    return result.stdout


def _apt_options(cache_dir, arch):
    """apt-get options for ``arch``'s packages.

    The host's own architecture uses the host's apt state; another one
    gets a private state under ``cache_dir`` (lists fetched with
    ``apt-get update`` into it), so nothing on the host changes.
    """
    debian = DEBIAN_ARCH[arch]
    host = _run(['dpkg', '--print-architecture']).strip()
    if debian == host:
        return []
    state = os.path.join(cache_dir, f'apt-{debian}')
    options = ['-o', f'APT::Architecture={debian}',
               '-o', f'APT::Architectures::={debian}',
               '-o', f'Dir::State::Lists={state}/lists',
               '-o', f'Dir::Cache={state}/cache',
               '-o', 'Dir::State::status=/dev/null']
    if not os.path.isdir(os.path.join(state, 'lists')):
        staged = tempfile.mkdtemp(dir=cache_dir)
        for folder in ('lists/partial', 'cache/archives/partial'):
            os.makedirs(os.path.join(staged, folder))
        for root, folders, _ in os.walk(staged):
            os.chmod(root, 0o777)  # apt's _apt user writes the lists
        staged_options = [option.replace(state, staged)
                          for option in options]
        try:
            _run(['apt-get', *staged_options, 'update'])
        except GuestError as error:
            shutil.rmtree(staged, ignore_errors=True)
            raise GuestError(
                f'cannot fetch the {debian} package lists for the '
                f'{arch} guest ({error}); the guest needs network access to '
                f'the Debian archive, or put linux-image-*-{debian} unpacked '
                f'under {cache_dir}/{debian}/kernel') from None
        os.replace(staged, state)
    return options


def _download(cache_dir, arch, meta, pattern):
    """Unpack the package ``meta`` depends on (matching ``pattern``)."""
    if shutil.which('apt-get') is None:
        raise GuestError(
            f"apt-get not found: the {arch} guest kernel is Debian's {meta}, "
            f'fetched with apt-get download (install apt, with access to '
            f'the Debian archive) or unpacked by hand under '
            f'{_arch_dir(cache_dir, arch)}/kernel')
    options = _apt_options(cache_dir, arch)
    depends = _run(['apt-cache', *options, 'depends', meta])
    match = re.search(r'Depends: (' + pattern + r')\b', depends)
    if not match:
        raise GuestError(f'cannot resolve {meta} (run apt-get update): '
                         f'{depends[:300]}')
    return _fetch_unpacked(cache_dir, options, match.group(1))


def _fetch_unpacked(cache_dir, options, package):
    os.makedirs(cache_dir, exist_ok=True)
    workdir = tempfile.mkdtemp(dir=cache_dir)
    try:
        os.chmod(workdir, 0o755)  # apt's _apt user writes the download
        _run(['apt-get', *options, 'download', package], cwd=workdir)
        deb = glob.glob(os.path.join(workdir, '*.deb'))[0]
        unpacked = os.path.join(workdir, 'unpacked')
        _run(['dpkg-deb', '-x', deb, unpacked])
        return unpacked, workdir
    except Exception:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _arch_dir(cache_dir, arch):
    # amd64 keeps the layout of earlier caches (cache_dir/kernel).
    if arch == 'x86_64':
        return cache_dir
    return os.path.join(cache_dir, DEBIAN_ARCH[arch])


def kernel(cache_dir, arch='x86_64'):
    """Path of Debian's kernel image for ``arch``, downloaded once."""
    debian = DEBIAN_ARCH[arch]
    home = _arch_dir(cache_dir, arch)
    found = glob.glob(os.path.join(home, 'kernel', 'boot',
                                   f'vmlinuz-*-{debian}'))
    if found:
        return found[0]
    os.makedirs(home, exist_ok=True)
    unpacked, workdir = _download(cache_dir, arch, f'linux-image-{debian}',
                                  rf'linux-image-[0-9][^\s]*-{debian}')
    try:
        os.replace(unpacked, os.path.join(home, 'kernel'))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return kernel(cache_dir, arch)


def busybox(cache_dir, arch='x86_64'):
    """A static busybox for ``arch``: the host's, or arm64's from Debian."""
    if arch == 'x86_64':
        if not os.path.exists('/bin/busybox'):
            raise GuestError('/bin/busybox not found: install the Debian '
                             'package busybox-static')
        return '/bin/busybox'
    path = os.path.join(_arch_dir(cache_dir, arch), 'busybox')
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    options = _apt_options(cache_dir, arch)
    unpacked, workdir = _fetch_unpacked(
        cache_dir, options, f'busybox-static:{DEBIAN_ARCH[arch]}')
    try:
        os.replace(os.path.join(unpacked, 'bin', 'busybox'), path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return path


def _modules(vmlinuz):
    """The virtio modules to load, relative to lib/modules/<version>."""
    version = os.path.basename(vmlinuz)[len('vmlinuz-'):]
    root = os.path.dirname(os.path.dirname(vmlinuz))
    config = os.path.join(root, 'boot', f'config-{version}')
    with open(config) as handle:
        built = dict(re.findall(r'^(CONFIG_\w+)=(\S+)$', handle.read(),
                                re.MULTILINE))
    modules_dir = os.path.join(root, 'lib', 'modules', version, 'kernel')
    wanted = []
    for option, module in VIRTIO_MODULES:
        if built.get(option) == 'y':
            continue
        if built.get(option) != 'm':
            raise GuestError(f'{config}: {option}={built.get(option)}; the '
                             f'guest needs it as y or m')
        wanted.append(os.path.join(modules_dir, module))
    return wanted


def initramfs(cache_dir, arch='x86_64', drivers=False):
    vmlinuz = kernel(cache_dir, arch)
    modules = _modules(vmlinuz) if drivers else []
    recipe = hashlib.sha256('\n'.join(
        [_INIT, arch, vmlinuz] + modules).encode()).hexdigest()[:12]
    path = os.path.join(cache_dir, f'initrd-{recipe}.gz')
    if os.path.exists(path):
        return path
    static = busybox(cache_dir, arch)
    if shutil.which('cpio') is None:
        raise GuestError('cpio not found: install the Debian package cpio')
    workdir = tempfile.mkdtemp(dir=cache_dir)
    try:
        root = os.path.join(workdir, 'root')
        for folder in ('bin', 'proc', 'sys', 'dev', 'lib'):
            os.makedirs(os.path.join(root, folder))
        shutil.copy(static, os.path.join(root, 'bin', 'busybox'))
        for module in modules:
            shutil.copy(module, os.path.join(root, 'lib'))
        with open(os.path.join(root, 'modules'), 'w') as handle:
            handle.write(''.join(os.path.basename(module) + '\n'
                                 for module in modules))
        with open(os.path.join(root, 'init'), 'w') as handle:
            handle.write(_INIT)
        os.chmod(os.path.join(root, 'init'), 0o755)
        os.chmod(os.path.join(root, 'bin', 'busybox'), 0o755)
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


def boot(ports, vcpus, cache_dir, timeout=400, hotplug=False,
         drivers=False, cold_plugged=0, arch='x86_64', gic_version=None,
         dump_irqs=False):
    """Boot the guest with the plan for ``ports`` free root ports.

    With ``hotplug``, once userspace is up a virtio-rng device is
    hot-plugged into every free port through QMP and the guest reports
    each device's BARs, driver and vectors (:attr:`GuestBoot.devices`).
    ``drivers`` loads virtio_pci and virtio-rng in /init before it
    reports. ``cold_plugged`` virtio-rng devices sit on ports of their own
    from the start. ``gic_version`` (aarch64): QEMU's virt gic-version,
    None for QEMU's default. ``dump_irqs``: /proc/interrupts at boot goes
    to the console (:attr:`GuestBoot.console_tail`).
    """
    fw = hostinfo.firmware(arch, 'uefi')
    plan = topology.plan(ports, cold_plugged, arch)
    vmlinuz = kernel(cache_dir, arch)
    initrd = initramfs(cache_dir, arch, drivers)
    workdir = tempfile.mkdtemp(prefix=probe.TEMP_PREFIX)
    serial = os.path.join(workdir, 'serial.log')
    variables = os.path.join(workdir, 'vars.fd')
    shutil.copyfile(fw.variables, variables)
    machine = plan.machine
    if gic_version is not None:
        machine += f',gic-version={gic_version}'
    command = [hostinfo.qemu_binary(arch), '-machine', machine, '-accel',
               'tcg', '-smp', str(vcpus), '-m', '1024', '-nodefaults',
               '-display', 'none', '-net', 'none', '-serial',
               f'file:{serial}']
    if arch == 'aarch64':
        command += ['-cpu', 'cortex-a57']
    command += [
        '-drive', f'if=pflash,format=raw,readonly=on,file={fw.code}',
        '-drive', f'if=pflash,format=raw,file={variables}',
        '-kernel', vmlinuz, '-initrd', initrd,
        '-append', ' '.join(filter(None, (
            f'console={CONSOLE[arch]} quiet loglevel=4 panic=-1',
            f'pcie_sched_expect={ports + cold_plugged}' if hotplug else '',
            'pcie_sched_dump_irqs' if dump_irqs else ''))),
        '-qmp', f'unix:{os.path.join(workdir, "qmp.sock")},'
                f'server=on,wait=off',
        *topology.to_qemu_args(plan)]
    occupied = [port for port in plan.ports if port.occupant is not None]
    for number, port in enumerate(occupied):
        command += ['-device', f'virtio-rng-pci,bus={port.qemu_id},'
                               f'id=cold{number}']
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
        try:
            probe._stop(process)
            seconds = time.monotonic() - start
            # QEMU may exit before it creates the serial file (a refused
            # option): an empty console, not a FileNotFoundError that
            # would hide QEMU's failure and keep the work directory.
            console = probe.clean_console(_read(serial))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return _parse(console, ports, vcpus, seconds, arch)


_COUNTS = r'irqs=(\d+) handled=(\d+) msi=(\d+)'


def _counts(match):
    if not match:
        return {}
    return dict(zip(('irqs', 'handled', 'msi'), map(int, match.groups())))


def _parse(console, ports, vcpus, seconds, arch):
    match = re.search(USERSPACE_MARKER + r' uptime=\S+ pci_devices=(\d+) '
                      + _COUNTS, console)
    end = re.search('PCIE-SCHED-REPORT-DONE ' + _COUNTS, console)
    devices = {
        address: Device(bars, driver, int(vectors))
        for address, bars, driver, vectors in re.findall(
            r'HOTPLUGGED (\S+) (BARS-\w+) driver=(\S+) virtio_driver=\S+ '
            r'vectors=(\d+)',
            console)}
    return GuestBoot(
        ports, vcpus, bool(match), round(seconds, 1),
        int(match.group(1)) if match else 0, console[-3000:],
        {address: device.bars for address, device in devices.items()},
        devices, _counts(match and re.match(
            r'.*' + _COUNTS, match.group(0))), _counts(end), arch)


def _hotplug_all(plan, serial, qmp_path, deadline):
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


@dataclasses.dataclass(frozen=True)
class WatchedDevice:
    """A virtio device as a ``pcie_sched_watch`` guest reported it."""

    address: str
    bars: str
    #: the PCI driver (virtio-pci) and the virtio one (virtio_net, ...)
    driver: str
    virtio_driver: str
    vectors: int
    #: a NIC's MAC address as the guest's kernel sees it, else 'none'
    mac: str


_WATCH = re.compile(
    WATCH_BEGIN + r' seq=(\d+)\r?\n(.*?)' + WATCH_END + r' seq=\1',
    re.DOTALL)
_WATCHED = re.compile(r'DEVICE (\S+) (\S+) driver=(\S+) virtio_driver=(\S+) '
                      r'vectors=(\d+) mac=(\S+)')


def watch_reports(console):
    """Every report of a ``pcie_sched_watch`` guest, oldest first.

    Each is ``{guest PCI address: WatchedDevice}``.
    """
    reports = []
    for match in _WATCH.finditer(console):
        devices = {}
        for line in _WATCHED.finditer(match.group(2)):
            address, bars, driver, function, vectors, mac = line.groups()
            devices[address] = WatchedDevice(address, bars, driver, function,
                                             int(vectors), mac)
        reports.append(devices)
    return reports
