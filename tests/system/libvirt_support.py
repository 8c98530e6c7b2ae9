"""A private libvirtd for system tests, and domains built from plans.

The fixture starts Debian's ``libvirtd`` with its sockets in a temporary
directory (CI machines run no systemd, and a host's own libvirtd is left
alone), with ``--timeout`` so it exits by itself even if a test run is
killed. Needs libvirt-daemon-system, libvirt-clients, qemu-system-x86 and
ovmf.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import fixtures
from lxml import etree

from pcie_sched import topology


VIRTLOGD_SOCKET = '/run/libvirt/virtlogd-sock'
KVM_DEVICE = '/dev/kvm'
QEMU_CONF = '/etc/libvirt/qemu.conf'
BIND_AND_EXEC = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             'bind_and_exec.py')
#: libvirtd asks QEMU for its capabilities with a daemonized QEMU whose
#: QMP socket lives here; stopped mid-probe, libvirtd leaves it running.
CAPABILITY_PROBE_DIR = b'/var/lib/libvirt/qemu/qmp-'


def mount_namespace(pid):
    """The mount namespace of process ``pid`` (None once it is gone)."""
    try:
        return os.readlink(f'/proc/{pid}/ns/mnt')
    except OSError:
        return None


def _processes():
    """(pid, command line) of every process that can still be read."""
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/cmdline', 'rb') as handle:
                yield int(entry), handle.read()
        except OSError:
            continue


def capability_probes(namespace=None):
    """PIDs of QEMU processes libvirtd started to read capabilities.

    :param namespace: only those in this mount namespace (see
        :func:`mount_namespace`): a private daemon's probes, not those of
        another test's daemon running at the same time.
    """
    return {pid for pid, cmdline in _processes()
            if b'qemu-system' in cmdline and CAPABILITY_PROBE_DIR in cmdline
            and (namespace is None or mount_namespace(pid) == namespace)}


def processes_in(namespace):
    """PIDs of every process in mount namespace ``namespace``.

    None left means the namespace, and every mount made in it, is gone.
    """
    return {pid for pid, _ in _processes()
            if mount_namespace(pid) == namespace}


def qemu_processes(namespace):
    """PIDs of every QEMU process in mount namespace ``namespace``."""
    return {pid for pid, cmdline in _processes()
            if b'qemu-system' in cmdline and mount_namespace(pid) == namespace}


#: Where libvirtd and virtlogd keep their state. A daemon with
#: ``private_state`` gets an empty directory (or tmpfs) over each, seen by
#: itself only, so it never meets the host's libvirtd, its domains, its
#: networks or its lock and pid files.
PRIVATE_STATE_DIRS = ('/var/lib/libvirt', '/var/cache/libvirt',
                      '/var/log/libvirt', '/etc/libvirt/qemu')


class LibvirtDaemon(fixtures.Fixture):
    """A libvirtd of the test's own, reached at :attr:`uri`.

    :param private_state: run libvirtd and its own virtlogd in a mount
        namespace where /run is a fresh tmpfs and each of
        :data:`PRIVATE_STATE_DIRS` an empty directory under the test's
        work directory: the end-to-end tier, whose guests are nova's,
        must not share pid files, domain definitions, NVRAM or logs with
        the host or another test's daemon.
    :param rootdir: where to make the work directory (default: the
        temporary directory); every directory above it must be open to
        libvirt's qemu user, which reads the guests' files there.
    """

    def __init__(self, private_state=False, rootdir=None):
        super().__init__()
        self.private_state = private_state
        self.rootdir = rootdir

    def _setUp(self):
        for tool, package in (('libvirtd', 'libvirt-daemon-system'),
                              ('virsh', 'libvirt-clients')):
            if shutil.which(tool) is None:
                raise RuntimeError(f'{tool} not found: install the Debian '
                                   f'package {package} (see bindep.txt)')
        self.workdir = self.useFixture(fixtures.TempDir(self.rootdir)).path
        # QEMU runs as libvirt's qemu user: it must reach our files.
        os.chmod(self.workdir, 0o755)
        config = os.path.join(self.workdir, 'libvirtd.conf')
        with open(config, 'w') as handle:
            handle.write(f'unix_sock_dir = "{self.workdir}"\n'
                         'auth_unix_rw = "none"\nauth_unix_ro = "none"\n')
        self.uri = (f'qemu:///system?socket='
                    f'{os.path.join(self.workdir, "libvirt-sock")}')
        self.log_path = os.path.join(self.workdir, 'libvirtd.log')
        log = open(self.log_path, 'wb')
        self.addCleanup(log.close)
        self.logd = None
        if not self.private_state and not os.path.exists(VIRTLOGD_SOCKET):
            # libvirt's QEMU driver hands guest console logs to virtlogd.
            self.logd = subprocess.Popen(
                ['virtlogd', '--timeout', '900'], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        # libvirt tests share one stestr worker (see .stestr.conf), so any
        # capability probe that appears from here on is this daemon's.
        self.probes_before = set() if self.private_state else (
            capability_probes())
        command = ['libvirtd', '--config', config, '--timeout', '900',
                   '--pid-file', os.path.join(self.workdir, 'libvirtd.pid')]
        if self.private_state or os.path.exists(KVM_DEVICE):
            command = self._isolated(command)
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.addCleanup(self._stop)
        self._wait_until_up()
        self.namespace = (mount_namespace(self.process.pid)
                          if self.private_state else None)
        if self.private_state:
            # The namespace exists once libvirtd answers; its virtlogd
            # must see the same private /run (its socket lives there).
            self.logd = subprocess.Popen(
                ['nsenter', '--target', str(self.process.pid), '--mount',
                 '--', 'virtlogd', '--timeout', '900', '--pid-file',
                 os.path.join(self.workdir, 'virtlogd.pid')],
                stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def _wait_until_up(self):
        deadline = time.monotonic() + 60
        while True:
            result = self.virsh('version', check=False)
            if result.returncode == 0:
                return
            if self.process.poll() is not None or (
                    time.monotonic() > deadline):
                with open(self.log_path) as out:
                    raise RuntimeError('libvirtd did not start (is another '
                                       'libvirtd running?): ' +
                                       out.read()[-2000:])
            time.sleep(0.3)

    def _isolated(self, command):
        """``command`` in a mount namespace of its own.

        The guests here run under TCG. Where /dev/kvm exists but only
        root may open it (no udev rule giving it to the kvm group, as on
        this project's CI machines), libvirt 9.0 probes QEMU's
        capabilities with KVM, then finds its qemu user cannot use KVM
        and throws the probe away, on every lookup: each ``virsh
        define`` re-probes QEMU for minutes. A placeholder file over
        /dev/kvm makes the probe and the check agree (no KVM), so libvirt
        probes once and keeps the result. libvirt cannot carry a file
        mounted on /dev into a guest's private /dev, so this daemon's
        qemu.conf (Debian's defaults otherwise) turns those off. With
        ``private_state`` the namespace also hides the host's libvirt
        state (see the class docstring).
        """
        for tool in ('unshare', 'nsenter'):
            if shutil.which(tool) is None:
                raise RuntimeError(f'{tool} not found: install the Debian '
                                   f'package util-linux')
        mounts = []
        if os.path.exists(KVM_DEVICE):
            placeholder = os.path.join(self.workdir, 'no-kvm')
            with open(placeholder, 'w'):
                pass
            os.chmod(placeholder, 0o600)
            mounts.append(f'{placeholder}:{KVM_DEVICE}')
        qemu_conf = os.path.join(self.workdir, 'qemu.conf')
        with open(qemu_conf, 'w') as handle:
            handle.write('namespaces = []\n')
        mounts.append(f'{qemu_conf}:{QEMU_CONF}')
        if self.private_state:
            mounts.append('tmpfs:/run')
            for target in PRIVATE_STATE_DIRS:
                source = os.path.join(self.workdir, 'state',
                                      target.strip('/').replace('/', '-'))
                os.makedirs(source)
                os.makedirs(target, exist_ok=True)
                mounts.append(f'{source}:{target}')
        return (['unshare', '--mount', '--propagation', 'private', '--',
                 sys.executable, BIND_AND_EXEC, *mounts, '--'] + command)

    def _stop(self):
        for domain in self.virsh('list', '--all', '--name',
                                 check=False).stdout.split():
            self.virsh('destroy', domain, check=False)
            self.virsh('undefine', '--nvram', domain, check=False)
        for process in (self.process, self.logd):
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in capability_probes(self.namespace) - self.probes_before:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def virsh(self, *args, check=True, timeout=120):
        result = subprocess.run(['virsh', '-c', self.uri, *args],
                                capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f'virsh {" ".join(args)} failed: '
                                 f'{result.stderr.strip()}')
        return result


def domain_xml(name, workdir, disk, plan=None):
    """A small q35 + OVMF guest booting ``disk``, with ``plan``'s ports."""
    qemu_ns = topology.QEMU_XML_NS
    domain = etree.Element('domain', type='qemu', nsmap={'qemu': qemu_ns})
    etree.SubElement(domain, 'name').text = name
    etree.SubElement(domain, 'memory', unit='MiB').text = '512'
    etree.SubElement(domain, 'vcpu').text = '1'
    os_element = etree.SubElement(domain, 'os')
    etree.SubElement(os_element, 'type', arch='x86_64',
                     machine='q35').text = 'hvm'
    etree.SubElement(os_element, 'loader', readonly='yes',
                     type='pflash').text = '/usr/share/OVMF/OVMF_CODE_4M.fd'
    etree.SubElement(
        os_element, 'nvram',
        template='/usr/share/OVMF/OVMF_VARS_4M.fd').text = os.path.join(
            workdir, f'{name}_VARS.fd')
    features = etree.SubElement(domain, 'features')
    etree.SubElement(features, 'acpi')
    devices = etree.SubElement(domain, 'devices')
    if plan is not None:
        rendered = topology.to_libvirt_xml(plan)
        devices.extend(rendered.find('devices'))
        domain.append(rendered.find(f'{{{qemu_ns}}}override'))
    disk_element = etree.SubElement(devices, 'disk', type='file',
                                    device='disk')
    etree.SubElement(disk_element, 'driver', name='qemu', type='raw')
    etree.SubElement(disk_element, 'source', file=disk)
    etree.SubElement(disk_element, 'target', dev='vda', bus='virtio')
    etree.SubElement(disk_element, 'readonly')
    serial = etree.SubElement(devices, 'serial', type='file')
    etree.SubElement(serial, 'source',
                     path=os.path.join(workdir, f'{name}.serial'))
    # Without these libvirt would add a qemu-xhci USB controller and a
    # balloon, each taking one of the plan's ports.
    etree.SubElement(devices, 'controller', type='usb', model='none')
    etree.SubElement(devices, 'memballoon', model='none')
    return etree.tostring(domain, pretty_print=True).decode()


def rng_device_xml():
    """A virtio RNG: a PCIe endpoint that needs no host resources."""
    return ("<rng model='virtio'><backend model='random'>/dev/urandom"
            "</backend></rng>")
