"""Just enough of devstack to run devstack/plugin.sh against real files.

This is a test harness, not devstack: ``iniset``, ``iniget`` and
``iniadd`` keep devstack's documented behaviour (set one value, read one
value, append a value to a multi-valued option); package installation
and ``setup_develop`` are recorded, not performed.
"""

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
function pcie-sched {{ echo "pcie-sched $*" >> "$RECORD"; }}
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


if __name__ == '__main__':
    command, arguments = sys.argv[1], sys.argv[2:]
    if command == 'set':
        iniset(*arguments)
    elif command == 'add':
        iniadd(*arguments)
    elif command == 'get':
        print(iniget(*arguments))
