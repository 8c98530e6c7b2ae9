"""Just enough of devstack to run devstack/plugin.sh against real files.

This is a test harness, not devstack: ``iniset``, ``iniget`` and
``iniadd`` keep devstack's documented behaviour (set one value, read one
value, append a value to a multi-valued option); package installation
and ``setup_develop`` are recorded, not performed.

Two more commands show what the configured services would do, each in a
process of its own so the test's own nova configuration is not touched:
``compute-view CONF`` loads a config file the way nova-compute does
(nova's ``config.parse_args`` with every nova option registered, plus
pcie-sched's) and prints the values the driver uses; ``probe-view
ARG...`` parses a recorded ``pcie-sched`` command line with the CLI's
own parser and config loading and prints the cache directory it uses.
"""

import json
import sys

FUNCTIONS = r'''
HARNESS="{python} {harness}"
function iniset {{ $HARNESS set "$@"; }}
function iniadd {{ $HARNESS add "$@"; }}
function iniget {{ $HARNESS get "$@"; }}
function echo_summary {{ echo "summary: $*"; }}
function install_package {{ echo "install_package $*" >> "$RECORD"; }}
function setup_develop {{ echo "setup_develop $*" >> "$RECORD"; }}
function is_service_enabled {{ [[ ",$ENABLED_SERVICES," == *",$1,"* ]]; }}
function trueorfalse {{
    local default=$1 name=$2
    case "${{!name:-$default}}" in
        1|[Yy]es|[Tt]rue|[Oo]n) echo True ;;
        *) echo False ;;
    esac
}}
function sudo {{ echo "sudo $*" >> "$RECORD"; }}
function pcie-sched {{
    echo "pcie-sched $*" >> "$RECORD"
    {{ printf '%s\0' "$@"; echo; }} >> "$RECORD.argv"
}}
'''


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        return []


def _section_bounds(lines, section):
    start = None
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped == f'[{section}]':
            start = number
        elif start is not None and stripped.startswith('['):
            return start, number
    return (start, len(lines)) if start is not None else (None, None)


def _write(path, lines):
    with open(path, 'w') as handle:
        handle.write('\n'.join(lines) + '\n')


def iniset(path, section, option, value):
    lines = _read(path)
    start, end = _section_bounds(lines, section)
    if start is None:
        lines += [f'[{section}]', f'{option} = {value}']
        return _write(path, lines)
    kept = [line for line in lines[start + 1:end]
            if line.split('=')[0].strip() != option]
    lines[start + 1:end] = kept + [f'{option} = {value}']
    _write(path, lines)


def iniadd(path, section, option, *values):
    lines = _read(path)
    start, end = _section_bounds(lines, section)
    new = [f'{option} = {value}' for value in values]
    if start is None:
        lines += [f'[{section}]'] + new
    else:
        lines[end:end] = new
    _write(path, lines)


def iniget(path, section, option):
    lines = _read(path)
    start, end = _section_bounds(lines, section)
    if start is None:
        return ''
    for line in lines[start + 1:end]:
        if line.split('=')[0].strip() == option:
            return line.split('=', 1)[1].strip()
    return ''


def compute_view(path):
    """What nova-compute started with ``--config-file path`` would use."""
    import nova.conf
    from nova import config

    from pcie_sched import conf  # noqa: F401 - registers [pcie_sched_*]
    from pcie_sched import probe

    config.parse_args(['nova-compute', '--config-file', path],
                      default_config_files=[], configure_db=False,
                      init_rpc=False)
    CONF = nova.conf.CONF
    return {'compute_driver': CONF.compute_driver,
            'hw_machine_type': CONF.libvirt.hw_machine_type,
            # The directory the driver's capacity lookup reads.
            'cache_dir': probe.default_cache_dir()}


def probe_view(argv):
    """Where the recorded ``pcie-sched`` command would cache its result."""
    from pcie_sched.cmd import main
    from pcie_sched.cmd import probe as probe_cmd
    from pcie_sched import probe

    args = main.build_parser().parse_args(argv)
    main.load_config(args.config_sources)
    # probe and check may write elsewhere (--cache-dir, or the fallback
    # for a user who cannot write the default); publish only reads.
    writes = args.command in ('probe', 'check')
    return {'command': args.command,
            'cache_dir': (probe_cmd.cache_dir(args) if writes else
                          probe.default_cache_dir())}


def recorded_commands(path):
    """Each recorded ``pcie-sched`` command's arguments."""
    with open(path) as handle:
        records = handle.read().split('\0\n')
    return [record.split('\0') for record in records if record]


if __name__ == '__main__':
    command, arguments = sys.argv[1], sys.argv[2:]
    if command == 'set':
        iniset(*arguments)
    elif command == 'add':
        iniadd(*arguments)
    elif command == 'get':
        print(iniget(*arguments))
    elif command == 'compute-view':
        print(json.dumps(compute_view(*arguments)))
    elif command == 'probe-view':
        print(json.dumps(probe_view(arguments)))
