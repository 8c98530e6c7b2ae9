"""Volumes and moves, scheduled against the root ports the guest takes.

Real nova API, conductor, scheduler (with PciHotplugPortsFilter) and
compute services over fakelibvirt, with Placement and nova's Cinder and
Neutron fixtures.
"""

import logging
import os
import urllib.parse

import fixtures
from nova import conf as nova_conf
from nova import context as nova_context
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_utils.fixture import uuidsentinel as uuids

from pcie_sched.filters import pci_hotplug_ports
from pcie_sched import instance_plan
from pcie_sched import spec
from tests.functional import nova_support
from tests.functional import test_libvirt_driver

CONF = nova_conf.CONF
PORTS = 16


class VolumeTestBase(test_libvirt_driver.DriverTestBase):

    def start_host(self, name, memory_gb=16, max_ports=None):
        """A compute publishing ``max_ports`` (None: what it boots).

        Only the capacity it publishes when it starts: the override is
        reset at once, as test_libvirt_driver.TestScheduling does.
        """
        # nova's RAM weigher prefers the host with the most free memory.
        # (nova reads HostInfo's kB_mem through virNodeGetInfo, whose
        # memory is in MiB.)
        self.flags(max_ports_override=max_ports, group='pcie_sched_compute')
        self.start_compute(name, host_info=fakelibvirt.HostInfo(
            cpu_nodes=1, cpu_sockets=1, cpu_cores=4, cpu_threads=1,
            kB_mem=memory_gb * 1024))
        self.flags(max_ports_override=None, group='pcie_sched_compute')

    def boot(self, flavor, networks, volumes=(), root_volume=None,
             expected_state='ACTIVE'):
        """A server with ``volumes`` attached at boot (and a root one)."""
        body = self._build_server(
            image_uuid='' if root_volume else None, flavor_id=flavor,
            networks=networks)
        mappings = [{'source_type': 'volume', 'destination_type': 'volume',
                     'uuid': volume} for volume in volumes]
        # nova-api wants the root disk among them: the image's or a volume.
        if root_volume:
            mappings.insert(0, {'source_type': 'volume',
                                'destination_type': 'volume',
                                'uuid': root_volume, 'boot_index': 0})
        elif mappings:
            mappings.insert(0, {'source_type': 'image',
                                'destination_type': 'local',
                                'uuid': body['imageRef'], 'boot_index': 0})
        if mappings:
            body['block_device_mapping_v2'] = mappings
        server = self.api.post_server({'server': body})
        return self._wait_for_state_change(server, expected_state)

    def cold_plugged(self, server):
        return nova_support.pcie_endpoints(self.domain_xml[server['id']])


class TestBootWithVolumes(VolumeTestBase):
    """Volumes in the create request take root ports at the first build."""

    def setUp(self):
        super().setUp()
        # The scheduler's choice is what is tested: without alternates a
        # wrong one is not hidden by a reschedule.
        self.flags(max_attempts=1, group='scheduler')
        self.flavor = self.ports_flavor(PORTS)
        # What the request shows without its volumes: nova's root disk,
        # balloon and USB controller, one NIC and the RNG
        # (tests/functional/test_filter.py RESERVE).
        self.without_volumes = PORTS + 5
        # Preferred by the weighers; it publishes a capacity that boots
        # the guest without its volumes, not with them.
        self.start_host('small', memory_gb=32,
                        max_ports=self.without_volumes)
        self.start_host('big', memory_gb=16)

    def test_extra_volumes_go_to_the_host_that_boots_them(self):
        server = self.boot(self.flavor,
                           [{'uuid': self.neutron.network_1['id']}],
                           volumes=[uuids.data1, uuids.data2])
        self.assertEqual('big', self.host_of(server))
        self.assertEqual(self.without_volumes + 2,
                         len(self.root_ports(server)))
        # The same guest without its volumes fits the preferred host:
        # two virtio-blk disks less, two root ports less.
        plain = self.boot(self.flavor,
                          [{'uuid': self.neutron.network_1['id']}])
        self.assertEqual('small', self.host_of(plain))
        self.assertEqual(self.without_volumes, len(self.root_ports(plain)))
        self.assertEqual(len(self.cold_plugged(plain)) + 2,
                         len(self.cold_plugged(server)))

    def test_boot_from_volume_root_is_counted_once(self):
        # The root volume is the root disk the reserve already counts:
        # with one data volume the guest needs one port more, not two.
        # small (preferred, one port short), exact, big (least preferred)
        self.start_host('exact', memory_gb=24,
                        max_ports=self.without_volumes + 1)
        server = self.boot(self.flavor,
                           [{'uuid': self.neutron.network_1['id']}],
                           volumes=[uuids.data1],
                           root_volume=nova_fixtures.CinderFixture.
                           IMAGE_BACKED_VOL)
        self.assertEqual('exact', self.host_of(server))
        self.assertEqual(self.without_volumes + 1,
                         len(self.root_ports(server)))


class TestMoves(VolumeTestBase):
    """Moves of a guest with 3 NICs, a hot-plugged NIC and volumes.

    The guest boots on ``source`` with 3 NICs and 2 data volumes, gets a
    NIC and a volume hot-plugged, and is then moved. Two destinations
    are left: ``short``, whose capacity is one root port less than the
    guest has (what the request alone showed before volumes were
    counted: 4 NICs, no volume), preferred by nova's weighers; and
    ``exact``, which boots exactly the guest's root ports. Their
    capacities are aggregate ceilings, which only the scheduler reads:
    the destination's driver must not refuse a guest the test put there,
    so the scheduler's choice alone is tested.
    """

    ADMIN_API = True

    def setUp(self):
        super().setUp()
        # Without alternates a wrong choice is not hidden by a reschedule.
        self.flags(max_attempts=1, group='scheduler')
        self.flags(allow_resize_to_same_host=False)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3',
            self._migrate_stub))
        self.start_host('source')
        network = {'uuid': self.neutron.network_1['id']}
        self.server = self.boot(self.ports_flavor(PORTS), [network] * 3,
                                volumes=[uuids.data1, uuids.data2])
        self.assertEqual('source', self.host_of(self.server))
        # Root disk, balloon, USB, RNG, 3 NICs and 2 volumes.
        self.assertEqual(9, len(self.cold_plugged(self.server)))
        self.root_port_count = len(self.root_ports(self.server))
        self.assertEqual(PORTS + 9, self.root_port_count)
        self.api.attach_interface(self.server['id'], {
            'interfaceAttachment': {'net_id': network['uuid']}})
        self.api.post_server_volume(self.server['id'], {
            'volumeAttachment': {'volumeId': uuids.hotplugged}})
        self.context = nova_context.get_admin_context()
        self.keep_recorded_plan()
        self.keep_network_info_cache()
        # nova's image backend fixture creates no disk file; a cold move
        # copies one, so give it an (empty) one to copy.
        disk = os.path.join(CONF.instances_path, self.server['id'], 'disk')
        os.makedirs(os.path.dirname(disk), exist_ok=True)
        with open(disk, 'wb'):
            pass
        self.start_host('short', memory_gb=32)
        self.start_host('exact', memory_gb=16)
        self.ceiling('short', self.root_port_count - 1)
        self.ceiling('exact', self.root_port_count)
        self.filter_log = self.useFixture(fixtures.FakeLogger(
            name=pci_hotplug_ports.__name__, level=logging.DEBUG))

    def keep_recorded_plan(self):
        """The record the compute driver kept from the first build.

        PcieSchedLibvirtDriver writes it (pcie_sched.instance_plan); the
        move is scheduled against it, whatever was hot-plugged since.
        """
        instance = objects.Instance.get_by_uuid(
            self.context, self.server['id'],
            expected_attrs=['system_metadata'])
        self.assertEqual(
            instance_plan.RecordedPlan(self.root_port_count, PORTS),
            instance_plan.from_system_metadata(instance.system_metadata))

    def keep_network_info_cache(self):
        """Give the instance the network info cache a cloud keeps.

        nova's conductor rebuilds the request's networks from this cache
        before it schedules a move (RequestSpec.ensure_network_information),
        but in nova's functional framework the cache the boot wrote is
        lost (the network allocation runs on another thread, whose
        writes the test database does not keep), and the interface
        attach then leaves only the hot-plugged NIC in it: a move would
        look as if the guest had one NIC. nova's own periodic task
        _heal_instance_info_cache, run here on the source compute, asks
        (fake) Neutron for all the instance's ports and saves them, as it
        does in a cloud.
        """
        self.computes['source'].manager._heal_instance_info_cache(
            self.context)
        instance = objects.Instance.get_by_uuid(
            self.context, self.server['id'], expected_attrs=['info_cache'])
        self.assertEqual(4, len(instance.info_cache.network_info))

    def ceiling(self, host, value):
        aggregate = self.admin_api.post_aggregate(
            {'aggregate': {'name': f'{host}-ceiling'}})
        self.admin_api.add_host_to_aggregate(aggregate['id'], host)
        self.admin_api.post_aggregate_action(aggregate['id'], {
            'set_metadata': {'metadata': {
                spec.HOST_CAPACITY_KEY: str(value)}}})

    def _migrate_stub(self, domain, destination, params, flags):
        # As nova's LibvirtMigrationMixin, to whichever host was chosen
        # (the URI is qemu+tcp://<host>/system).
        host = urllib.parse.urlsplit(destination).hostname
        self.computes[host].driver._host.get_connection().createXML(
            params['destination_xml'],
            'fake-createXML-doesnt-care-about-flags')
        self.computes['source'].driver._host.get_connection(
        ).lookupByUUIDString(self.server['id']).complete_job()

    def assertScheduledOnExact(self, server):
        self.assertEqual('exact', self.host_of(server))
        self.assertRegex(
            self.filter_log.output,
            rf'\(short, short\) .* fails PciHotplugPortsFilter: needs '
            rf'{self.root_port_count} root ports \(recorded at its first '
            rf'build\), can boot {self.root_port_count - 1} ')

    def test_cold_migration(self):
        server = self._migrate_server(self.server)
        self.assertScheduledOnExact(server)
        self._confirm_resize(server)

    def test_resize_to_a_flavor_with_the_same_count(self):
        bigger = self._create_flavor(
            memory_mb=4096, extra_spec={spec.FLAVOR_KEY: str(PORTS)},
            ephemeral=0)
        server = self._resize_server(self.server, bigger)
        self.assertScheduledOnExact(server)
        self._confirm_resize(server)

    def test_live_migration(self):
        server = self._live_migrate(self.server, 'completed')
        self.assertScheduledOnExact(server)
