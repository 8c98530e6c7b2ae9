"""The ``hw:pci_hotplug_ports`` request: key names, parsing, precedence.

This module is the only place that knows how a guest asks for hotplug
ports. Everything else (the nova-api validator, the scheduler filter, the
compute driver and the CLI) calls :func:`parse` or :func:`requested_ports`
so that every reader accepts and refuses exactly the same values.

Upper bound
-----------
A PCI Express root port is a PCI-to-PCI bridge, and every bridge needs a
secondary bus number of its own. One PCI segment numbers its buses 0..255
and bus 0 is the root bus itself, so no guest can ever have more than
``256 - 1 = 255`` root ports in one segment, whatever the machine type or
firmware. Tighter, host-specific limits (slots, ECAM window, firmware) are
the capacity model's business, not the validator's: a value that passes
here may still be refused by the scheduler, with the reason.

Flavor and image
----------------
Like nova's ``hw:numa_nodes``: the flavor key is the operator's, the image
property the user's. Either may be set alone. When both are set they must
agree; a different value is a conflict and the request is refused, naming
both. Note that nova's ``ImageMetaProps`` drops unknown properties before
the scheduler sees them, so only the compute driver enforces the image
property; see the operator guide.
"""

import re
import typing as ty

#: Flavor extra spec set by operators.
FLAVOR_KEY = 'hw:pci_hotplug_ports'
#: Glance image property set by users.
IMAGE_KEY = 'hw_pci_hotplug_ports'
#: Where nova keeps an instance's image properties.
SYSTEM_METADATA_KEY = 'image_' + IMAGE_KEY
#: Compute node stat (published by the driver: a host's maximum bootable
#: root ports) and aggregate metadata key (the operator's ceiling on it).
HOST_CAPACITY_KEY = 'pci_hotplug_ports_max'

#: Bus numbers in one PCI segment (an 8-bit field in every config address).
BUS_NUMBERS_PER_SEGMENT = 256
#: Bus numbers the root complex keeps for itself (bus 0, the root bus).
ROOT_COMPLEX_BUS_NUMBERS = 1
MIN_PORTS = 0
MAX_PORTS = BUS_NUMBERS_PER_SEGMENT - ROOT_COMPLEX_BUS_NUMBERS

ACCEPTED = (f'an integer from {MIN_PORTS} to {MAX_PORTS} written with the '
            f'ASCII digits 0-9')

_DIGITS = re.compile(r'[0-9]+')
# Values are echoed in API errors and logs: keep hostile input short.
_ECHO_LIMIT = 40


class InvalidHotplugPortsSpec(ValueError):
    """A hotplug ports request that cannot be honoured.

    ``key``, ``value`` and ``accepted`` are kept as attributes so adapters
    can re-raise in their own exception types without parsing the message.
    """

    def __init__(self, key: str, value: ty.Any, reason: str,
                 accepted: str = ACCEPTED) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        self.accepted = accepted
        super().__init__(
            f'{key}={_echo(value)} is invalid: {reason}; '
            f'accepted: {accepted}')


def _echo(value: ty.Any) -> str:
    text = repr(value)
    if len(text) > _ECHO_LIMIT:
        text = text[:_ECHO_LIMIT - 5] + '...' + text[-2:]
    return text


def parse(value: ty.Any, key: str = FLAVOR_KEY) -> int:
    """Return the number of hotplug ports ``value`` asks for.

    :param value: the raw value: a string from an extra spec, image
        property or metadata, or an int.
    :param key: the key the value came from, for the error message.
    :raises InvalidHotplugPortsSpec: naming the key, the value and what
        is accepted.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidHotplugPortsSpec(
            key, value, f'expected a string or integer, got '
                        f'{type(value).__name__}')
    if isinstance(value, str):
        if not value:
            raise InvalidHotplugPortsSpec(key, value, 'the value is empty')
        # str.isdigit() and int() accept other scripts' digits and
        # surrounding whitespace; nova's own int validator would too. Be
        # strict so that what the API stores is what every reader parses.
        if (value[:1] == '-' and _DIGITS.fullmatch(value[1:]) and
                value[1:].strip('0')):
            # A negative whole number: say so, rather than that it is
            # not one (no int(): the value may be thousands of digits).
            raise InvalidHotplugPortsSpec(
                key, value, f'less than the minimum of {MIN_PORTS}')
        if not _DIGITS.fullmatch(value):
            raise InvalidHotplugPortsSpec(key, value, 'not a whole number')
        significant = value.lstrip('0') or '0'
        if len(significant) > len(str(MAX_PORTS)):
            raise InvalidHotplugPortsSpec(
                key, value, f'greater than the maximum of {MAX_PORTS}')
        number = int(significant)
    else:
        number = value
    if number < MIN_PORTS:
        raise InvalidHotplugPortsSpec(
            key, value, f'less than the minimum of {MIN_PORTS}')
    if number > MAX_PORTS:
        raise InvalidHotplugPortsSpec(
            key, value, f'greater than the maximum of {MAX_PORTS}')
    return number


def from_flavor(extra_specs: ty.Optional[ty.Mapping[str, ty.Any]]
                ) -> ty.Optional[int]:
    """Ports asked for by a flavor's extra specs, or None if not asked."""
    if not extra_specs or FLAVOR_KEY not in extra_specs:
        return None
    return parse(extra_specs[FLAVOR_KEY], FLAVOR_KEY)


def from_image(properties: ty.Optional[ty.Mapping[str, ty.Any]],
               key: str = IMAGE_KEY) -> ty.Optional[int]:
    """Ports asked for by image properties, or None if not asked.

    :param key: ``IMAGE_KEY`` for glance properties, ``SYSTEM_METADATA_KEY``
        for an instance's system metadata.
    """
    if not properties or key not in properties:
        return None
    return parse(properties[key], IMAGE_KEY)


def combine(flavor_ports: ty.Optional[int],
            image_ports: ty.Optional[int]) -> ty.Optional[int]:
    """Apply the flavor/image rule to two already parsed requests."""
    if flavor_ports is None:
        return image_ports
    if image_ports is None or image_ports == flavor_ports:
        return flavor_ports
    raise InvalidHotplugPortsSpec(
        f'{FLAVOR_KEY} / {IMAGE_KEY}', f'{flavor_ports} / {image_ports}',
        'the flavor and the image ask for different counts',
        accepted='the same value on both, or the key on only one of them')


def requested_ports(extra_specs: ty.Optional[ty.Mapping[str, ty.Any]],
                    image_properties: ty.Optional[ty.Mapping[str, ty.Any]]
                    = None,
                    image_key: str = IMAGE_KEY) -> ty.Optional[int]:
    """The hotplug ports a guest asks for, or None if it asks for none.

    :raises InvalidHotplugPortsSpec: a value is invalid or the flavor and
        the image disagree.
    """
    return combine(from_flavor(extra_specs),
                   from_image(image_properties, image_key))
