"""In a real Linux guest, every free port of the plan takes a device.

A virtio-rng device is hot-plugged through QMP into every free port; the
guest (Debian's kernel, pciehp built in) reports each device it sees in
/sys/bus/pci and whether all of its BARs got an address.
"""

import os

import fixtures
import testscenarios
import testtools

from tests.system import guest
from tests.system import test_guest_limits

load_tests = testscenarios.load_tests_apply_scenarios
FULL_MATRIX = os.environ.get('PCIE_SCHED_FULL_MATRIX') == '1'


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
