"""A real Linux guest at the model's guest interrupt-vector limit.

Debian's kernel with a busybox initramfs, booted by OVMF with the plan's
ports. With 1 vCPU the model's limit comes up to userspace with a working
serial console and a few ports more do not; the full matrix
(PCIE_SCHED_FULL_MATRIX=1) adds 2 vCPUs at the q35 maximum.
"""

import os

import fixtures
import testscenarios
import testtools

from pcie_sched import capacity
from pcie_sched import topology
from tests.system import guest

load_tests = testscenarios.load_tests_apply_scenarios
FULL_MATRIX = os.environ.get('PCIE_SCHED_FULL_MATRIX') == '1'
CACHE = os.path.join(os.path.expanduser('~'), '.cache', 'pcie-sched',
                     'guest')


def guest_limit(vcpus):
    return capacity.estimate(topology.machine_profile(
        'x86_64', 'q35', vcpus=vcpus)).budgets[
            capacity.GUEST_VECTORS].max_ports


class TestGuestVectorLimit(testtools.TestCase):

    scenarios = [('1_vcpu', dict(vcpus=1))] + (
        [('2_vcpus', dict(vcpus=2))] if FULL_MATRIX else [])

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(1200, gentle=True))

    def test_limit_comes_up_and_a_few_more_do_not(self):
        limit = guest_limit(self.vcpus)
        slots = capacity.estimate(topology.machine_profile(
            'x86_64', 'q35')).max_ports
        at_limit = guest.boot(min(limit, slots), self.vcpus, CACHE)
        self.assertTrue(at_limit.userspace, at_limit)
        self.assertGreaterEqual(at_limit.pci_devices, min(limit, slots))
        if limit + 3 <= slots:
            beyond = guest.boot(limit + 3, self.vcpus, CACHE)
            self.assertFalse(beyond.userspace, beyond)
