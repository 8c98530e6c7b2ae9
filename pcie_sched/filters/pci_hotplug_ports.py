"""PciHotplugPortsFilter: only hosts that can boot the requested ports.

Enable in nova-scheduler's nova.conf (one line each; wrapped here)::

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = \
        pcie_sched.filters.pci_hotplug_ports.PciHotplugPortsFilter
    enabled_filters = ...,PciHotplugPortsFilter

The per-request work (parsing the flavor, counting cold-plugged devices,
reading the instance's volumes and recorded port plan from nova's
databases: :mod:`pcie_sched.filters.instance_devices`) happens once in
:meth:`filter_all`; each host then costs a dictionary
lookup or two per stat and aggregate, and each aggregate's metadata is
parsed once per request.
A request without ``hw:pci_hotplug_ports`` returns the host list
untouched.
"""

from oslo_log import log as logging
from oslo_utils import strutils

from nova.scheduler import filters
from nova.scheduler import utils as scheduler_utils

from pcie_sched import conf as pcie_conf
from pcie_sched.filters import instance_devices
from pcie_sched import host_capacity
from pcie_sched import spec

LOG = logging.getLogger(__name__)
CONF = pcie_conf.CONF

#: nova's libvirt driver gives every qemu/kvm guest a virtio RNG unless
#: the flavor sets this to false (nova/virt/libvirt/driver.py,
#: _add_rng_device); it is a PCIe endpoint behind a root port.
RNG_ALLOWED_KEY = 'hw_rng:allowed'

#: Hosts named in the once-per-request line about hosts that publish no
#: capacity; the rest are only counted. Enough to see a pattern (one
#: rack, one cell), short enough for one log line at cloud scale.
MAX_NAMED_HOSTS = 10


class PciHotplugPortsFilter(filters.BaseHostFilter):
    """Pass hosts whose QEMU, firmware and machine boot the ports asked for.

    A guest needs its requested free hotplug ports plus one port per
    cold-plugged PCIe device (nova's always-present devices, networks,
    ephemeral and swap disks, the virtio RNG nova adds unless the flavor
    forbids it, PCI devices passed through by flavor aliases, volumes on
    a virtio bus and one SCSI controller for those on a scsi bus). A move
    of an instance whose port plan the compute driver recorded needs
    exactly the recorded root ports (unless it resizes to another count).
    A host passes when that total fits its capacity: the
    ``pci_hotplug_ports_max``
    stat its pcie-sched compute driver publishes, capped by the smallest
    ``pci_hotplug_ports_max`` in the metadata of its aggregates (a ceiling
    the operator sets, never a capacity of its own). A host that publishes
    no capacity runs no pcie-sched driver and cannot give ports: it passes
    only with ``[pcie_sched] unknown_host_policy = accept``, and then
    still not above an aggregate ceiling. An invalid request passes no
    host and never raises.
    """

    # The host and flavor do not change on rebuild, and the image property
    # is invisible to the scheduler, so there is nothing to re-check.
    RUN_ON_REBUILD = False

    def __init__(self) -> None:
        super().__init__()
        _read_deprecated_options()

    def filter_all(self, filter_obj_list, spec_obj):
        try:
            requested = self._requested_ports(spec_obj)
            if (requested is None or
                    scheduler_utils.request_is_rebuild(spec_obj)):
                return filter_obj_list
            # Once per request: volumes and, on a move, the root ports
            # the instance has are only in nova's databases.
            devices = instance_devices.lookup(spec_obj)
            reserve = (self._cold_plugged_reserve(spec_obj) +
                       devices.volume_ports)
            needed, recorded = host_capacity.root_ports_needed(
                requested, reserve, devices.recorded)
            guest_limit = None
            vcpus = getattr(spec_obj.flavor, 'vcpus', None)
            if CONF.pcie_sched.enforce_guest_vector_limit:
                guest_limit = host_capacity.guest_vector_limit(vcpus, reserve)
            # Read here: a bad value in nova.conf raises on access.
            accept_unknown = CONF.pcie_sched.unknown_host_policy == 'accept'
        except Exception as exc:  # never let a bad request break scheduling
            LOG.warning('PciHotplugPortsFilter: no host can take instance '
                        '%(uuid)s: %(error)s',
                        {'uuid': _instance_uuid(spec_obj), 'error': exc})
            return []
        # Per request, not per host: only then can an x86_64 host's answer
        # be the guest's limit rather than its own.
        beyond_guest = guest_limit is not None and needed > guest_limit
        passing = []
        best = host_capacity.UNKNOWN
        # Hosts that publish no capacity or an invalid one, for one log
        # line per request rather than one per host.
        unpublished = []
        invalid = []
        # Hosts share nova's Aggregate objects (HostManager hands every
        # host the same instances), so each aggregate's ceiling is read
        # once per request rather than once per member host. Keyed by the
        # object (identity: nova's Aggregate defines no equality), which
        # also keeps it alive while the memo lives.
        ceilings = {}
        # Aggregates read in this request that cannot reject it (no
        # ceiling, or one the request fits): a host in no others passes
        # on its published value alone, checked in one C-level call.
        harmless = set()
        only_harmless = harmless.issuperset
        published_of = self._published
        lowest_ceiling = self._lowest_ceiling
        known = host_capacity.parsed_capacities().get
        key = spec.HOST_CAPACITY_KEY
        for host_state in filter_obj_list:
            if not beyond_guest:
                # The common cases, inlined: a published value parsed for
                # an earlier host that is big enough, in aggregates already
                # read whose ceiling, if any, is big enough too; and no
                # published value at all. Anything else (a new value, an
                # aggregate not read yet, a broken host, a rejection to
                # log) takes the full path.
                try:
                    stats = host_state.stats
                    value = stats.get(key) if stats else None
                    published = known(value)
                    if published is not None and published >= needed:
                        aggregates = host_state.aggregates
                        if not aggregates or only_harmless(aggregates):
                            passing.append(host_state)
                            continue
                    elif value is None and not accept_unknown:
                        # No pcie-sched driver: rejected at once. (With
                        # "accept" a ceiling may still reject it, below.)
                        unpublished.append(host_state)
                        continue
                # The full path below reads the host again and logs why.
                except Exception:  # nosec B110
                    pass
            try:
                max_ports, source = published_of(host_state)
                ceiling, fence = lowest_ceiling(host_state, ceilings,
                                                harmless, needed)
            except Exception:  # a broken host must not fail the request
                LOG.exception('PciHotplugPortsFilter: cannot read the '
                              'capacity of %s; treating it as unknown',
                              host_state)
                max_ports, source = host_capacity.UNKNOWN
                ceiling = None
            if beyond_guest and host_capacity.arch_from_cpu_info(
                    getattr(host_state, 'cpu_info', None)) == 'x86_64':
                # Whatever the host boots, the guest would not survive.
                max_ports = guest_limit
                source = (f"the guest's interrupt vectors with {vcpus} "
                          f"vCPU(s)")
            else:
                if max_ports is None:
                    (invalid if source == host_capacity.SOURCE_INVALID else
                     unpublished).append(host_state)
                    # A ceiling alone never makes such a host pass: it has
                    # no driver to give the ports. With "accept" it still
                    # keeps the host from requests above it.
                    if not accept_unknown:
                        continue
                    if ceiling is None or ceiling >= needed:
                        passing.append(host_state)
                        continue
                if ceiling is not None and (max_ports is None or
                                            ceiling < max_ports):
                    max_ports = ceiling
                    source = None  # named below, only if it rejects
            if max_ports >= needed:
                passing.append(host_state)
                continue
            if source is None:
                source = 'the ceiling in ' + host_capacity.describe_origin(
                    host_capacity.SOURCE_AGGREGATE, fence)
            if best.max_ports is None or max_ports > best.max_ports:
                best = host_capacity.HostCapacity(max_ports, source)
            LOG.debug('%(host)s fails PciHotplugPortsFilter: needs %(needed)d '
                      'root ports (%(how)s), can boot %(max)d (from '
                      '%(source)s)',
                      {'host': host_state, 'needed': needed,
                       'how': _how(requested, needed, recorded),
                       'max': max_ports, 'source': source})
        if unpublished or invalid:
            _log_unknown_hosts(spec_obj, needed, unpublished, invalid,
                               accept_unknown)
        if not passing and filter_obj_list:
            LOG.info('PciHotplugPortsFilter: no host can boot instance '
                     '%(uuid)s with %(requested)d free hotplug ports '
                     '(%(needed)d root ports: %(how)s); '
                     'largest known capacity: %(best)s',
                     {'uuid': _instance_uuid(spec_obj),
                      'requested': requested, 'needed': needed,
                      'how': _how(requested, needed, recorded),
                      'best': ('none' if best.max_ports is None else
                               f'{best.max_ports} (from {best.source})')})
        return passing

    def host_passes(self, host_state, spec_obj) -> bool:
        return bool(self.filter_all([host_state], spec_obj))

    @staticmethod
    def _requested_ports(spec_obj):
        flavor = getattr(spec_obj, 'flavor', None)
        extra_specs = getattr(flavor, 'extra_specs', None)
        return spec.requested_ports(extra_specs)

    @staticmethod
    def _cold_plugged_reserve(spec_obj) -> int:
        flavor = spec_obj.flavor
        return host_capacity.cold_plugged_reserve(
            CONF.pcie_sched.cold_plugged_base_ports,
            _network_count(spec_obj),
            getattr(flavor, 'ephemeral_gb', 0) or 0,
            getattr(flavor, 'swap', 0) or 0,
            _pci_device_count(spec_obj),
            _has_rng(flavor))

    @staticmethod
    def _published(host_state):
        """(max_ports, source): the stat the host's driver publishes.

        Without a valid one ``max_ports`` is None and ``source`` says
        whether the stat is absent (``unknown``: no pcie-sched driver) or
        invalid (warned about once per value).
        """
        stats = getattr(host_state, 'stats', None)
        value = stats.get(spec.HOST_CAPACITY_KEY) if stats else None
        published = host_capacity.parse_capacity_cached(
            value, host_capacity.SOURCE_STATS, host_state)
        if published is not None:
            return published, host_capacity.SOURCE_STATS
        if value is None:
            return host_capacity.UNKNOWN
        return None, host_capacity.SOURCE_INVALID

    @staticmethod
    def _lowest_ceiling(host_state, ceilings, harmless, needed):
        """(ceiling, aggregate): the host's smallest aggregate ceiling.

        ``(None, None)`` when no aggregate of the host sets one.

        :param ceilings: ``aggregate -> ceiling or None`` for this
            request; aggregates not read yet are read and added, and
            those that cannot reject ``needed`` root ports are also added
            to ``harmless``.
        """
        lowest = fence = None
        for aggregate in getattr(host_state, 'aggregates', None) or ():
            try:
                ceiling = ceilings[aggregate]
            except KeyError:
                ceiling = ceilings[aggregate] = host_capacity.from_aggregate(
                    aggregate)
                if ceiling is None or ceiling >= needed:
                    harmless.add(aggregate)
            except TypeError:  # not hashable: read it each time
                ceiling = host_capacity.from_aggregate(aggregate)
            if ceiling is not None and (lowest is None or ceiling < lowest):
                lowest, fence = ceiling, aggregate
        return lowest, fence


def _read_deprecated_options() -> None:
    """Let oslo.config warn about options that no longer have an effect.

    oslo.config names an option deprecated for removal, once per process,
    when its value is read and was set in a config file; nova-scheduler
    does not dump its options at start, and nothing reads these any
    more, so the filter reads them once when nova loads it.
    """
    for name in pcie_conf.pcie_sched.IGNORED_OPTS:
        try:
            getattr(CONF.pcie_sched, name)
        # A malformed value is as ignored as a good one.
        except Exception:  # nosec B110
            pass


def _log_unknown_hosts(spec_obj, needed, unpublished, invalid,
                       accept) -> None:
    """One INFO line per request for hosts without a usable capacity."""
    outcome = ('passed unless an aggregate ceiling is lower ([pcie_sched] '
               'unknown_host_policy = accept)' if accept else
               'rejected ([pcie_sched] unknown_host_policy = reject)')
    if unpublished:
        LOG.info('PciHotplugPortsFilter: %(count)d host(s) publish no '
                 '%(key)s and so run no pcie-sched compute driver that can '
                 'give instance %(uuid)s its %(needed)d root ports (nova\'s '
                 'own libvirt driver, or guests on a machine type without '
                 'PCI Express such as pc): %(hosts)s; %(outcome)s',
                 {'count': len(unpublished), 'key': spec.HOST_CAPACITY_KEY,
                  'uuid': _instance_uuid(spec_obj), 'needed': needed,
                  'hosts': _host_names(unpublished), 'outcome': outcome})
    if invalid:
        LOG.info('PciHotplugPortsFilter: %(count)d host(s) publish an '
                 'invalid %(key)s (warned once per value): %(hosts)s; '
                 '%(outcome)s',
                 {'count': len(invalid), 'key': spec.HOST_CAPACITY_KEY,
                  'hosts': _host_names(invalid), 'outcome': outcome})


def _how(requested, needed, recorded) -> str:
    """How ``needed`` was counted, for the log."""
    if recorded:
        return 'recorded at its first build'
    return f'{requested} free + {needed - requested} cold-plugged'


def _host_names(host_states) -> str:
    """The first MAX_NAMED_HOSTS host names, and how many more there are."""
    names = []
    for host_state in host_states[:MAX_NAMED_HOSTS]:
        host = getattr(host_state, 'host', None)
        node = getattr(host_state, 'nodename', None)
        names.append(str(host) if node in (None, host) else
                     f'{host} (node {node})')
    more = len(host_states) - len(names)
    return ', '.join(names) + (f' and {more} more' if more > 0 else '')


def _network_count(spec_obj) -> int:
    """Interfaces the guest boots with, as far as the request tells.

    A request without networks information, or with ``auto``, counts as
    one interface; ``none`` as zero.
    """
    if not spec_obj.obj_attr_is_set('requested_networks'):
        return 1
    networks = spec_obj.requested_networks
    if networks is None:
        return 1
    if networks.no_allocate:
        return 0
    # An empty list comes from requests that let nova pick the networks.
    return max(len(networks), 1)


def _has_rng(flavor) -> bool:
    """Whether nova will give the guest a virtio RNG, as nova decides it."""
    extra_specs = getattr(flavor, 'extra_specs', None) or {}
    return strutils.bool_from_string(
        extra_specs.get(RNG_ALLOWED_KEY, 'True'))


def _pci_device_count(spec_obj) -> int:
    """PCI devices the flavor's PCI aliases pass through to the guest.

    Each is a cold-plugged hostdev behind a root port of its own, as the
    compute driver counts them. Requests that come from neutron SR-IOV
    ports (no alias) are left out: their interface is already counted
    among the networks.
    """
    if not spec_obj.obj_attr_is_set('pci_requests'):
        return 0
    pci_requests = spec_obj.pci_requests
    if pci_requests is None or not pci_requests.obj_attr_is_set('requests'):
        return 0
    total = 0
    for request in pci_requests.requests or ():
        if request.source == request.NEUTRON_PORT:
            continue
        total += max(request.count or 0, 0)
    return total


def _instance_uuid(spec_obj) -> str:
    try:
        return spec_obj.instance_uuid
    except Exception:
        return '(unknown)'
