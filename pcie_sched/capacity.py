"""The capacity model: how many pcie-root-ports a guest can boot with.

Given the machine (architecture, machine type and version, options), the
firmware and the per-port properties, :func:`estimate` computes every
budget that limits the number of root ports and reports the smallest one
as ``limited_by``. Each number below comes from a mechanism, named where it
is defined; the system tests boot the model's maximum and maximum + 1 on
the host's real QEMU and firmware to keep the model honest.

``max_ports`` counts root ports in total: the free hotplug ports *and* the
ports that cold-plugged devices occupy.
"""

import dataclasses
import re
import typing as ty

# -- PCI addressing ---------------------------------------------------------

#: Device numbers on one bus: a 5-bit field in the config address.
DEVICES_PER_BUS = 32
#: Functions per device: a 3-bit field; a multifunction device (function 0
#: with multifunction=on) can hold eight root ports in one slot.
FUNCTIONS_PER_DEVICE = 8
#: Bus numbers in one segment: an 8-bit field.
BUS_NUMBERS_PER_SEGMENT = 256
#: Bus numbers the root complex keeps: bus 0, the root bus itself.
ROOT_BUS_NUMBERS = 1
#: ECAM (PCIe enhanced configuration access) maps 4 KiB of configuration
#: space per function, so one bus takes 32 x 8 x 4 KiB = 1 MiB of window.
ECAM_BYTES_PER_BUS = DEVICES_PER_BUS * FUNCTIONS_PER_DEVICE * 4096
MIB = 1024 * 1024
#: Firmware whose bus arithmetic is 8 bits wide, so a port's bus-reserve
#: that would pass bus 255 wraps around instead of failing: edk2's PCI bus
#: driver (OVMF, AAVMF) then silently drops that port's reservation and
#: gives it just its own secondary bus, and the boot fails only when a
#: port gets no bus at all. Measured, bus-reserve=7 over the whole
#: segment: q35 + OVMF, 31 ports keep 8 buses each, ports 32-38 get one
#: bus each and boot, the 39th hangs the firmware silently; virt + AAVMF,
#: 32 ports boot the same way. Inside a smaller ECAM window nothing wraps:
#: the reservation that passes the window's last bus fails the whole
#: enumeration (virt-2.11, bus-reserve=1: 7 ports boot, 8 stop in the
#: UEFI shell). SeaBIOS wraps too, but badly: the port that overflows gets
#: subordinate bus 0 (a range reaching nothing) and the next one reuses
#: bus 1 (bus-reserve=7: 32 ports boot with the 32nd broken, 33 hang), so
#: only ports whose whole range fits count.
BUS_RESERVE_BEST_EFFORT = frozenset({'uefi'})

# -- IO space ---------------------------------------------------------------

#: x86 port IO is 16 bits wide; QEMU's aarch64 virt maps a 64 KiB PIO window.
IO_SPACE_BYTES = 64 * 1024
#: A PCI bridge's IO window has 4 KiB granularity.
IO_WINDOW_BYTES = 4096
#: The 32-bit memory a hotplug port asks the firmware for when its
#: mem-reserve property is not set: edk2's default hotplug padding
#: (measured: OVMF and AAVMF give every such port 2 MiB; SeaBIOS too).
DEFAULT_MEM_RESERVE = 2 * MIB

# -- Machines ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Machine:
    """What a machine type fixes before any port is added."""

    #: Root bus device numbers the machine's own devices occupy.
    reserved_devices: ty.Mapping[int, str]
    #: ECAM window size in bytes.
    ecam_bytes: int
    #: Where the ECAM window size comes from, for the explanation.
    ecam_source: str
    #: Bytes of IO space the firmware hands to bridges (None: all of it).
    bridge_io_bytes: ty.Mapping[str, int]
    #: Bytes of 32-bit memory space the firmware hands to PCI devices and
    #: bridges (absent: not modelled for that firmware).
    mmio32_bytes: ty.Mapping[str, int] = dataclasses.field(
        default_factory=dict)


#: q35's MCH at 00.0 and the ICH9 LPC/SATA/SMBus functions at 1f.x are
#: part of the machine; QEMU refuses a device on 1f ("in use by ICH9-LPC").
#: The MCH's PCIEXBAR decodes 256 MiB of MMCONFIG as set up by OVMF and
#: SeaBIOS, enough for all 256 buses.
_Q35 = _Machine(
    reserved_devices={0x00: 'MCH host bridge', 0x1f: 'ICH9 LPC/SATA/SMBus'},
    ecam_bytes=256 * MIB,
    ecam_source='q35 MMCONFIG (PCIEXBAR) of 256 MiB',
    # OVMF hands bridges the ports 0x6000-0xffff (the rest is legacy ISA
    # and ACPI/PM); SeaBIOS assigns bridge IO only where a device behind
    # the bridge has an IO BAR.
    bridge_io_bytes={'uefi': 0x10000 - 0x6000, 'bios': 0},
    # OVMF on q35 puts MMCONFIG at 0xb0000000 and the 32-bit PCI window
    # from just above it (0xc0000000) up to the IO APIC/flash area at
    # 0xfc000000: 960 MiB whatever the guest's RAM (measured: 64 ports
    # with mem-reserve=32M get 30 memory windows, 0xc0000000-0xfbffffff).
    mmio32_bytes={'uefi': 0xfc000000 - 0xc0000000},
)

#: aarch64 virt: the GPEX host bridge sits at 00.0. From machine type 3.0
#: QEMU maps a 256 MiB ECAM above 4 GiB (the "high ECAM"; the compat
#: options of virt-2.12 and older still turn it off, and from QEMU 8.0 an
#: explicit highmem-ecam=on turns it back on: measured, virt-2.12 with
#: highmem-ecam=on boots 248 ports); older machine types without that
#: option, and any virt machine with highmem off (or, from QEMU 8.0,
#: highmem-ecam off), only have the 16 MiB ECAM below 4 GiB, i.e. 16 buses,
#: so the 16th port gets no bus number, AAVMF's PCI enumeration fails as a
#: whole and the guest stops in the UEFI shell without its disks. Measured
#: on QEMU 7.2: virt-2.12 with 16 ports stops in the shell, virt-3.0 with
#: 17 boots (QEMU 10.0 boots 15 on virt-2.12 too). QEMU also drops the
#: high ECAM when it does not fit the guest's physical address space (a
#: KVM host with a small IPA size and a lot of guest RAM); the model
#: cannot see that.
_VIRT_HIGH_ECAM = _Machine(
    reserved_devices={0x00: 'GPEX host bridge'},
    ecam_bytes=256 * MIB,
    ecam_source='virt high ECAM window of 256 MiB',
    bridge_io_bytes={'uefi': IO_SPACE_BYTES},
    # QEMU's virt memory map: the low PCIe MMIO window (VIRT_PCIE_MMIO,
    # 0x10000000 + 0x2eff0000); taken from QEMU's map, not measured.
    mmio32_bytes={'uefi': 0x2eff0000},
)
_VIRT_LOW_ECAM = dataclasses.replace(
    _VIRT_HIGH_ECAM, ecam_bytes=16 * MIB,
    ecam_source='virt low ECAM window of 16 MiB (machine types before '
                'virt-3.0 have no high ECAM)')
#: First virt machine type with the high ECAM window.
VIRT_HIGH_ECAM_SINCE = (3, 0)
#: First QEMU with the virt machine option highmem-ecam (QEMU 7.2 refuses
#: it: "Property 'virt-7.2-machine.highmem-ecam' not found").
VIRT_HIGHMEM_ECAM_OPTION_SINCE = (8, 0)

# -- Guest interrupt vectors (x86_64 Linux guests) ------------------------

#: x86 Linux hands devices the vectors from FIRST_EXTERNAL_VECTOR (0x20) up
#: to the first system vector (0xec, the local APIC timer), on every CPU,
#: less the system vectors inside that range (Linux 6.1). Each interrupt
#: takes one vector on one CPU, so the guest has vCPUs x this many.
X86_FIRST_EXTERNAL_VECTOR = 0x20
X86_FIRST_SYSTEM_VECTOR = 0xec
X86_SYSTEM_VECTORS = {0x20: 'IRQ move cleanup', 0x32: 'PIC cascade (IRQ 2)',
                      0x80: 'syscall'}
X86_VECTORS_PER_CPU = (X86_FIRST_SYSTEM_VECTOR - X86_FIRST_EXTERNAL_VECTOR -
                       len(X86_SYSTEM_VECTORS))
#: Legacy (IO-APIC) interrupts a q35 guest's kernel requests before init:
#: the ISA devices whose drivers Debian builds in. Seen in /proc/interrupts
#: of a guest with one port (tests/system/test_guest_limits.py).
X86_BOOT_IRQS = ('timer', 'i8042 keyboard', 'rtc0', 'acpi', 'i8042 aux')
X86_BOOT_VECTORS = len(X86_BOOT_IRQS)
#: The serial console (ttyS0, IRQ 4) is requested when init opens it,
#: after every port has taken its vector: past the budget the console is
#: what fails, and userspace is never heard from.
X86_CONSOLE_VECTORS = 1
#: pcieport shares one MSI between PME, AER and pciehp on a root port.
VECTORS_PER_PORT = 1
#: virtio_pci gives a device one MSI-X vector for its configuration
#: changes and one per virtqueue: 2 for a single-queue device such as
#: virtio-rng (measured: msi_irqs has 2 entries per hot-plugged device).
#: Multi-queue devices take more. A device that finds no vectors left
#: falls back to a shared INTx line: it still works, more slowly.
VECTORS_PER_DEVICE = 2
#: aarch64 virt with QEMU's default GIC (v2; what TCG gets) delivers MSIs
#: as GICv2m SPIs, 64 for the whole machine (QEMU's NUM_GICV2M_SPIS): the
#: first 64 ports get an MSI, the rest and any device hot-plugged after
#: them share INTx lines. The guest still boots (measured: 248 ports on
#: 1 vCPU), so this bounds no port count; gic-version=3 gives ITS LPIs,
#: one per port and device (measured: 248 MSIs for 248 ports).
VIRT_GICV2M_MSIS = 64

ARCHES = ('x86_64', 'aarch64')
FIRMWARE = ('uefi', 'bios')
PORT_PROPERTIES = ('bus-reserve', 'io-reserve', 'mem-reserve',
                   'pref64-reserve')

# Budget names are a stable interface (JSON output, logs, docs).
ROOT_BUS_SLOTS = 'root-bus-slots'
BUS_NUMBERS = 'bus-numbers'
ECAM_WINDOW = 'ecam-window'
IO_SPACE = 'io-space'
# No 'firmware' budget and no firmware version input: every firmware
# limit measured so far (bus-reserve wrapping, the ECAM window, IO and
# memory windows) is a mechanism of the budgets above, and no boot has
# shown a count that one firmware version boots and another does not.
# A number per version would be a guess; the probe measures the host's
# own firmware instead (its cache is keyed by the firmware's content).
GUEST_VECTORS = 'guest-vectors'


class UnsupportedMachine(ValueError):
    """The model has nothing to say about this machine."""

    def __init__(self, what: str, value: ty.Any, accepted: str,
                 reason: str = 'is not supported') -> None:
        self.what = what
        self.value = value
        self.accepted = accepted
        super().__init__(f'{what}={value!r} {reason}; accepted: '
                         f'{accepted}')


@dataclasses.dataclass(frozen=True)
class MachineProfile:
    """Everything about a guest's machine that bounds its root ports."""

    arch: str
    machine: str
    firmware: str = 'uefi'
    qemu_version: ty.Optional[ty.Tuple[int, int]] = None
    ports_per_slot: int = FUNCTIONS_PER_DEVICE
    port_properties: ty.Mapping[str, int] = dataclasses.field(
        default_factory=dict)
    #: Devices the guest puts on the root bus besides the machine's own
    #: (libvirt's video device sits at 00.1 on q35, for example).
    root_bus_devices: int = 0
    #: Guest vCPUs, for the guest's interrupt vector budget (x86_64);
    #: None leaves the guest out of the answer.
    vcpus: ty.Optional[int] = None
    #: Cold-plugged devices whose interrupts share that budget.
    guest_devices: int = 0


@dataclasses.dataclass(frozen=True)
class Budget:
    """One resource and the most root ports it allows."""

    name: str
    max_ports: int
    detail: str
    inputs: ty.Mapping[str, ty.Any]

    def to_dict(self) -> dict:
        return {'max_ports': self.max_ports, 'detail': self.detail,
                'inputs': dict(self.inputs)}


@dataclasses.dataclass(frozen=True)
class Windows:
    """How many of ``max_ports`` ports the firmware gives windows to."""

    io: int
    memory: int
    detail: str

    def to_dict(self) -> dict:
        return {'io': self.io, 'memory': self.memory, 'detail': self.detail}


@dataclasses.dataclass(frozen=True)
class Capacity:
    max_ports: int
    limited_by: str
    budgets: ty.Mapping[str, Budget]
    explanation: str
    windows: Windows
    profile: MachineProfile

    def to_dict(self) -> dict:
        return {
            'max_ports': self.max_ports,
            'limited_by': self.limited_by,
            'budgets': {name: budget.to_dict()
                        for name, budget in self.budgets.items()},
            'explanation': self.explanation,
            'windows': self.windows.to_dict(),
            'profile': {
                'arch': self.profile.arch,
                'machine': self.profile.machine,
                'firmware': self.profile.firmware,
                'qemu_version': ('.'.join(map(str, self.profile.qemu_version))
                                 if self.profile.qemu_version else None),
                'ports_per_slot': self.profile.ports_per_slot,
                'port_properties': dict(self.profile.port_properties),
                'root_bus_devices': self.profile.root_bus_devices,
                'vcpus': self.profile.vcpus,
                'guest_devices': self.profile.guest_devices,
            },
        }


def qemu_version_from_hypervisor_version(version: int) -> ty.Tuple[int, int]:
    """nova and libvirt encode QEMU 7.2.0 as 7002000."""
    if isinstance(version, bool) or not isinstance(version, int) or (
            version <= 0):
        raise UnsupportedMachine('hypervisor_version', version,
                                 'a positive integer such as 7002000')
    return version // 1000000, (version // 1000) % 1000


_MACHINE = re.compile(
    r'(?P<base>q35|pc-q35-(?P<q35v>\d+\.\d+)|virt|virt-(?P<virtv>\d+\.\d+))')

#: QEMU's spellings of a boolean machine property (``highmem=off``).
_ON = ('on', 'yes', 'true')
_OFF = ('off', 'no', 'false')

#: The machine options the model knows, per family: each changes a budget
#: (see :func:`_machine_for`). QEMU refuses options a machine does not
#: have; of those it has, the model must know what each does to the port
#: count or refuse it, never ignore it.
MACHINE_OPTIONS = {
    'q35': (),
    # highmem=off drops every region above 4 GiB, the high ECAM window
    # with them; highmem-ecam (QEMU 8.0 and later) switches that window
    # alone, and an explicit on overrides the compat default of virt-2.12
    # and older (measured: virt-2.12,highmem-ecam=on boots 248 ports on
    # QEMU 10.0, virt-2.12 alone 15).
    'virt': ('highmem', 'highmem-ecam'),
}


def _accepted_options(family: str) -> str:
    names = MACHINE_OPTIONS[family]
    if not names:
        return (f'no machine options on {family} (the capacity model knows '
                f'none; give the machine type alone)')
    return ', '.join(f'{name}=on|off' for name in names) + f' on {family}'


def machine_family(arch: str, machine: str) -> str:
    """``'q35'`` or ``'virt'``: the machine type's family, options unread.

    For what does not depend on the options (the root bus layout); the
    capacity model reads them with :func:`parse_machine`.
    """
    return _split_machine(arch, machine)[0]


def parse_machine(arch: str, machine: str
                  ) -> ty.Tuple[str, ty.Optional[ty.Tuple[int, int]],
                                ty.Dict[str, bool]]:
    """Split ``'virt-2.11,highmem=off'`` into family, version, options.

    Options are the ones :data:`MACHINE_OPTIONS` names for the family,
    as booleans; any other option, or a value that is not on or off, is
    refused, naming the ones accepted.
    """
    family, version, rest = _split_machine(arch, machine)
    options = {}
    for item in filter(None, rest.split(',')):
        key, sep, value = item.partition('=')
        if not sep:
            raise UnsupportedMachine('machine option', item,
                                     'key=value, such as highmem=off')
        key, value = key.strip(), value.strip()
        if key not in MACHINE_OPTIONS[family]:
            raise UnsupportedMachine('machine option', item,
                                     _accepted_options(family))
        if value.lower() not in _ON + _OFF:
            raise UnsupportedMachine('machine option', item,
                                     f'{key}=on or {key}=off')
        options[key] = value.lower() in _ON
    return family, version, options


def _split_machine(arch: str, machine: str
                   ) -> ty.Tuple[str, ty.Optional[ty.Tuple[int, int]], str]:
    accepted = {'x86_64': "'q35' or 'pc-q35-X.Y'",
                'aarch64': "'virt' or 'virt-X.Y'"}
    if arch not in ARCHES:
        raise UnsupportedMachine('arch', arch, ', '.join(ARCHES))
    if not isinstance(machine, str):
        raise UnsupportedMachine('machine', machine, accepted[arch])
    name, _, rest = machine.partition(',')
    match = _MACHINE.fullmatch(name)
    family = None
    if match:
        family = 'q35' if name.startswith(('q35', 'pc-q35')) else 'virt'
    if family != {'x86_64': 'q35', 'aarch64': 'virt'}[arch]:
        raise UnsupportedMachine(
            'machine', machine,
            f"{accepted[arch]}, optionally followed by ',option=value'")
    raw_version = match.group('q35v') or match.group('virtv')
    version = (tuple(int(part) for part in raw_version.split('.'))
               if raw_version else None)
    return family, version, rest


def _dotted(version: ty.Sequence[int]) -> str:
    return '.'.join(map(str, version))


def _machine_for(profile: MachineProfile) -> _Machine:
    family, version, options = parse_machine(profile.arch, profile.machine)
    qemu = (tuple(profile.qemu_version) if profile.qemu_version is not None
            else None)
    if version is not None and qemu is not None and version > qemu:
        # A QEMU's newest versioned machine type carries its own version.
        name = 'pc-q35' if family == 'q35' else 'virt'
        raise UnsupportedMachine(
            'machine', profile.machine,
            f'{family} or {name}-X.Y with X.Y at most {_dotted(qemu)}',
            reason=f'is newer than QEMU {_dotted(qemu)}, whose newest '
                   f'machine type is {name}-{_dotted(qemu)}')
    if family == 'q35':
        return _Q35
    if ('highmem-ecam' in options and qemu is not None and
            qemu < VIRT_HIGHMEM_ECAM_OPTION_SINCE):
        value = 'on' if options['highmem-ecam'] else 'off'
        raise UnsupportedMachine(
            'machine option', f'highmem-ecam={value}',
            f'highmem=on|off on QEMU older than '
            f'{_dotted(VIRT_HIGHMEM_ECAM_OPTION_SINCE)} (QEMU '
            f'{_dotted(qemu)} refuses highmem-ecam)')
    if not options.get('highmem', True):
        return dataclasses.replace(
            _VIRT_LOW_ECAM, ecam_source='virt low ECAM window of 16 MiB '
                                        '(highmem=off)')
    if 'highmem-ecam' in options:
        if options['highmem-ecam']:
            return dataclasses.replace(
                _VIRT_HIGH_ECAM,
                ecam_source='virt high ECAM window of 256 MiB '
                            '(highmem-ecam=on)')
        return dataclasses.replace(
            _VIRT_LOW_ECAM, ecam_source='virt low ECAM window of 16 MiB '
                                        '(highmem-ecam=off)')
    # Plain 'virt' is the newest machine type of that QEMU; QEMU older than
    # 3.0 has no high ECAM at all.
    effective = version or qemu
    if effective is not None and tuple(effective) < VIRT_HIGH_ECAM_SINCE:
        return _VIRT_LOW_ECAM
    return _VIRT_HIGH_ECAM


def _check(profile: MachineProfile) -> None:
    if profile.firmware not in FIRMWARE:
        raise UnsupportedMachine('firmware', profile.firmware,
                                 ', '.join(FIRMWARE))
    if profile.arch == 'aarch64' and profile.firmware != 'uefi':
        raise UnsupportedMachine('firmware', profile.firmware,
                                 "'uefi' (AAVMF) on aarch64")
    if profile.ports_per_slot not in (1, FUNCTIONS_PER_DEVICE):
        raise UnsupportedMachine('ports_per_slot', profile.ports_per_slot,
                                 f'1 or {FUNCTIONS_PER_DEVICE}')
    for key, value in profile.port_properties.items():
        if key not in PORT_PROPERTIES:
            raise UnsupportedMachine('port property', key,
                                     ', '.join(PORT_PROPERTIES))
        if isinstance(value, bool) or not isinstance(value, int) or (
                value < 0):
            raise UnsupportedMachine(key, value, 'a non-negative integer')
    if profile.port_properties.get('bus-reserve', 0) > (
            BUS_NUMBERS_PER_SEGMENT):
        raise UnsupportedMachine('bus-reserve',
                                 profile.port_properties['bus-reserve'],
                                 f'0 to {BUS_NUMBERS_PER_SEGMENT}')
    if (isinstance(profile.guest_devices, bool) or
            not isinstance(profile.guest_devices, int) or
            profile.guest_devices < 0):
        raise UnsupportedMachine('guest_devices', profile.guest_devices,
                                 'a non-negative integer')
    if (isinstance(profile.root_bus_devices, bool) or
            not isinstance(profile.root_bus_devices, int) or
            not 0 <= profile.root_bus_devices < DEVICES_PER_BUS):
        raise UnsupportedMachine('root_bus_devices', profile.root_bus_devices,
                                 f'0 to {DEVICES_PER_BUS - 1}')


def estimate(profile: MachineProfile) -> Capacity:
    """Every budget for ``profile`` and the one that binds."""
    _check(profile)
    machine = _machine_for(profile)
    buses_per_port = 1 + profile.port_properties.get('bus-reserve', 0)

    free_slots = max(DEVICES_PER_BUS - len(machine.reserved_devices) -
                     profile.root_bus_devices, 0)
    reserved = ', '.join(f'{number:02x} ({what})' for number, what in
                         sorted(machine.reserved_devices.items()))
    budgets = {}
    budgets[ROOT_BUS_SLOTS] = Budget(
        ROOT_BUS_SLOTS, free_slots * profile.ports_per_slot,
        f'{DEVICES_PER_BUS} device numbers on the root bus, minus '
        f'{reserved} and {profile.root_bus_devices} other root bus '
        f'device(s), leaves {free_slots} slots x {profile.ports_per_slot} '
        f'port(s) per slot',
        {'devices_per_bus': DEVICES_PER_BUS,
         'reserved_devices': len(machine.reserved_devices),
         'root_bus_devices': profile.root_bus_devices,
         'ports_per_slot': profile.ports_per_slot})

    secondary_buses = BUS_NUMBERS_PER_SEGMENT - ROOT_BUS_NUMBERS
    ports, detail = _ports_for_buses(secondary_buses, buses_per_port,
                                     profile.firmware, wraps=True)
    budgets[BUS_NUMBERS] = Budget(
        BUS_NUMBERS, ports,
        f'{BUS_NUMBERS_PER_SEGMENT} bus numbers minus the root bus leaves '
        f'{secondary_buses}; {detail}',
        {'bus_numbers': BUS_NUMBERS_PER_SEGMENT,
         'buses_per_port': buses_per_port})

    ecam_buses = min(machine.ecam_bytes // ECAM_BYTES_PER_BUS,
                     BUS_NUMBERS_PER_SEGMENT)
    ports, detail = _ports_for_buses(
        max(ecam_buses - ROOT_BUS_NUMBERS, 0), buses_per_port,
        profile.firmware, wraps=ecam_buses >= BUS_NUMBERS_PER_SEGMENT)
    budgets[ECAM_WINDOW] = Budget(
        ECAM_WINDOW, ports,
        f'{machine.ecam_source} maps {ecam_buses} buses at 1 MiB each; '
        f'minus the root bus, {detail}',
        {'ecam_bytes': machine.ecam_bytes, 'ecam_buses': ecam_buses,
         'buses_per_port': buses_per_port})

    guest = _guest_budget(profile)
    if guest is not None:
        budgets[GUEST_VECTORS] = guest

    max_ports = min(budget.max_ports for budget in budgets.values())
    # Ties go to the most fundamental budget (dict order above).
    limited_by = next(name for name, budget in budgets.items()
                      if budget.max_ports == max_ports)
    windows = _windows(profile, machine, max_ports)
    budgets[IO_SPACE] = Budget(
        IO_SPACE, max_ports,
        f'does not stop the boot: {windows.detail}',
        {'io_space_bytes': IO_SPACE_BYTES,
         'io_window_bytes': IO_WINDOW_BYTES,
         'bridge_io_bytes': machine.bridge_io_bytes.get(profile.firmware)})
    binding = budgets[limited_by]
    explanation = (
        f'{profile.arch} {profile.machine} with {profile.firmware} firmware '
        f'boots at most {max_ports} root ports, limited by {limited_by}: '
        f'{binding.detail}.')
    return Capacity(max_ports, limited_by, budgets, explanation, windows,
                    profile)


def _ports_for_buses(buses: int, buses_per_port: int, firmware: str,
                     wraps: bool) -> ty.Tuple[int, str]:
    """Ports that boot with ``buses`` bus numbers, and the arithmetic.

    Every port needs its secondary bus; ``bus-reserve`` asks for more.
    ``wraps``: the buses end at bus 255, where the firmware's 8-bit bus
    arithmetic wraps (see :data:`BUS_RESERVE_BEST_EFFORT`).
    """
    full = buses // buses_per_port
    if buses_per_port == 1:
        return full, f'{buses} ports at 1 bus each'
    if wraps and firmware in BUS_RESERVE_BEST_EFFORT:
        left = buses - full * buses_per_port
        return full + left, (
            f'{full} ports keep {buses_per_port} buses each (1 + '
            f'bus-reserve), the firmware gives the next {left} one bus each '
            f'without the reservation')
    if firmware in BUS_RESERVE_BEST_EFFORT:
        return full, (f'{full} ports at {buses_per_port} buses each (1 + '
                      f'bus-reserve); a reservation past the last bus fails '
                      f'the enumeration')
    return full, (f'{full} ports at {buses_per_port} buses each (1 + '
                  f'bus-reserve); SeaBIOS wraps the bus number past that')


def guest_vectors(vcpus: int, guest_devices: int = 0) -> int:
    """Vectors left for root ports and hot-plugged devices.

    ``vcpus`` x :data:`X86_VECTORS_PER_CPU`, minus what the kernel takes
    before init, the console and the cold-plugged devices.
    """
    return max(vcpus * X86_VECTORS_PER_CPU - X86_BOOT_VECTORS -
               X86_CONSOLE_VECTORS - guest_devices * VECTORS_PER_DEVICE, 0)


def _guest_budget(profile: MachineProfile) -> ty.Optional[Budget]:
    """Root ports a Linux guest with ``vcpus`` vCPUs still boots usable.

    Past it the guest's kernel runs out of interrupt vectors: ports get
    no AER/PME/hotplug interrupt, and the serial console that init opens
    fails ("Interrupt reservation exceeds available resources"). The
    inputs also say how many ports keep every hot-plugged device on its
    own MSI-X vectors when each port holds one (``plugged_ports``); past
    that, devices still work on shared INTx, so it does not bound the
    boot. aarch64 virt delivers MSIs through the GIC (v2m SPIs or GICv3
    ITS LPIs), not a per-CPU vector table, so the model has no guest
    limit there.
    """
    if profile.vcpus is None or profile.arch != 'x86_64':
        return None
    if (isinstance(profile.vcpus, bool) or
            not isinstance(profile.vcpus, int) or profile.vcpus < 1):
        raise UnsupportedMachine('vcpus', profile.vcpus,
                                 'a positive integer')
    left = guest_vectors(profile.vcpus, profile.guest_devices)
    plugged = left // (VECTORS_PER_PORT + VECTORS_PER_DEVICE)
    return Budget(
        GUEST_VECTORS, left // VECTORS_PER_PORT,
        f'{profile.vcpus} vCPU(s) x {X86_VECTORS_PER_CPU} interrupt vectors, '
        f'minus {X86_BOOT_VECTORS} legacy interrupts, {X86_CONSOLE_VECTORS} '
        f'console and {VECTORS_PER_DEVICE} per cold-plugged device '
        f'({profile.guest_devices}), at {VECTORS_PER_PORT} per port; '
        f'{plugged} ports when each holds a hot-plugged device with '
        f'{VECTORS_PER_DEVICE} vectors of its own',
        {'vcpus': profile.vcpus, 'vectors_per_cpu': X86_VECTORS_PER_CPU,
         'boot_vectors': X86_BOOT_VECTORS,
         'console_vectors': X86_CONSOLE_VECTORS,
         'guest_devices': profile.guest_devices,
         'vectors_per_port': VECTORS_PER_PORT,
         'vectors_per_device': VECTORS_PER_DEVICE,
         'plugged_ports': plugged})


def _windows(profile: MachineProfile, machine: _Machine,
             ports: int) -> Windows:
    """Which ports get IO and 32-bit memory windows from the firmware.

    Measured with QMP ``query-pci`` after the firmware ran: when the
    bridge IO space cannot give every port its 4 KiB, edk2's PCI bus
    driver (OVMF and AAVMF alike) keeps the hotplug reservations (IO 4
    KiB, memory 2 MiB, prefetchable memory) of only as many ports as the
    IO space covers and drops the reservations of all the others; an
    occupied port keeps just what its device's BARs need. With
    ``io-reserve=0`` no port asks for IO and every port keeps its memory
    reservation. SeaBIOS gives every hotplug port a memory window and IO
    only where a device needs it. A free port without a memory window
    cannot take a hot-plugged PCIe device.
    """
    io_reserve = profile.port_properties.get('io-reserve')
    bridge_io = machine.bridge_io_bytes.get(profile.firmware,
                                            IO_SPACE_BYTES)
    if io_reserve == 0 or bridge_io == 0:
        memory, note = _memory_windows(profile, machine, ports)
        return Windows(0, memory, 'no port asks for IO space '
                       '(io-reserve=0, or the firmware assigns IO only on '
                       f'demand); {note}')
    io_windows = min(ports, bridge_io // IO_WINDOW_BYTES)
    if io_windows >= ports:
        memory, note = _memory_windows(profile, machine, ports)
        return Windows(ports, memory, f'{bridge_io // 1024} KiB of bridge '
                       f'IO space covers all {ports} ports at 4 KiB each; '
                       f'{note}')
    if profile.firmware == 'uefi':
        name = 'AAVMF' if profile.arch == 'aarch64' else 'OVMF'
        return Windows(
            io_windows, io_windows,
            f'{bridge_io // 1024} KiB of bridge IO space at 4 KiB per port '
            f'gives {io_windows} ports an IO window; {name} leaves the other '
            f'{ports - io_windows} without a memory window too (an occupied '
            f'one keeps only what its device needs), so they cannot take a '
            f'hot-plugged device: set io-reserve=0')
    return Windows(io_windows, ports,
                   f'{bridge_io // 1024} KiB of bridge IO space at 4 KiB per '
                   f'port gives {io_windows} ports an IO window; every port '
                   f'gets a memory window')


def _memory_windows(profile: MachineProfile, machine: _Machine,
                    ports: int) -> ty.Tuple[int, str]:
    """Ports whose mem-reserve fits the firmware's 32-bit PCI window."""
    reserve = profile.port_properties.get('mem-reserve',
                                          DEFAULT_MEM_RESERVE)
    window = machine.mmio32_bytes.get(profile.firmware)
    if window is None or reserve == 0:
        return ports, 'every port gets a memory window'
    fitting = window // reserve
    if fitting >= ports:
        return ports, (f'{window // MIB} MiB of 32-bit PCI memory covers '
                       f'all {ports} ports at {_size(reserve)} each')
    return fitting, (f'{window // MIB} MiB of 32-bit PCI memory at '
                     f'{_size(reserve)} (mem-reserve) per port gives '
                     f'only {fitting} ports a memory window (less what '
                     f'cold-plugged devices use); the others cannot take '
                     f'a hot-plugged device')


def _size(value: int) -> str:
    for unit, scale in (('GiB', 1024 * MIB), ('MiB', MIB), ('KiB', 1024)):
        if value >= scale and value % scale == 0:
            return f'{value // scale} {unit}'
    return f'{value} bytes'
