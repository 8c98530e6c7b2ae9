"""The capacity model over a table of machines."""

import json
import os

import fixtures
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
        # edk2 keeps bus-reserve while it fits in the 255 buses, then gives
        # each further port one bus (its 8-bit bus arithmetic wraps):
        # measured with bus-reserve=7, 38 ports boot and 39 hang.
        ('q35_bus_reserve', dict(
            profile=dict(arch='x86_64', machine='q35',
                         port_properties={'bus-reserve': 3}),
            max_ports=(256 - 1) // 4 + (256 - 1) % 4,
            limited_by='bus-numbers')),
        ('q35_bus_reserve_7_measured', dict(
            profile=dict(arch='x86_64', machine='q35',
                         port_properties={'bus-reserve': 7}),
            max_ports=(256 - 1) // 8 + (256 - 1) % 8,
            limited_by='bus-numbers')),
        # SeaBIOS wraps the bus number into a broken range instead:
        # measured with bus-reserve=7, 32 boot (the 32nd broken), 33 hang.
        ('q35_bios_bus_reserve', dict(
            profile=dict(arch='x86_64', machine='q35', firmware='bios',
                         port_properties={'bus-reserve': 7}),
            max_ports=(256 - 1) // 8, limited_by='bus-numbers')),
        ('virt_bus_reserve', dict(
            profile=dict(arch='aarch64', machine='virt',
                         port_properties={'bus-reserve': 7}),
            max_ports=(256 - 1) // 8 + (256 - 1) % 8,
            limited_by='bus-numbers')),
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
        # virt-2.12's compat options still turn the high ECAM off (measured:
        # 16 ports stop in the UEFI shell); virt-3.0 is the first with it
        # (measured: 17 ports boot).
        ('virt_2_12_low_ecam', dict(
            profile=dict(arch='aarch64', machine='virt-2.12'),
            max_ports=16 - 1, limited_by='ecam-window')),
        ('virt_3_0_high_ecam', dict(
            profile=dict(arch='aarch64', machine='virt-3.0'),
            max_ports=(32 - 1) * 8, limited_by='root-bus-slots')),
        ('virt_on_qemu_2_12', dict(
            profile=dict(arch='aarch64', machine='virt',
                         qemu_version=(2, 12)),
            max_ports=16 - 1, limited_by='ecam-window')),
        ('virt_on_qemu_3_0', dict(
            profile=dict(arch='aarch64', machine='virt',
                         qemu_version=(3, 0)),
            max_ports=(32 - 1) * 8, limited_by='root-bus-slots')),
        ('virt_highmem_ecam_off_qemu_8', dict(
            profile=dict(arch='aarch64', machine='virt,highmem-ecam=off',
                         qemu_version=(8, 0)),
            max_ports=16 - 1, limited_by='ecam-window')),
        ('virt_highmem_on', dict(
            profile=dict(arch='aarch64', machine='virt-7.2,highmem=on'),
            max_ports=(32 - 1) * 8, limited_by='root-bus-slots')),
        # Measured across versions (QEMU 7.2 and 10.0): virt-2.12 boots 15
        # ports; from QEMU 8.0 an explicit highmem-ecam=on gives it the
        # high ECAM window back, and real boots reach 248 (every root bus
        # slot), not the 15 of the low window.
        ('virt_2_12_on_qemu_10', dict(
            profile=dict(arch='aarch64', machine='virt-2.12',
                         qemu_version=(10, 0)),
            max_ports=16 - 1, limited_by='ecam-window')),
        ('virt_2_12_highmem_ecam_on_qemu_8', dict(
            profile=dict(arch='aarch64', machine='virt-2.12,highmem-ecam=on',
                         qemu_version=(8, 0)),
            max_ports=248, limited_by='root-bus-slots')),
        ('virt_2_12_highmem_ecam_on_qemu_10', dict(
            profile=dict(arch='aarch64', machine='virt-2.12,highmem-ecam=on',
                         qemu_version=(10, 0)),
            max_ports=248, limited_by='root-bus-slots')),
        # No QEMU version given: the option exists only from 8.0, so that.
        ('virt_2_12_highmem_ecam_on', dict(
            profile=dict(arch='aarch64', machine='virt-2.12,highmem-ecam=on'),
            max_ports=248, limited_by='root-bus-slots')),
        ('virt_2_11_highmem_ecam_on', dict(
            profile=dict(arch='aarch64', machine='virt-2.11,highmem-ecam=on',
                         qemu_version=(8, 0)),
            max_ports=248, limited_by='root-bus-slots')),
        # highmem=off drops every region above 4 GiB, the high ECAM with
        # them, whatever highmem-ecam says; highmem=on alone does not undo
        # virt-2.12's compat default.
        ('virt_highmem_off_beats_highmem_ecam_on', dict(
            profile=dict(arch='aarch64',
                         machine='virt,highmem-ecam=on,highmem=off',
                         qemu_version=(8, 0)),
            max_ports=16 - 1, limited_by='ecam-window')),
        ('virt_2_12_highmem_on', dict(
            profile=dict(arch='aarch64', machine='virt-2.12,highmem=on'),
            max_ports=16 - 1, limited_by='ecam-window')),
        # QEMU's other spellings of a boolean.
        ('virt_highmem_no', dict(
            profile=dict(arch='aarch64', machine='virt,highmem=no'),
            max_ports=16 - 1, limited_by='ecam-window')),
        ('virt_highmem_ecam_true', dict(
            profile=dict(arch='aarch64',
                         machine='virt-2.12,highmem-ecam=true'),
            max_ports=248, limited_by='root-bus-slots')),
        ('q35_same_version_as_qemu', dict(
            profile=dict(arch='x86_64', machine='pc-q35-7.2',
                         qemu_version=(7, 2)),
            max_ports=(32 - 2) * 8, limited_by='root-bus-slots')),
        # Inside the 16-bus window nothing wraps: a reservation past bus 15
        # fails the enumeration (measured: 7 boot, 8 stop in the shell).
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


class TestMachineOptions(testtools.TestCase):

    def test_explanation_names_the_option_that_chose_the_window(self):
        for machine, words in (
                ('virt-2.12,highmem-ecam=on', 'high ECAM window of 256 MiB '
                                              '(highmem-ecam=on)'),
                ('virt,highmem-ecam=off', 'low ECAM window of 16 MiB '
                                          '(highmem-ecam=off)'),
                ('virt,highmem=off', 'low ECAM window of 16 MiB '
                                     '(highmem=off)'),
                ('virt-2.12', 'low ECAM window of 16 MiB (machine types '
                              'before virt-3.0')):
            result = capacity.estimate(capacity.MachineProfile(
                'aarch64', machine))
            self.assertIn(words, result.budgets['ecam-window'].detail)

    def test_options_parsed_as_booleans(self):
        self.assertEqual(
            ('virt', (2, 12), {'highmem': True, 'highmem-ecam': False}),
            capacity.parse_machine('aarch64',
                                   'virt-2.12,highmem=on,highmem-ecam=OFF'))
        self.assertEqual(('q35', None, {}),
                         capacity.parse_machine('x86_64', 'q35'))


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

    def test_aavmf_io_space(self):
        result = capacity.estimate(capacity.MachineProfile(
            'aarch64', 'virt'))
        # virt's 64 KiB PIO window at 4 KiB per port (measured: 24 ports,
        # 16 IO windows).
        self.assertEqual(64 // 4, result.windows.io)
        self.assertIn('AAVMF', result.windows.detail)

    def test_mem_reserve_exhausts_the_32_bit_window(self):
        mem_reserve = 32 * 1024 * 1024
        result = capacity.estimate(capacity.MachineProfile(
            'x86_64', 'q35', port_properties={'io-reserve': 0,
                                              'mem-reserve': mem_reserve}))
        # OVMF's q35 window 0xc0000000-0xfbffffff (measured: 64 ports,
        # 30 memory windows).
        self.assertEqual((0xfc000000 - 0xc0000000) // mem_reserve,
                         result.windows.memory)
        self.assertIn('mem-reserve', result.windows.detail)

    def test_default_memory_fits_every_port(self):
        result = capacity.estimate(capacity.MachineProfile(
            'x86_64', 'q35', port_properties={'io-reserve': 0}))
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
        # QEMU 7.2 has no highmem-ecam machine property (8.0 added it).
        ('highmem_ecam_on_qemu_7_2', dict(
            profile=dict(arch='aarch64', machine='virt,highmem-ecam=off',
                         qemu_version=(7, 2)),
            words=["machine option='highmem-ecam=off'", 'highmem=on|off',
                   'QEMU 7.2'])),
        ('root_bus_devices', dict(
            profile=dict(arch='x86_64', machine='q35', root_bus_devices=40),
            words=['root_bus_devices=40', '0 to 31'])),
        # QEMU refuses options a machine does not have; the model refuses
        # every option it does not know, naming the ones it does.
        ('q35_unknown_option', dict(
            profile=dict(arch='x86_64', machine='q35,foo=bar'),
            words=["machine option='foo=bar'", 'no machine options on q35'])),
        ('q35_real_but_unmodelled_option', dict(
            profile=dict(arch='x86_64', machine='pc-q35-7.2,smm=on'),
            words=["machine option='smm=on'", 'no machine options on q35'])),
        ('virt_unknown_option', dict(
            profile=dict(arch='aarch64', machine='virt,gic-version=3'),
            words=["machine option='gic-version=3'",
                   'highmem=on|off, highmem-ecam=on|off on virt'])),
        ('virt_option_value', dict(
            profile=dict(arch='aarch64', machine='virt,highmem-ecam=auto'),
            words=["machine option='highmem-ecam=auto'",
                   'highmem-ecam=on or highmem-ecam=off'])),
        # A QEMU's newest versioned machine type carries its version.
        ('q35_newer_than_qemu', dict(
            profile=dict(arch='x86_64', machine='pc-q35-10.0',
                         qemu_version=(7, 2)),
            words=["machine='pc-q35-10.0' is newer than QEMU 7.2",
                   'pc-q35-X.Y with X.Y at most 7.2'])),
        ('virt_newer_than_qemu', dict(
            profile=dict(arch='aarch64', machine='virt-8.0,highmem=on',
                         qemu_version=(7, 2)),
            words=["machine='virt-8.0,highmem=on' is newer than QEMU 7.2",
                   'virt-X.Y with X.Y at most 7.2'])),
        ('negative_guest_devices', dict(
            profile=dict(arch='x86_64', machine='q35', vcpus=1,
                         guest_devices=-5),
            words=['guest_devices=-5', 'a non-negative integer'])),
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

    def test_size_suffix(self):
        import contextlib
        import io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main.main(['capacity', '--port-prop', 'io-reserve=0',
                                '--port-prop', 'mem-reserve=32M',
                                '--format', 'json'])
        self.assertEqual(0, status)
        document = json.loads(out.getvalue())
        self.assertEqual(32 * 1024 * 1024,
                         document['profile']['port_properties'][
                             'mem-reserve'])
        self.assertEqual((0xfc000000 - 0xc0000000) // (32 * 1024 * 1024),
                         document['windows']['memory'])

    def test_bad_property_is_a_usage_error(self):
        import contextlib
        import io
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = main.main(['capacity', '--port-prop', 'bus-reserve=x'])
        self.assertEqual(2, status)
        self.assertIn("--port-prop 'bus-reserve=x'", err.getvalue())

    def run_json(self, *argv):
        import contextlib
        import io
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main.main(['capacity'] + list(argv))
        return status, (json.loads(out.getvalue()) if status == 0 else
                        err.getvalue())

    def test_default_root_bus_is_the_one_the_driver_renders(self):
        from pcie_sched import topology
        for arch, machine in (('x86_64', 'q35'), ('aarch64', 'virt')):
            status, document = self.run_json('--arch', arch, '--format',
                                             'json')
            self.assertEqual(0, status, document)
            # The largest plan the compute driver can lay out.
            planned = len(topology.plan(0, document['max_ports'], arch,
                                        machine).ports)
            self.assertEqual(planned, document['max_ports'])
            self.assertRaises(topology.TopologyError, topology.plan, 0,
                              document['max_ports'] + 1, arch, machine)
            self.assertEqual(topology.ROOT_BUS_DEVICES[machine],
                             document['profile']['root_bus_devices'])
        status, document = self.run_json(
            '--root-bus-devices', '0', '--format', 'json')
        self.assertEqual(0, status, document)
        self.assertEqual(0, document['profile']['root_bus_devices'])
        self.assertEqual(30 * 8, document['max_ports'])

    def test_default_port_properties_are_the_drivers(self):
        from pcie_sched import topology
        for arch in ('x86_64', 'aarch64'):
            status, document = self.run_json('--arch', arch, '--format',
                                             'json')
            self.assertEqual(0, status, document)
            self.assertEqual(dict(topology.DEFAULT_PORT_PROPERTIES),
                             document['profile']['port_properties'])
            # The answer the compute driver's own model gives.
            machine = {'x86_64': 'q35', 'aarch64': 'virt'}[arch]
            self.assertEqual(
                capacity.estimate(topology.machine_profile(
                    arch, machine)).to_dict(), document)
            # Every port the driver renders gets a memory window: nothing
            # for the operator to set.
            self.assertEqual(document['max_ports'],
                             document['windows']['memory'])
            self.assertNotIn('set io-reserve=0',
                             document['windows']['detail'])
        import contextlib
        import io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(0, main.main(['capacity']))
        self.assertNotIn('set io-reserve=0', out.getvalue())

    def test_port_prop_adds_to_or_replaces_the_drivers(self):
        status, document = self.run_json('--port-prop', 'bus-reserve=7',
                                         '--format', 'json')
        self.assertEqual(0, status, document)
        self.assertEqual({'io-reserve': 0, 'bus-reserve': 7},
                         document['profile']['port_properties'])
        # Asking for IO space again is OVMF's default behaviour: only the
        # ports the 40 KiB of bridge IO covers keep a memory window.
        status, document = self.run_json('--port-prop', 'io-reserve=4K',
                                         '--format', 'json')
        self.assertEqual(0, status, document)
        self.assertEqual({'io-reserve': 4096},
                         document['profile']['port_properties'])
        self.assertEqual((0x10000 - 0x6000) // 4096,
                         document['windows']['memory'])
        self.assertIn('set io-reserve=0', document['windows']['detail'])

    def test_firmware_path(self):
        root = self.useFixture(fixtures.TempDir()).path
        for name in ('MY_CODE.fd', 'MY_VARS.fd', 'bios.bin'):
            with open(os.path.join(root, name), 'wb') as handle:
                handle.write(b'\0' * 16)
        for name, kind in (('MY_CODE.fd', 'uefi'), ('bios.bin', 'bios')):
            status, document = self.run_json(
                '--firmware', os.path.join(root, name), '--format', 'json')
            self.assertEqual(0, status, document)
            self.assertEqual(kind, document['profile']['firmware'])
        missing = os.path.join(root, 'NO_CODE.fd')
        status, err = self.run_json('--firmware', missing)
        self.assertEqual(2, status)
        self.assertIn(f'--firmware: firmware={missing!r}', err)
        self.assertIn('accepted: uefi, bios or a path', err)
        # A SeaBIOS-like file cannot boot an aarch64 guest.
        status, err = self.run_json('--arch', 'aarch64', '--firmware',
                                    os.path.join(root, 'bios.bin'))
        self.assertEqual(2, status)
        self.assertIn("firmware='bios'", err)


class TestGuestVectors(testtools.TestCase):
    """The guest budget follows from the kernel's vector mechanism."""

    def budget(self, vcpus, arch='x86_64', machine='q35', devices=0):
        return capacity.estimate(capacity.MachineProfile(
            arch, machine, vcpus=vcpus,
            guest_devices=devices)).budgets.get(capacity.GUEST_VECTORS)

    def test_vectors_per_cpu_leave_out_the_system_vectors_in_range(self):
        inside = [vector for vector in capacity.X86_SYSTEM_VECTORS
                  if capacity.X86_FIRST_EXTERNAL_VECTOR <= vector <
                  capacity.X86_FIRST_SYSTEM_VECTOR]
        self.assertEqual(sorted(capacity.X86_SYSTEM_VECTORS), inside)
        usable = [vector for vector in range(
            capacity.X86_FIRST_EXTERNAL_VECTOR,
            capacity.X86_FIRST_SYSTEM_VECTOR)
            if vector not in capacity.X86_SYSTEM_VECTORS]
        self.assertEqual(len(usable), capacity.X86_VECTORS_PER_CPU)

    def test_each_vcpu_adds_a_cpu_of_vectors(self):
        for vcpus in (1, 2, 3, 7):
            self.assertEqual(
                capacity.X86_VECTORS_PER_CPU // capacity.VECTORS_PER_PORT,
                self.budget(vcpus + 1).max_ports -
                self.budget(vcpus).max_ports)

    def test_ports_and_plugged_ports_share_what_is_left(self):
        for vcpus in (1, 2, 4):
            budget = self.budget(vcpus)
            left = capacity.guest_vectors(vcpus)
            self.assertEqual(left, vcpus * capacity.X86_VECTORS_PER_CPU -
                             capacity.X86_BOOT_VECTORS -
                             capacity.X86_CONSOLE_VECTORS)
            plugged = budget.inputs['plugged_ports']
            per_plugged = (capacity.VECTORS_PER_PORT +
                           capacity.VECTORS_PER_DEVICE)
            self.assertLessEqual(plugged * per_plugged, left)
            self.assertGreater((plugged + 1) * per_plugged, left)
            self.assertIn(f'{plugged} ports when each holds', budget.detail)

    def test_agrees_with_the_measured_debian_guest(self):
        # tests/system: 195 bare ports boot on 1 vCPU and 196 do not;
        # 65 ports each with a virtio-rng (1 vCPU) and 132 (2 vCPUs) all
        # get MSI-X vectors, 66 and 140 leave 2 and 12 on INTx.
        self.assertEqual(195, self.budget(1).max_ports)
        self.assertEqual(65, self.budget(1).inputs['plugged_ports'])
        self.assertEqual(132, self.budget(2).inputs['plugged_ports'])

    def test_cold_plugged_devices_cost_their_vectors(self):
        for devices in (1, 5):
            self.assertEqual(
                devices * capacity.VECTORS_PER_DEVICE //
                capacity.VECTORS_PER_PORT,
                self.budget(1).max_ports -
                self.budget(1, devices=devices).max_ports)

    def test_no_guest_budget_on_aarch64_or_without_vcpus(self):
        self.assertIsNone(self.budget(1, 'aarch64', 'virt'))
        self.assertIsNone(self.budget(None))

    def test_vcpus_must_be_a_positive_integer(self):
        for vcpus in (0, -1, True, '2'):
            error = self.assertRaises(capacity.UnsupportedMachine,
                                      self.budget, vcpus)
            self.assertIn(f'vcpus={vcpus!r}', str(error))
            self.assertIn('a positive integer', str(error))
