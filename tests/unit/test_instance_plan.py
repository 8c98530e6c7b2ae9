"""pcie_sched.instance_plan: the plan an instance keeps for its life."""

import testtools

from pcie_sched import instance_plan


class TestRecordedPlan(testtools.TestCase):

    def test_round_trip_through_system_metadata(self):
        plan = instance_plan.RecordedPlan(root_ports=21, requested=16)
        metadata = {'image_hw_machine_type': 'q35'}
        metadata.update(plan.to_system_metadata())
        # nova keeps system metadata as strings
        self.assertEqual({'pcie_sched_root_ports': '21',
                          'pcie_sched_requested': '16',
                          'pcie_sched_layout': str(
                              instance_plan.LAYOUT_VERSION)},
                         plan.to_system_metadata())
        self.assertEqual(plan, instance_plan.from_system_metadata(metadata))

    def test_no_record(self):
        for metadata in (None, {}, {'pcie_sched_root_ports': '21'},
                         {'pcie_sched_root_ports': 'x',
                          'pcie_sched_requested': '16'},
                         {'pcie_sched_root_ports': '-1',
                          'pcie_sched_requested': '16'}):
            self.assertIsNone(instance_plan.from_system_metadata(metadata),
                              metadata)

    def test_record_without_layout_is_the_first_layout(self):
        self.assertEqual(
            instance_plan.RecordedPlan(5, 4, 1),
            instance_plan.from_system_metadata(
                {'pcie_sched_root_ports': '5', 'pcie_sched_requested': '4'}))

    def test_a_newer_releases_layout_is_refused(self):
        # A downgrade must not re-render a guest in a layout that moves
        # its devices.
        error = self.assertRaises(
            instance_plan.UnknownLayout, instance_plan.from_system_metadata,
            {'pcie_sched_root_ports': '5', 'pcie_sched_requested': '4',
             'pcie_sched_layout': '99'})
        self.assertIn("pcie_sched_layout='99'", str(error))
        self.assertIn('renders layouts [1]', str(error))

    def test_clear_keeps_other_keys(self):
        metadata = {'image_hw_machine_type': 'q35'}
        metadata.update(instance_plan.RecordedPlan(5, 4).to_system_metadata())
        instance_plan.clear(metadata)
        self.assertEqual({'image_hw_machine_type': 'q35'}, metadata)


class TestRecordedPorts(testtools.TestCase):

    def test_ports_replace_the_previous_record(self):
        metadata = {'image_hw_machine_type': 'q35'}
        instance_plan.record_ports(metadata, {'nic-fa:16:3e:00:00:01': 2,
                                              'disk-vda': 1})
        self.assertEqual({'nic-fa:16:3e:00:00:01': 2, 'disk-vda': 1},
                         instance_plan.recorded_ports(metadata))
        instance_plan.record_ports(metadata, {'disk-vda': 1})
        self.assertEqual({'image_hw_machine_type': 'q35',
                          'pcie_sched_port_disk-vda': '1'}, metadata)

    def test_unreadable_entries_are_ignored_and_clear_drops_all(self):
        metadata = {'pcie_sched_port_rng': 'x',
                    'pcie_sched_port_disk-vda': '1'}
        self.assertEqual({'disk-vda': 1},
                         instance_plan.recorded_ports(metadata))
        instance_plan.clear(metadata)
        self.assertEqual({}, metadata)
