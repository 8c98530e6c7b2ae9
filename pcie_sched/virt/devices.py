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


#: USB controller model for guests that get the plan: a PCI Express
#: endpoint on q35 and virt, so it takes one of the plan's root ports.
USB_CONTROLLER_MODEL = 'qemu-xhci'


def pin_usb_controller_model(guest: vconfig.LibvirtConfigGuest) -> None:
    """Give nova's model-less USB controller an explicit PCIe model.

    libvirt 9.0 (Debian 12) resolves a ``<controller type='usb'>`` without
    a model to piix3-uhci on x86_64, even on q35: a conventional PCI
    device, for which libvirt adds a pcie-to-pci-bridge and one more
    pcie-root-port of its own, so the guest no longer has the plan's
    layout (seen by defining the driver's XML in libvirtd 9.0). Later
    libvirt and aarch64 virt already pick qemu-xhci.
    """
    for device in guest.devices:
        if (isinstance(device, vconfig.LibvirtConfigGuestController) and
                device.type == 'usb' and device.model is None):
            device.model = USB_CONTROLLER_MODEL


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
            # pin_usb_controller_model makes an unset model qemu-xhci, a
            # PCIe device. 'none' means no controller.
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
