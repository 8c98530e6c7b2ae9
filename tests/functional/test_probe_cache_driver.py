"""A measured maximum reaches the scheduler through nova-compute.

The real ``pcie-sched probe --find-max`` (one real SeaBIOS boot of q35:
the model's 232 ports boot and 233 do not fit the root bus) reads
``[pcie_sched_probe] cache_dir`` from the same nova.conf that configures
the compute service, stores its result there, and the driver's
``get_available_resource`` reports it as ``pci_hotplug_ports_max``, seen
in the scheduler's ``HostState.stats``.
"""

import json
import os
import stat
import subprocess
import sys
import traceback

import fixtures
from nova import context as nova_context
from oslo_config import cfg

from pcie_sched import conf as pcie_conf
from pcie_sched import hostinfo
from pcie_sched import placement
from pcie_sched import probe
from pcie_sched import spec
from tests import as_user
from tests.functional import placement_server
from tests.functional import test_libvirt_driver
from tests.functional import test_placement

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
#: What the probe's user and nova-compute's user are when they differ.
OTHER_USER = 'nobody'


def run_cli(config_file):
    """``pcie-sched probe --find-max`` for SeaBIOS q35, as JSON."""
    command = [sys.executable, '-m', 'pcie_sched.cmd.main', 'probe',
               '--find-max', '--firmware', 'bios', '--config-file',
               config_file, '--format', 'json']
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=600)


def cached_max_as(user):
    """What ``probe.load_cached_max`` finds when ``user`` runs it."""
    def read():
        # Fingerprint afresh, reading QEMU and the firmware as user.
        hostinfo._BY_FILE.clear()
        found = probe.load_cached_max('x86_64', 'q35', 'bios')
        why = ''
        if found is None:
            # Say why, for the failure message.
            try:
                key = probe.fingerprint('x86_64', 'q35', 'bios')
                with open(os.path.join(probe.default_cache_dir(),
                                       f'find-max-{key}.json')):
                    pass
            except Exception:
                why = traceback.format_exc()
        return json.dumps({'uid': os.geteuid(), 'max_ports': found,
                           'why': why})
    return json.loads(as_user.run_as(user, read))


def reported_capacity(test):
    """Each compute node's capacity stat, as the scheduler sees it."""
    context = nova_context.get_admin_context()
    manager = test.scheduler.manager.host_manager
    return {state.host: state.stats.get(spec.HOST_CAPACITY_KEY)
            for state in manager.get_host_states_by_uuids(
                context, list(test.compute_rp_uuids.values()), None)}


def use_compute_config(test, nova_conf):
    """Give the test's compute service what ``nova_conf`` says.

    Only the options the driver reads for capacity: the probe cache, the
    firmware and the machine type per architecture.
    """
    loaded = cfg.ConfigOpts()
    pcie_conf.register_opts(loaded)
    loaded.register_opt(cfg.ListOpt('hw_machine_type'), group='libvirt')
    loaded(['--config-file', nova_conf], project='nova',
           default_config_files=[], default_config_dirs=[])
    test.flags(cache_dir=loaded.pcie_sched_probe.cache_dir,
               group='pcie_sched_probe')
    test.flags(firmware=loaded.pcie_sched_compute.firmware,
               group='pcie_sched_compute')
    test.flags(hw_machine_type=loaded.libvirt.hw_machine_type,
               group='libvirt')


class TestMeasuredCapacityReachesCompute(
        test_libvirt_driver.DriverTestBase):

    def setUp(self):
        super().setUp()
        workdir = self.useFixture(fixtures.TempDir()).path
        # Another user must be able to reach the cache inside it; nova's
        # test case nests temp dirs inside private (0700) mkdtemp ones.
        os.chmod(workdir, 0o755)
        parent = os.path.dirname(workdir)
        while (os.path.basename(parent).startswith('tmp') and
               not os.stat(parent).st_mode & stat.S_IXOTH):
            self.addCleanup(os.chmod, parent,
                            stat.S_IMODE(os.stat(parent).st_mode))
            os.chmod(parent, 0o711)
            parent = os.path.dirname(parent)
        self.cache_dir = os.path.join(workdir, 'cache')
        self.nova_conf = os.path.join(workdir, 'nova-cpu.conf')
        with open(self.nova_conf, 'w') as handle:
            handle.write(
                '[DEFAULT]\n'
                f'compute_driver = {test_libvirt_driver.DRIVER}\n'
                '[libvirt]\n'
                'hw_machine_type = x86_64=q35\n'
                '[pcie_sched_compute]\n'
                'firmware = bios\n'
                '[pcie_sched_probe]\n'
                f'cache_dir = {self.cache_dir}\n')
        os.chmod(self.nova_conf, 0o644)

    def use_compute_config(self):
        use_compute_config(self, self.nova_conf)

    def published(self):
        return reported_capacity(self)

    def test_probe_result_is_what_the_compute_node_reports(self):
        result = run_cli(self.nova_conf)
        self.assertEqual(0, result.returncode, result.stderr)
        measured = json.loads(result.stdout)
        self.assertFalse(measured['cached'])
        self.assertEqual(self.cache_dir, measured['cache_dir'])
        self.assertGreaterEqual(measured['boots'], 1)
        stored = os.path.join(self.cache_dir,
                              f"find-max-{measured['fingerprint']}.json")
        self.assertEqual(0o755,
                         stat.S_IMODE(os.stat(self.cache_dir).st_mode))
        self.assertEqual(0o644, stat.S_IMODE(os.stat(stored).st_mode))

        self.use_compute_config()
        self.start_compute('probed')
        self.assertEqual({'probed': str(measured['max_ports'])},
                         self.published())

        # The model agrees with the boot on this host, so a driver that
        # ignored the cache would report the same number. Rewrite the
        # stored maximum (as a host with a more limited firmware would
        # have measured) and a compute node started now must report it.
        with open(stored) as handle:
            document = json.load(handle)
        self.assertEqual(measured['max_ports'], document['max_ports'])
        document['max_ports'] = measured['max_ports'] - 100
        with open(stored, 'w') as handle:
            json.dump(document, handle)
        self.start_compute('limited')
        self.assertEqual(str(measured['max_ports'] - 100),
                         self.published()['limited'])
        self.assertEqual(measured['max_ports'] - 100,
                         probe.load_cached_max('x86_64', 'q35', 'bios'))

        if os.geteuid() == 0:
            # Probed as root, read as someone else: nova-compute's case.
            # (Not root: the modes asserted above are what guarantees it.)
            seen = cached_max_as(OTHER_USER)
            self.assertNotEqual(0, seen['uid'])
            self.assertEqual(measured['max_ports'] - 100, seen['max_ports'],
                             seen['why'])


class TestPublishAgreesWithCompute(test_libvirt_driver.DriverTestBase):
    """``pcie-sched publish`` writes the traits the driver writes.

    With a machine type and firmware other than the CLI's own defaults
    (q35, uefi) in nova.conf, both must look up the same cached probe
    result, or they rewrite each other's traits on every resource update.
    """

    def setUp(self):
        super().setUp()
        self.workdir = self.useFixture(fixtures.TempDir()).path
        self.cache_dir = os.path.join(self.workdir, 'cache')
        self.nova_conf = os.path.join(self.workdir, 'nova-cpu.conf')
        with open(self.nova_conf, 'w') as handle:
            handle.write(
                '[DEFAULT]\n'
                f'compute_driver = {test_libvirt_driver.DRIVER}\n'
                '[libvirt]\n'
                'hw_machine_type = x86_64=pc-q35-7.2,aarch64=virt\n'
                '[pcie_sched_compute]\n'
                'firmware = bios\n'
                '[pcie_sched_probe]\n'
                f'cache_dir = {self.cache_dir}\n')
        test_placement.store_measured(self.cache_dir, 'x86_64',
                                      'pc-q35-7.2', 'bios', 77)
        # What publish looked up before it read nova.conf's choices.
        test_placement.store_measured(self.cache_dir, 'x86_64', 'q35',
                                      'uefi', 50)

    def use_compute_config(self):
        use_compute_config(self, self.nova_conf)

    def test_publish_writes_what_the_compute_node_reports(self):
        self.use_compute_config()
        self.start_compute('compute1')
        self.assertEqual({'compute1': '77'}, reported_capacity(self))
        by_driver = {trait for trait in self._get_provider_traits(
            self.compute_rp_uuids['compute1']) if placement.owned(trait)}
        self.assertEqual(placement.traits_for_capacity(77), by_driver)

        # The same nova.conf, the CLI, a real Placement server.
        server = self.useFixture(placement_server.PlacementServer())
        adapter = server.connect().placement
        provider = adapter.post('/resource_providers',
                                json={'name': 'compute1'},
                                microversion='1.20').json()['uuid']
        result = test_placement.run_publish(
            server.url, self.workdir, '--arch', 'x86_64',
            '--config-file', self.nova_conf)
        self.assertEqual(0, result.returncode, result.stderr)
        by_cli = adapter.get(f'/resource_providers/{provider}/traits',
                             microversion='1.6').json()['traits']
        self.assertEqual(by_driver,
                         {trait for trait in by_cli if placement.owned(trait)})
        summary = json.loads(result.stdout)
        self.assertEqual(('measured', 'pc-q35-7.2', 'bios'),
                         (summary['capacity_source'], summary['machine'],
                          summary['firmware']))


class TestStaleMeasurementIsWarned(test_libvirt_driver.DriverTestBase):
    """After a QEMU upgrade nova-compute says its measurement is stale.

    The cached find-max result no longer matches the host's fingerprint,
    so the driver reports the model's capacity; it must say so, once, on
    the first resource update, not on every one.
    """

    def setUp(self):
        super().setUp()
        self.workdir = self.useFixture(fixtures.TempDir()).path
        self.cache_dir = os.path.join(self.workdir, 'cache')
        self.nova_conf = os.path.join(self.workdir, 'nova-cpu.conf')
        with open(self.nova_conf, 'w') as handle:
            handle.write(
                '[DEFAULT]\n'
                f'compute_driver = {test_libvirt_driver.DRIVER}\n'
                '[libvirt]\n'
                'hw_machine_type = x86_64=q35\n'
                '[pcie_sched_compute]\n'
                'firmware = bios\n'
                '[pcie_sched_probe]\n'
                f'cache_dir = {self.cache_dir}\n')
        test_placement.store_stale(self.cache_dir, 'x86_64', 'q35', 'bios',
                                   77)

    def stale_warnings(self):
        return [line for line in self.stdlog.logger.output.splitlines()
                if 'is stale' in line]

    def test_warned_once_and_the_model_reported(self):
        use_compute_config(self, self.nova_conf)
        self.start_compute('upgraded')
        for _ in range(3):
            self._run_periodics()
        model = probe.model_capacity('x86_64', 'q35', 'bios').max_ports
        self.assertEqual({'upgraded': str(model)}, reported_capacity(self))
        warning, = self.stale_warnings()
        self.assertIn('WARNING', warning)
        self.assertIn('Measured PCIe root port capacity for x86_64 q35 '
                      'bios is stale', warning)
        self.assertIn('77 ports', warning)
        self.assertIn('pcie-sched probe --find-max', warning)

        # Measured again for this QEMU: the measurement is used, and
        # nothing more is said.
        test_placement.store_measured(self.cache_dir, 'x86_64', 'q35',
                                      'bios', 70)
        self._run_periodics()
        self.assertEqual({'upgraded': '70'}, reported_capacity(self))
        self.assertEqual(1, len(self.stale_warnings()))
