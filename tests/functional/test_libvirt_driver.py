"""The driver inside nova 34's libvirt functional framework.

Real nova API, conductor, scheduler (with PciHotplugPortsFilter) and
compute services over fakelibvirt, with the real Placement fixture.
"""

import fixtures
from lxml import etree
from nova import context as nova_context
from nova.tests.functional.libvirt import base

from pcie_sched import placement
from pcie_sched import spec
from pcie_sched import topology
from pcie_sched.virt import driver as pcie_driver
from tests.functional import nova_support

FILTER_PATH = 'pcie_sched.filters.pci_hotplug_ports.PciHotplugPortsFilter'
DRIVER = 'pcie_sched_ext.driver.PcieSchedLibvirtDriver'
QEMU_NS = {'qemu': topology.QEMU_XML_NS}


class DriverTestBase(base.ServersTestBase):

    microversion = 'latest'
    ADDITIONAL_FILTERS = ['PciHotplugPortsFilter']

    def setUp(self):
        super().setUp()
        self.flags(hw_machine_type=['x86_64=q35'], group='libvirt')
        self.domain_xml = {}
        original = pcie_driver.PcieSchedLibvirtDriver._get_guest_xml

        def capture(driver, context, instance, *args, **kwargs):
            xml = original(driver, context, instance, *args, **kwargs)
            self.domain_xml[instance.uuid] = etree.fromstring(xml)
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

    def root_ports(self, server):
        domain = self.domain_xml[server['id']]
        return domain.findall(
            "devices/controller[@model='pcie-root-port']")

    def host_of(self, server):
        return server['OS-EXT-SRV-ATTR:host']


class TestGuestTopology(DriverTestBase):

    def setUp(self):
        super().setUp()
        self.start_compute('compute1')

    def test_sixteen_free_ports(self):
        server = self._create_server(flavor_id=self.ports_flavor(16),
                                     networks='none')
        self.assertEqual('ACTIVE', server['status'])
        ports = self.root_ports(server)
        domain = self.domain_xml[server['id']]
        # Every PCIe endpoint nova configured has a port of its own first.
        cold = [d for d in domain.find('devices')
                if d.tag in ('disk', 'interface', 'memballoon', 'rng') and
                (d.tag != 'disk' or
                 d.find('target').get('bus') == 'virtio')]
        self.assertGreaterEqual(len(ports), 16 + len(cold))
        expected = topology.plan(16, len(ports) - 16, 'x86_64', 'q35')
        self.assertEqual(
            [(f'0x{p.slot:02x}', f'0x{p.function:x}') for p in
             expected.ports],
            [(c.find('address').get('slot'), c.find('address').get(
                'function')) for c in ports])
        overrides = domain.findall('qemu:override/qemu:device', QEMU_NS)
        self.assertEqual([f'pci.{i}' for i in range(1, len(ports) + 1)],
                         [o.get('alias') for o in overrides])
        self.assertEqual(1, len(domain.findall(
            "devices/controller[@model='pcie-root']")))

    def test_without_spec_nova_layout_is_untouched(self):
        self.flags(num_pcie_ports=5, group='libvirt')
        server = self._create_server(flavor_id=self._create_flavor(),
                                     networks='none')
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual(5, len(self.root_ports(server)))
        for port in self.root_ports(server):
            self.assertIsNone(port.find('address'))
        self.assertEqual([], self.domain_xml[server['id']].findall(
            'qemu:override', QEMU_NS))

    def test_spec_replaces_nova_num_pcie_ports(self):
        self.flags(num_pcie_ports=5, group='libvirt')
        server = self._create_server(flavor_id=self.ports_flavor(40),
                                     networks='none')
        self.assertEqual('ACTIVE', server['status'])
        self.assertGreaterEqual(len(self.root_ports(server)), 40)
        for port in self.root_ports(server):
            self.assertIsNotNone(port.find('address'))

    def test_image_property_the_scheduler_cannot_see(self):
        # nova drops unknown image properties before scheduling, so only
        # the driver can refuse; it does, with the reason in the fault.
        image = dict(self.glance.image1,
                     id='5e7a0d2e-0d7c-4b2e-9f6a-3d1a2b3c4d5e')
        image['properties'] = dict(image['properties'],
                                   **{spec.IMAGE_KEY: '250'})
        self.glance.create(nova_context.get_admin_context(), image)
        server = self._create_server(image_uuid=image['id'],
                                     flavor_id=self._create_flavor(),
                                     networks='none', expected_state='ERROR')
        # The fault nova keeps is the reschedule's; the driver's reason is
        # in the compute log for each attempt.
        self.assertIn('Exhausted all hosts', server['fault']['message'])
        self.assertIn('cannot boot the PCIe ports the instance asks for: 250 '
                      'free hotplug ports', self.stdlog.logger.output)


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
