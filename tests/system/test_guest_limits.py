"""A real Linux guest at the model's guest interrupt-vector limit.

Debian's kernel with a busybox initramfs, booted by OVMF with the plan's
ports. With 1 vCPU the model's limit comes up to userspace with a working
serial console and a few ports more do not; at the limit the interrupts
the guest has handlers for are exactly the model's budget (legacy
interrupts, console, one per port). With 2 vCPUs and more, q35's root
bus runs out before the vectors do; the 2-vCPU case boots at the q35
maximum instead.
"""

import os

import fixtures
import testscenarios
import testtools

from pcie_sched import capacity
from pcie_sched import topology
from tests.system import guest

load_tests = testscenarios.load_tests_apply_scenarios
CACHE = os.path.join(os.path.expanduser('~'), '.cache', 'pcie-sched',
                     'guest')


def guest_budget(vcpus):
    return capacity.estimate(topology.machine_profile(
        'x86_64', 'q35', vcpus=vcpus)).budgets[capacity.GUEST_VECTORS]


def guest_limit(vcpus):
    return guest_budget(vcpus).max_ports


def q35_slots():
    return capacity.estimate(topology.machine_profile(
        'x86_64', 'q35')).max_ports


class TestBootVectors(testtools.TestCase):
    """What the kernel takes before init, counted in a real guest."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(600, gentle=True))

    def test_legacy_interrupts_and_console_are_the_models(self):
        result = guest.boot(1, 1, CACHE, dump_irqs=True)
        self.assertTrue(result.userspace, result)
        # Rows of /proc/interrupts with a number and an IO-APIC line:
        # the legacy interrupts and the console; the port is PCI-MSI.
        legacy = [line for line in result.console_tail.splitlines()
                  if 'IO-APIC' in line]
        self.assertEqual(
            capacity.X86_BOOT_VECTORS + capacity.X86_CONSOLE_VECTORS,
            len(legacy), result.console_tail)
        self.assertEqual(
            capacity.X86_BOOT_VECTORS + capacity.X86_CONSOLE_VECTORS +
            capacity.VECTORS_PER_PORT, result.irqs_at_boot['handled'],
            result)


class TestGuestVectorLimit(testtools.TestCase):

    # Both in the default run: about 80 and 70 s under TCG.
    scenarios = [('1_vcpu', dict(vcpus=1)), ('2_vcpus', dict(vcpus=2))]

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(1200, gentle=True))

    def test_limit_comes_up_and_a_few_more_do_not(self):
        limit = guest_limit(self.vcpus)
        slots = q35_slots()
        ports = min(limit, slots)
        at_limit = guest.boot(ports, self.vcpus, CACHE)
        self.assertTrue(at_limit.userspace, at_limit)
        self.assertGreaterEqual(at_limit.pci_devices, ports)
        # Every vector the budget counts has a handler: legacy, console
        # and one per port.
        self.assertEqual(
            capacity.X86_BOOT_VECTORS + capacity.X86_CONSOLE_VECTORS +
            ports * capacity.VECTORS_PER_PORT,
            at_limit.irqs_at_boot['handled'], at_limit)
        if limit == ports:
            self.assertEqual(self.vcpus * capacity.X86_VECTORS_PER_CPU,
                             at_limit.irqs_at_boot['handled'], at_limit)
        if limit + 3 <= slots:
            beyond = guest.boot(limit + 3, self.vcpus, CACHE)
            self.assertFalse(beyond.userspace, beyond)
