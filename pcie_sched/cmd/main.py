"""The ``pcie-sched`` console script.

Each subcommand lives in its own module under ``pcie_sched.cmd`` and
exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` as the parser default. Exit codes: 0 success,
1 a negative answer (invalid value, host cannot boot), 2 usage or
environment error (argparse's own convention).
"""

import argparse
import importlib
import sys
import typing as ty

# Order is the order of ``pcie-sched --help``.
SUBCOMMANDS = (
    'validate',
    'capacity',
    'render',
    'probe',
    'check',
    'publish',
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='pcie-sched',
        description='Plan, check and publish PCIe hotplug port capacity '
                    'for OpenStack Nova guests.')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    subparsers.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f'pcie_sched.cmd.{name}')
        module.register(subparsers)
    return parser


def main(argv: ty.Optional[ty.Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print('pcie-sched: interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head
        return 0


if __name__ == '__main__':
    sys.exit(main())
