"""Where a host's hotplug port capacity comes from, without nova objects.

Only the host itself can say what it boots: its pcie-sched compute driver
publishes ``pci_hotplug_ports_max`` in ``ComputeNode.stats``, measured by
the probe on that host or modelled there for the machine type and
firmware its guests really get. The scheduler does not guess for a host
that publishes nothing: such a host runs no pcie-sched driver (nova's own
libvirt driver, another hypervisor) or its driver reports no capacity
(its guests get a machine type without PCI Express, such as nova's
``pc``), and no guest of it gets the ports asked for, whatever QEMU could
boot. ``[pcie_sched] unknown_host_policy`` decides for such hosts; the
capacity model has no say on the scheduler side.

Values from stats are strings typed by programs and people; a malformed
one counts as no capacity rather than being trusted or allowed to raise,
with one warning per distinct value.
"""

import functools
import json
import typing as ty

from oslo_log import log as logging

from pcie_sched import spec

LOG = logging.getLogger(__name__)

SOURCE_STATS = 'stats'
SOURCE_AGGREGATE = 'aggregate'
SOURCE_UNKNOWN = 'unknown'
#: The host publishes the key with a value that is no capacity.
SOURCE_INVALID = 'invalid'


class HostCapacity(ty.NamedTuple):
    max_ports: ty.Optional[int]
    source: str


UNKNOWN = HostCapacity(None, SOURCE_UNKNOWN)


def parse_capacity(value: ty.Any) -> ty.Optional[int]:
    """A published capacity as an int, or None if it is not a valid one."""
    try:
        return check_capacity(value)
    except spec.InvalidHotplugPortsSpec:
        return None


def check_capacity(value: ty.Any) -> ty.Optional[int]:
    """Like :func:`parse_capacity`, but say why a value is refused.

    :raises spec.InvalidHotplugPortsSpec: naming the key, the value and
        what is accepted.
    """
    if value is None:
        return None
    return spec.parse(value if isinstance(value, int) else
                      str(value).strip(), spec.HOST_CAPACITY_KEY)


#: Parsed published values. A cloud publishes few distinct strings, so
#: the scheduler parses each once instead of once per host per request.
_PARSED: ty.Dict[ty.Any, ty.Optional[int]] = {}
_PARSED_MAX = 4096
#: (source, value) pairs already warned about. A bad value is usually
#: copied to many hosts or aggregates and is read on every request, so
#: one warning per distinct value is what an operator can act on; more
#: would flood the scheduler log at cloud scale.
_WARNED: ty.Set[ty.Tuple[str, ty.Any]] = set()
_WARNED_MAX = 4096


def parsed_capacities() -> ty.Mapping[ty.Any, ty.Optional[int]]:
    """Published values parsed so far, for a hot loop to read directly.

    Keys are strings only. Read-only for callers; an absent value means
    "not parsed yet", not "invalid", so a miss must go through
    :func:`parse_capacity_cached`.
    """
    return _PARSED


def reset_caches() -> None:
    """Forget parsed values and warnings given (tests; a config reload)."""
    _PARSED.clear()
    _WARNED.clear()


def parse_capacity_cached(value: ty.Any, source: str = SOURCE_STATS,
                          where: ty.Any = None) -> ty.Optional[int]:
    """:func:`parse_capacity` with a cache, warning once per bad value.

    :param source: ``SOURCE_STATS`` or ``SOURCE_AGGREGATE``, for the
        warning.
    :param where: the host state or aggregate the value came from, for
        the warning; only formatted when a new bad value is seen, so the
        cached path costs one dictionary lookup.
    """
    if value is None:
        # The key is absent: every host that publishes nothing, on every
        # request, so it must not cost more than this test.
        return None
    if type(value) is not str:
        # Only strings are cached: nova stores stats and metadata as
        # strings, and as dictionary keys 16, 16.0 and True == 1 would
        # share an entry although only the int is a valid value.
        return _parse_or_warn(value, (type(value).__name__, repr(value)),
                              source, where)
    try:
        parsed = _PARSED[value]
    except KeyError:
        parsed = _parse_or_warn(value, value, source, where)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[value] = parsed
        return parsed
    if (parsed is None and value is not None and
            (source, value) not in _WARNED):
        # Seen before, but from the other source: name this one too.
        _parse_or_warn(value, value, source, where)
    return parsed


#: What an ignored value means for the hosts it was read for.
_EFFECT_OF_IGNORING = {
    SOURCE_STATS: 'The host counts as publishing no capacity: [pcie_sched] '
                  'unknown_host_policy decides for it.',
    SOURCE_AGGREGATE: 'The aggregate sets no ceiling.',
}


def _parse_or_warn(value, warn_key, source, where) -> ty.Optional[int]:
    try:
        return check_capacity(value)
    except spec.InvalidHotplugPortsSpec as exc:
        key = (source, warn_key)
        if key not in _WARNED:
            if len(_WARNED) >= _WARNED_MAX:
                _WARNED.clear()
            _WARNED.add(key)
            LOG.warning(
                'Ignoring %(key)s=%(value)r in %(where)s: %(error)s. '
                '%(effect)s Logged once for this value; other hosts or '
                'aggregates with it are not named.',
                {'key': spec.HOST_CAPACITY_KEY, 'value': value,
                 'where': describe_origin(source, where),
                 'error': exc.reason + '; accepted: ' + exc.accepted,
                 'effect': _EFFECT_OF_IGNORING.get(source, '')})
        return None


def describe_origin(source: str, where: ty.Any) -> str:
    """Where a capacity value was read, in an operator's words."""
    try:
        return _describe_origin(source, where)
    except Exception:  # a half-loaded nova object: say what we know
        return f'{source} of {type(where).__name__}'


def _describe_origin(source: str, where: ty.Any) -> str:
    if source == SOURCE_AGGREGATE:
        name = getattr(where, 'name', None)
        ident = getattr(where, 'id', None)
        if name is None and ident is None:
            return 'aggregate metadata'
        return f'the metadata of aggregate {name!r} (id {ident})'
    host = getattr(where, 'host', None)
    if host is None:
        return 'host stats'
    return (f'the stats of host {host} (node '
            f'{getattr(where, "nodename", None)})')


def from_stats(stats: ty.Optional[ty.Mapping[str, ty.Any]],
               where: ty.Any = None) -> ty.Optional[int]:
    if not stats:
        return None
    return parse_capacity_cached(stats.get(spec.HOST_CAPACITY_KEY),
                                 SOURCE_STATS, where)


def from_aggregate(aggregate: ty.Any) -> ty.Optional[int]:
    """One aggregate's ``pci_hotplug_ports_max``, or None."""
    metadata = getattr(aggregate, 'metadata', None)
    if not metadata:
        return None
    return parse_capacity_cached(metadata.get(spec.HOST_CAPACITY_KEY),
                                 SOURCE_AGGREGATE, aggregate)


def from_aggregates(metadatas: ty.Iterable[ty.Mapping[str, ty.Any]]
                    ) -> ty.Optional[int]:
    values = [parse_capacity_cached(metadata.get(spec.HOST_CAPACITY_KEY),
                                    SOURCE_AGGREGATE)
              for metadata in metadatas if metadata]
    values = [value for value in values if value is not None]
    return min(values) if values else None


def arch_from_cpu_info(cpu_info: ty.Any) -> ty.Optional[str]:
    """The architecture in nova's ``cpu_info`` JSON, or None."""
    if not cpu_info or not isinstance(cpu_info, str):
        return None
    return _arch_from_json(cpu_info)


@functools.lru_cache(maxsize=1024)
def _arch_from_json(cpu_info: str) -> ty.Optional[str]:
    try:
        arch = json.loads(cpu_info).get('arch')
    except Exception:  # also RecursionError from deeply nested JSON
        return None
    return arch if isinstance(arch, str) else None


def guest_vector_limit(vcpus: ty.Any, guest_devices: int
                       ) -> ty.Optional[int]:
    """Most root ports an x86_64 guest with ``vcpus`` vCPUs survives."""
    if isinstance(vcpus, bool) or not isinstance(vcpus, int) or vcpus < 1:
        return None
    from pcie_sched import capacity
    from pcie_sched import topology
    result = capacity.estimate(topology.machine_profile(
        'x86_64', 'q35', vcpus=vcpus, guest_devices=guest_devices))
    return result.budgets[capacity.GUEST_VECTORS].max_ports


def cold_plugged_reserve(base_ports: int, networks: int,
                         ephemeral_gb: int, swap_mb: int,
                         pci_devices: int = 0, rng: bool = False) -> int:
    """Root ports a guest's cold-plugged devices take before hotplug.

    One per network interface, one for an ephemeral disk, one for a swap
    disk, one per passed-through PCI device and one for a virtio RNG, on
    top of the devices every guest has (``base_ports``).
    """
    return (base_ports + max(networks, 0) + (1 if ephemeral_gb else 0) +
            (1 if swap_mb else 0) + max(pci_devices, 0) + (1 if rng else 0))


def root_ports_needed(requested: int, cold_plugged: int,
                      recorded: ty.Any = None) -> ty.Tuple[int, bool]:
    """(root ports, from the record?) a guest needs on the host chosen.

    :param requested: the free hotplug ports the request asks for.
    :param cold_plugged: the root ports its devices take, as the scheduler
        estimates them (:func:`cold_plugged_reserve` plus the volumes'
        ports, :func:`pcie_sched.block_devices.volume_ports`).
    :param recorded: on a move, the instance's
        :class:`pcie_sched.instance_plan.RecordedPlan`, if it has one. The
        compute driver gives the guest the recorded total at every later
        build, so the destination must boot exactly that many, whatever
        was hot-plugged since; a resize to another ``requested`` count is
        the one change that plans again, from its current devices.
    """
    if recorded is not None and recorded.requested == requested:
        return recorded.root_ports, True
    return requested + cold_plugged, False
