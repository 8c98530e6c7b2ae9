"""``pcie-sched probe``: boot this host's QEMU and firmware for real."""

import argparse
import math
import os
import signal
import sys

from pcie_sched.cmd import arguments
from pcie_sched.cmd import capacity as capacity_cmd
from pcie_sched.cmd import host as host_cmd
from pcie_sched.cmd import output
from pcie_sched import conf
from pcie_sched.conf import probe as probe_conf
from pcie_sched import interrupts
from pcie_sched import probe


def boot_timeout(value: str) -> float:
    """``--timeout``: a finite number of seconds a real boot can meet.

    A shorter timeout would cut every real boot short; the probe would
    then decide nothing (see :func:`pcie_sched.probe.undecided`).
    """
    minimum = probe_conf.MIN_BOOT_TIMEOUT
    accepted = f'accepted: a number of seconds, {minimum:g} or more'
    shown = arguments._echo(value)
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{shown} is not a number; {accepted}')
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(
            f'{shown} is not a finite number; {accepted}')
    if seconds < minimum:
        raise argparse.ArgumentTypeError(
            f'{shown} is less than the minimum of {minimum:g}; {accepted} '
            f'(q35 + OVMF with 232 ports takes 20-45 s to boot under TCG)')
    return seconds


def add_probe_arguments(parser) -> None:
    capacity_cmd.add_machine_arguments(
        parser, firmware_help='uefi (OVMF/AAVMF), bios (SeaBIOS) or a path '
                              'to a firmware code file; default: uefi')
    parser.add_argument('--timeout', type=boot_timeout, default=None,
                        metavar='SECONDS',
                        help=f'seconds per boot, at least '
                             f'{probe_conf.MIN_BOOT_TIMEOUT:g} (what a '
                             f'232-port TCG boot can meet; default: '
                             f'[pcie_sched_probe] boot_timeout). A boot cut '
                             f'short by it decides nothing: find-max stops '
                             f'with an error and caches nothing')
    parser.add_argument('--accel', choices=('tcg', 'kvm', 'auto'),
                        default=None,
                        help='QEMU accelerator (default: [pcie_sched_probe] '
                             'accel)')
    parser.add_argument('--cache-dir', default=None,
                        help='payload and result cache (default: '
                             '[pcie_sched_probe] cache_dir from '
                             '--config-file, else /var/cache/pcie-sched; '
                             'nova-compute reads results only from its own '
                             'cache_dir)')


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'probe', help='boot QEMU + firmware with N root ports',
        description='Boot this host\'s QEMU and firmware with the port plan '
                    'for N root ports and a boot disk behind the first, and '
                    'report how it went; or search for the largest N.')
    add_probe_arguments(parser)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument('--ports', type=int,
                       help='root ports in total (the boot disk takes one)')
    group.add_argument('--find-max', action='store_true',
                       help='find the most root ports that boot')
    parser.add_argument('--strategy', choices=('model', 'bisect'),
                        default='model',
                        help='find-max: start from the model (default) or '
                             'bisect the whole range')
    parser.add_argument('--no-cache', action='store_true',
                        help='find-max: measure even if a result is cached')
    output.add_format_argument(parser)
    parser.set_defaults(func=run)


def _writable(path: str) -> bool:
    """Could this user create or write ``path``?"""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def cache_dir(args) -> str:
    """The cache this run writes: --cache-dir, the config, or a fallback.

    Only the built-in default has a fallback: a user who cannot write
    /var/cache/pcie-sched can still check the host, and is told that
    nova-compute will not see what is cached instead.
    """
    if args.cache_dir:
        return os.path.abspath(args.cache_dir)
    configured = probe.default_cache_dir()
    # Judged by value, not by oslo's record of where it came from: a
    # cleared override still reports set_override as its location.
    if configured != probe_conf.DEFAULT_CACHE_DIR or _writable(configured):
        return configured
    fallback = os.path.join(os.path.expanduser('~'), '.cache', 'pcie-sched')
    print(f'pcie-sched: warning: [pcie_sched_probe] cache_dir='
          f'{configured!r} (the default) is not writable by uid '
          f'{os.geteuid()}; caching in {fallback!r} instead, which '
          f'nova-compute does not read. To give nova-compute the result, '
          f'run as root or as the nova-compute user with --config-file '
          f'naming its nova.conf', file=sys.stderr)
    return fallback


def boot_options(args) -> dict:
    group = conf.CONF.pcie_sched_probe
    return {'timeout': (args.timeout if args.timeout is not None else
                        group.boot_timeout),
            'stall_timeout': group.stall_timeout,
            'accel': args.accel or group.accel}


#: Signals that end the probe like Ctrl-C. QEMU runs in a session of its
#: own, so a hang-up (a dropped SSH session) never reaches it: without
#: unwinding, it would be left running.
INTERRUPTING_SIGNALS = tuple(signum for signum in interrupts.INTERRUPTS
                             if signum != signal.SIGINT)


def terminate_as_interrupt() -> None:
    """These signals unwind like Ctrl-C, so every cleanup handler runs."""
    def handler(signum, frame):
        raise KeyboardInterrupt()
    for signum in INTERRUPTING_SIGNALS:
        signal.signal(signum, handler)


def _run(args, machine, directory, progress):
    """The boot or the search; machine as given (nova's cache key)."""
    if args.find_max:
        return probe.find_max(
            args.arch, machine, args.firmware, strategy=args.strategy,
            use_cache=not args.no_cache, cache_dir=directory,
            progress=progress, **boot_options(args))
    return probe.boot(args.arch, machine, args.firmware, args.ports,
                      cache_dir=directory, **boot_options(args))


def run(args) -> int:
    terminate_as_interrupt()
    found = host_cmd.configured_host(
        args, capacity_cmd.default_machine(args.arch))
    if found is None:
        return 2
    machine, machine_source, facts = found
    progress = (None if args.format == 'json' else
                lambda message: print(message, file=sys.stderr, flush=True))
    if progress:
        progress(f'pcie-sched: {facts.note}')
    directory = cache_dir(args)
    try:
        with facts.emulator_used(args.arch):
            result = _run(args, machine, directory, progress)
    except probe.ProbeError as exc:
        output.error(str(exc))
        return 2
    if args.format == 'json':
        document = result.to_dict()
        if args.find_max:
            document['cache_dir'] = directory
        document['machine_source'] = machine_source
        document.update(facts.report())
        output.emit_json(document)
    elif args.find_max:
        print(f'{args.arch} {machine} {args.firmware}: at most '
              f'{result.max_ports} root ports boot ({result.boots} boots, '
              f'{result.seconds:.1f}s{", cached" if result.cached else ""}); '
              f'the model predicts {result.model_max_ports}, limited by '
              f'{result.limited_by}; result in {directory}')
    else:
        print(f'{result.ports} root ports: {result.outcome} in '
              f'{result.seconds:.1f}s ({result.detail})')
    if args.find_max:
        return 0
    why = probe.undecided(result)
    if why:
        # Not a "no": the boot was cut short before the firmware decided.
        output.error(f'ports={result.ports}: {why}')
        return 2
    return 0 if result.outcome == probe.BOOTED else 1
