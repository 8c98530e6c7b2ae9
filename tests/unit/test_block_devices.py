"""Root ports volumes take, and what a move must be scheduled against."""

import testscenarios
import testtools

from pcie_sched import block_devices
from pcie_sched import host_capacity
from pcie_sched import instance_plan

load_tests = testscenarios.load_tests_apply_scenarios

Volume = block_devices.Volume
Image = block_devices.Image
ROOT = Volume(boot_index=0)


class TestVolumeBus(testtools.TestCase):
    """nova's rule (nova.virt.libvirt.blockinfo.get_info_from_bdm)."""

    scenarios = [
        ('default', {'volume': Volume(), 'expected': 'virtio'}),
        ('image_disk_bus', {'volume': Volume(), 'image': Image('scsi'),
                            'expected': 'scsi'}),
        ('own_bus_wins', {'volume': Volume(disk_bus='virtio',
                                           device_name='/dev/sdb'),
                          'image': Image('scsi'), 'expected': 'virtio'}),
        # A bus nova does not know for qemu/kvm counts as none given.
        ('unknown_bus', {'volume': Volume(disk_bus='xen',
                                          device_name='/dev/sdb'),
                         'expected': 'scsi'}),
        ('device_name', {'volume': Volume(device_name='/dev/sdc'),
                         'expected': 'scsi'}),
        ('device_name_vd', {'volume': Volume(device_name='vdc'),
                            'image': Image('scsi'), 'expected': 'virtio'}),
        ('device_name_hd', {'volume': Volume(device_name='/dev/hdb'),
                            'expected': 'ide'}),
        ('cdrom_q35', {'volume': Volume(device_type='cdrom'),
                       'expected': 'sata'}),
        ('cdrom_aarch64', {'volume': Volume(device_type='cdrom'),
                           'image': Image(architecture='aarch64'),
                           'expected': 'scsi'}),
        ('cdrom_image_bus', {'volume': Volume(device_type='cdrom'),
                             'image': Image(cdrom_bus='usb'),
                             'expected': 'usb'}),
        ('floppy', {'volume': Volume(device_type='floppy'),
                    'expected': 'fdc'}),
        ('lun', {'volume': Volume(device_type='lun'), 'expected': 'scsi'}),
    ]
    image = Image()

    def test_bus(self):
        self.assertEqual(self.expected,
                         block_devices.volume_bus(self.volume, self.image))


class TestVolumePorts(testtools.TestCase):

    scenarios = [
        ('none', {'volumes': [], 'expected': 0}),
        # Each virtio volume: a root port of its own.
        ('two_data_volumes', {'volumes': [Volume(), Volume()],
                              'expected': 2}),
        # The root volume is the root disk the reserve already counts.
        ('boot_from_volume', {'volumes': [ROOT], 'expected': 0}),
        ('boot_from_volume_and_data', {'volumes': [Volume(), ROOT, Volume()],
                                       'expected': 2}),
        # Only the first boot index 0 is the root.
        ('two_roots', {'volumes': [ROOT, ROOT], 'expected': 1}),
        # Volumes on scsi share one controller port.
        ('scsi_volumes', {'volumes': [Volume(disk_bus='scsi')] * 3,
                          'expected': 1}),
        ('scsi_and_virtio', {'volumes': [Volume(disk_bus='scsi'), Volume()],
                             'expected': 2}),
        # The root disk on scsi already takes the controller's port.
        ('scsi_image', {'volumes': [Volume(), Volume()],
                        'image': Image('scsi', scsi_model='virtio-scsi'),
                        'expected': 0}),
        ('scsi_image_virtio_volume', {
            'volumes': [Volume(disk_bus='virtio'), Volume()],
            'image': Image('scsi'), 'expected': 1}),
        ('scsi_root_volume', {
            'volumes': [Volume(boot_index=0, disk_bus='scsi'),
                        Volume(device_name='/dev/sdb')],
            'expected': 0}),
        # hw_scsi_model: nova adds the controller whatever the disks.
        ('scsi_model_virtio_root', {
            'volumes': [Volume(disk_bus='scsi')],
            'image': Image(scsi_model='virtio-scsi'), 'expected': 0}),
        # No root port: sata, ide, usb, fdc.
        ('no_port_buses', {
            'volumes': [Volume(device_type='cdrom'),
                        Volume(disk_bus='sata'), Volume(disk_bus='usb'),
                        Volume(device_name='/dev/hdb')],
            'expected': 0}),
        # A root on sata takes no port, but the reserve counted one for
        # it: the estimate stays where it was, never below.
        ('sata_root_volume', {
            'volumes': [Volume(boot_index=0, disk_bus='sata'), Volume()],
            'expected': 1}),
    ]
    image = Image()

    def test_ports(self):
        self.assertEqual(self.expected,
                         block_devices.volume_ports(self.volumes, self.image))


class TestRootPortsNeeded(testtools.TestCase):

    def test_boot_or_move_without_a_record(self):
        self.assertEqual((16 + 9, False),
                         host_capacity.root_ports_needed(16, 9))

    def test_move_with_a_record_needs_exactly_it(self):
        recorded = instance_plan.RecordedPlan(root_ports=24, requested=16)
        # More devices now (hot-plugged) or fewer: the record decides.
        for cold in (4, 8, 12):
            self.assertEqual((24, True),
                             host_capacity.root_ports_needed(16, cold,
                                                             recorded))

    def test_resize_to_another_count_plans_again(self):
        recorded = instance_plan.RecordedPlan(root_ports=24, requested=16)
        self.assertEqual((32 + 10, False),
                         host_capacity.root_ports_needed(32, 10, recorded))
