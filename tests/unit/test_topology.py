"""The port plan and its renderers."""

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from lxml import etree
import testscenarios
import testtools

from pcie_sched import capacity
from pcie_sched import topology

load_tests = testscenarios.load_tests_apply_scenarios


class TestPlanShapes(testtools.TestCase):

    scenarios = [
        ('one', dict(free=1, cold=0, arch='x86_64', machine='q35')),
        ('sixteen_plus_four', dict(free=16, cold=4, arch='x86_64',
                                   machine='q35')),
        ('beyond_nova_28', dict(free=64, cold=3, arch='x86_64',
                                machine='pc-q35-7.2')),
        ('q35_full', dict(free=232 - 4, cold=4, arch='x86_64',
                          machine='q35')),
        ('virt', dict(free=16, cold=2, arch='aarch64', machine='virt')),
        ('virt_full', dict(free=248, cold=0, arch='aarch64',
                           machine='virt')),
    ]

    def test_plan(self):
        result = topology.plan(self.free, self.cold, self.arch, self.machine)
        self.assertEqual(self.free + self.cold, len(result.ports))
        self.assertEqual(self.free, len(result.free))
        self.assertEqual(list(range(1, len(result.ports) + 1)),
                         [port.index for port in result.ports])
        addresses = [(p.slot, p.function) for p in result.ports]
        self.assertEqual(len(addresses), len(set(addresses)))
        self.assertEqual(len(result.ports),
                         len({p.chassis for p in result.ports}))
        self.assertEqual(len(result.ports),
                         len({p.port for p in result.ports}))
        for port in result.ports:
            self.assertNotIn(port.slot, (0x00, 0x1f) if self.arch ==
                             'x86_64' else (0x00,))
            self.assertLess(port.slot, capacity.DEVICES_PER_BUS)
            self.assertEqual({'io-reserve': 0}, dict(port.properties))
        # Function 0 of every slot holding several ports is multifunction.
        for slot in {p.slot for p in result.ports}:
            in_slot = [p for p in result.ports if p.slot == slot]
            self.assertEqual(len(in_slot) > 1, in_slot[0].multifunction)
            self.assertFalse(any(p.multifunction for p in in_slot[1:]))


class TestPlanRules(testtools.TestCase):

    def test_cold_plugged_first_and_named(self):
        result = topology.plan(2, ['disk', 'nic0'],
                               hotplug_on_cold_plugged=False)
        self.assertEqual(['disk', 'nic0', None, None],
                         [p.occupant for p in result.ports])
        self.assertEqual([False, False, True, True],
                         [p.hotplug for p in result.ports])

    def test_q35_leaves_slot_one_for_video(self):
        self.assertEqual(2, topology.plan(1).ports[0].slot)

    def test_too_many_ports_names_the_limit(self):
        error = self.assertRaises(topology.TopologyError, topology.plan,
                                  230, 3)
        self.assertIn('230 free + 3 cold-plugged = 233', str(error))
        self.assertIn('at most 232', str(error))

    def test_bad_inputs(self):
        self.assertRaises(topology.TopologyError, topology.plan, -1)
        self.assertRaises(topology.TopologyError, topology.plan, True)
        self.assertRaises(topology.TopologyError, topology.plan, 1,
                          machine='pc')
        self.assertRaises(topology.TopologyError, topology.plan, 1,
                          ports_per_slot=3)

    def test_one_port_per_slot(self):
        result = topology.plan(20, ports_per_slot=1)
        self.assertEqual([0] * 20, [p.function for p in result.ports])
        self.assertFalse(any(p.multifunction for p in result.ports))

    @settings(max_examples=300, deadline=None)
    @given(free=st.integers(min_value=0, max_value=250),
           cold=st.integers(min_value=0, max_value=20),
           arch=st.sampled_from(['x86_64', 'aarch64']),
           per_slot=st.sampled_from([1, 8]))
    def test_never_duplicates_and_is_deterministic(self, free, cold, arch,
                                                   per_slot):
        try:
            first = topology.plan(free, cold, arch, ports_per_slot=per_slot)
        except topology.TopologyError:
            machine = 'q35' if arch == 'x86_64' else 'virt'
            limit = capacity.estimate(capacity.MachineProfile(
                arch, machine, ports_per_slot=per_slot,
                root_bus_devices=1 if arch == 'x86_64' else 0)).max_ports
            self.assertGreater(free + cold, limit)
            return
        self.assertEqual(first, topology.plan(free, cold, arch,
                                              ports_per_slot=per_slot))
        keys = [(p.slot, p.function) for p in first.ports]
        self.assertEqual(len(keys), len(set(keys)))
        self.assertEqual(len(keys), len({p.chassis for p in first.ports}))
        self.assertEqual(len(keys), len({p.port for p in first.ports}))
        # The root bus: q35 keeps device 0 (MCH) and 0x1f (ICH9), and the
        # driver leaves 0x01 to the video device; virt keeps device 0.
        forbidden = {0x00, 0x01, 0x1f} if arch == 'x86_64' else {0x00}
        slots = {p.slot for p in first.ports}
        self.assertFalse(slots & forbidden, sorted(slots & forbidden))
        self.assertTrue(all(0 <= p.slot < 32 for p in first.ports))
        self.assertTrue(all(0 <= p.function < per_slot
                            for p in first.ports))
        for slot in slots:
            functions = sorted(p.function for p in first.ports
                               if p.slot == slot)
            # Functions fill from 0 without gaps, and function 0 says
            # multifunction exactly when the slot holds more than one.
            self.assertEqual(list(range(len(functions))), functions)
            zero = next(p for p in first.ports
                        if p.slot == slot and p.function == 0)
            self.assertEqual(len(functions) > 1, bool(zero.multifunction))
        self.assertEqual(free + cold, len(first.ports))


class TestRenderers(testtools.TestCase):

    def test_libvirt_xml(self):
        result = topology.plan(9, ['disk'], hotplug_on_cold_plugged=False)
        domain = topology.to_libvirt_xml(result)
        ports = domain.findall("devices/controller[@model='pcie-root-port']")
        self.assertEqual(10, len(ports))
        self.assertEqual(1, len(domain.findall(
            "devices/controller[@model='pcie-root']")))
        first = ports[0]
        self.assertEqual('off', first.find('target').get('hotplug'))
        self.assertEqual('on', first.find('address').get('multifunction'))
        self.assertEqual('0x02', first.find('address').get('slot'))
        ns = {'qemu': topology.QEMU_XML_NS}
        overrides = domain.findall('qemu:override/qemu:device', ns)
        self.assertEqual([f'pci.{i}' for i in range(1, 11)],
                         [d.get('alias') for d in overrides])
        prop = overrides[0].find('qemu:frontend/qemu:property', ns)
        self.assertEqual(('io-reserve', 'unsigned', '0'),
                         (prop.get('name'), prop.get('type'),
                          prop.get('value')))
        etree.tostring(domain)  # serialisable

    def test_qemu_args(self):
        args = topology.to_qemu_args(
            topology.plan(1, ['disk'], hotplug_on_cold_plugged=False))
        self.assertEqual(['-device', '-device'], args[::2])
        self.assertEqual(
            'pcie-root-port,id=pci.1,bus=pcie.0,chassis=1,port=0x10,'
            'addr=0x2.0,multifunction=on,hotplug=off,io-reserve=0', args[1])
        self.assertEqual(
            'pcie-root-port,id=pci.2,bus=pcie.0,chassis=2,port=0x11,'
            'addr=0x2.1,io-reserve=0', args[3])
