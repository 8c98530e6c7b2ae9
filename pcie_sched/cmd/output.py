"""Shared output helpers so every subcommand prints JSON the same way."""

import json
import sys
import typing as ty

FORMATS = ('text', 'json')


def add_format_argument(parser, choices: ty.Sequence[str] = FORMATS,
                        default: str = 'text') -> None:
    parser.add_argument('--format', choices=choices, default=default,
                        help='output format (default: %(default)s); the '
                             'JSON keys are a stable interface')


def emit_json(document: ty.Mapping[str, ty.Any], stream=None) -> None:
    stream = stream or sys.stdout
    json.dump(document, stream, indent=2, sort_keys=True)
    stream.write('\n')


def error(message: str) -> None:
    print(f'pcie-sched: error: {message}', file=sys.stderr)
