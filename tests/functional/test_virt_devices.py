"""pcie_sched.virt.devices on domain XML: port usage and pinned ports.

The XML is what libvirt and nova write; the functions are checked
against hand-written domains, the end-to-end tier checks them on real
ones (tests/e2e).
"""

from lxml import etree
import testtools

from pcie_sched import topology
from pcie_sched.virt import devices


def domain(endpoints, ports=4):
    """A q35 domain with ``ports`` planned root ports and these devices."""
    root = etree.Element('domain')
    devs = etree.SubElement(root, 'devices')
    devs.extend(topology.to_libvirt_xml(topology.plan(ports)).find(
        'devices'))
    for xml in endpoints:
        devs.append(etree.fromstring(xml))
    return root


NIC = ("<interface type='ethernet'><mac address='{mac}'/>"
       "<model type='virtio'/>{address}</interface>")
DISK = ("<disk type='file' device='disk'><target dev='{dev}' bus='virtio'/>"
        "{address}</disk>")
RNG = ("<rng model='virtio'><backend model='random'>/dev/urandom</backend>"
       "</rng>")


def on(bus):
    return (f"<address type='pci' domain='0x0000' bus='0x{bus:02x}' "
            f"slot='0x00' function='0x0'/>")


def buses(root):
    return {element.find('target').get('dev') if element.tag == 'disk' else
            element.find('mac').get('address') if element.tag == 'interface'
            else element.tag: int(element.find('address').get('bus'), 16)
            for element in root.find('devices')
            if element.tag != 'controller'}


class TestPortUsage(testtools.TestCase):

    def test_free_ports_are_those_no_device_sits_on(self):
        usage = devices.port_usage(domain([
            DISK.format(dev='vda', address=on(1)),
            NIC.format(mac='fa:16:3e:00:00:01', address=on(3))]))
        self.assertEqual((4, 2, (2, 4)),
                         (usage.total, usage.in_use, usage.free))

    def test_a_port_with_hotplug_off_is_not_free(self):
        root = domain([])
        root.find("devices/controller[@index='2']/target").set(
            'hotplug', 'off')
        self.assertEqual((1, 3, 4), devices.port_usage(root).free)


class TestPinEndpoints(testtools.TestCase):

    def test_first_build_fills_the_lowest_ports_in_novas_order(self):
        root = domain([DISK.format(dev='vda', address=''),
                       NIC.format(mac='fa:16:3e:00:00:01', address=''),
                       RNG])
        assigned = devices.pin_endpoints(root, 'x86_64', {})
        self.assertEqual({'disk-vda': 1, 'nic-fa:16:3e:00:00:01': 2,
                          'rng': 3}, assigned)
        self.assertEqual({'vda': 1, 'fa:16:3e:00:00:01': 2, 'rng': 3},
                         buses(root))

    def test_previous_ports_are_kept_and_the_rest_fill_in(self):
        # Before: vda on 1, boot NIC on 2, rng on 3, a NIC hot-plugged
        # onto 4. nova lists NICs together, so the hot-plugged one now
        # comes before the RNG in its XML.
        root = domain([DISK.format(dev='vda', address=''),
                       NIC.format(mac='fa:16:3e:00:00:01', address=''),
                       NIC.format(mac='fa:16:3e:00:00:02', address=''),
                       RNG])
        devices.pin_endpoints(root, 'x86_64', {
            'disk-vda': 1, 'nic-fa:16:3e:00:00:01': 2,
            'nic-fa:16:3e:00:00:02': 4})
        self.assertEqual({'vda': 1, 'fa:16:3e:00:00:01': 2,
                          'fa:16:3e:00:00:02': 4, 'rng': 3}, buses(root))

    def test_hotplug_follows_occupancy_when_cold_ports_are_locked(self):
        root = domain([DISK.format(dev='vda', address='')])
        devices.pin_endpoints(root, 'x86_64', {},
                              hotplug_on_cold_plugged=False)
        self.assertEqual(
            {1: 'off', 2: 'on', 3: 'on', 4: 'on'},
            {int(c.get('index')): c.find('target').get('hotplug')
             for c in root.iterfind(
                 "devices/controller[@model='pcie-root-port']")})

    def test_more_devices_than_ports_leaves_the_rest_to_libvirt(self):
        root = domain([RNG, DISK.format(dev='vda', address=''),
                       NIC.format(mac='fa:16:3e:00:00:01', address='')],
                      ports=2)
        # The NIC keeps its port although the disk before it gets none.
        self.assertEqual({'rng': 1, 'nic-fa:16:3e:00:00:01': 2},
                         devices.pin_endpoints(
                             root, 'x86_64', {'nic-fa:16:3e:00:00:01': 2}))
        self.assertIsNone(root.find('devices/disk/address'))
        self.assertEqual('0x02',
                         root.find('devices/interface/address').get('bus'))


class TestEndpointPorts(testtools.TestCase):

    def test_read_back_what_pinning_wrote(self):
        root = domain([DISK.format(dev='vda', address=''),
                       NIC.format(mac='fa:16:3e:00:00:01', address=on(3)),
                       RNG])
        assigned = devices.pin_endpoints(root, 'x86_64',
                                         {'nic-fa:16:3e:00:00:01': 3})
        self.assertEqual(assigned, devices.endpoint_ports(root, 'x86_64'))
