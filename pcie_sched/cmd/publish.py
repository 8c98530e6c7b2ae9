"""``pcie-sched publish``: put this host's capacity on its provider."""

import platform
import socket
import sys
import typing as ty

from oslo_config import cfg

from pcie_sched import capacity
from pcie_sched.cmd import arguments
from pcie_sched.cmd import capacity as capacity_cmd
from pcie_sched.cmd import host as host_cmd
from pcie_sched.cmd import output
from pcie_sched import conf
from pcie_sched import placement
from pcie_sched import probe
from pcie_sched import spec


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
    parser.add_argument('--max-ports', default=None,
                        type=arguments.whole_number(spec.MIN_PORTS,
                                                    spec.MAX_PORTS),
                        help='capacity to publish, 0 to 255 root ports (the '
                             'most one PCI segment numbers; default, as the '
                             'compute '
                             'driver reports it: [pcie_sched_compute] '
                             'max_ports_override, else the probe result '
                             'cached in [pcie_sched_probe] cache_dir (pass '
                             'nova-compute\'s nova.conf with --config-file), '
                             'else the capacity model)')
    capacity_cmd.add_machine_arguments(
        parser, firmware_default=None,
        machine_help="machine type whose capacity is published, e.g. q35, "
                     "pc-q35-7.2 or virt (default, as the compute driver "
                     "chooses it: this arch's entry in [libvirt] "
                     "hw_machine_type of the config files read, else q35 "
                     "on x86_64, virt on aarch64)",
        firmware_help='uefi (OVMF/AAVMF) or bios (SeaBIOS) (default, as '
                      'the compute driver chooses it: [pcie_sched_compute] '
                      'firmware of the config files read, uefi if unset)')
    parser.set_defaults(arch=_host_arch())
    output.add_format_argument(parser)
    parser.set_defaults(func=run)


def _host_arch() -> str:
    arch = platform.machine()
    return arch if arch in capacity.ARCHES else 'x86_64'


#: One reader of nova's ``[libvirt]`` options for every command.
nova_machine_type = host_cmd.nova_machine_type


def machine_and_firmware(args) -> ty.Tuple[str, str, str, str]:
    """(machine, its source, firmware, its source) as the driver picks them.

    nova-compute's driver reports the capacity of ``[libvirt]
    hw_machine_type`` for the host arch with ``[pcie_sched_compute]
    firmware``; unless given on the command line, publish uses the same,
    so both look up the same cached probe result and write the same
    traits. Sources: ``option``, ``config`` (the config files read) or
    ``default``.
    """
    machine, machine_source = host_cmd.machine_and_source(
        args, capacity_cmd.default_machine(args.arch))
    if (machine_source == 'default' and args.config_sources and
            args.arch == 'x86_64'):
        # nova's own default for x86_64 is 'pc', for which the driver
        # reports no capacity and removes these traits.
        print(f'pcie-sched: warning: no {args.arch} entry in [libvirt] '
              f'hw_machine_type in the config files read; publishing for '
              f'{machine}, but the compute driver would use nova\'s '
              f'default machine type (pc), report no capacity and remove '
              f'these traits; accepted: hw_machine_type = x86_64=q35 in '
              f'nova-compute\'s nova.conf', file=sys.stderr)
    if args.firmware:
        firmware, firmware_source = args.firmware, 'option'
    else:
        firmware = conf.CONF.pcie_sched_compute.firmware
        location = conf.CONF.get_location('firmware', 'pcie_sched_compute')
        firmware_source = ('default'
                           if location.location == cfg.Locations.opt_default
                           else 'config')
    return machine, machine_source, firmware, firmware_source


def host_capacity_and_source(arch: str, machine: str, firmware: str,
                             facts: ty.Optional[host_cmd.HostFacts] = None):
    """(max ports, where from), in the order nova-compute's driver uses.

    The driver rewrites these traits on every resource update, so what
    this command publishes must be what the driver would: the operator's
    ``[pcie_sched_compute] max_ports_override``, then the cached probe
    result, then the model. ``facts``: what libvirt said (the model then
    gets its canonical machine type and QEMU version, the cache lookup
    its emulator).
    """
    override = conf.CONF.pcie_sched_compute.max_ports_override
    if override is not None:
        return override, 'override'
    if facts is None:
        facts = host_cmd.HostFacts(host_cmd.LOCAL, '', machine,
                                   model_machine=machine)
    with facts.emulator_used(arch):
        # The driver's lookup; run() says itself when only stale ones
        # exist.
        measured = probe.load_cached_max(arch, machine, firmware,
                                         warn_stale=False)
        if measured is not None:
            return measured, 'measured'
        version = (facts.qemu_version if facts.source == host_cmd.LIBVIRT
                   else None)
        return probe.model_capacity(arch, facts.model_machine, firmware,
                                    version).max_ports, 'model'


def run(args) -> int:
    host = args.host or socket.getfqdn()
    try:
        machine, machine_source, firmware, firmware_source = (
            machine_and_firmware(args))
    except (cfg.Error, ValueError) as exc:
        output.error(f'{exc}; accepted: readable oslo.config files '
                     f'(--config-file, --config-dir) with valid values')
        return 2
    facts = host_cmd.discover(args, machine)
    if args.format != 'json':
        print(f'pcie-sched: {facts.note}', file=sys.stderr)
    try:
        if args.max_ports is not None:
            max_ports, source = args.max_ports, 'option'
        else:
            max_ports, source = host_capacity_and_source(
                args.arch, machine, firmware, facts)
        placement.traits_for_capacity(max_ports)
        # Measurements an upgrade of QEMU or the firmware made unusable:
        # the capacity fell back to the model without anything saying so.
        with facts.emulator_used(args.arch):
            stale = (probe.stale_measurements(args.arch, machine, firmware)
                     if source == 'model' else [])
    except capacity.UnsupportedMachine as exc:
        # A machine type or firmware the model cannot judge, from the
        # options or the config files: nothing is published.
        output.error(f'{args.arch} {machine} ({machine_source}) '
                     f'{firmware} ({firmware_source}): {exc}')
        return 2
    except (ValueError, probe.ProbeError) as exc:
        output.error(str(exc))
        return 2
    if stale:
        print(f'pcie-sched: warning: '
              f'{probe.stale_message(args.arch, machine, firmware, stale)}',
              file=sys.stderr)
    try:
        adapter = placement.connect(cloud=args.cloud)
        provider = placement.find_provider(adapter, host)
        summary = placement.publish(adapter, provider, max_ports)
    except placement.PublishError as exc:
        # Placement unreachable, the provider missing, or the update
        # refused: an environment error, like a missing QEMU.
        output.error(str(exc))
        return 2
    summary['host'] = host
    # Says whether a probe result was found, so a cache nova-compute and
    # this command disagree about shows up instead of passing silently.
    summary['capacity_source'] = source
    summary['stale_measurements'] = stale
    summary['cache_dir'] = probe.default_cache_dir()
    # What the capacity was looked up for, and where each came from, so a
    # machine type or firmware that differs from nova-compute's shows.
    summary['arch'] = args.arch
    summary['machine'] = machine
    summary['machine_source'] = machine_source
    summary['firmware'] = firmware
    summary['firmware_source'] = firmware_source
    summary.update(facts.report())
    if args.format == 'json':
        output.emit_json(summary)
    else:
        state = 'updated' if summary['changed'] else 'already up to date'
        print(f'{host}: {max_ports} root ports ({source}) for {args.arch} '
              f'{machine} ({machine_source}) {firmware} ({firmware_source}), '
              f'traits {state} '
              f'(+{len(summary["added"])} -{len(summary["removed"])})')
    return 0
