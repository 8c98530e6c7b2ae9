"""Where a host's hotplug port capacity comes from, without nova objects.

The scheduler filter asks, in order, and the first answer wins:

1. ``stats``: the compute node's own published value
   (``pci_hotplug_ports_max`` in ``ComputeNode.stats``, measured or
   modelled by the compute driver on the host itself);
2. ``aggregate``: the operator's override in aggregate metadata
   (the smallest value when the host is in several aggregates, because
   the operator promised each of them);
3. ``model``: the capacity model, from what every libvirt host reports
   anyway (QEMU version, architecture) plus the scheduler's options for
   the machine type and firmware;
4. ``unknown``: nothing answered; ``[pcie_sched] unknown_host_policy``
   decides.

Values from stats and aggregate metadata are strings typed by programs
and people; a malformed one is ignored (the next source answers) rather
than trusted or allowed to raise, with one warning per distinct value.
"""

import functools
import json
import threading
import typing as ty

from oslo_log import log as logging

from pcie_sched import spec

LOG = logging.getLogger(__name__)

SOURCE_STATS = 'stats'
SOURCE_AGGREGATE = 'aggregate'
SOURCE_MODEL = 'model'
SOURCE_UNKNOWN = 'unknown'

#: nova's libvirt driver reports this hypervisor_type for QEMU and KVM.
QEMU_HYPERVISOR_TYPE = 'QEMU'


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
                'Ignoring %(key)s=%(value)r in %(where)s: %(error)s. The '
                'next capacity source decides for it (stats, then '
                'aggregate metadata, then the capacity model, then '
                '[pcie_sched] unknown_host_policy). Logged once for this '
                'value; other hosts or aggregates with it are not named.',
                {'key': spec.HOST_CAPACITY_KEY, 'value': value,
                 'where': describe_origin(source, where),
                 'error': exc.reason + '; accepted: ' + exc.accepted})
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


class ModelCache:
    """Capacity model answers keyed by what hosts report.

    A cloud has many hosts and few distinct (QEMU version, architecture)
    pairs, so the model runs once per pair, not once per host. Safe to
    share between scheduler threads: entries are immutable and a race
    only computes the same answer twice.
    """

    #: Distinct host configurations remembered before starting afresh;
    #: far more than a cloud has, small enough never to matter.
    MAX_ENTRIES = 4096

    def __init__(self, machine_types: ty.Mapping[str, str],
                 firmware: ty.Mapping[str, str]) -> None:
        self._machine_types = dict(machine_types)
        self._firmware = dict(firmware)
        self._answers: dict = {}
        self._lock = threading.Lock()

    def max_ports(self, hypervisor_type: ty.Any, hypervisor_version: ty.Any,
                  cpu_info: ty.Any) -> ty.Optional[int]:
        key = (hypervisor_type, hypervisor_version, cpu_info)
        try:
            return self._answers[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value from a broken host
            return None
        answer = self._compute(hypervisor_type, hypervisor_version, cpu_info)
        with self._lock:
            if len(self._answers) >= self.MAX_ENTRIES:
                self._answers.clear()
            self._answers[key] = answer
        return answer

    def _compute(self, hypervisor_type, hypervisor_version, cpu_info
                 ) -> ty.Optional[int]:
        if hypervisor_type != QEMU_HYPERVISOR_TYPE:
            return None
        if (isinstance(hypervisor_version, bool) or
                not isinstance(hypervisor_version, int) or
                hypervisor_version <= 0):
            return None
        arch = arch_from_cpu_info(cpu_info)
        machine = self._machine_types.get(arch)
        if machine is None:
            return None
        # Imported here so that the filter's module stays importable (and
        # the no-spec path free) even if the model cannot load.
        from pcie_sched import capacity
        from pcie_sched import topology
        try:
            profile = topology.machine_profile(
                arch, machine, self._firmware.get(arch, 'uefi'),
                capacity.qemu_version_from_hypervisor_version(
                    hypervisor_version))
            return capacity.estimate(profile).max_ports
        except ValueError:
            return None


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
