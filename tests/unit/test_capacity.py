"""The capacity model over a table of machines."""

import json

import testscenarios
import testtools

from pcie_sched import capacity
from pcie_sched.cmd import main

load_tests = testscenarios.load_tests_apply_scenarios


class TestEstimate(testtools.TestCase):

    # expected values are derived from the mechanisms, spelled out:
    # slots = 32 - machine's own devices - other root bus devices.
    scenarios = [
        ('q35_uefi', dict(
            profile=dict(arch='x86_64', machine='q35'),
            max_ports=(32 - 2) * 8, limited_by='root-bus-slots')),
        ('q35_versioned_bios', dict(
            profile=dict(arch='x86_64', machine='pc-q35-7.2',
                         firmware='bios'),
            max_ports=(32 - 2) * 8, limited_by='root-bus-slots')),
        ('q35_with_video', dict(
            profile=dict(arch='x86_64', machine='q35', root_bus_devices=1),
            max_ports=(32 - 2 - 1) * 8, limited_by='root-bus-slots')),
        ('q35_one_port_per_slot', dict(
            profile=dict(arch='x86_64', machine='q35', ports_per_slot=1),
            max_ports=32 - 2, limited_by='root-bus-slots')),
        ('q35_bus_reserve', dict(
            profile=dict(arch='x86_64', machine='q35',
                         port_properties={'bus-reserve': 3}),
            max_ports=(256 - 1) // 4, limited_by='bus-numbers')),
        ('virt_new', dict(
            profile=dict(arch='aarch64', machine='virt',
                         qemu_version=(7, 2)),
            max_ports=(32 - 1) * 8, limited_by='root-bus-slots')),
        ('virt_7_2', dict(
            profile=dict(arch='aarch64', machine='virt-7.2'),
            max_ports=(32 - 1) * 8, limited_by='root-bus-slots')),
        ('virt_2_11_low_ecam', dict(
            profile=dict(arch='aarch64', machine='virt-2.11'),
            max_ports=16 - 1, limited_by='ecam-window')),
        ('virt_highmem_off', dict(
            profile=dict(arch='aarch64', machine='virt,highmem=off'),
            max_ports=16 - 1, limited_by='ecam-window')),
        ('virt_highmem_ecam_off', dict(
            profile=dict(arch='aarch64', machine='virt-7.2,highmem-ecam=off'),
            max_ports=16 - 1, limited_by='ecam-window')),
        ('virt_on_old_qemu', dict(
            profile=dict(arch='aarch64', machine='virt',
                         qemu_version=(2, 11)),
            max_ports=16 - 1, limited_by='ecam-window')),
        ('virt_low_ecam_bus_reserve', dict(
            profile=dict(arch='aarch64', machine='virt-2.11',
                         port_properties={'bus-reserve': 1}),
            max_ports=(16 - 1) // 2, limited_by='ecam-window')),
    ]

    def test_estimate(self):
        result = capacity.estimate(capacity.MachineProfile(**self.profile))
        self.assertEqual(self.max_ports, result.max_ports)
        self.assertEqual(self.limited_by, result.limited_by)
        self.assertEqual(result.max_ports,
                         min(b.max_ports for b in result.budgets.values()))
        self.assertIn(self.limited_by, result.explanation)
        self.assertIn(str(self.max_ports), result.explanation)
        document = json.loads(json.dumps(result.to_dict()))
        self.assertEqual(self.max_ports, document['max_ports'])
        self.assertEqual(
            {'root-bus-slots', 'bus-numbers', 'ecam-window', 'io-space'},
            set(document['budgets']))


class TestWindows(testtools.TestCase):

    def test_ovmf_default_ports_lose_memory_windows(self):
        result = capacity.estimate(capacity.MachineProfile('x86_64', 'q35'))
        # OVMF hands bridges 0x6000-0xffff: 40 KiB at 4 KiB per window.
        self.assertEqual((0x10000 - 0x6000) // 4096, result.windows.io)
        self.assertEqual(result.windows.io, result.windows.memory)
        self.assertIn('io-reserve=0', result.windows.detail)

    def test_io_reserve_zero_gives_every_port_memory(self):
        result = capacity.estimate(capacity.MachineProfile(
            'x86_64', 'q35', port_properties={'io-reserve': 0}))
        self.assertEqual(0, result.windows.io)
        self.assertEqual(result.max_ports, result.windows.memory)

    def test_seabios_assigns_io_on_demand(self):
        result = capacity.estimate(capacity.MachineProfile(
            'x86_64', 'q35', firmware='bios'))
        self.assertEqual(result.max_ports, result.windows.memory)


class TestRefusals(testtools.TestCase):

    scenarios = [
        ('arch', dict(profile=dict(arch='s390x', machine='s390-ccw-virtio'),
                      words=["arch='s390x'", 'x86_64, aarch64'])),
        ('pc_machine', dict(profile=dict(arch='x86_64', machine='pc'),
                            words=["machine='pc'", 'q35'])),
        ('virt_on_x86', dict(profile=dict(arch='x86_64', machine='virt'),
                             words=["machine='virt'", 'q35'])),
        ('bios_on_arm', dict(profile=dict(arch='aarch64', machine='virt',
                                          firmware='bios'),
                             words=["firmware='bios'", 'AAVMF'])),
        ('firmware', dict(profile=dict(arch='x86_64', machine='q35',
                                       firmware='coreboot'),
                          words=["firmware='coreboot'", 'uefi, bios'])),
        ('ports_per_slot', dict(profile=dict(arch='x86_64', machine='q35',
                                             ports_per_slot=4),
                                words=['ports_per_slot=4', '1 or 8'])),
        ('property', dict(profile=dict(arch='x86_64', machine='q35',
                                       port_properties={'slot': 1}),
                          words=["port property='slot'", 'bus-reserve'])),
        ('negative_property', dict(
            profile=dict(arch='x86_64', machine='q35',
                         port_properties={'bus-reserve': -1}),
            words=['bus-reserve=-1', 'non-negative'])),
        ('bad_option', dict(profile=dict(arch='aarch64',
                                         machine='virt,highmem'),
                            words=["machine option='highmem'", 'key=value'])),
        ('root_bus_devices', dict(
            profile=dict(arch='x86_64', machine='q35', root_bus_devices=40),
            words=['root_bus_devices=40', '0 to 31'])),
    ]

    def test_refused(self):
        error = self.assertRaises(
            capacity.UnsupportedMachine, capacity.estimate,
            capacity.MachineProfile(**self.profile))
        for word in self.words:
            self.assertIn(word, str(error))


class TestHypervisorVersion(testtools.TestCase):

    def test_decode(self):
        self.assertEqual((7, 2),
                         capacity.qemu_version_from_hypervisor_version(
                             7002000))
        self.assertEqual((10, 1),
                         capacity.qemu_version_from_hypervisor_version(
                             10001003))

    def test_refuse(self):
        for bad in (0, -1, True, '7002000', None):
            self.assertRaises(capacity.UnsupportedMachine,
                              capacity.qemu_version_from_hypervisor_version,
                              bad)


class TestCapacityCommand(testtools.TestCase):

    def test_json_contract(self):
        import contextlib
        import io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main.main(['capacity', '--arch', 'aarch64', '--machine',
                                'virt-2.11', '--format', 'json'])
        self.assertEqual(0, status)
        document = json.loads(out.getvalue())
        self.assertEqual(15, document['max_ports'])
        self.assertEqual('ecam-window', document['limited_by'])
        self.assertIn('explanation', document)
        self.assertIn('budgets', document)

    def test_bad_property_is_a_usage_error(self):
        import contextlib
        import io
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = main.main(['capacity', '--port-prop', 'bus-reserve=x'])
        self.assertEqual(2, status)
        self.assertIn("--port-prop 'bus-reserve=x'", err.getvalue())
