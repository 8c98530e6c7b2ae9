"""Real libvirtd + QEMU: every planned port takes a hot-plugged device.

Reproduces today's bug first (libvirt's own layout refuses the second
hot-plug with "No more available PCI slots"), then shows the plan gives
exactly N working ports, that the firmware still reaches the boot loader
behind port 1, and that after enumeration every free port has a memory
window (QMP query-pci through libvirt).
"""

import json
import os
import shutil
import time

import fixtures
import testscenarios
import testtools

from pcie_sched import capacity
from pcie_sched import payload
from pcie_sched import topology
from tests.system import libvirt_support

load_tests = testscenarios.load_tests_apply_scenarios


def _q35_model_max():
    return capacity.estimate(
        topology.machine_profile('x86_64', 'q35')).max_ports


class LibvirtTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(900, gentle=True))
        for path, package in (('/usr/share/OVMF/OVMF_CODE_4M.fd', 'ovmf'),):
            if not os.path.exists(path):
                self.fail(f'{path} missing: install the Debian package '
                          f'{package}')
        self.libvirt = self.useFixture(libvirt_support.LibvirtDaemon())
        self.workdir = self.libvirt.workdir
        cache = os.path.join(self.workdir, 'cache')
        disk = payload.disk_image('x86_64', 'uefi', cache, stay_up=True)
        self.disk = os.path.join(self.workdir, 'boot.img')
        shutil.copyfile(disk, self.disk)
        os.chmod(self.disk, 0o644)

    def start(self, name, plan=None):
        path = os.path.join(self.workdir, f'{name}.xml')
        with open(path, 'w') as handle:
            handle.write(libvirt_support.domain_xml(name, self.workdir,
                                                    self.disk, plan))
        self.libvirt.virsh('define', path)
        self.libvirt.virsh('start', name)

    def wait_for_boot_loader(self, name, timeout=240):
        serial = os.path.join(self.workdir, f'{name}.serial')
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(serial):
                with open(serial, errors='replace') as handle:
                    if payload.MARKER in handle.read():
                        return
            time.sleep(0.5)
        self.fail(f'{name} did not reach its boot loader in {timeout}s')

    def attach_rng(self, name):
        path = os.path.join(self.workdir, 'rng.xml')
        with open(path, 'w') as handle:
            handle.write(libvirt_support.rng_device_xml())
        return self.libvirt.virsh('attach-device', name, path, '--live',
                                  check=False)


class TestTodaysBug(LibvirtTestCase):

    def test_second_hotplug_fails_without_the_plan(self):
        self.start('noplan')
        self.assertEqual(0, self.attach_rng('noplan').returncode)
        second = self.attach_rng('noplan')
        self.assertNotEqual(0, second.returncode)
        self.assertIn('No more available PCI slots', second.stderr)


class TestPlannedPorts(LibvirtTestCase):

    # With libvirt's capability probe kept (see LibvirtDaemon), each
    # count takes seconds, so the default run covers them all. The boot
    # disk takes one of the model's ports.
    scenarios = [('1', dict(free=1)), ('16', dict(free=16)),
                 ('28', dict(free=28)), ('64', dict(free=64)),
                 ('model_max', dict(free=_q35_model_max() - 1))]

    def test_exactly_n_hotplugs_and_windows(self):
        plan = topology.plan(self.free, ['boot-disk'], 'x86_64', 'q35')
        self.start('planned', plan)
        self.wait_for_boot_loader('planned')

        reply = self.libvirt.virsh(
            'qemu-monitor-command', 'planned', '{"execute": "query-pci"}')
        bridges = [device['pci_bridge']['bus'] for device in
                   json.loads(reply.stdout)['return'][0]['devices']
                   if 'pci_bridge' in device]
        self.assertEqual(len(plan.ports), len(bridges))
        without_memory = [bus['secondary'] for bus in bridges
                          if bus['memory_range']['limit'] <=
                          bus['memory_range']['base']]
        self.assertEqual([], without_memory,
                         'ports the firmware left without a memory window')

        for number in range(self.free):
            result = self.attach_rng('planned')
            self.assertEqual(0, result.returncode,
                             f'hot-plug {number + 1} of {self.free}: '
                             f'{result.stderr}')
        extra = self.attach_rng('planned')
        self.assertNotEqual(0, extra.returncode)
        self.assertIn('No more available PCI slots', extra.stderr)
