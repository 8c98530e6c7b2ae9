"""Argument types shared by the subcommands.

argparse reports a type's ``ArgumentTypeError`` as ``argument OPTION:
MESSAGE`` and exits with status 2 before the subcommand runs, so a value
refused here never reaches a boot or a connection. Each message names the
value and what is accepted; argparse adds the option.
"""

import argparse
import re
import typing as ty

# ASCII digits only, as spec.parse: int() would also take other scripts'
# digits, underscores and surrounding blanks.
_INTEGER = re.compile(r'-?[0-9]+')
# Values are echoed back: keep hostile input short.
_ECHO_LIMIT = 40


def _echo(text: str) -> str:
    shown = repr(text)
    if len(shown) > _ECHO_LIMIT:
        shown = shown[:_ECHO_LIMIT - 5] + '...' + shown[-2:]
    return shown


def accepted_range(minimum: int, maximum: ty.Optional[int]) -> str:
    if maximum is None:
        return f'a whole number, {minimum} or more'
    return f'a whole number from {minimum} to {maximum}'


def whole_number(minimum: int, maximum: ty.Optional[int] = None
                 ) -> ty.Callable[[str], int]:
    """An argparse ``type``: a base-10 integer from minimum to maximum."""
    accepted = accepted_range(minimum, maximum)

    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text):
            raise argparse.ArgumentTypeError(
                f'{_echo(text)} is not a whole number; accepted: {accepted}')
        digits = text.lstrip('-').lstrip('0') or '0'
        negative = text.startswith('-') and digits != '0'
        # Compared by length first: int() of thousands of digits is slow
        # (and refused past sys.get_int_max_str_digits()).
        if not negative and maximum is not None and (
                len(digits) > len(str(maximum))):
            raise argparse.ArgumentTypeError(
                f'{_echo(text)} is greater than the maximum of {maximum}; '
                f'accepted: {accepted}')
        if negative and (minimum >= 0 or len(digits) > len(str(-minimum))):
            raise argparse.ArgumentTypeError(
                f'{_echo(text)} is less than the minimum of {minimum}; '
                f'accepted: {accepted}')
        value = -int(digits) if negative else int(digits)
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f'{_echo(text)} is less than the minimum of {minimum}; '
                f'accepted: {accepted}')
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(
                f'{_echo(text)} is greater than the maximum of {maximum}; '
                f'accepted: {accepted}')
        return value

    # argparse names the type in some of its own messages.
    parse.__name__ = 'whole number'
    return parse


def one_of(values: ty.Sequence[int]) -> ty.Callable[[str], int]:
    """An argparse ``type``: one of a few integers."""
    accepted = ' or '.join(str(value) for value in values)

    def parse(text: str) -> int:
        if (len(text) > 20 or not _INTEGER.fullmatch(text) or
                int(text) not in values):
            raise argparse.ArgumentTypeError(
                f'{_echo(text)} is not accepted; accepted: {accepted}')
        return int(text)

    parse.__name__ = 'integer'
    return parse
