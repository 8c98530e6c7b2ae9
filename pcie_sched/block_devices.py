"""Root ports a guest's volumes take, from its block device mappings.

nova's libvirt driver gives every volume a disk on the bus its block
device mapping names, or that nova picks for it
(``nova.virt.libvirt.blockinfo``): the mapping's own ``disk_bus``; else
the bus its device name implies (``vd*`` virtio, ``sd*`` scsi, ``hd*``
ide, ``fd*`` fdc); else the default for its device type (a disk: the
image's ``hw_disk_bus``, virtio without one; a CD-ROM: the image's
``hw_cdrom_bus``, sata on x86_64 q35 and scsi on aarch64). On q35 and
virt a virtio disk is a PCI Express endpoint behind a root port of its
own; every scsi disk sits on one SCSI controller, one endpoint for them
all; sata, ide, usb and fdc disks take no root port.

:func:`cold_plugged_reserve <pcie_sched.host_capacity.cold_plugged_reserve>`
already counts one port for the root disk (in ``cold_plugged_base_ports``),
whether that disk is the image's or a boot volume, so volumes add the ports
that the disks take together minus what the root disk takes alone: a
boot-from-volume root is never counted twice, and a volume on the SCSI
controller the root disk already uses adds nothing.

No nova import: the scheduler adapter turns nova's BlockDeviceMapping
objects into :class:`Volume` tuples.
"""

import typing as ty

VIRTIO = 'virtio'
SCSI = 'scsi'
#: The buses nova accepts for qemu and kvm guests
#: (blockinfo.SUPPORTED_DEVICE_BUSES); a mapping naming another is
#: treated by nova as naming none.
QEMU_BUSES = frozenset({'virtio', 'scsi', 'ide', 'usb', 'fdc', 'sata'})
_PREFIX_BUSES = (('vd', VIRTIO), ('sd', SCSI), ('hd', 'ide'), ('fd', 'fdc'))


class Volume(ty.NamedTuple):
    """What decides where nova attaches one volume."""

    boot_index: ty.Optional[int] = None
    disk_bus: ty.Optional[str] = None
    device_type: ty.Optional[str] = None
    device_name: ty.Optional[str] = None


class Image(ty.NamedTuple):
    """The image properties nova reads for a disk's bus."""

    disk_bus: ty.Optional[str] = None
    cdrom_bus: ty.Optional[str] = None
    scsi_model: ty.Optional[str] = None
    architecture: ty.Optional[str] = None


def volume_bus(volume: Volume, image: Image = Image()) -> ty.Optional[str]:
    """The bus nova puts ``volume`` on, or None for one it cannot tell."""
    if volume.disk_bus in QEMU_BUSES:
        return volume.disk_bus
    name = (volume.device_name or '').rsplit('/', 1)[-1]
    for prefix, bus in _PREFIX_BUSES:
        if name.startswith(prefix):
            return bus
    if volume.device_type == 'cdrom':
        if image.cdrom_bus:
            return image.cdrom_bus
        return SCSI if image.architecture == 'aarch64' else 'sata'
    if volume.device_type == 'floppy':
        return 'fdc'
    if volume.device_type == 'lun':
        # A LUN passes SCSI commands through: only a SCSI bus takes it.
        return SCSI
    return image.disk_bus or VIRTIO


def _disk_ports(buses: ty.Iterable[ty.Optional[str]],
                scsi_controller: bool) -> int:
    buses = list(buses)
    return (buses.count(VIRTIO) +
            (1 if scsi_controller or SCSI in buses else 0))


def volume_ports(volumes: ty.Iterable[Volume],
                 image: Image = Image()) -> int:
    """Root ports ``volumes`` add to the cold-plugged reserve.

    :param volumes: the instance's (or the request's) block device
        mappings whose destination is a volume; the one with boot index
        0, if any, is the root disk.
    :param image: the instance's image properties; a root disk that is
        not a volume is the image's, on its ``hw_disk_bus``.
    """
    root = None
    others = []
    for volume in volumes:
        if root is None and volume.boot_index == 0:
            root = volume
        else:
            others.append(volume)
    root_bus = volume_bus(root or Volume(), image)
    # nova adds the controller hw_scsi_model names whatever the disks.
    scsi_controller = bool(image.scsi_model)
    return (_disk_ports([root_bus] + [volume_bus(v, image) for v in others],
                        scsi_controller) -
            _disk_ports([root_bus], scsi_controller))
