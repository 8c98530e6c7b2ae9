"""``pcie-sched publish``: put this host's capacity on its provider."""

import platform
import socket

from pcie_sched import capacity
from pcie_sched.cmd import capacity as capacity_cmd
from pcie_sched.cmd import output
from pcie_sched import conf
from pcie_sched import placement
from pcie_sched import probe


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'publish', help='set capacity traits on this host\'s resource '
                        'provider in Placement',
        description='Set the CUSTOM_PCIE_HOTPLUG_PORTS_* traits on the '
                    'compute node\'s resource provider, keeping every other '
                    'trait. Credentials come from clouds.yaml or OS_* '
                    'variables, like the openstack client.')
    parser.add_argument('--cloud', default=None,
                        help='cloud name in clouds.yaml (default: OS_CLOUD '
                             'or OS_* variables)')
    parser.add_argument('--host', default=None,
                        help='resource provider name, i.e. the compute '
                             'node\'s hypervisor hostname (default: this '
                             'host\'s FQDN)')
    parser.add_argument('--max-ports', type=int, default=None,
                        help='capacity to publish (default, as the compute '
                             'driver reports it: [pcie_sched_compute] '
                             'max_ports_override, else the probe result '
                             'cached in [pcie_sched_probe] cache_dir (pass '
                             'nova-compute\'s nova.conf with --config-file), '
                             'else the capacity model)')
    capacity_cmd.add_machine_arguments(parser)
    parser.set_defaults(arch=_host_arch())
    output.add_format_argument(parser)
    parser.set_defaults(func=run)


def _host_arch() -> str:
    arch = platform.machine()
    return arch if arch in capacity.ARCHES else 'x86_64'


def host_capacity_and_source(arch: str, machine: str, firmware: str):
    """(max ports, where from), in the order nova-compute's driver uses.

    The driver rewrites these traits on every resource update, so what
    this command publishes must be what the driver would: the operator's
    ``[pcie_sched_compute] max_ports_override``, then the cached probe
    result, then the model.
    """
    override = conf.CONF.pcie_sched_compute.max_ports_override
    if override is not None:
        return override, 'override'
    measured = probe.load_cached_max(arch, machine, firmware)
    if measured is not None:
        return measured, 'measured'
    return probe.model_capacity(arch, machine, firmware).max_ports, 'model'


def run(args) -> int:
    machine = args.machine or capacity_cmd.default_machine(args.arch)
    host = args.host or socket.getfqdn()
    try:
        if args.max_ports is not None:
            max_ports, source = args.max_ports, 'option'
        else:
            max_ports, source = host_capacity_and_source(
                args.arch, machine, args.firmware)
        placement.traits_for_capacity(max_ports)
        adapter = placement.connect(cloud=args.cloud)
        provider = placement.find_provider(adapter, host)
        summary = placement.publish(adapter, provider, max_ports)
    except (ValueError, placement.PublishError, probe.ProbeError) as exc:
        output.error(str(exc))
        return 1
    summary['host'] = host
    # Says whether a probe result was found, so a cache nova-compute and
    # this command disagree about shows up instead of passing silently.
    summary['capacity_source'] = source
    summary['cache_dir'] = probe.default_cache_dir()
    if args.format == 'json':
        output.emit_json(summary)
    else:
        state = 'updated' if summary['changed'] else 'already up to date'
        print(f'{host}: {max_ports} root ports ({source}), traits {state} '
              f'(+{len(summary["added"])} -{len(summary["removed"])})')
    return 0
