"""The port plan an instance got at its first build, kept for its life.

nova rebuilds a guest's domain XML from scratch on hard reboot, resize,
cold migration and evacuation, from its current devices: a device that
was hot-plugged is then cold-plugged. Planning again from "requested free
ports + cold-plugged devices" would grow the guest by one root port per
hot-plugged device at every rebuild, move device addresses, and can push
a guest near its limit over it. So the compute driver records what it
gave the instance the first time, in the instance's ``system_metadata``
(which nova keeps with the instance across hosts), and every later build
gives the same total:

``pcie_sched_root_ports``
    root ports the guest has (free hotplug ports + cold-plugged devices
    at first build). The scheduler reads it on moves: it is exactly what
    the destination must boot.
``pcie_sched_requested``
    the ``hw:pci_hotplug_ports`` value the plan was made for. A resize to
    a flavor with another value is the one change that plans again.
``pcie_sched_layout``
    the layout version (:data:`LAYOUT_VERSION`) the plan was rendered
    with. A release that changes the layout bumps it and keeps rendering
    older versions the old way, so an upgrade of pcie-sched never moves
    an existing guest's devices (KubeVirt found Windows guests take disks
    offline when addresses move).

``pcie_sched_port_<device>``
    the root port each PCIe endpoint sits on (``<device>`` as
    :func:`pcie_sched.virt.devices.cold_plugged_devices` names it:
    ``nic-<mac>``, ``disk-vdb``, ``rng``, ...), written at every build and
    after every hot-plug, so a build on another host (cold migration,
    resize, evacuation), where nova hands the driver no previous domain,
    puts every device back on its port.

nova stores system metadata values as strings of at most 255 characters;
these are small whole numbers.
"""

import dataclasses
import typing as ty

ROOT_PORTS_KEY = 'pcie_sched_root_ports'
REQUESTED_KEY = 'pcie_sched_requested'
LAYOUT_KEY = 'pcie_sched_layout'
PORT_KEY_PREFIX = 'pcie_sched_port_'

#: The layout :func:`pcie_sched.topology.plan` renders today: ports packed
#: eight to a root bus slot from slot 2 (q35) or 1 (virt), cold-plugged
#: devices first, ``io-reserve=0`` on every port.
LAYOUT_VERSION = 1
#: Layout versions this release can render (every one it ever recorded).
KNOWN_LAYOUTS = frozenset({1})


class UnknownLayout(ValueError):
    """A recorded layout this release cannot render."""


@dataclasses.dataclass(frozen=True)
class RecordedPlan:
    root_ports: int
    requested: int
    layout: int = LAYOUT_VERSION

    def to_system_metadata(self) -> ty.Dict[str, str]:
        return {ROOT_PORTS_KEY: str(self.root_ports),
                REQUESTED_KEY: str(self.requested),
                LAYOUT_KEY: str(self.layout)}


def _whole(metadata, key) -> ty.Optional[int]:
    value = metadata.get(key)
    if value is None:
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def from_system_metadata(metadata: ty.Optional[ty.Mapping[str, ty.Any]]
                         ) -> ty.Optional[RecordedPlan]:
    """The recorded plan, or None if there is none (or it is unreadable).

    :raises UnknownLayout: the plan was recorded by a newer release with a
        layout this one cannot render (a downgrade): building the guest
        with today's layout would move its devices.
    """
    if not metadata:
        return None
    root_ports = _whole(metadata, ROOT_PORTS_KEY)
    requested = _whole(metadata, REQUESTED_KEY)
    if root_ports is None or requested is None:
        return None
    layout = _whole(metadata, LAYOUT_KEY)
    if layout is None:
        layout = LAYOUT_VERSION
    if layout not in KNOWN_LAYOUTS:
        raise UnknownLayout(
            f'{LAYOUT_KEY}={metadata.get(LAYOUT_KEY)!r}: this pcie-sched '
            f'renders layouts {sorted(KNOWN_LAYOUTS)}; the instance was '
            f'planned by a newer release')
    return RecordedPlan(root_ports, requested, layout)


def recorded_ports(metadata: ty.Optional[ty.Mapping[str, ty.Any]]
                   ) -> ty.Dict[str, int]:
    """{device name: root port} as last recorded."""
    found = {}
    for key in list(metadata or ()):
        if key.startswith(PORT_KEY_PREFIX):
            port = _whole(metadata, key)
            if port is not None:
                found[key[len(PORT_KEY_PREFIX):]] = port
    return found


def record_ports(metadata: ty.MutableMapping[str, ty.Any],
                 ports: ty.Mapping[str, int]) -> None:
    """Replace the recorded device ports with ``ports``."""
    for key in [key for key in metadata if key.startswith(PORT_KEY_PREFIX)]:
        if key[len(PORT_KEY_PREFIX):] not in ports:
            del metadata[key]
    for name, port in ports.items():
        metadata[PORT_KEY_PREFIX + name] = str(port)


def clear(metadata: ty.MutableMapping[str, ty.Any]) -> None:
    """Forget the recorded plan (the instance no longer asks for ports)."""
    for key in (ROOT_PORTS_KEY, REQUESTED_KEY, LAYOUT_KEY):
        metadata.pop(key, None)
    record_ports(metadata, {})
