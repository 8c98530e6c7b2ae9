"""``pcie-sched check``: can this host boot guests with N hotplug ports?"""

import time
import typing as ty

from pcie_sched import capacity
from pcie_sched.cmd import capacity as capacity_cmd
from pcie_sched.cmd import host as host_cmd
from pcie_sched.cmd import output
from pcie_sched.cmd import probe as probe_cmd
from pcie_sched import conf
from pcie_sched import host_capacity
from pcie_sched import probe
from pcie_sched import spec


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'check', help='can this host boot guests with N free hotplug ports?',
        description='Answer yes or no for this host\'s default QEMU and '
                    'firmware: the capacity model\'s maximum and the budget '
                    'that binds, then a real boot with N free hotplug ports '
                    'plus the cold-plugged reserve.')
    probe_cmd.add_probe_arguments(parser)
    parser.add_argument('--ports', type=int, default=16,
                        help='free hotplug ports wanted (default: 16)')
    parser.add_argument('--cold-plugged', type=int, default=None,
                        help='ports for cold-plugged devices (default: '
                             'what the scheduler filter reserves for a '
                             'flavor with one network and nova\'s virtio '
                             'RNG: [pcie_sched] cold_plugged_base_ports + 2)')
    parser.add_argument('--vcpus', type=int, default=None,
                        help='guest vCPUs: also report the guest\'s '
                             'interrupt vector limit (x86_64)')
    parser.add_argument('--find-max', action='store_true',
                        help='also measure the largest bootable count')
    output.add_format_argument(parser)
    parser.set_defaults(func=run)


def default_cold_plugged() -> int:
    """The filter's reserve for a plain flavor: one NIC, nova's RNG."""
    return host_capacity.cold_plugged_reserve(
        conf.CONF.pcie_sched.cold_plugged_base_ports, networks=1,
        ephemeral_gb=0, swap_mb=0, pci_devices=0, rng=True)


def _out_of_range(args) -> ty.Optional[str]:
    """The first option whose value no guest could have, said plainly."""
    for option, value, low, high in (
            ('--ports', args.ports, spec.MIN_PORTS, spec.MAX_PORTS),
            ('--cold-plugged', args.cold_plugged, 0, spec.MAX_PORTS),
            ('--vcpus', args.vcpus, 1, None)):
        if value is None:
            continue
        if value < low or (high is not None and value > high):
            accepted = (f'{low} to {high}' if high is not None else
                        f'{low} or more')
            return f'{option}={value}; accepted: {accepted}'
    return None


def _measure(args, report, facts, machine, needed, cold, directory):
    """The model, the cache and the boots, into ``report``; the model.

    The model gets libvirt's canonical machine type and QEMU version when
    libvirt answered; the boots and the cache use the machine as given,
    like nova-compute's driver, whose cache lookups must find them.
    """
    model = probe.model_capacity(args.arch, facts.model_machine,
                                 args.firmware, facts.qemu_version
                                 if facts.source == host_cmd.LIBVIRT
                                 else None)
    report['model'] = model.to_dict()
    # What nova-compute would report from this cache, and whether an
    # upgrade left only measurements of other binaries behind.
    cached = probe.load_cached(args.arch, machine, args.firmware,
                               directory)
    report['measured_max'] = None if cached is None else cached.max_ports
    report['stale_measurements'] = (
        [] if cached is not None else probe.stale_measurements(
            args.arch, machine, args.firmware, directory))
    guest = None
    if args.vcpus is not None and args.arch == 'x86_64':
        from pcie_sched import host_capacity
        guest = host_capacity.guest_vector_limit(args.vcpus, cold)
    report['guest_limit'] = guest
    if needed > model.max_ports:
        report['boot'] = None
    else:
        report['boot'] = probe.boot(
            args.arch, machine, args.firmware, needed,
            cache_dir=directory,
            **probe_cmd.boot_options(args)).to_dict()
    if args.find_max:
        report['find_max'] = probe.find_max(
            args.arch, machine, args.firmware, cache_dir=directory,
            **probe_cmd.boot_options(args)).to_dict()
    return model


def run(args) -> int:
    problem = _out_of_range(args)
    if problem:
        output.error(problem)
        return 2
    probe_cmd.terminate_as_interrupt()
    started = time.monotonic()
    found = host_cmd.configured_host(
        args, capacity_cmd.default_machine(args.arch))
    if found is None:
        return 2
    machine, machine_source, facts = found
    cold = (args.cold_plugged if args.cold_plugged is not None else
            default_cold_plugged())
    needed = args.ports + cold
    report = {'arch': args.arch, 'machine': machine,
              'firmware': args.firmware, 'free_ports': args.ports,
              'cold_plugged_ports': cold, 'root_ports_needed': needed,
              'vcpus': args.vcpus, 'machine_source': machine_source}
    report.update(facts.report())
    directory = probe_cmd.cache_dir(args)
    report['cache_dir'] = directory
    try:
        with facts.emulator_used(args.arch):
            model = _measure(args, report, facts, machine, needed, cold,
                             directory)
    except (probe.ProbeError, capacity.UnsupportedMachine) as exc:
        output.error(str(exc))
        return 2
    boot = report['boot']
    guest_refuses = (report['guest_limit'] is not None and
                     needed > report['guest_limit'])
    fits = (boot is not None and boot['outcome'] == probe.BOOTED and
            not guest_refuses)
    # A boot cut short by a timeout is neither yes nor no.
    undecided = (probe.undecided(probe.BootResult(**boot))
                 if boot is not None and not fits and not guest_refuses
                 else None)
    report['answer'] = ('yes' if fits else
                        'inconclusive' if undecided else 'no')
    report['inconclusive'] = undecided
    report['seconds'] = round(time.monotonic() - started, 3)
    if args.format == 'json':
        output.emit_json(report)
    else:
        _print(report, model)
    if undecided:
        output.error(f"ports={boot['ports']}: {undecided}")
        return 2
    return 0 if fits else 1


def args_vcpus(report) -> str:
    return f"{report['vcpus']}-vCPU guest has a"


def _print(report, model) -> None:
    print(f"Can this host boot {report['arch']} {report['machine']} guests "
          f"({report['firmware']}) with {report['free_ports']} free hotplug "
          f"ports? {report['answer'].upper()}")
    print(f"  root ports needed: {report['root_ports_needed']} "
          f"({report['free_ports']} free + {report['cold_plugged_ports']} "
          f"for cold-plugged devices)")
    print(f"  {report['host_note']}")
    print(f"  model: at most {model.max_ports}, limited by "
          f"{model.limited_by} ({model.budgets[model.limited_by].detail})")
    if report['guest_limit'] is not None:
        print(f"  guest: a {args_vcpus(report)} limit of "
              f"{report['guest_limit']} root ports (interrupt vectors)")
    boot = report['boot']
    if boot is None:
        print('  measured: not booted, the model already says no')
    else:
        why = (f" ({boot['detail']})"
               if boot['outcome'] != probe.BOOTED and boot['detail'] else '')
        print(f"  measured: {boot['outcome']} with {boot['ports']} root "
              f"ports in {boot['seconds']:.1f}s{why}")
    if report['measured_max'] is not None:
        print(f"  measured maximum (cached): {report['measured_max']} root "
              f"ports")
    elif report['stale_measurements']:
        print('  warning: ' + probe.stale_message(
            report['arch'], report['machine'], report['firmware'],
            report['stale_measurements'], report['cache_dir']))
    found = report.get('find_max')
    if found:
        print(f"  largest bootable: {found['max_ports']} root ports "
              f"({found['boots']} boots{', cached' if found['cached'] else ''}"
              f")")
    print(f"  time taken: {report['seconds']:.1f}s")
