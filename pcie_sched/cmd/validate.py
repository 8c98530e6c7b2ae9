"""``pcie-sched validate KEY=VALUE``: check a value the way nova-api will."""

from pcie_sched.cmd import output
from pcie_sched import spec

_KEYS = (spec.FLAVOR_KEY, spec.IMAGE_KEY)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'validate',
        help='check a hw:pci_hotplug_ports or hw_pci_hotplug_ports value',
        description='Parse KEY=VALUE exactly as nova-api, the scheduler '
                    'filter and the compute driver do. Exit 0 and print '
                    'the number of ports, or exit 1 and print why not.')
    parser.add_argument('assignment', metavar='KEY=VALUE',
                        help=f'one of {", ".join(_KEYS)} with its value')
    output.add_format_argument(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    key, sep, value = args.assignment.partition('=')
    if not sep or key not in _KEYS:
        output.error(f'expected KEY=VALUE with KEY one of {", ".join(_KEYS)}'
                     f', got {args.assignment!r}')
        return 2
    try:
        ports = spec.parse(value, key)
    except spec.InvalidHotplugPortsSpec as exc:
        if args.format == 'json':
            output.emit_json({'valid': False, 'key': key, 'value': value,
                              'error': str(exc)})
        else:
            output.error(str(exc))
        return 1
    if args.format == 'json':
        output.emit_json({'valid': True, 'key': key, 'value': value,
                          'ports': ports})
    else:
        print(ports)
    return 0
