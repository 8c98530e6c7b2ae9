"""A real aarch64 Linux guest on virt + AAVMF with many root ports.

The model has no guest interrupt limit on aarch64: virt delivers MSIs
through the GIC (GICv2m's SPIs with QEMU's default gic-version=2 under
TCG, ITS LPIs with gic-version=3), not through a per-CPU vector table.
These boots check that: with 1 vCPU and the model's maximum number of
ports, userspace comes up, and a virtio-rng hot-plugged into every port
binds its driver, with MSI-X vectors of its own only where the GIC has
MSIs left. Only in the full matrix
(PCIE_SCHED_FULL_MATRIX=1): an aarch64 guest under TCG takes minutes.

Debian's linux-image-arm64 and busybox-static:arm64 are fetched with
apt-get download from a private package list under the cache
(:func:`tests.system.guest.kernel`); without apt-get or access to the
Debian archive the test fails and says so.
"""

import os
import unittest

import fixtures
import testscenarios
import testtools

from pcie_sched import capacity
from pcie_sched import topology
from tests.system import guest
from tests.system import test_guest_limits

FULL_MATRIX = os.environ.get('PCIE_SCHED_FULL_MATRIX') == '1'


def load_tests(loader, tests, pattern):
    # Outside the full matrix the module holds no test at all.
    if not FULL_MATRIX:
        return unittest.TestSuite()
    return testscenarios.load_tests_apply_scenarios(loader, tests, pattern)


def virt_max():
    return capacity.estimate(topology.machine_profile(
        'aarch64', 'virt', vcpus=1)).max_ports


class TestAarch64ManyPorts(testtools.TestCase):

    scenarios = [('gic_default', dict(gic=None)),
                 ('gicv3', dict(gic=3))]

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(1800, gentle=True))
        try:
            guest.kernel(test_guest_limits.CACHE, 'aarch64')
            guest.busybox(test_guest_limits.CACHE, 'aarch64')
        except guest.GuestError as error:
            self.fail(f'the aarch64 guest needs Debian\'s linux-image-arm64 '
                      f'and busybox-static:arm64 (fetched with apt-get '
                      f'download into {test_guest_limits.CACHE}): {error}')

    def test_model_maximum_reaches_userspace_on_one_vcpu(self):
        ports = virt_max()
        self.assertNotIn(capacity.GUEST_VECTORS, capacity.estimate(
            topology.machine_profile('aarch64', 'virt', vcpus=1)).budgets)
        result = guest.boot(ports, 1, test_guest_limits.CACHE,
                            timeout=1500, arch='aarch64',
                            gic_version=self.gic)
        self.assertTrue(result.userspace, result)
        self.assertGreaterEqual(result.pci_devices, ports)
        # Every port asks for an MSI: GICv2m has a fixed number for the
        # machine, the GICv3 ITS one for each.
        msis = ports if self.gic == 3 else min(
            ports, capacity.VIRT_GICV2M_MSIS)
        self.assertEqual(msis, result.irqs_at_boot['msi'], result)

    def test_every_port_takes_a_device_with_its_driver(self):
        ports = virt_max()
        result = guest.boot(ports, 1, test_guest_limits.CACHE,
                            timeout=1500, arch='aarch64',
                            gic_version=self.gic, hotplug=True,
                            drivers=True)
        self.assertTrue(result.userspace, result)
        self.assertEqual(ports, len(result.devices), result)
        self.assertEqual({('BARS-OK', 'virtio-pci')},
                         {(device.bars, device.driver)
                          for device in result.devices.values()},
                         result.devices)
        # GICv2m's MSIs went to the ports at boot; the devices share
        # INTx. The ITS gives each device its own.
        if self.gic == 3:
            expected = ports
        else:
            left = max(capacity.VIRT_GICV2M_MSIS - ports, 0)
            expected = min(left // capacity.VECTORS_PER_DEVICE, ports)
        self.assertEqual(expected, result.with_vectors, result.devices)
