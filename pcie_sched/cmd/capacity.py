"""``pcie-sched capacity``: what the capacity model predicts, and why."""

import typing as ty

from pcie_sched import capacity
from pcie_sched.cmd import output
from pcie_sched import hostinfo
from pcie_sched import topology


def add_machine_arguments(parser, firmware_help: str = '',
                          machine_help: str = '',
                          firmware_default: ty.Optional[str] = 'uefi'
                          ) -> None:
    """Arguments shared by every subcommand that names a guest machine.

    ``--machine`` defaults to None (each command picks its machine, most
    with :func:`default_machine`); ``firmware_default=None`` lets a
    command tell an explicit ``--firmware`` from none, with its own help.
    """
    parser.add_argument('--arch', default='x86_64', choices=capacity.ARCHES,
                        help='guest architecture (default: %(default)s)')
    parser.add_argument('--machine', default=None,
                        help=machine_help or
                        "machine type, e.g. q35, pc-q35-7.2, virt, "
                        "virt-2.11 or 'virt,highmem=off' (default: q35 "
                        "on x86_64, virt on aarch64)")
    parser.add_argument('--firmware', default=firmware_default,
                        help=firmware_help or 'uefi (OVMF/AAVMF) or bios '
                                              '(SeaBIOS); default: uefi')


def default_machine(arch: str) -> str:
    return {'x86_64': 'q35', 'aarch64': 'virt'}[arch]


#: QEMU's size suffixes, as in mem-reserve=32M.
_SUFFIXES = {'K': 1024, 'M': 1024 ** 2, 'G': 1024 ** 3}


def parse_port_property(text: str):
    key, sep, value = text.partition('=')
    scale = _SUFFIXES.get(value[-1:].upper(), 1) if value else 1
    digits = value[:-1] if scale != 1 else value
    if not sep or not digits.isascii() or not digits.isdigit():
        raise ValueError(f'--port-prop {text!r}: expected NAME=INTEGER (a '
                         f'K, M or G suffix allowed for sizes) with NAME one '
                         f'of {", ".join(capacity.PORT_PROPERTIES)}')
    return key, int(digits) * scale


def parse_version(text: str):
    parts = text.split('.')
    if len(parts) < 2 or not all(p.isascii() and p.isdigit()
                                 for p in parts[:2]):
        raise ValueError(f'--qemu-version {text!r}: expected MAJOR.MINOR, '
                         f'such as 7.2')
    return int(parts[0]), int(parts[1])


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'capacity', help='predict the most root ports a machine boots',
        description='Compute every budget that limits the number of '
                    'pcie-root-ports (root bus slots, bus numbers, ECAM '
                    'window, IO space) and report the one that binds.')
    add_machine_arguments(
        parser, firmware_help='uefi (OVMF/AAVMF), bios (SeaBIOS) or a path '
                              'to a firmware code file (a *CODE* file is '
                              'UEFI, anything else SeaBIOS-like); default: '
                              'uefi')
    parser.add_argument('--qemu-version', default=None,
                        help='QEMU version MAJOR.MINOR (matters for plain '
                             "'virt' on QEMU older than 2.12)")
    parser.add_argument('--ports-per-slot', type=int, default=8,
                        choices=(1, 8),
                        help='1, or 8 packed as multifunction (default)')
    parser.add_argument('--port-prop', action='append', default=[],
                        metavar='NAME=VALUE',
                        help='pcie-root-port property, e.g. bus-reserve=8 '
                             'or mem-reserve=32M (repeatable)')
    parser.add_argument('--root-bus-devices', type=int, default=None,
                        help='other devices on the root bus before the '
                             'ports (default: what the compute driver '
                             "leaves: 1 on q35 for libvirt's video device, "
                             '0 on virt)')
    parser.add_argument('--vcpus', type=int, default=None,
                        help='guest vCPUs: also apply the guest\'s '
                             'interrupt vector budget (x86_64)')
    parser.add_argument('--guest-devices', type=int, default=0,
                        help='cold-plugged devices sharing that budget')
    output.add_format_argument(parser)
    parser.set_defaults(func=run)


def firmware_kind(arch: str, choice: str) -> str:
    """``uefi`` or ``bios`` for ``--firmware``, which may be a file path.

    The model needs only the kind; a path is checked (it must be a
    readable file, a UEFI one with its variable store template) and
    classified the way the probe boots it.
    """
    if choice in capacity.FIRMWARE:
        return choice
    try:
        return hostinfo.firmware(arch, choice).kind
    except hostinfo.HostError as exc:
        raise ValueError(f'--firmware: {exc}') from exc


def run(args) -> int:
    try:
        properties = dict(parse_port_property(item)
                          for item in args.port_prop)
        version = (parse_version(args.qemu_version)
                   if args.qemu_version else None)
        machine = args.machine or default_machine(args.arch)
        root_bus_devices = args.root_bus_devices
        if root_bus_devices is None:
            # The same root bus the compute driver lays ports out on, so
            # this answer equals the filter's, the driver's and check's.
            family, _, _ = capacity.parse_machine(args.arch, machine)
            root_bus_devices = topology.ROOT_BUS_DEVICES[family]
        result = capacity.estimate(capacity.MachineProfile(
            arch=args.arch, machine=machine,
            firmware=firmware_kind(args.arch, args.firmware),
            qemu_version=version,
            ports_per_slot=args.ports_per_slot, port_properties=properties,
            root_bus_devices=root_bus_devices, vcpus=args.vcpus,
            guest_devices=args.guest_devices))
    except ValueError as exc:
        output.error(str(exc))
        return 2
    if args.format == 'json':
        output.emit_json(result.to_dict())
        return 0
    print(result.explanation)
    for name, budget in result.budgets.items():
        marker = '*' if name == result.limited_by else ' '
        print(f' {marker} {name:15} {budget.max_ports:4}  {budget.detail}')
    print(f'   windows: {result.windows.detail}')
    return 0
