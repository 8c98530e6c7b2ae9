"""The driver's domain XML, defined in a real libvirtd.

The functional tests count a guest's cold-plugged PCIe devices and
predict which ports stay free with libvirt's placement rules written down
in tests/functional/nova_support.py, because fakelibvirt assigns no
addresses. Here real libvirt assigns them: the XML nova-compute built (in
nova's functional framework, with the real driver) is defined in Debian's
libvirtd and read back, and the prediction must match what libvirt did.
"""

from lxml import etree

from tests.functional import nova_support
from tests.functional import test_libvirt_driver
from tests.system import libvirt_support


class TestDriverXmlInLibvirt(test_libvirt_driver.DriverTestBase):

    def setUp(self):
        super().setUp()
        self.libvirtd = self.useFixture(libvirt_support.LibvirtDaemon())
        # A fresh libvirtd probes every installed QEMU binary before its
        # first define: minutes on a busy host, past virsh's default wait.
        self.libvirtd.virsh('capabilities', timeout=600)
        self.start_compute('compute1')

    def define(self, server):
        domain = self.domain_xml[server['id']]
        # No KVM on CI machines; TCG takes the same devices and addresses.
        domain.set('type', 'qemu')
        domain.remove(domain.find('cpu'))
        path = f'{self.libvirtd.workdir}/{server["id"]}.xml'
        with open(path, 'wb') as handle:
            handle.write(etree.tostring(domain))
        self.libvirtd.virsh('define', path, timeout=600)
        name = domain.find('name').text
        return domain, etree.fromstring(self.libvirtd.virsh(
            'dumpxml', '--inactive', name).stdout.encode())

    def occupied_buses(self, defined):
        """Root port indexes libvirt put a device on."""
        buses = []
        for device in defined.find('devices'):
            if device.tag == 'controller' and device.get('type') == 'pci':
                continue
            address = device.find("address[@type='pci']")
            if address is not None and int(address.get('bus'), 16):
                buses.append(int(address.get('bus'), 16))
        return buses

    def test_libvirt_fills_exactly_the_predicted_ports(self):
        self.flags(hotplug_on_cold_plugged_ports=False,
                   group='pcie_sched_compute')
        server = self._create_server(
            flavor_id=self.ports_flavor(16),
            networks=[{'port': self.neutron.port_1['id']}])
        self.assertPlanned(server, 16)
        built, defined = self.define(server)
        predicted = nova_support.root_port_occupants(built, 'x86_64')
        ports = defined.findall(
            "devices/controller[@model='pcie-root-port']")
        # libvirt added no port of its own and kept every planned address.
        self.assertEqual(self.port_layout(built), self.port_layout(defined))
        buses = self.occupied_buses(defined)
        self.assertEqual(len(buses), len(set(buses)), buses)
        self.assertEqual(
            sorted(index for index, device in predicted.items()
                   if device is not None),
            sorted(buses))
        free = [int(port.get('index')) for port in ports
                if int(port.get('index')) not in buses]
        self.assertEqual(16, len(free))
        self.assertEqual(
            {int(port.get('index')): port.find('target').get('hotplug')
             for port in ports},
            {index: 'on' if index in free else 'off'
             for index in predicted})
        # The port properties reach QEMU through libvirt's override.
        self.assertEqual(
            len(ports), len(defined.findall(
                'qemu:override/qemu:device', test_libvirt_driver.QEMU_NS)))
