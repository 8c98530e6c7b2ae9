"""``pcie-sched render``: the port topology a guest would get."""

from lxml import etree

from pcie_sched import capacity
from pcie_sched.cmd import arguments
from pcie_sched.cmd import capacity as capacity_cmd
from pcie_sched.cmd import output
from pcie_sched import spec
from pcie_sched import topology


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'render', help='print the pcie-root-port topology for N ports',
        description='Render the plan for N free hotplug ports plus the '
                    'cold-plugged devices as libvirt domain XML or QEMU '
                    'arguments. A plan with more root ports than the '
                    'capacity model boots for the machine and firmware '
                    'given is refused, with the maximum.')
    parser.add_argument('--ports', required=True,
                        type=arguments.whole_number(spec.MIN_PORTS,
                                                    spec.MAX_PORTS),
                        help='free hotplug ports')
    parser.add_argument('--cold-plugged', default=0,
                        type=arguments.whole_number(0, spec.MAX_PORTS),
                        help='ports taken by cold-plugged devices, placed '
                             'first (default: 0)')
    capacity_cmd.add_machine_arguments(parser)
    capacity_cmd.add_qemu_version_argument(parser)
    parser.add_argument('--no-hotplug-on-cold-plugged', action='store_true',
                        help='turn hotplug off on the occupied ports')
    output.add_format_argument(parser, choices=('libvirt', 'qemu', 'json'),
                               default='libvirt')
    parser.set_defaults(func=run)


def _beyond_the_model(args, machine: str) -> str:
    """Why the plan exceeds the model's maximum, or '' if it does not.

    The guest the compute driver would build from this plan: its port
    properties and root bus, on this machine, firmware and QEMU.
    """
    firmware = capacity_cmd.firmware_kind(args.arch, args.firmware)
    model = capacity.estimate(topology.machine_profile(
        args.arch, machine, firmware, args.qemu_version))
    needed = args.ports + args.cold_plugged
    if needed <= model.max_ports:
        return ''
    return (f'--ports={args.ports} with --cold-plugged={args.cold_plugged} '
            f'needs {needed} root ports, more than the maximum of '
            f'{model.max_ports} that {args.arch} {machine} with {firmware} '
            f'firmware boots (limited by {model.limited_by}: '
            f'{model.budgets[model.limited_by].detail}); accepted: --ports '
            f'0 to {max(model.max_ports - args.cold_plugged, 0)} with '
            f'--cold-plugged={args.cold_plugged}')


def run(args) -> int:
    machine = args.machine or capacity_cmd.default_machine(args.arch)
    try:
        problem = _beyond_the_model(args, machine)
        if problem:
            output.error(problem)
            return 2
        result = topology.plan(
            args.ports, args.cold_plugged, args.arch, machine,
            hotplug_on_cold_plugged=not args.no_hotplug_on_cold_plugged)
    except capacity.UnsupportedMachine as exc:
        output.error(capacity_cmd.option_error(exc))
        return 2
    except (topology.TopologyError, ValueError) as exc:
        output.error(str(exc))
        return 2
    if args.format == 'qemu':
        print(' '.join(topology.to_qemu_args(result)))
    elif args.format == 'json':
        output.emit_json({'ports': [
            {'index': p.index, 'qemu_id': p.qemu_id, 'address': p.address,
             'chassis': p.chassis, 'port': p.port,
             'multifunction': p.multifunction, 'hotplug': p.hotplug,
             'occupant': p.occupant, 'properties': dict(p.properties)}
            for p in result.ports]})
    else:
        print(etree.tostring(topology.to_libvirt_xml(result),
                             pretty_print=True).decode(), end='')
    return 0
