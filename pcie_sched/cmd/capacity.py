"""``pcie-sched capacity``: what the capacity model predicts, and why."""

import argparse
import dataclasses
import typing as ty

from pcie_sched import capacity
from pcie_sched.cmd import arguments
from pcie_sched.cmd import output
from pcie_sched import hostinfo
from pcie_sched import spec
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


def machine_problem(args) -> ty.Optional[str]:
    """Why ``--machine`` cannot be modelled for ``--arch``, or None.

    ``main`` asks this of every subcommand with ``--machine`` before it
    runs, so a machine type or option the model does not know is a usage
    error before any boot or connection.
    """
    machine = getattr(args, 'machine', None)
    arch = getattr(args, 'arch', None)
    if machine is None or arch is None:
        return None
    try:
        capacity.parse_machine(arch, machine)
    except capacity.UnsupportedMachine as exc:
        return f'argument --machine: {exc}'
    return None


#: The command-line option behind each input the model may refuse.
_OPTIONS = {
    'arch': '--arch', 'machine': '--machine', 'machine option': '--machine',
    'firmware': '--firmware', 'ports_per_slot': '--ports-per-slot',
    'port property': '--port-prop', 'root_bus_devices': '--root-bus-devices',
    'vcpus': '--vcpus', 'guest_devices': '--guest-devices',
}


def option_error(exc: capacity.UnsupportedMachine) -> str:
    """The model's refusal, led by the option the value came from."""
    option = _OPTIONS.get(exc.what)
    if option is None and exc.what in capacity.PORT_PROPERTIES:
        option = '--port-prop'
    return f'{option}: {exc}' if option else str(exc)


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
    """An argparse ``type``: QEMU's ``MAJOR.MINOR`` (a micro is ignored)."""
    parts = text.split('.')
    if len(parts) < 2 or not all(p.isascii() and p.isdigit() and len(p) < 6
                                 for p in parts[:2]):
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a QEMU version; accepted: MAJOR.MINOR, such '
            f'as 7.2')
    return int(parts[0]), int(parts[1])


def add_qemu_version_argument(parser) -> None:
    parser.add_argument('--qemu-version', default=None, type=parse_version,
                        metavar='X.Y',
                        help='QEMU version MAJOR.MINOR: a versioned machine '
                             'type newer than it is refused, and it decides '
                             "plain 'virt' on QEMU older than 3.0 and "
                             "whether 'highmem-ecam' exists (8.0)")


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
    add_qemu_version_argument(parser)
    parser.add_argument('--ports-per-slot', type=arguments.one_of((1, 8)),
                        default=8,
                        help='1, or 8 packed as multifunction (default)')
    parser.add_argument('--port-prop', action='append', default=[],
                        metavar='NAME=VALUE',
                        help='pcie-root-port property, e.g. bus-reserve=8 '
                             'or mem-reserve=32M (repeatable), added to or '
                             'replacing what the compute driver sets on '
                             'every port (' + ', '.join(
                                 f'{name}={value}' for name, value in
                                 topology.DEFAULT_PORT_PROPERTIES.items()) +
                             ')')
    parser.add_argument('--root-bus-devices', default=None,
                        type=arguments.whole_number(
                            0, capacity.DEVICES_PER_BUS - 1),
                        help='other devices on the root bus before the '
                             'ports (default: what the compute driver '
                             "leaves: 1 on q35 for libvirt's video device, "
                             '0 on virt)')
    parser.add_argument('--vcpus', type=arguments.whole_number(1),
                        default=None,
                        help='guest vCPUs: also apply the guest\'s '
                             'interrupt vector budget (x86_64)')
    parser.add_argument('--guest-devices', default=0,
                        type=arguments.whole_number(0, spec.MAX_PORTS),
                        help='cold-plugged devices sharing that budget '
                             '(default: 0)')
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


def profile(args) -> capacity.MachineProfile:
    """The machine the options describe, as the compute driver builds it.

    Unless an option says otherwise, everything is what the driver's
    plan gives a guest (:func:`pcie_sched.topology.machine_profile`): its
    root bus and the port properties it sets on every port
    (:data:`pcie_sched.topology.DEFAULT_PORT_PROPERTIES`), so this answer
    equals the filter's, the driver's and check's. ``--port-prop``
    entries are added to those properties, or replace them.
    """
    given = dict(parse_port_property(item) for item in args.port_prop)
    driver = topology.machine_profile(
        args.arch, args.machine or default_machine(args.arch),
        firmware_kind(args.arch, args.firmware), args.qemu_version,
        root_bus_devices=args.root_bus_devices, vcpus=args.vcpus,
        guest_devices=args.guest_devices)
    return dataclasses.replace(
        driver, ports_per_slot=args.ports_per_slot,
        port_properties={**driver.port_properties, **given})


def run(args) -> int:
    try:
        result = capacity.estimate(profile(args))
    except capacity.UnsupportedMachine as exc:
        output.error(option_error(exc))
        return 2
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
