"""devstack/plugin.sh, phase by phase, against real config files.

The resulting nova.conf is then read with nova's own option definitions
and handed to nova's HostManager, which must load and enable the filter.
The compute config is loaded the way nova-compute loads it, and the
recorded probe command the way the CLI does: both must use one cache
directory, or the driver never sees what the probe measured.
"""

import json
import os
import shutil
import subprocess
import sys

import fixtures
from nova import test
from oslo_config import cfg

from tests.functional import devstack_harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FILTER = 'pcie_sched.filters.pci_hotplug_ports.PciHotplugPortsFilter'


class TestDevstackPlugin(test.TestCase):

    def setUp(self):
        super().setUp()
        self.workdir = self.useFixture(fixtures.TempDir()).path
        self.nova_conf = os.path.join(self.workdir, 'nova.conf')
        self.cpu_conf = os.path.join(self.workdir, 'nova-cpu.conf')
        self.tempest_conf = os.path.join(self.workdir, 'tempest.conf')
        self.record = os.path.join(self.workdir, 'record')
        self.data_dir = os.path.join(self.workdir, 'data')
        with open(self.nova_conf, 'w') as handle:
            handle.write('[DEFAULT]\ndebug = True\n'
                         '[filter_scheduler]\n'
                         'enabled_filters = ComputeFilter,'
                         'ImagePropertiesFilter\n')

    def run_phase(self, *phase):
        script = os.path.join(self.workdir, 'run.sh')
        with open(script, 'w') as handle:
            handle.write(devstack_harness.FUNCTIONS.format(
                python=sys.executable,
                harness=devstack_harness.__file__))
            handle.write(f'source {ROOT}/devstack/settings\n'
                         f'source {ROOT}/devstack/plugin.sh '
                         f'{" ".join(phase)}\n')
        env = dict(os.environ, DEST=os.path.dirname(ROOT),
                   PCIE_SCHED_DIR=ROOT, NOVA_CONF=self.nova_conf,
                   NOVA_CPU_CONF=self.cpu_conf,
                   TEMPEST_CONFIG=self.tempest_conf, RECORD=self.record,
                   DATA_DIR=self.data_dir,
                   ENABLED_SERVICES='n-api,n-sch,n-cpu,tempest')
        result = subprocess.run(['bash', '-e', script], env=env,
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(0, result.returncode, result.stderr)
        return result

    def recorded(self):
        with open(self.record) as handle:
            return handle.read()

    def harness(self, *argv):
        """A harness view, in a process of its own (it loads configs)."""
        env = dict(os.environ, PYTHONPATH=ROOT)
        result = subprocess.run(
            [sys.executable, devstack_harness.__file__, *argv], env=env,
            capture_output=True, text=True, timeout=120)
        self.assertEqual(0, result.returncode, result.stderr)
        return json.loads(result.stdout)

    def test_all_phases_then_nova_loads_the_filter(self):
        self.run_phase('stack', 'install')
        self.assertIn(f'setup_develop {ROOT}', self.recorded())
        self.assertIn('qemu-system-x86', self.recorded())
        self.assertIn('ovmf', self.recorded())
        for _ in range(2):  # post-config twice: nothing is added twice
            self.run_phase('stack', 'post-config')
        self.run_phase('stack', 'extra')
        self.assertIn('probe --find-max', self.recorded())
        self.assertIn('publish', self.recorded())
        # nova-compute runs as the stack user: so must the probe.
        self.assertNotIn('sudo', self.recorded())
        self.run_phase('stack', 'test-config')

        conf = cfg.ConfigOpts()
        from nova.conf import scheduler
        scheduler.register_opts(conf)
        conf(['--config-file', self.nova_conf], project='nova')
        self.assertEqual(['nova.scheduler.filters.all_filters', FILTER],
                         conf.filter_scheduler.available_filters)
        self.assertEqual(['ComputeFilter', 'ImagePropertiesFilter',
                          'PciHotplugPortsFilter'],
                         conf.filter_scheduler.enabled_filters)

        # nova's HostManager, configured from that file, enables it.
        from nova.scheduler import host_manager
        self.flags(available_filters=conf.filter_scheduler.available_filters,
                   enabled_filters=conf.filter_scheduler.enabled_filters,
                   group='filter_scheduler')
        names = [type(f).__name__ for f in
                 host_manager.HostManager().enabled_filters]
        self.assertIn('PciHotplugPortsFilter', names)

        # nova-compute's view of its config, with nova's option types.
        compute = self.harness('compute-view', self.cpu_conf)
        self.assertEqual('pcie_sched_ext.driver.PcieSchedLibvirtDriver',
                         compute['compute_driver'])
        self.assertEqual(['x86_64=q35', 'aarch64=virt'],
                         compute['hw_machine_type'])
        cache_dir = os.path.join(self.data_dir, 'pcie-sched')
        self.assertEqual(cache_dir, compute['cache_dir'])
        # Each recorded pcie-sched command, parsed by the CLI itself.
        commands = devstack_harness.recorded_commands(self.record + '.argv')
        self.assertEqual(['probe', 'publish'],
                         [command[0] for command in commands])
        for command in commands:
            view = self.harness('probe-view', *command)
            self.assertEqual(compute['cache_dir'], view['cache_dir'],
                             command)
        self.assertEqual('8', devstack_harness.iniget(
            self.tempest_conf, 'pcie_sched', 'hotplug_ports'))

    def test_shellcheck_clean(self):
        shellcheck = shutil.which('shellcheck')
        self.assertIsNotNone(shellcheck, 'install the Debian package '
                                         'shellcheck (see bindep.txt)')
        scripts = [os.path.join(ROOT, 'devstack', name)
                   for name in ('plugin.sh', 'settings')]
        scripts += [os.path.join(ROOT, 'tools', name)
                    for name in sorted(os.listdir(os.path.join(ROOT,
                                                               'tools')))
                    if name.endswith('.sh')]
        scripts.append(os.path.join(ROOT, '.ci', 'run'))
        result = subprocess.run([shellcheck, '-s', 'bash', *scripts],
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(0, result.returncode, result.stdout)
