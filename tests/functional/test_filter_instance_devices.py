"""The filter reads volumes and the recorded plan from nova's databases.

nova's own API and cell databases (nova.test.TestCase), nova's objects to
fill them as nova-api and nova-compute do, and nova's HostFilterHandler.
"""

import logging

import fixtures
from nova import context as nova_context
from nova import objects
from nova.scheduler import filters
from nova import test
from oslo_utils.fixture import uuidsentinel as uuids
import sqlalchemy
from sqlalchemy import engine

from pcie_sched.filters import instance_devices
from pcie_sched.filters import pci_hotplug_ports
from pcie_sched import host_capacity
from pcie_sched import instance_plan
from pcie_sched import spec
from tests.functional import scheduler_support as support

PORTS = 16
#: The filter's reserve for support.make_request's defaults: nova's root
#: disk, balloon and USB controller, one NIC and the RNG.
RESERVE = 5
PROJECT = 'project'


def volume(boot_index=None, **fields):
    return objects.BlockDeviceMapping(
        source_type='volume', destination_type='volume',
        volume_id=fields.pop('volume_id', uuids.volume),
        boot_index=boot_index, **fields)


def image_root():
    return objects.BlockDeviceMapping(
        source_type='image', destination_type='local',
        image_id=uuids.image, boot_index=0)


class InstanceDevicesTestCase(test.TestCase):

    def setUp(self):
        super().setUp()
        self.context = nova_context.RequestContext('user', PROJECT)
        self.handler = filters.HostFilterHandler()
        self.log = self.useFixture(fixtures.FakeLogger(
            name=pci_hotplug_ports.__name__, level=logging.DEBUG,
            format='%(levelname)s %(message)s'))
        self.lookup_log = self.useFixture(fixtures.FakeLogger(
            name=instance_devices.__name__, level=logging.DEBUG,
            format='%(levelname)s %(message)s'))
        host_capacity.reset_caches()
        self.addCleanup(host_capacity.reset_caches)
        instance_devices.reset_warnings()
        self.addCleanup(instance_devices.reset_warnings)

    def request(self, requested=PORTS, **kwargs):
        """A RequestSpec as nova's scheduler receives it: with a context."""
        request = support.make_request(
            {spec.FLAVOR_KEY: str(requested)}, **kwargs)
        request._context = self.context
        return request

    def passing(self, request, *capacities):
        """Names of the hosts (one per capacity, named by it) that pass."""
        hosts = [support.make_host(str(capacity), max_ports=capacity)
                 for capacity in capacities]
        passing = self.handler.get_filtered_objects(
            [pci_hotplug_ports.PciHotplugPortsFilter()], hosts, request)
        return [int(host.host) for host in passing or []]

    def boot_request(self, *bdms):
        """What nova-api stores before the conductor schedules a boot."""
        instance = objects.Instance(self.context, uuid=uuids.instance,
                                    project_id=PROJECT, user_id='user')
        objects.InstanceMapping(self.context, instance_uuid=uuids.instance,
                                project_id=PROJECT,
                                cell_mapping=None).create()
        objects.BuildRequest(
            self.context, instance=instance, instance_uuid=uuids.instance,
            project_id=PROJECT, tags=objects.TagList(),
            block_device_mappings=objects.BlockDeviceMappingList(
                objects=list(bdms))).create()

    def existing_instance(self, *bdms, system_metadata=None):
        """An instance in cell1 with its volumes, as a move finds it."""
        cell = self.cell_mappings['cell1']
        objects.InstanceMapping(self.context, instance_uuid=uuids.instance,
                                project_id=PROJECT,
                                cell_mapping=cell).create()
        with nova_context.target_cell(self.context, cell) as cctxt:
            objects.Instance(
                cctxt, uuid=uuids.instance, project_id=PROJECT,
                user_id='user', host='source',
                system_metadata=dict(system_metadata or {})).create()
            for index, bdm in enumerate(bdms):
                bdm._context = cctxt
                bdm.instance_uuid = uuids.instance
                bdm.volume_id = getattr(uuids, f'volume{index}')
                bdm.create()


class TestBoot(InstanceDevicesTestCase):

    def test_extra_volumes_take_ports(self):
        self.boot_request(image_root(), volume(), volume())
        needed = PORTS + RESERVE + 2
        self.assertEqual([needed], self.passing(
            self.request(), needed - 1, needed))
        self.assertIn(f'needs {needed} root ports ({PORTS} free + '
                      f'{RESERVE + 2} cold-plugged)', self.log.output)

    def test_boot_from_volume_root_is_the_root_disk(self):
        self.boot_request(volume(boot_index=0), volume())
        needed = PORTS + RESERVE + 1
        self.assertEqual([needed], self.passing(
            self.request(), needed - 1, needed))

    def test_scsi_volumes_share_one_port(self):
        self.boot_request(image_root(), *[volume(disk_bus='scsi')] * 3)
        needed = PORTS + RESERVE + 1
        self.assertEqual([needed], self.passing(
            self.request(), needed - 1, needed))

    def test_without_volumes_nothing_changes(self):
        self.boot_request(image_root())
        needed = PORTS + RESERVE
        self.assertEqual([needed], self.passing(
            self.request(), needed - 1, needed))
        self.assertEqual('', self.lookup_log.output)


class TestMove(InstanceDevicesTestCase):

    def recorded(self, root_ports, requested=PORTS, layout=None):
        plan = instance_plan.RecordedPlan(root_ports, requested)
        metadata = plan.to_system_metadata()
        if layout is not None:
            metadata[instance_plan.LAYOUT_KEY] = str(layout)
        return metadata

    def test_the_recorded_root_ports_decide(self):
        # 3 NICs and 2 volumes at its first build: 16 + 3 + 3 + 1 + 2.
        recorded = PORTS + 9
        self.existing_instance(volume(), volume(), volume(),
                               system_metadata=self.recorded(recorded))
        # Now 4 NICs (one hot-plugged) and 3 volumes (one hot-plugged):
        # the estimate would say 16 + 3 + 4 + 1 + 3 = recorded + 2.
        self.assertEqual([recorded, recorded + 2], self.passing(
            self.request(networks=4), recorded - 1, recorded, recorded + 2))
        self.assertIn(f'needs {recorded} root ports (recorded at its '
                      f'first build)', self.log.output)

    def test_without_a_record_the_estimate_counts_volumes(self):
        # An instance built before the driver recorded plans.
        self.existing_instance(volume(boot_index=0), volume(), volume())
        needed = PORTS + RESERVE + 2
        self.assertEqual([needed], self.passing(
            self.request(), needed - 1, needed))

    def test_resize_to_another_count_counts_its_devices(self):
        self.existing_instance(volume(), volume(),
                               system_metadata=self.recorded(PORTS + 7))
        needed = 32 + RESERVE + 2
        self.assertEqual([needed], self.passing(
            self.request(requested=32), needed - 1, needed))

    def test_a_layout_from_a_newer_release_is_estimated(self):
        self.existing_instance(volume(), system_metadata=self.recorded(
            PORTS + 30, layout=99))
        needed = PORTS + RESERVE + 1
        self.assertEqual([needed], self.passing(
            self.request(), needed - 1, needed))
        self.assertIn('WARNING', self.lookup_log.output)
        self.assertIn("pcie_sched_layout='99'", self.lookup_log.output)


class TestLookupCost(InstanceDevicesTestCase):
    """Once per request, never per host, and none without the spec."""

    def count_queries(self):
        statements = []

        def count(conn, cursor, statement, *args):
            # Queries; the BEGIN of each transaction is not one.
            if statement.lstrip().upper().startswith('SELECT'):
                statements.append(statement.split('FROM', 1)[-1][:40])

        sqlalchemy.event.listen(engine.Engine, 'before_cursor_execute',
                                count)
        self.addCleanup(sqlalchemy.event.remove, engine.Engine,
                        'before_cursor_execute', count)
        return statements

    def test_queries_per_request(self):
        self.boot_request(image_root(), volume())
        capacities = list(range(1, 101))
        statements = self.count_queries()
        self.assertEqual(PORTS + RESERVE + 1, min(self.passing(
            self.request(), *capacities)))
        # The BuildRequest.
        self.assertEqual(1, len(statements), statements)
        del statements[:]
        no_spec = support.make_request({})
        no_spec._context = self.context
        hosts = [support.make_host('h', max_ports=1)]
        self.handler.get_filtered_objects(
            [pci_hotplug_ports.PciHotplugPortsFilter()], hosts, no_spec)
        self.assertEqual([], statements)

    def test_queries_per_move(self):
        self.existing_instance(volume())
        statements = self.count_queries()
        self.passing(self.request(), *range(1, 101))
        # No BuildRequest; the instance mapping (with its cell); the
        # instance and its system metadata (nova loads them in two); its
        # block device mappings.
        self.assertEqual(5, len(statements), statements)


class TestLookupFailures(InstanceDevicesTestCase):

    def warnings(self):
        return [line for line in self.lookup_log.output.splitlines()
                if line.startswith('WARNING')]

    def test_no_context_warns_once_and_estimates(self):
        for _ in range(3):
            request = self.request()
            request._context = None
            self.assertEqual([PORTS + RESERVE], self.passing(
                request, PORTS + RESERVE - 1, PORTS + RESERVE))
        (line,) = self.warnings()
        self.assertIn(str(uuids.instance), line)
        self.assertIn('carries no request context', line)
        self.assertIn('volumes are not counted', line)

    def test_unknown_instance_warns_and_estimates(self):
        # Neither a BuildRequest nor an instance mapping.
        self.assertEqual([PORTS + RESERVE], self.passing(
            self.request(), PORTS + RESERVE - 1, PORTS + RESERVE))
        (line,) = self.warnings()
        self.assertIn('InstanceMappingNotFound', line)

    def test_instance_neither_built_nor_in_a_cell(self):
        objects.InstanceMapping(self.context, instance_uuid=uuids.instance,
                                project_id=PROJECT,
                                cell_mapping=None).create()
        self.assertEqual([PORTS + RESERVE], self.passing(
            self.request(), PORTS + RESERVE - 1, PORTS + RESERVE))
        (line,) = self.warnings()
        self.assertIn('neither a BuildRequest nor a cell', line)
