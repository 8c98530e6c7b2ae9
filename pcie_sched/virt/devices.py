"""Which devices in nova's guest config will each take a root port.

On q35 and virt, libvirt places every PCI Express endpoint behind a
``pcie-root-port``; the plan puts those ports first so libvirt fills them
and adds none of its own. Devices that sit on the root bus itself (q35's
video, SATA and LPC) or on ISA/USB take no port.
"""

import dataclasses
import typing as ty

from lxml import etree
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


# -- The domain XML: which root port each endpoint sits on --------------

def _endpoint_name(element, arch: str) -> ty.Optional[str]:
    """The name :func:`cold_plugged_devices` gives this XML element.

    None for elements that take no root port (or that libvirt adds by
    itself, such as the virtio-serial controller, which it puts on the
    lowest port left free).
    """
    tag = element.tag
    if tag == 'disk':
        target = element.find('target')
        if target is not None and target.get('bus') == 'virtio':
            return f'disk-{target.get("dev")}'
    elif tag == 'interface':
        mac = element.find('mac')
        if mac is not None:
            return f'nic-{mac.get("address")}'
    elif tag in ('memballoon', 'rng'):
        if element.get('model') not in (None, 'none'):
            return 'memballoon' if tag == 'memballoon' else 'rng'
    elif tag == 'controller':
        kind = element.get('type')
        if kind == 'usb' and element.get('model') != 'none':
            return 'usb-controller'
        if kind == 'scsi':
            return f'scsi-controller-{element.get("index")}'
    elif tag == 'video' and arch == 'aarch64':
        return 'video'
    return None


def _root_ports(domain) -> ty.Dict[int, ty.Any]:
    return {int(controller.get('index')): controller
            for controller in domain.iterfind(
                "devices/controller[@model='pcie-root-port']")}


@dataclasses.dataclass(frozen=True)
class PortUsage:
    """How a guest's root ports are used, read from its domain XML."""

    total: int
    in_use: int
    #: indexes of the hotplug-capable ports nothing sits on
    free: ty.Tuple[int, ...]


def port_usage(domain) -> PortUsage:
    """Which of ``domain``'s root ports hold a device (libvirt's view).

    A port is in use when any element's PCI address is on its bus; a free
    port counts only if hotplug is on there.
    """
    ports = _root_ports(domain)
    used = set()
    for address in domain.iterfind("devices/*/address[@type='pci']"):
        if address.getparent().get('model') == 'pcie-root-port':
            continue
        used.add(int(address.get('bus'), 16))
    free = tuple(
        index for index, controller in sorted(ports.items())
        if index not in used and
        (controller.find('target') is None or
         controller.find('target').get('hotplug') != 'off'))
    return PortUsage(len(ports), len(used & set(ports)), free)


def endpoint_ports(domain, arch: str) -> ty.Dict[str, int]:
    """{endpoint name: root port} of a domain libvirt has addressed."""
    ports = _root_ports(domain)
    found = {}
    for element in domain.find('devices'):
        name = _endpoint_name(element, arch)
        address = element.find("address[@type='pci']")
        if name is not None and address is not None:
            bus = int(address.get('bus'), 16)
            if bus in ports:
                found[name] = bus
    return found


def previous_ports(old_guest) -> ty.Dict[str, int]:
    """{endpoint name: root port} from the guest's previous domain.

    nova parses only disks and interfaces of an existing domain with their
    addresses (``LibvirtConfigGuest.parse_dom``): the devices a guest may
    have hot-plugged. The others keep their ports because they are laid
    out first, in nova's order, at every build.
    """
    found = {}
    if old_guest is None:
        return found
    for device in old_guest.devices:
        address = getattr(device, 'device_addr', None)
        bus = getattr(address, 'bus', None)
        if bus is None:
            continue
        if isinstance(device, vconfig.LibvirtConfigGuestDisk):
            name = f'disk-{device.target_dev}'
        elif isinstance(device, vconfig.LibvirtConfigGuestInterface):
            name = f'nic-{device.mac_addr}'
        else:
            continue
        found[name] = int(str(bus), 16) if isinstance(bus, str) else bus
    return found


def pin_endpoints(domain, arch: str, previous: ty.Mapping[str, int],
                  hotplug_on_cold_plugged: bool = True) -> ty.Dict[str, int]:
    """Give every endpoint of ``domain`` an explicit root port.

    A device named in ``previous`` keeps its port there; the others take
    the lowest ports left, in the order nova wrote them. Left to itself
    libvirt would fill ports in its own order of device types, so a NIC
    hot-plugged before a hard reboot could come back on another port.

    :returns: {endpoint name: root port index}
    """
    ports = _root_ports(domain)
    endpoints = []
    for element in domain.find('devices'):
        name = _endpoint_name(element, arch)
        if name is not None:
            endpoints.append((name, element))
    assigned = {}
    taken = set()
    for name, _ in endpoints:
        port = previous.get(name)
        if port in ports and port not in taken:
            assigned[name] = port
            taken.add(port)
    spare = iter(sorted(set(ports) - taken))
    for name, _ in endpoints:
        if name not in assigned:
            port = next(spare, None)
            if port is None:
                break  # more devices than ports: libvirt adds its own
            assigned[name] = port
    for name, element in endpoints:
        if name not in assigned:
            continue
        for stale in element.findall('address'):
            element.remove(stale)
        element.append(etree.Element(
            'address', type='pci', domain='0x0000',
            bus=f'0x{assigned[name]:02x}', slot='0x00', function='0x0'))
    if not hotplug_on_cold_plugged:
        held = set(assigned.values())
        for index, controller in ports.items():
            target = controller.find('target')
            if target is not None:
                target.set('hotplug', 'off' if index in held else 'on')
    return assigned
