"""A guest's PCIe port topology: the plan and its renderers.

:func:`plan` turns "N free hotplug ports plus these cold-plugged devices"
into a deterministic list of ``pcie-root-port`` controllers packed eight
to a root bus slot as multifunction functions, which is how counts far
beyond nova's 28 fit. The same request always gives the same addresses,
chassis and port numbers, so guest device names survive hard reboot,
rebuild, resize to the same count and live migration.

Why ``io-reserve=0`` on every port: measured with QMP ``query-pci`` after
OVMF enumerated 64 default ports, only the ten ports that got a slice of
the 40 KiB bridge IO space also got a 32-bit memory window; the rest had
none and could not take a hot-plugged device. PCIe devices need no IO
space, and with ``io-reserve=0`` OVMF gives every one of 240 ports a
memory window. SeaBIOS behaves the same either way.
"""

import dataclasses
import typing as ty

from lxml import etree

from pcie_sched import capacity

QEMU_XML_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'

#: Properties every port gets; see the module docstring.
DEFAULT_PORT_PROPERTIES: ty.Mapping[str, int] = {'io-reserve': 0}

#: Root bus slots a nova guest's other devices take before the ports. On
#: q35 libvirt puts the video device at 00:01.0; on aarch64 virt nova's
#: video device is a PCIe device behind a port, so the root bus is free.
ROOT_BUS_DEVICES = {'q35': 1, 'virt': 0}


def machine_profile(arch: str, machine: str, firmware: str = 'uefi',
                    qemu_version: ty.Optional[ty.Tuple[int, int]] = None,
                    root_bus_devices: ty.Optional[int] = None,
                    vcpus: ty.Optional[int] = None,
                    guest_devices: int = 0) -> capacity.MachineProfile:
    """The capacity model's view of the guests this module lays out.

    The scheduler, the compute driver and the probe all judge a host with
    this profile, so the number they compare is the number of ports
    :func:`plan` can actually give a guest.
    """
    if root_bus_devices is None:
        root_bus_devices = ROOT_BUS_DEVICES[
            capacity.machine_family(arch, machine)]
    return capacity.MachineProfile(
        arch=arch, machine=machine, firmware=firmware,
        qemu_version=qemu_version,
        ports_per_slot=capacity.FUNCTIONS_PER_DEVICE,
        port_properties=dict(DEFAULT_PORT_PROPERTIES),
        root_bus_devices=root_bus_devices, vcpus=vcpus,
        guest_devices=guest_devices)


@dataclasses.dataclass(frozen=True)
class RootPort:
    index: int
    chassis: int
    port: int
    slot: int
    function: int
    multifunction: bool
    hotplug: bool
    occupant: ty.Optional[str]
    properties: ty.Mapping[str, int]

    @property
    def qemu_id(self) -> str:
        # libvirt's alias for controller index N; QEMU ids match it so the
        # same names work with both renderers.
        return f'pci.{self.index}'

    @property
    def address(self) -> str:
        return f'00:{self.slot:02x}.{self.function}'


@dataclasses.dataclass(frozen=True)
class Plan:
    arch: str
    machine: str
    ports: ty.Tuple[RootPort, ...]
    free_ports: int
    cold_plugged: ty.Tuple[str, ...]

    @property
    def free(self) -> ty.Tuple[RootPort, ...]:
        return tuple(port for port in self.ports if port.occupant is None)


class TopologyError(ValueError):
    """The request cannot be laid out on this machine."""


def plan(free_ports: int, cold_plugged: ty.Union[ty.Sequence[str], int] = (),
         arch: str = 'x86_64', machine: ty.Optional[str] = None, *,
         hotplug_on_cold_plugged: bool = True,
         ports_per_slot: int = capacity.FUNCTIONS_PER_DEVICE,
         root_bus_devices: ty.Optional[int] = None) -> Plan:
    """Lay out ``free_ports`` free ports after the cold-plugged devices' own.

    :param cold_plugged: names of the cold-plugged PCIe devices (one port
        each, the first ports, in the given order), or just their count.
    :param hotplug_on_cold_plugged: False turns hotplug off on occupied
        ports so the guest cannot eject, say, its own boot disk.
    :param root_bus_devices: root bus slots to leave for other devices
        before the first port (default: :data:`ROOT_BUS_DEVICES`; the
        probe, which boots without video, passes 0).
    :raises TopologyError: the request does not fit the machine's root
        bus (the message names the counts and the limit).
    """
    machine = machine or {'x86_64': 'q35', 'aarch64': 'virt'}.get(arch, '')
    try:
        # The layout does not depend on machine options; the capacity
        # model reads (or refuses) them. The probe boots them as given.
        family = capacity.machine_family(arch, machine)
    except capacity.UnsupportedMachine as exc:
        raise TopologyError(str(exc)) from exc
    if isinstance(cold_plugged, int):
        cold_plugged = [f'device{number}' for number in range(cold_plugged)]
    cold = tuple(cold_plugged)
    if isinstance(free_ports, bool) or not isinstance(free_ports, int) or (
            free_ports < 0):
        raise TopologyError(f'free_ports={free_ports!r}: expected a '
                            f'non-negative integer')
    if ports_per_slot not in (1, capacity.FUNCTIONS_PER_DEVICE):
        raise TopologyError(f'ports_per_slot={ports_per_slot!r}: expected 1 '
                            f'or {capacity.FUNCTIONS_PER_DEVICE}')
    if root_bus_devices is None:
        root_bus_devices = ROOT_BUS_DEVICES[family]
    first_slot = 1 + root_bus_devices
    reserved = {0x00, 0x1f} if family == 'q35' else {0x00}
    slots = [slot for slot in range(first_slot, capacity.DEVICES_PER_BUS)
             if slot not in reserved]
    total = len(cold) + free_ports
    limit = min(len(slots) * ports_per_slot,
                capacity.BUS_NUMBERS_PER_SEGMENT -
                capacity.ROOT_BUS_NUMBERS)
    if total > limit:
        raise TopologyError(
            f'{free_ports} free + {len(cold)} cold-plugged = {total} root '
            f'ports do not fit {arch} {machine}: at most {limit} '
            f'({len(slots)} slots from 00:{first_slot:02x} x '
            f'{ports_per_slot} per slot)')
    ports = []
    for number in range(total):
        slot = slots[number // ports_per_slot]
        function = number % ports_per_slot
        occupant = cold[number] if number < len(cold) else None
        index = number + 1
        ports.append(RootPort(
            index=index, chassis=index,
            port=(slot * capacity.FUNCTIONS_PER_DEVICE + function) & 0xff,
            slot=slot, function=function,
            # Function 0 announces the others; a lone port needs no flag.
            multifunction=(function == 0 and ports_per_slot > 1 and
                           number + 1 < total and
                           (number + 1) // ports_per_slot ==
                           number // ports_per_slot),
            hotplug=occupant is None or hotplug_on_cold_plugged,
            occupant=occupant,
            properties=dict(DEFAULT_PORT_PROPERTIES)))
    return Plan(arch, machine, tuple(ports), free_ports, cold)


def to_libvirt_xml(plan: Plan) -> etree._Element:
    """A ``<domain>`` fragment: the controllers and their QEMU properties.

    ``<devices>`` holds ``pcie-root`` and every ``pcie-root-port`` with a
    fixed address, chassis and port, so libvirt adds nothing of its own.
    The port properties libvirt has no attribute for travel in a
    ``<qemu:override>`` (libvirt 8.2 and later), keyed by the controller
    aliases libvirt assigns (``pci.N``).
    """
    domain = etree.Element('domain', nsmap={'qemu': QEMU_XML_NS})
    devices = etree.SubElement(domain, 'devices')
    etree.SubElement(devices, 'controller', type='pci', index='0',
                     model='pcie-root')
    for port in plan.ports:
        controller = etree.SubElement(
            devices, 'controller', type='pci', index=str(port.index),
            model='pcie-root-port')
        etree.SubElement(controller, 'model', name='pcie-root-port')
        etree.SubElement(controller, 'target', chassis=str(port.chassis),
                         port=f'0x{port.port:x}',
                         hotplug='on' if port.hotplug else 'off')
        address = etree.SubElement(
            controller, 'address', type='pci', domain='0x0000', bus='0x00',
            slot=f'0x{port.slot:02x}', function=f'0x{port.function:x}')
        if port.multifunction:
            address.set('multifunction', 'on')
    override = etree.SubElement(domain, f'{{{QEMU_XML_NS}}}override')
    for port in plan.ports:
        if not port.properties:
            continue
        device = etree.SubElement(override, f'{{{QEMU_XML_NS}}}device',
                                  alias=port.qemu_id)
        frontend = etree.SubElement(device, f'{{{QEMU_XML_NS}}}frontend')
        for name, value in sorted(port.properties.items()):
            etree.SubElement(frontend, f'{{{QEMU_XML_NS}}}property',
                             name=name, type='unsigned', value=str(value))
    return domain


def to_qemu_args(plan: Plan) -> ty.List[str]:
    """``-device pcie-root-port,...`` arguments for the plan's ports."""
    args = []
    for port in plan.ports:
        options = [
            'pcie-root-port', f'id={port.qemu_id}', 'bus=pcie.0',
            f'chassis={port.chassis}', f'port=0x{port.port:x}',
            f'addr=0x{port.slot:x}.{port.function}']
        if port.multifunction:
            options.append('multifunction=on')
        if not port.hotplug:
            options.append('hotplug=off')
        options.extend(f'{name}={value}'
                       for name, value in sorted(port.properties.items()))
        args.extend(['-device', ','.join(options)])
    return args
