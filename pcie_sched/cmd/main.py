"""The ``pcie-sched`` console script.

Each subcommand lives in its own module under ``pcie_sched.cmd`` and
exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` as the parser default. Every subcommand exits by
:data:`EXIT_CODES`.
"""

import argparse
import importlib
import sys
import typing as ty

from oslo_config import cfg

from pcie_sched.cmd import capacity as capacity_cmd
from pcie_sched.cmd import output

# Order is the order of ``pcie-sched --help``.
SUBCOMMANDS = (
    'validate',
    'capacity',
    'render',
    'probe',
    'check',
    'publish',
    'cache',
)


#: The one exit status rule of every subcommand (``pcie-sched --help``
#: and doc/source/cli.rst say it too). 2 is argparse's own status for a
#: bad command line; the documented 2 for a missing QEMU or firmware is
#: kept, so 2 means "no answer", whatever stopped it.
EXIT_OK = 0
EXIT_NO = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit status, the same for every command:
  {EXIT_OK}    success; the answer is yes (validate: valid, check: this host
       boots it, probe --ports: booted)
  {EXIT_NO}    the answer is no (validate: invalid value, check: this host
       cannot, probe --ports: did not boot)
  {EXIT_ERROR}    no answer: a usage error (an option or config value that is
       refused, said with the value and what is accepted, before any boot
       or connection) or an environment error (QEMU, firmware, cache
       directory or Placement missing or failing)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C; probe and check also on SIGTERM,
       SIGHUP and SIGQUIT, after stopping QEMU)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='pcie-sched',
        description='Plan, check and publish PCIe hotplug port capacity '
                    'for OpenStack Nova guests.',
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    subparsers.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f'pcie_sched.cmd.{name}')
        module.register(subparsers)
    for subparser in subparsers.choices.values():
        add_config_arguments(subparser)
        # For refusals that need more than one option (--machine for
        # --arch): reported like argparse's own, with the usage line.
        subparser.set_defaults(usage_error=subparser.error)
    return parser


class _ConfigSource(argparse.Action):
    """Keep --config-file and --config-dir in the order given.

    oslo.config lets a later file override an earlier one, so the order
    across both options matters, as it does for nova's own services.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        sources = list(getattr(namespace, self.dest) or [])
        sources += [option_string, values]
        setattr(namespace, self.dest, sources)


def add_config_arguments(parser) -> None:
    parser.add_argument(
        '--config-file', dest='config_sources', action=_ConfigSource,
        default=[], metavar='PATH',
        help='oslo.config file to read, e.g. nova-compute\'s '
             '/etc/nova/nova.conf, so that [pcie_sched_probe] cache_dir '
             'and the other [pcie_sched*] options are the ones the '
             'service uses (repeatable; later files win). Without '
             '--config-file or --config-dir no file is read and every '
             'option has its default')
    parser.add_argument(
        '--config-dir', dest='config_sources', action=_ConfigSource,
        metavar='DIR',
        help='directory of *.conf files to read, as oslo.config does '
             '(repeatable)')


def load_config(sources: ty.Sequence[str]) -> None:
    """Read exactly the files named on the command line, nothing else.

    No file is looked up implicitly: what the CLI measures and where it
    caches it must not depend on which config files happen to exist.
    """
    from pcie_sched import conf
    conf.CONF(list(sources), project=None, prog='pcie-sched',
              default_config_files=[], default_config_dirs=[],
              use_env=False)
    # Read every value now so that a bad one is reported before any work.
    for group, opts in conf.list_opts():
        for opt in opts:
            getattr(conf.CONF[group.name], opt.dest)


def main(argv: ty.Optional[ty.Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = capacity_cmd.machine_problem(args)
    if problem:
        args.usage_error(problem)  # exits with EXIT_ERROR
    try:
        load_config(args.config_sources)
    except cfg.ConfigSourceValueError as exc:
        # oslo names the file and option; the option's type says what
        # it accepts.
        output.error(str(exc))
        return EXIT_ERROR
    except (cfg.Error, ValueError) as exc:
        output.error(f'{exc}; accepted: readable oslo.config files '
                     f'(--config-file, --config-dir) with valid values')
        return EXIT_ERROR
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print('pcie-sched: interrupted', file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. piped into head
        return EXIT_OK


if __name__ == '__main__':
    sys.exit(main())
