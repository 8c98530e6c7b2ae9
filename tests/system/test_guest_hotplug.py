"""In a real Linux guest, every free port of the plan takes a device.

A virtio-rng device is hot-plugged through QMP into every free port; the
guest (Debian's kernel, pciehp built in) reports each device it sees in
/sys/bus/pci, whether all of its BARs got an address and, with
virtio_pci and virtio-rng loaded by /init, the driver bound to it and
how many MSI-X vectors it got.

On x86_64 the devices' vectors come out of the same per-CPU budget as
the ports' (:func:`pcie_sched.capacity.guest_vectors`): at the model's
``plugged_ports`` every device gets its own vectors, a few ports more and
the devices past the budget fall back to shared INTx (driver bound, no
MSI-X), exactly as many as the budget predicts.
"""

import os

import fixtures
import testscenarios
import testtools

from pcie_sched import capacity
from tests.system import guest
from tests.system import test_guest_limits

load_tests = testscenarios.load_tests_apply_scenarios
FULL_MATRIX = os.environ.get('PCIE_SCHED_FULL_MATRIX') == '1'
#: Ports past the plugged-ports boundary for the "a few more" boot.
BEYOND = 8


def plugged_ports(vcpus):
    return test_guest_limits.guest_budget(vcpus).inputs['plugged_ports']


def devices_with_vectors(vcpus, ports):
    """Devices the model gives MSI-X vectors when ``ports`` all hold one."""
    left = capacity.guest_vectors(vcpus) - ports * capacity.VECTORS_PER_PORT
    return min(max(left, 0) // capacity.VECTORS_PER_DEVICE, ports)


class TestHotplugIntoEveryPort(testtools.TestCase):

    scenarios = [('16', dict(ports=16, vcpus=1))] + (
        [('64', dict(ports=64, vcpus=1)),
         ('232_2_vcpus', dict(ports=232, vcpus=2))] if FULL_MATRIX else [])

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(1500, gentle=True))

    def test_every_device_appears_with_its_bars(self):
        result = guest.boot(self.ports, self.vcpus,
                            test_guest_limits.CACHE, timeout=1200,
                            hotplug=True)
        self.assertTrue(result.userspace, result)
        self.assertEqual(self.ports, len(result.hotplugged), result)
        self.assertEqual({'BARS-OK'}, set(result.hotplugged.values()),
                         result.hotplugged)


class TestPluggedPortsWithDrivers(testtools.TestCase):
    """Every port holds a virtio device with its driver: the boundary."""

    scenarios = [
        ('1_vcpu_at_limit', dict(vcpus=1, beyond=0)),
        ('1_vcpu_beyond', dict(vcpus=1, beyond=BEYOND)),
        ('2_vcpus_at_limit', dict(vcpus=2, beyond=0)),
        ('2_vcpus_beyond', dict(vcpus=2, beyond=BEYOND)),
    ] + ([('4_vcpus_at_q35_max', dict(vcpus=4, beyond=None))]
         if FULL_MATRIX else [])

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(1500, gentle=True))

    def test_devices_get_vectors_up_to_the_budget(self):
        if self.beyond is None:
            # 4 vCPUs have vectors for more than q35's root bus holds.
            ports = test_guest_limits.q35_slots()
            self.assertLess(ports, plugged_ports(self.vcpus))
        else:
            ports = plugged_ports(self.vcpus) + self.beyond
        result = guest.boot(ports, self.vcpus, test_guest_limits.CACHE,
                            timeout=1200, hotplug=True, drivers=True)
        self.assertTrue(result.userspace, result)
        self.assertEqual(ports, len(result.devices), result)
        # The driver binds everywhere: a device without vectors of its
        # own falls back to a shared INTx line.
        self.assertEqual({'virtio-pci'},
                         {device.driver
                          for device in result.devices.values()},
                         result.devices)
        expected = devices_with_vectors(self.vcpus, ports)
        self.assertEqual(expected, result.with_vectors, result.devices)
        self.assertEqual(
            {capacity.VECTORS_PER_DEVICE},
            {device.vectors for device in result.devices.values()
             if device.vectors}, result.devices)
        if self.beyond:
            self.assertLess(expected, ports)
        else:
            self.assertEqual(ports, expected)
