"""``pcie-sched render``: the port topology a guest would get."""

from lxml import etree

from pcie_sched.cmd import capacity as capacity_cmd
from pcie_sched.cmd import output
from pcie_sched import topology


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'render', help='print the pcie-root-port topology for N ports',
        description='Render the plan for N free hotplug ports plus the '
                    'cold-plugged devices as libvirt domain XML or QEMU '
                    'arguments.')
    parser.add_argument('--ports', type=int, required=True,
                        help='free hotplug ports')
    parser.add_argument('--cold-plugged', type=int, default=0,
                        help='ports taken by cold-plugged devices, placed '
                             'first (default: 0)')
    parser.add_argument('--arch', default='x86_64', choices=('x86_64',
                                                             'aarch64'))
    parser.add_argument('--machine', default=None)
    parser.add_argument('--no-hotplug-on-cold-plugged', action='store_true',
                        help='turn hotplug off on the occupied ports')
    output.add_format_argument(parser, choices=('libvirt', 'qemu', 'json'),
                               default='libvirt')
    parser.set_defaults(func=run)


def run(args) -> int:
    try:
        result = topology.plan(
            args.ports, args.cold_plugged, args.arch,
            args.machine or capacity_cmd.default_machine(args.arch),
            hotplug_on_cold_plugged=not args.no_hotplug_on_cold_plugged)
    except topology.TopologyError as exc:
        output.error(str(exc))
        return 1
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
