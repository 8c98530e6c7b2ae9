"""nova's integrated stack over a real libvirtd booting real QEMU guests.

nova's API, conductor, scheduler (with PciHotplugPortsFilter) and compute
run as in nova's own integrated functional tests
(:class:`nova.tests.functional.integrated_helpers._IntegratedTestBase`,
with nova's Placement, Glance, Neutron and Cinder fixtures), but the
compute is :class:`pcie_sched.virt.driver.PcieSchedLibvirtDriver` with the
real ``libvirt`` binding, connected to a private libvirtd
(:class:`tests.system.libvirt_support.LibvirtDaemon` with
``private_state``) that boots Debian's QEMU and OVMF under TCG. The guest
is Debian's kernel with a busybox initramfs (:mod:`tests.system.guest`),
booted through the image's ``kernel_id``/``ramdisk_id``/
``os_command_line`` as nova does for any such image; it reports every
virtio device it sees on its serial console, which the tests read back
through nova's console-output API.

nova's test base is written for fakelibvirt and guards the host against
tests that forget to mock it. Here the host *is* the component under
test, so :class:`RealHost` puts back exactly the pieces a real
nova-compute needs, each with the reason next to it. Everything else of
nova's (its database, RPC, fixtures for the other services) stays as
nova's tests use it.

Domain names (``instance-%08x``) and tap device names are host-global:
these tests must run one at a time (``tox -e py3`` and ``tox -e e2e``
run them in a stestr run of their own with one worker).
"""

import builtins
import glob
import io
import os
import os.path
import subprocess
import tempfile
import time

import fixtures
# The real binding, imported before nova's TestCase.setUp installs its
# ImportModulePoisonFixture for 'libvirt': that fixture only intercepts
# imports made after it, and nova's libvirt modules bind the module at
# their own import (``nova.virt.libvirt.host.libvirt``).
import libvirt  # noqa: F401
from lxml import etree
from nova import conf as nova_conf
from nova import context as nova_context
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import integrated_helpers
from nova import utils as nova_utils
from nova.virt.libvirt import host as libvirt_host
import psutil

# Registers pcie-sched's option groups before the tests set them.
from pcie_sched import conf as pcie_conf  # noqa: F401
from pcie_sched import spec
from tests.functional import nova_support
from tests.system import guest as guest_os
from tests.system import libvirt_support

FILTER_PATH = 'pcie_sched.filters.pci_hotplug_ports.PciHotplugPortsFilter'
DRIVER = 'pcie_sched_ext.driver.PcieSchedLibvirtDriver'
GUEST_CACHE = os.path.join(os.path.expanduser('~'), '.cache', 'pcie-sched',
                           'guest')
OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd'
#: The host's temporary directory, read before nova's fixtures point
#: TMPDIR at per-test directories that only root may enter (libvirt's
#: qemu user must reach the guests' disks).
HOST_TMP = tempfile.gettempdir()
CONF = nova_conf.CONF

# The real functions, taken at import, before nova's fixtures replace
# them in setUp (see RealHost).
_REAL_HOST_FUNCTIONS = {
    # Host._init_events starts libvirt's event loop thread; nova's
    # PoisonFunctions makes it sys.exit(). A real nova-compute needs the
    # events: lifecycle events and the device-removed events that detach
    # waits for.
    'nova.virt.libvirt.host.Host._init_events':
        libvirt_host.Host._init_events,
    # nova.objects.fields.Architecture.from_host and the tap vif driver
    # read the host's machine and kernel release (GenericPoisonFixture).
    'os.uname': os.uname,
    # nova.compute.utils.get_machine_ips, used by the libvirt driver's
    # my_ip check at start-up (GenericPoisonFixture).
    'psutil.net_if_addrs': psutil.net_if_addrs,
    # The libvirt driver reads the host's CPUs, cgroups and PCI devices
    # from /sys (SysFsPoisonFixture wraps these to refuse /sys paths).
    'os.path.isdir': os.path.isdir,
    'builtins.open': builtins.open,
    'glob.iglob': glob.iglob,
    'glob.glob': glob.glob,
    'os.listdir': os.listdir,
}


class RealHost(fixtures.Fixture):
    """Undo nova's host-poisoning fixtures for one real nova-compute.

    Must be used after nova's ``TestCase.setUp`` (which poisons), before
    the compute service starts.
    """

    def _setUp(self):
        for name, function in _REAL_HOST_FUNCTIONS.items():
            self.useFixture(fixtures.MonkeyPatch(name, function))
        # Privileged helpers (creating and deleting tap devices) run in
        # this root test process instead of a privsep daemon started
        # through rootwrap, which nova's PrivsepNoHelperFixture forbids.
        self.useFixture(nova_fixtures.PrivsepFixture())


#: nova's Neutron fixture ports, bound as plain tap devices:
#: ``binding:vif_type='tap'`` makes nova create the tap device itself and
#: give libvirt an ``<interface type='ethernet'>``, so the guest has a
#: real NIC without an Open vSwitch agent or bridge.
TAP_PORTS = {
    attribute: dict(getattr(nova_fixtures.NeutronFixture, attribute),
                    **{'binding:vif_type': 'tap'})
    for attribute in ('port_1', 'default_port')}


def tap_devices():
    """Names of the tap devices on this host (nova's are 'tap' + port)."""
    return sorted(name for name in os.listdir('/sys/class/net')
                  if name.startswith('tap'))


class RealLibvirtStackTestBase(integrated_helpers._IntegratedTestBase):
    """The integrated stack with the pcie-sched driver on real libvirt."""

    microversion = 'latest'
    ADMIN_API = True
    #: Casts as calls would run a boot inside the API request; nova's
    #: compute does them asynchronously, and so do these tests.
    CAST_AS_CALL = False
    #: Guests per test get this much memory.
    GUEST_MEMORY_MB = 512

    def setUp(self):
        if not nova_utils.concurrency_mode_threading():
            # nova-compute 34 runs on native threads by default; nova's
            # functional tests default to eventlet, whose libvirt event
            # dispatch greenthread never ends and would hang the test's
            # executor shutdown.
            self.fail('the end-to-end tier runs nova on native threads: '
                      'set OS_NOVA_DISABLE_EVENTLET_PATCHING=1 before nova '
                      'is imported (tox -e py3 does)')
        for path, package in ((OVMF_CODE, 'ovmf'),
                              ('/usr/bin/qemu-system-x86_64',
                               'qemu-system-x86'),
                              ('/usr/bin/qemu-img', 'qemu-utils')):
            if not os.path.exists(path):
                self.fail(f'{path} missing: install the Debian package '
                          f'{package} (see bindep.txt)')
        for attribute, port in TAP_PORTS.items():
            self.useFixture(fixtures.MonkeyPatch(
                f'nova.tests.fixtures.NeutronFixture.{attribute}', port))
        # Registered first, so it runs after every other cleanup: the
        # stack, the daemon and its namespace are gone by then (and so
        # are the test's attributes: nova's TestCase clears them).
        self._daemons = []
        self._leftovers = []
        self.addCleanup(self._assert_nothing_left, tap_devices(),
                        self._daemons, self._leftovers)
        super().setUp()

    # -- services ---------------------------------------------------------

    def _setup_services(self):
        # nova's own fixtures are in place by now, the services not yet.
        self.libvirtd = self.useFixture(
            libvirt_support.LibvirtDaemon(private_state=True,
                                          rootdir=HOST_TMP))
        self._daemons.append(self.libvirtd)
        # Runs after the computes stopped, before the daemon stops (which
        # would destroy what is left without a word).
        self.addCleanup(self._record_domains_left, self.libvirtd,
                        self._leftovers)
        self.useFixture(RealHost())
        self.workdir = self.libvirtd.workdir
        instances = os.path.join(self.workdir, 'instances')
        os.makedirs(instances)
        os.chmod(instances, 0o755)
        nova_support.use_installed_api_paste(self)
        self.flags(compute_driver=DRIVER)
        self.flags(connection_uri=self.libvirtd.uri, virt_type='qemu',
                   cpu_mode='none', hw_machine_type=['x86_64=q35'],
                   group='libvirt')
        self.flags(instances_path=instances)
        # No VNC server per guest: nothing here looks at its screen.
        self.flags(enabled=False, group='vnc')
        # The busybox guest does not act on ACPI power-button events, so a
        # clean shutdown would wait out nova's 60 s before it powers off.
        self.flags(shutdown_timeout=0)
        self.flags(available_filters=['nova.scheduler.filters.all_filters',
                                      FILTER_PATH],
                   group='filter_scheduler')
        self.flags(enabled_filters=(
            list(CONF.filter_scheduler.enabled_filters) +
            ['PciHotplugPortsFilter']), group='filter_scheduler')
        # An empty probe cache: the capacity comes from the model, as on a
        # host where nobody ran ``pcie-sched probe`` yet.
        self.flags(cache_dir=os.path.join(self.workdir, 'probe-cache'),
                   group='pcie_sched_probe')
        super()._setup_services()
        # Runs before the computes stop (cleanups run last first).
        self.addCleanup(self._stop_connection_event_threads)

    class _StopThread(BaseException):
        """Ends a Host's connection event thread (see below)."""

    def _stop_connection_event_threads(self):
        """End the thread the real Host._init_events started per compute.

        It waits on a queue forever; a real nova-compute exits with the
        process, but nova's test executor joins its threads at the end of
        each test and would wait for it for ever. Its loop only stops for
        an exception that is not an Exception.
        """
        def stop():
            raise self._StopThread()

        for compute in self.computes.values():
            compute.manager.driver._host._conn_event_handler_queue.put(stop)

    # -- images and flavors -----------------------------------------------

    def create_guest_image(self, firmware='uefi'):
        """A Glance image that boots the reporting Linux guest.

        Root disk: 1 MiB of zeros (the guest runs from its initramfs).
        """
        kernel = guest_os.kernel(GUEST_CACHE)
        initrd = guest_os.initramfs(GUEST_CACHE, drivers=True)
        context = nova_context.get_admin_context()

        def upload(name, disk_format, data, properties=None):
            image = {
                'name': name, 'status': 'active', 'visibility': 'public',
                'disk_format': disk_format, 'container_format': (
                    disk_format if disk_format in ('aki', 'ari') else
                    'bare'),
                'size': len(data), 'min_ram': 0, 'min_disk': 0,
                'properties': properties or {},
            }
            return self.glance.create(context, image, io.BytesIO(data))['id']

        with open(kernel, 'rb') as handle:
            kernel_id = upload('guest-kernel', 'aki', handle.read())
        with open(initrd, 'rb') as handle:
            ramdisk_id = upload('guest-initrd', 'ari', handle.read())
        properties = {
            'kernel_id': kernel_id, 'ramdisk_id': ramdisk_id,
            'os_command_line': ('console=ttyS0 loglevel=4 panic=-1 '
                                'pcie_sched_watch'),
        }
        if firmware == 'uefi':
            properties['hw_firmware_type'] = 'uefi'
        return upload(f'guest-{firmware}', 'raw', b'\0' * (1 << 20),
                      properties)

    def create_flavor(self, ports=None, vcpus=1):
        extra_spec = {} if ports is None else {spec.FLAVOR_KEY: str(ports)}
        return self._create_flavor(memory_mb=self.GUEST_MEMORY_MB,
                                   vcpu=vcpus, disk=1, ephemeral=0,
                                   extra_spec=extra_spec)

    # -- the guest --------------------------------------------------------

    def console(self, server):
        return self.api.post_server_action(
            server['id'], {'os-getConsoleOutput': {}})['output']

    def wait_for_report(self, server, count, timeout=300):
        """The guest's newest report once it lists ``count`` virtio devices.

        nova's console log starts empty at every start of the domain
        (``<log append='off'>``), so after a reboot every report is new.
        """
        deadline = time.monotonic() + timeout
        reports = []
        while time.monotonic() < deadline:
            reports = guest_os.watch_reports(self.console(server))
            if reports and len(reports[-1]) >= count:
                return reports[-1]
            time.sleep(1)
        self.fail(f'the guest did not report {count} virtio devices in '
                  f'{timeout}s; its reports: '
                  f'{[sorted(r) for r in reports[-2:]]}; console tail: '
                  f'{self.console(server)[-1500:]}')

    # -- libvirt's view ---------------------------------------------------

    def live_domain(self, server):
        """The running domain's XML as libvirt has it (addresses filled)."""
        name = self.admin_api.get_server(server['id'])[
            'OS-EXT-SRV-ATTR:instance_name']
        return etree.fromstring(
            self.libvirtd.virsh('dumpxml', name).stdout.encode())

    # -- cleanup ----------------------------------------------------------

    @staticmethod
    def _record_domains_left(daemon, leftovers):
        names = daemon.virsh('list', '--all', '--name',
                             check=False).stdout.split()
        if names:
            leftovers.append(f'libvirt domains {names}')

    def _assert_nothing_left(self, taps_before, daemons, leftovers):
        left = list(leftovers)
        new_taps = sorted(set(tap_devices()) - set(taps_before))
        if new_taps:
            left.append(f'tap devices {new_taps}')
            for tap in new_taps:
                subprocess.run(['ip', 'link', 'delete', tap], timeout=30,
                               capture_output=True, check=False)
        for daemon in daemons:
            qemus = libvirt_support.qemu_processes(daemon.namespace)
            if qemus:
                left.append(f'QEMU processes {sorted(qemus)}')
            for process in (daemon.process, daemon.logd):
                if process.poll() is None:
                    left.append(f'{process.args} still running')
            others = libvirt_support.processes_in(daemon.namespace)
            if others:
                left.append(f'processes {sorted(others)} keep the private '
                            f'mount namespace (and its mounts) alive')
            if os.path.exists(daemon.workdir):
                left.append(f'work directory {daemon.workdir}')
        if left:
            self.fail('the end-to-end test left ' + ', '.join(left))
