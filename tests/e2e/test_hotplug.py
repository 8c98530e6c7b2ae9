"""Through nova's API, on real libvirt and QEMU: ports, hot-plug, reboots.

Each test boots a real guest through ``POST /servers``, hot-plugs with
``POST /servers/{id}/os-interface`` and reads back what libvirt's running
domain holds (``virsh dumpxml``) and what the guest's Linux kernel found
(its serial console, through nova's console-output API). The counts the
tests expect come from the domain and from nova's API, never from the
driver's own counting.
"""

import os
import subprocess

import fixtures
from nova.tests.functional.api import client
from oslo_utils import uuidutils
import testscenarios

from pcie_sched import spec
from tests.e2e import stack

load_tests = testscenarios.load_tests_apply_scenarios

NETWORK = stack.nova_fixtures.NeutronFixture.network_1['id']
#: virtio endpoints of a nova guest, as the guest's kernel counts them
#: (vendor 0x1af4); libvirt's qemu-xhci USB controller is not one.
_VIRTIO = ("devices/interface[model/@type='virtio']"
           "|devices/disk[target/@bus='virtio']"
           "|devices/memballoon[@model='virtio']"
           "|devices/rng[@model='virtio']")


def root_ports(domain):
    return sorted(int(c.get('index')) for c in domain.findall(
        "devices/controller[@model='pcie-root-port']"))


def occupied_buses(domain):
    """Root port buses that hold a device in the running domain."""
    return {int(address.get('bus'), 16)
            for address in domain.iterfind("devices/*/address[@type='pci']")
            if address.getparent().get('model') != 'pcie-root-port'}


def addresses(domain):
    """{device: (bus, slot, function)} for every device with a PCI address.

    NICs are named by MAC, disks by target, controllers by model and index,
    other devices by tag.
    """
    found = {}
    for element in domain.find('devices'):
        address = element.find("address[@type='pci']")
        if address is None:
            continue
        if element.tag == 'interface':
            name = 'nic ' + element.find('mac').get('address')
        elif element.tag == 'disk':
            name = 'disk ' + element.find('target').get('dev')
        elif element.tag == 'controller':
            name = (f'controller {element.get("model") or element.get("type")}'
                    f' {element.get("index")}')
        else:
            name = element.tag
        found[name] = tuple(int(address.get(part), 16)
                            for part in ('bus', 'slot', 'function'))
    return found


class HotplugTestBase(stack.RealLibvirtStackTestBase):

    def boot(self, ports, firmware='uefi'):
        image = self.create_guest_image(firmware)
        flavor = self.create_flavor(ports=ports)
        return self._create_server(image_uuid=image, flavor_id=flavor,
                                   networks=[{'uuid': NETWORK}])

    def attach_nic(self, server):
        return self.api.attach_interface(
            server['id'], {'interfaceAttachment': {'net_id': NETWORK}})

    def server_macs(self, server):
        return {port['mac_address'] for port in self.neutron._ports.values()
                if port.get('device_id') == server['id']}

    def assertEveryNicWorks(self, report, macs):
        """Each MAC is a NIC the guest found, with BARs and virtio_net."""
        seen = {device.mac: device for device in report.values()}
        for mac in macs:
            self.assertIn(mac, seen, f'the guest does not see NIC {mac}: '
                                     f'{sorted(seen)}')
            device = seen[mac]
            self.assertEqual(('BARS-OK', 'virtio_net'),
                             (device.bars, device.virtio_driver), device)
            self.assertGreater(device.vectors, 0, device)


class TestPlannedPortsTakeNovasHotplug(HotplugTestBase):
    """hw:pci_hotplug_ports=N: N attaches work, the next is refused."""

    scenarios = [('uefi', {'firmware': 'uefi', 'ports': 16}),
                 ('seabios', {'firmware': 'bios', 'ports': 4})]
    if os.environ.get('PCIE_SCHED_FULL_MATRIX'):
        scenarios.append(('uefi_64', {'firmware': 'uefi', 'ports': 64}))

    def test_every_free_port_takes_a_nic_then_the_next_is_refused(self):
        server = self.boot(self.ports, self.firmware)
        domain = self.live_domain(server)
        # The UEFI guest started on libvirt 9.0 at all (nova's own XML is
        # refused there: pcie_sched.virt.firmware).
        self.assertEqual(self.firmware == 'uefi',
                         domain.find('os').get('firmware') == 'efi' or
                         domain.find('os/loader') is not None)
        free = set(root_ports(domain)) - occupied_buses(domain)
        self.assertEqual(self.ports, len(free))
        cold = len(domain.xpath(_VIRTIO))
        self.wait_for_report(server, cold)

        for _ in range(self.ports):
            self.attach_nic(server)
        macs = self.server_macs(server)
        self.assertEqual(1 + self.ports, len(macs))
        report = self.wait_for_report(server, cold + self.ports)
        self.assertEveryNicWorks(report, macs)
        domain = self.live_domain(server)
        self.assertEqual(set(), set(root_ports(domain)) -
                         occupied_buses(domain))

        # One more: refused by the driver before a port is made or
        # libvirt asked, with the reason in the answer, the instance
        # action event and nova-compute's log.
        ports_before = len(self.neutron._ports)
        error = self.assertRaises(client.OpenStackApiException,
                                  self.attach_nic, server)
        self.assertEqual(400, error.response.status_code)
        message = error.response.json()['badRequest']['message']
        for part in (server['id'], 'no free hotplug port',
                     f'{len(root_ports(domain))} of '
                     f'{len(root_ports(domain))} root ports in use',
                     f'{spec.FLAVOR_KEY}={self.ports}'):
            self.assertIn(part, message)
        self.assertEqual(ports_before, len(self.neutron._ports))
        action = self.api.get_instance_actions(server['id'])[0]
        self.assertEqual('attach_interface', action['action'])
        events = self.api.get_instance_action_details(
            server['id'], action['request_id'])['events']
        self.assertEqual([('compute_attach_interface', 'Error')],
                         [(e['event'], e['result']) for e in events])
        self.assertIn('no free hotplug port', events[0]['details'])
        log = self.stdlog.logger.output
        self.assertIn('Refusing to hot-plug a device', log)
        self.assertNotIn('No more available PCI slots', log)
        self._delete_server(server)


class TestWithoutTheSpec(HotplugTestBase):
    """No spec: nova's own layout, and upstream's bug through nova's API."""

    def test_second_attach_fails_as_upstream(self):
        server = self.boot(None)
        domain = self.live_domain(server)
        # nova's XML asked for no ports ([libvirt] num_pcie_ports = 0):
        # libvirt laid them out and left one spare; no plan properties.
        self.assertIsNone(domain.find(
            '{http://libvirt.org/schemas/domain/qemu/1.0}override'))
        free = set(root_ports(domain)) - occupied_buses(domain)
        self.assertEqual(1, len(free))
        self.attach_nic(server)
        error = self.assertRaises(client.OpenStackApiException,
                                  self.attach_nic, server)
        self.assertEqual(500, error.response.status_code)
        self.assertIn('No more available PCI slots',
                      self.stdlog.logger.output)
        self._delete_server(server)


class TestAddressesLastTheGuestsLife(HotplugTestBase):
    """Hard reboot and stop/start keep every address and the port count."""

    def test_hot_plugged_devices_keep_their_ports(self):
        server = self.boot(4)
        self.attach_nic(server)
        self.attach_nic(server)
        domain = self.live_domain(server)
        before = addresses(domain)
        ports = root_ports(domain)
        free = set(ports) - occupied_buses(domain)
        self.assertEqual(2, len(free))
        cold = len(domain.xpath(_VIRTIO))
        guest_view = {d.mac: d.address for d in
                      self.wait_for_report(server, cold).values()}

        for restart in ('hard reboot', 'stop and start'):
            if restart == 'hard reboot':
                self._reboot_server(server, hard=True)
            else:
                server = self._stop_server(server)
                server = self._start_server(server)
            domain = self.live_domain(server)
            self.assertEqual(before, addresses(domain), restart)
            self.assertEqual(ports, root_ports(domain), restart)
            self.assertEqual(free, set(ports) - occupied_buses(domain),
                             restart)
            self.assertEqual(guest_view, {
                d.mac: d.address for d in
                self.wait_for_report(server, cold).values()}, restart)
        # The ports left free still take hot-plugged NICs.
        self.attach_nic(server)
        self.attach_nic(server)
        self.assertRaises(client.OpenStackApiException, self.attach_nic,
                          server)
        self._delete_server(server)


class TestVolumesTakeThePlansPorts(HotplugTestBase):
    """Volumes attached through nova's API land on the plan's free ports.

    A volume is a loop device on this host, handed to nova by Cinder's
    fixture as a ``local`` connection (nova's LibvirtVolumeDriver: a
    ``<disk type='block'>`` on the device path), so nova's real attach
    path and libvirt's real hot-plug carry it out.
    """

    def setUp(self):
        super().setUp()
        # Mocked, because it cannot run here: os-brick's discovery of this
        # host's iSCSI initiator, FC HBAs and NVMe host NQN, which nova
        # sends Cinder with every attach. The local connection needs none.
        self.useFixture(stack.nova_fixtures.OSBrickFixture())

    def loop_volume(self):
        path = os.path.join(self.workdir, f'volume-{len(self.volumes)}.img')
        with open(path, 'wb') as handle:
            handle.truncate(4 << 20)
        device = subprocess.run(
            ['losetup', '--find', '--show', path], capture_output=True,
            text=True, check=True, timeout=30).stdout.strip()
        self.addCleanup(subprocess.run, ['losetup', '--detach', device],
                        timeout=30, check=False)
        volume = uuidutils.generate_uuid()
        self.volumes[volume] = {'driver_volume_type': 'local',
                                'data': {'device_path': device}}
        return volume

    def test_volumes_and_nics_fill_the_free_ports(self):
        self.volumes = dict(
            stack.nova_fixtures.CinderFixture.VOLUME_CONNECTION_INFO)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.CinderFixture.VOLUME_CONNECTION_INFO',
            self.volumes))
        server = self.boot(4)
        cold = len(self.live_domain(server).xpath(_VIRTIO))
        for _ in range(2):
            volume = self.loop_volume()
            self.api.post_server_volume(
                server['id'], {'volumeAttachment': {'volumeId': volume}})
            self._wait_for_volume_attach(server['id'], volume)
            self.attach_nic(server)
        report = self.wait_for_report(server, cold + 4)
        disks = [d for d in report.values() if d.virtio_driver == 'virtio_blk']
        self.assertEqual(3, len(disks), report)
        self.assertEqual({'BARS-OK'}, {d.bars for d in disks})
        domain = self.live_domain(server)
        self.assertEqual(set(), set(root_ports(domain)) -
                         occupied_buses(domain))
        before = addresses(domain)
        guest_view = {d.address for d in report.values()}
        self._reboot_server(server, hard=True)
        self.assertEqual(before, addresses(self.live_domain(server)))
        self.assertEqual(guest_view, set(
            self.wait_for_report(server, cold + 4)))
        self._delete_server(server)


class TestAddressesSurviveAResize(HotplugTestBase):
    """A resize builds the guest anew with no previous domain to copy.

    nova rebuilds the XML from its device list, NICs in attach order; the
    ports recorded with the instance put every device back where it was.
    Resized onto the same host ([DEFAULT] allow_resize_to_same_host), the
    nearest this one-compute tier has to a cold migration: the same code
    builds the destination's guest.
    """

    def test_resize_to_the_same_count_keeps_every_address(self):
        self.flags(allow_resize_to_same_host=True)
        server = self.boot(4)
        self.attach_nic(server)
        self.attach_nic(server)
        domain = self.live_domain(server)
        before, ports = addresses(domain), root_ports(domain)
        bigger = self._create_flavor(
            memory_mb=self.GUEST_MEMORY_MB + 128, vcpu=1, disk=1,
            ephemeral=0, extra_spec={spec.FLAVOR_KEY: '4'})
        server = self._resize_server(server, bigger)
        server = self._confirm_resize(server)
        domain = self.live_domain(server)
        self.assertEqual(before, addresses(domain))
        self.assertEqual(ports, root_ports(domain))
        self._delete_server(server)
