"""The driver inside nova 34's libvirt functional framework.

Real nova API, conductor, scheduler (with PciHotplugPortsFilter) and
compute services over fakelibvirt, with the real Placement fixture.
"""

import os
import re

import fixtures
from lxml import etree
from nova import conf as nova_conf
from nova import context as nova_context
from nova.tests.functional.api import client as api_client
from nova.tests.functional.libvirt import base
from nova.virt.libvirt import driver as libvirt_driver
import testscenarios

from pcie_sched import host_capacity
from pcie_sched import placement
from pcie_sched import spec
from pcie_sched import topology
from pcie_sched.virt import devices
from pcie_sched.virt import driver as pcie_driver
from tests.functional import nova_support

FILTER_PATH = 'pcie_sched.filters.pci_hotplug_ports.PciHotplugPortsFilter'
DRIVER = 'pcie_sched_ext.driver.PcieSchedLibvirtDriver'
QEMU_NS = {'qemu': topology.QEMU_XML_NS}
NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'

load_tests = testscenarios.load_tests_apply_scenarios
CONF = nova_conf.CONF


class DriverTestBase(base.ServersTestBase):

    microversion = 'latest'
    ADDITIONAL_FILTERS = ['PciHotplugPortsFilter']

    def setUp(self):
        super().setUp()
        self.flags(hw_machine_type=['x86_64=q35'], group='libvirt')
        # Latest domain XML per instance, and every one built (reboots,
        # rebuilds and resizes build it again).
        self.domain_xml = {}
        self.domain_history = {}
        original = pcie_driver.PcieSchedLibvirtDriver._get_guest_xml

        def capture(driver, context, instance, *args, **kwargs):
            xml = original(driver, context, instance, *args, **kwargs)
            self.domain_xml[instance.uuid] = etree.fromstring(xml)
            self.domain_history.setdefault(instance.uuid, []).append(
                self.domain_xml[instance.uuid])
            return xml

        self.useFixture(fixtures.MonkeyPatch(
            'pcie_sched.virt.driver.PcieSchedLibvirtDriver._get_guest_xml',
            capture))

    def _setup_compute_service(self):
        # nova 34 loads "nova.virt.<compute_driver>": this goes through the
        # installed nova.virt.pcie_sched_ext shim.
        self.flags(compute_driver=DRIVER)

    def _setup_scheduler_service(self):
        nova_support.use_installed_api_paste(self)
        self.flags(available_filters=['nova.scheduler.filters.all_filters',
                                      FILTER_PATH],
                   group='filter_scheduler')
        return super()._setup_scheduler_service()

    def ports_flavor(self, ports):
        return self._create_flavor(
            extra_spec={spec.FLAVOR_KEY: str(ports)}, ephemeral=0)

    def image_with_ports(self, image_id, ports):
        image = dict(self.glance.image1, id=image_id)
        image['properties'] = dict(image['properties'],
                                   **{spec.IMAGE_KEY: str(ports)})
        self.glance.create(nova_context.get_admin_context(), image)
        return image_id

    def root_ports(self, server):
        domain = self.domain_xml[server['id']]
        return domain.findall(
            "devices/controller[@model='pcie-root-port']")

    def host_of(self, server):
        return server['OS-EXT-SRV-ATTR:host']

    def port_layout(self, domain):
        """(index, chassis, port, slot, function, multifunction) per port."""
        layout = []
        for controller in domain.findall(
                "devices/controller[@model='pcie-root-port']"):
            target, address = (controller.find('target'),
                               controller.find('address'))
            layout.append((
                int(controller.get('index')), int(target.get('chassis')),
                int(target.get('port'), 16), int(address.get('slot'), 16),
                int(address.get('function'), 16),
                address.get('multifunction') == 'on'))
        return layout

    def assertPlanned(self, server, requested):
        """Exactly ``requested`` free ports on top of the cold-plugged ones.

        The cold-plugged devices are counted from the domain XML with
        libvirt's placement rules (nova_support), not by the driver's own
        counter, and the layout is checked against topology.plan for them.
        """
        domain = self.domain_xml[server['id']]
        # A model-less USB controller would make libvirt 9.0 add a bridge
        # and a root port of its own (tests/system/test_libvirt_driver_xml.py).
        self.assertEqual(
            [devices.USB_CONTROLLER_MODEL],
            [usb.get('model') for usb in domain.findall(
                "devices/controller[@type='usb']")])
        cold = nova_support.pcie_endpoints(domain, 'x86_64')
        ports = self.root_ports(server)
        self.assertEqual(requested + len(cold), len(ports))
        occupants = nova_support.root_port_occupants(domain, 'x86_64')
        free = [index for index, device in occupants.items()
                if device is None]
        self.assertEqual(requested, len(free))
        expected = topology.plan(requested, len(cold), 'x86_64', 'q35')
        self.assertEqual([port.index for port in expected.free], free)
        self.assertEqual(
            [(p.index, p.chassis, p.port, p.slot, p.function,
              p.multifunction) for p in expected.ports],
            self.port_layout(domain))
        overrides = domain.findall('qemu:override/qemu:device', QEMU_NS)
        self.assertEqual([f'pci.{i}' for i in range(1, len(ports) + 1)],
                         [o.get('alias') for o in overrides])
        self.assertEqual(1, len(domain.findall(
            "devices/controller[@model='pcie-root']")))
        return cold, occupants


class TestGuestTopology(DriverTestBase):

    def setUp(self):
        super().setUp()
        self.start_compute('compute1')

    def test_sixteen_free_ports(self):
        server = self._create_server(
            flavor_id=self.ports_flavor(16),
            networks=[{'port': self.neutron.port_1['id']}])
        self.assertEqual('ACTIVE', server['status'])
        cold, _ = self.assertPlanned(server, 16)
        # What nova 34 cold-plugs into a default guest with one NIC: root
        # disk, NIC, RNG (hw_rng:allowed defaults to True), the USB
        # controller (qemu-xhci) and the balloon.
        self.assertEqual(
            ['controller', 'disk', 'interface', 'memballoon', 'rng'],
            sorted(device.tag for device in cold))

    def test_spec_replaces_nova_num_pcie_ports(self):
        self.flags(num_pcie_ports=5, group='libvirt')
        server = self._create_server(flavor_id=self.ports_flavor(40),
                                     networks='none')
        self.assertEqual('ACTIVE', server['status'])
        cold, _ = self.assertPlanned(server, 40)
        self.assertNotIn('interface', [device.tag for device in cold])

    def test_cold_plugged_ports_keep_hotplug_by_default(self):
        server = self._create_server(flavor_id=self.ports_flavor(4),
                                     networks='none')
        self.assertEqual(['on'] * len(self.root_ports(server)),
                         [port.find('target').get('hotplug')
                          for port in self.root_ports(server)])

    def test_hotplug_off_on_cold_plugged_ports(self):
        self.flags(hotplug_on_cold_plugged_ports=False,
                   group='pcie_sched_compute')
        server = self._create_server(
            flavor_id=self.ports_flavor(4),
            networks=[{'port': self.neutron.port_1['id']}])
        _, occupants = self.assertPlanned(server, 4)
        hotplug = {int(port.get('index')): port.find('target').get('hotplug')
                   for port in self.root_ports(server)}
        # The ports libvirt fills with the root disk, NIC, ... cannot be
        # ejected by the guest; the free ones still take hot-plugs.
        self.assertEqual(
            {index: 'on' if device is None else 'off'
             for index, device in occupants.items()},
            hotplug)
        self.assertEqual(4, list(hotplug.values()).count('on'))

    def test_more_ports_than_one_root_bus_holds_is_aborted(self):
        # The override lets the host claim more than q35's root bus holds;
        # the image property keeps the scheduler out of the way.
        self.flags(max_ports_override=255, group='pcie_sched_compute')
        server = self._create_server(
            image_uuid=self.image_with_ports(
                '0b1c5d3e-7f1a-4c2e-8d3b-6a5e4f3c2b1a', 250),
            flavor_id=self._create_flavor(vcpu=4), networks='none',
            expected_state='ERROR')
        fault = server['fault']['message']
        self.assertNotIn('Exhausted all hosts', fault)
        cold = re.search(r'=250: 250 free \+ ([0-9]+) cold-plugged', fault)
        self.assertIsNotNone(cold, fault)
        error = self.assertRaises(topology.TopologyError, topology.plan, 250,
                                  int(cold.group(1)), 'x86_64', 'q35')
        self.assertEqual(f'PCIe hotplug ports for instance {server["id"]}: '
                         f'image property {spec.IMAGE_KEY}=250: {error}',
                         fault)

    def test_image_property_the_scheduler_cannot_see(self):
        # nova drops unknown image properties before scheduling, so only
        # the driver can refuse; it does, with the reason in the fault.
        flavor = self._create_flavor()
        # The same guest without the property: its cold-plugged devices,
        # counted from its domain XML (the refused one never gets one).
        sibling = self._create_server(flavor_id=flavor, networks='none')
        cold = len(nova_support.pcie_endpoints(
            self.domain_xml[sibling['id']], 'x86_64'))
        image = self.image_with_ports('5e7a0d2e-0d7c-4b2e-9f6a-3d1a2b3c4d5e',
                                      250)
        server = self._create_server(image_uuid=image, flavor_id=flavor,
                                     networks='none', expected_state='ERROR')
        # The build is aborted, not rescheduled, so the driver's reason is
        # the instance fault: key, value, the ports and this host's limit.
        fault = server['fault']['message']
        self.assertNotIn('Exhausted all hosts', fault)
        driver = self.computes['compute1'].driver
        limit = driver.pci_hotplug_ports_max('x86_64', 'q35', 'bios')
        self.assertEqual(
            f'PCIe hotplug ports for instance {server["id"]}: image property '
            f'{spec.IMAGE_KEY}=250 needs {250 + cold} root ports ({cold} '
            f'cold-plugged), x86_64 q35 bios on this host boots at most '
            f'{limit}: accepted 0 to {limit - cold}', fault)


class TestNovaLayoutWithoutSpec(DriverTestBase):
    """Without the spec the guest is exactly the guest nova builds."""

    scenarios = [(f'num_pcie_ports={count}', {'num_pcie_ports': count})
                 for count in (0, 5, 28)]

    def setUp(self):
        super().setUp()
        self.flags(num_pcie_ports=self.num_pcie_ports, group='libvirt')
        self.nova_xml = {}
        original = pcie_driver.PcieSchedLibvirtDriver._get_guest_config

        def alongside_nova(driver, instance, *args, **kwargs):
            # nova's own LibvirtDriver, on the same instance and host. It
            # records the machine type in system_metadata, which the next
            # build shows in the XML: give both the same instance to read.
            before = dict(instance.system_metadata)
            config = libvirt_driver.LibvirtDriver._get_guest_config(
                driver, instance, *args, **kwargs)
            self.nova_xml[instance.uuid] = etree.fromstring(config.to_xml())
            instance.system_metadata.clear()
            instance.system_metadata.update(before)
            return original(driver, instance, *args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'pcie_sched.virt.driver.PcieSchedLibvirtDriver._get_guest_config',
            alongside_nova))
        self.start_compute('compute1')

    @staticmethod
    def comparable(domain):
        # The only part that depends on the second the XML was built.
        for stamp in domain.iter(f'{{{NOVA_NS}}}creationTime'):
            stamp.getparent().remove(stamp)
        return etree.tostring(domain, pretty_print=True).decode()

    def test_same_domain_xml_as_nova(self):
        server = self._create_server(
            flavor_id=self._create_flavor(),
            networks=[{'port': self.neutron.port_1['id']}])
        self.assertEqual('ACTIVE', server['status'])
        domain = self.domain_xml[server['id']]
        self.assertEqual(self.comparable(self.nova_xml[server['id']]),
                         self.comparable(domain))
        # And nova's layout is what [libvirt] num_pcie_ports promises: that
        # many ports, no address of ours, libvirt places them; none at all
        # (not even pcie-root) when it is 0.
        ports = self.root_ports(server)
        self.assertEqual(self.num_pcie_ports, len(ports))
        self.assertEqual([None] * len(ports),
                         [port.find('address') for port in ports])
        self.assertEqual(1 if self.num_pcie_ports else 0, len(domain.findall(
            "devices/controller[@model='pcie-root']")))
        self.assertEqual([], domain.findall('qemu:override', QEMU_NS))


class TestAddressStability(DriverTestBase):
    """Guest device names depend on the port addresses: they must hold."""

    def setUp(self):
        super().setUp()
        self.flags(allow_resize_to_same_host=True)
        self.start_compute('compute1')
        # No NIC: the framework's fake Neutron gives a hard-rebooted guest
        # no network info, so its NIC vanishes from nova's own domain XML
        # too, and with it the port the NIC took.
        self.server = self._create_server(flavor_id=self.ports_flavor(16),
                                          networks='none')
        self.first = self.domain_xml[self.server['id']]
        self.assertPlanned(self.server, 16)

    def assertSameLayout(self, action):
        history = self.domain_history[self.server['id']]
        self.assertGreater(len(history), 1,
                           f'{action} built no new domain XML')
        self.assertIsNot(self.first, history[-1])
        for domain in history[1:]:
            self.assertEqual(self.port_layout(self.first),
                             self.port_layout(domain))
            self.assertEqual(
                [etree.tostring(c) for c in self.first.findall(
                    "devices/controller[@type='pci']")],
                [etree.tostring(c) for c in domain.findall(
                    "devices/controller[@type='pci']")])

    def test_hard_reboot(self):
        self._reboot_server(self.server, hard=True)
        self.assertSameLayout('hard reboot')

    def test_hard_reboot_after_the_host_limit_dropped(self):
        # A host re-probed lower (a firmware downgrade) or an operator's
        # override: the guest no longer fits at its next hard reboot, and
        # the fault must not call the reboot a build.
        self.flags(max_ports_override=8, group='pcie_sched_compute')
        # The framework turns nova's RPC casts into calls, so the compute
        # error also comes back to this API request as a 500; in a cloud
        # the request returns 202 and only the instance shows it.
        self.assertRaises(api_client.OpenStackApiException,
                          self.api.post_server_action, self.server['id'],
                          {'reboot': {'type': 'HARD'}})
        server = self._wait_for_state_change(self.server, 'ERROR')
        fault = server['fault']['message']
        self.assertNotIn('Build of instance', fault)
        self.assertRegex(
            fault, f'^PCIe hotplug ports for instance {server["id"]}: '
                   f'{spec.FLAVOR_KEY}=16 needs [0-9]+ root ports .* boots at '
                   f'most 8: accepted 0 to [0-9]+$')

    def test_rebuild(self):
        self._rebuild_server(self.server, self.glance.image1['id'])
        self.assertSameLayout('rebuild')

    def test_resize_to_a_flavor_with_the_same_count(self):
        # nova's image backend fixture creates no disk file; the resize
        # copies one, so give it an (empty) one to copy.
        disk = os.path.join(CONF.instances_path, self.server['id'], 'disk')
        os.makedirs(os.path.dirname(disk), exist_ok=True)
        with open(disk, 'wb'):
            pass
        bigger = self._create_flavor(
            memory_mb=4096, extra_spec={spec.FLAVOR_KEY: '16'}, ephemeral=0)
        server = self._resize_server(self.server, bigger)
        self._confirm_resize(server)
        self.assertSameLayout('resize')
        # The last domain built is the resized guest's.
        self.assertEqual(str(4096 * 1024), self.domain_xml[
            self.server['id']].find('memory').text)


class TestGuestLimitInTheDriver(DriverTestBase):
    """The image property path: only the driver sees it, and refuses."""

    def setUp(self):
        super().setUp()
        self.start_compute('compute1')

    def test_one_vcpu_guest_over_the_vector_limit_is_aborted(self):
        image = dict(self.glance.image1,
                     id='7c9e6679-7425-40de-944b-e07fc1f90ae7')
        image['properties'] = dict(image['properties'],
                                   **{spec.IMAGE_KEY: '200'})
        self.glance.create(nova_context.get_admin_context(), image)
        flavor = self._create_flavor(vcpu=1, ephemeral=0)
        server = self._create_server(image_uuid=image['id'],
                                     flavor_id=flavor, networks='none',
                                     expected_state='ERROR')
        self.assertIn('runs out of interrupt vectors',
                      server['fault']['message'])
        self.assertIn('1 vCPU(s)', server['fault']['message'])
        self.assertIn(f'image property {spec.IMAGE_KEY}=200',
                      server['fault']['message'])
        # networks='none', no ephemeral: nova's 4 cold-plugged devices.
        accepted = host_capacity.guest_vector_limit(1, 4) - 4
        self.assertIn(f'; accepted: 0 to {accepted}:',
                      server['fault']['message'])


class TestScheduling(DriverTestBase):

    def setUp(self):
        super().setUp()
        self.flags(max_ports_override=8, group='pcie_sched_compute')
        self.start_compute('small')
        self.flags(max_ports_override=None, group='pcie_sched_compute')
        self.start_compute('big')

    def test_stats_reach_the_scheduler_host_state(self):
        context = nova_context.get_admin_context()
        manager = self.scheduler.manager.host_manager
        states = {state.host: state for state in
                  manager.get_host_states_by_uuids(
                      context, list(self.compute_rp_uuids.values()), None)}
        self.assertEqual('8', states['small'].stats[spec.HOST_CAPACITY_KEY])
        expected = pcie_driver.PcieSchedLibvirtDriver.pci_hotplug_ports_max(
            self.computes['big'].driver, 'x86_64', 'q35', 'uefi')
        self.assertEqual(str(expected),
                         states['big'].stats[spec.HOST_CAPACITY_KEY])

    def test_traits_on_the_compute_node_provider(self):
        traits = set(self._get_provider_traits(self.compute_rp_uuids['small']))
        self.assertEqual(placement.traits_for_capacity(8),
                         {t for t in traits if placement.owned(t)})
        self.assertIn('COMPUTE_NODE', traits)

    def test_server_goes_to_the_capable_host(self):
        for _ in range(2):
            server = self._create_server(flavor_id=self.ports_flavor(16),
                                         networks='none')
            self.assertEqual('big', self.host_of(server))

    def test_small_request_fits_either(self):
        server = self._create_server(flavor_id=self.ports_flavor(1),
                                     networks='none')
        self.assertIn(self.host_of(server), ('small', 'big'))

    def test_no_valid_host_when_none_is_capable(self):
        server = self._create_server(flavor_id=self.ports_flavor(250),
                                     networks='none',
                                     expected_state='ERROR')
        self.assertIn('No valid host', server['fault']['message'])

    def test_invalid_value_stored_below_2_86_gets_no_host(self):
        flavor = self._create_flavor(ephemeral=0)
        # At 2.86 nova-api refuses it (test_api_validator); 2.85 stores it.
        self.admin_api.microversion = '2.85'
        self.admin_api.post_extra_spec(
            flavor, {'extra_specs': {spec.FLAVOR_KEY: 'lots'}})
        self.admin_api.microversion = 'latest'
        server = self._create_server(flavor_id=flavor, networks='none',
                                     expected_state='ERROR')
        self.assertIn('No valid host', server['fault']['message'])
