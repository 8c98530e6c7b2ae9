"""Which devices in nova's guest config will each take a root port.

On q35 and virt, libvirt places every PCI Express endpoint behind a
``pcie-root-port``; the plan puts those ports first so libvirt fills them
and adds none of its own. Devices that sit on the root bus itself (q35's
video, SATA and LPC) or on ISA/USB take no port.
"""

import typing as ty

from nova.virt.libvirt import config as vconfig

_VIRTIO_SERIAL_TARGETS = ('virtio',)
_PCIE_CONTROLLERS = (vconfig.LibvirtConfigGuestPCIeRootController,
                     vconfig.LibvirtConfigGuestPCIeRootPortController)


def cold_plugged_devices(guest: vconfig.LibvirtConfigGuest,
                         arch: str) -> ty.List[str]:
    """Names of the guest's devices that need a root port, in order."""
    names = []
    serial_controller = False
    for device in guest.devices:
        if isinstance(device, vconfig.LibvirtConfigGuestDisk):
            if device.target_bus == 'virtio':
                names.append(f'disk-{device.target_dev}')
        elif isinstance(device, vconfig.LibvirtConfigGuestInterface):
            names.append(f'nic-{device.mac_addr}')
        elif isinstance(device, vconfig.LibvirtConfigGuestHostdevPCI):
            names.append(f'hostdev-{device.domain}:{device.bus}:'
                         f'{device.slot}.{device.function}')
        elif isinstance(device, vconfig.LibvirtConfigMemoryBalloon):
            if device.model and device.model != 'none':
                names.append('memballoon')
        elif isinstance(device, vconfig.LibvirtConfigGuestRng):
            names.append('rng')
        elif isinstance(device, _PCIE_CONTROLLERS):
            continue
        elif isinstance(device, vconfig.LibvirtConfigGuestController):
            # An unset USB model means libvirt's default, qemu-xhci on q35
            # and virt: a PCIe device. 'none' means no controller.
            if device.type == 'usb' and device.model != 'none':
                names.append('usb-controller')
            elif device.type == 'scsi':
                names.append(f'scsi-controller-{device.index}')
        elif isinstance(device, vconfig.LibvirtConfigGuestVideo):
            # q35 keeps video on the root bus (slot 1); on virt nova's
            # virtio-gpu is an endpoint behind a port.
            if arch == 'aarch64':
                names.append('video')
        elif isinstance(device, vconfig.LibvirtConfigGuestChannel):
            if (device.target_type in _VIRTIO_SERIAL_TARGETS and
                    not serial_controller):
                # libvirt adds one virtio-serial controller for all channels.
                serial_controller = True
                names.append('virtio-serial')
    return names
