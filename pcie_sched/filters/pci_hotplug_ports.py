"""PciHotplugPortsFilter: only hosts that can boot the requested ports.

Enable in nova-scheduler's nova.conf (one line each; wrapped here)::

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = \
        pcie_sched.filters.pci_hotplug_ports.PciHotplugPortsFilter
    enabled_filters = ...,PciHotplugPortsFilter

The per-request work (parsing the flavor, counting cold-plugged devices)
happens once in :meth:`filter_all`; each host then costs a dictionary
lookup or two, and each aggregate's metadata is parsed once per request.
A request without ``hw:pci_hotplug_ports`` returns the host list
untouched.
"""

from oslo_log import log as logging
from oslo_utils import strutils

from nova.scheduler import filters
from nova.scheduler import utils as scheduler_utils

from pcie_sched import conf as pcie_conf
from pcie_sched import host_capacity
from pcie_sched import spec

LOG = logging.getLogger(__name__)
CONF = pcie_conf.CONF

#: nova's libvirt driver gives every qemu/kvm guest a virtio RNG unless
#: the flavor sets this to false (nova/virt/libvirt/driver.py,
#: _add_rng_device); it is a PCIe endpoint behind a root port.
RNG_ALLOWED_KEY = 'hw_rng:allowed'


class PciHotplugPortsFilter(filters.BaseHostFilter):
    """Pass hosts whose QEMU, firmware and machine boot the ports asked for.

    A guest needs its requested free hotplug ports plus one port per
    cold-plugged PCIe device (nova's always-present devices, networks,
    ephemeral and swap disks, the virtio RNG nova adds unless the flavor
    forbids it, PCI devices passed through by flavor aliases); a host
    passes when that total fits its capacity (see
    :mod:`pcie_sched.host_capacity` for where capacity comes from). An
    invalid request passes no host and never raises.
    """

    # The host and flavor do not change on rebuild, and the image property
    # is invisible to the scheduler, so there is nothing to re-check.
    RUN_ON_REBUILD = False

    def __init__(self) -> None:
        super().__init__()
        self._models = host_capacity.ModelCache(
            CONF.pcie_sched.default_machine_types,
            CONF.pcie_sched.default_firmware)

    def filter_all(self, filter_obj_list, spec_obj):
        try:
            requested = self._requested_ports(spec_obj)
            if (requested is None or
                    scheduler_utils.request_is_rebuild(spec_obj)):
                return filter_obj_list
            reserve = self._cold_plugged_reserve(spec_obj)
            needed = requested + reserve
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
        # Hosts share nova's Aggregate objects (HostManager hands every
        # host the same instances), so each aggregate's metadata is read
        # once per request rather than once per member host.
        aggregate_memo = {}
        capacity_of = self._capacity
        known = host_capacity.parsed_capacities().get
        key = spec.HOST_CAPACITY_KEY
        for host_state in filter_obj_list:
            if not beyond_guest:
                # The common case, inlined: a published value parsed for an
                # earlier host that is big enough. Anything else (no or new
                # value, a broken host, a rejection to log) takes the full
                # path below.
                try:
                    stats = host_state.stats
                    published = known(stats.get(key)) if stats else None
                except Exception:  # the full path logs it
                    published = None
                if published is not None and published >= needed:
                    passing.append(host_state)
                    continue
            try:
                max_ports, source = capacity_of(host_state, aggregate_memo)
            except Exception:  # a broken host must not fail the request
                LOG.exception('PciHotplugPortsFilter: cannot read the '
                              'capacity of %s; treating it as unknown',
                              host_state)
                max_ports, source = host_capacity.UNKNOWN
            if beyond_guest and host_capacity.arch_from_cpu_info(
                    getattr(host_state, 'cpu_info', None)) == 'x86_64':
                # Whatever the host boots, the guest would not survive.
                max_ports = guest_limit
                source = (f"the guest's interrupt vectors with {vcpus} "
                          f"vCPU(s)")
            elif max_ports is None:
                if accept_unknown:
                    passing.append(host_state)
                else:
                    LOG.debug('%(host)s fails PciHotplugPortsFilter: needs '
                              '%(needed)d root ports, capacity unknown and '
                              'unknown_host_policy is reject',
                              {'host': host_state, 'needed': needed})
                continue
            if max_ports >= needed:
                passing.append(host_state)
                continue
            if best.max_ports is None or max_ports > best.max_ports:
                best = host_capacity.HostCapacity(max_ports, source)
            LOG.debug('%(host)s fails PciHotplugPortsFilter: needs %(needed)d '
                      'root ports (%(requested)d free + %(reserve)d '
                      'cold-plugged), can boot %(max)d (from %(source)s)',
                      {'host': host_state, 'needed': needed,
                       'requested': requested, 'reserve': needed - requested,
                       'max': max_ports, 'source': source})
        if not passing and filter_obj_list:
            LOG.info('PciHotplugPortsFilter: no host can boot instance '
                     '%(uuid)s with %(requested)d free hotplug ports '
                     '(%(needed)d root ports with its cold-plugged devices); '
                     'largest known capacity: %(best)s',
                     {'uuid': _instance_uuid(spec_obj),
                      'requested': requested, 'needed': needed,
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

    def _capacity(self, host_state, aggregate_memo):
        """(max_ports, source) for one host: the per-host hot path.

        :param aggregate_memo: ``id(aggregate) -> (aggregate, capacity)``
            for this request; holding the aggregate keeps its id from
            being reused while the memo lives.
        """
        stats = getattr(host_state, 'stats', None)
        if stats:
            published = host_capacity.parse_capacity_cached(
                stats.get(spec.HOST_CAPACITY_KEY),
                host_capacity.SOURCE_STATS, host_state)
            if published is not None:
                return published, host_capacity.SOURCE_STATS
        aggregates = getattr(host_state, 'aggregates', None)
        if aggregates:
            override = None
            for aggregate in aggregates:
                try:
                    value = aggregate_memo[id(aggregate)][1]
                except KeyError:
                    value = host_capacity.from_aggregate(aggregate)
                    aggregate_memo[id(aggregate)] = (aggregate, value)
                if value is not None and (override is None or
                                          value < override):
                    override = value
            if override is not None:
                return override, host_capacity.SOURCE_AGGREGATE
        modelled = self._models.max_ports(
            getattr(host_state, 'hypervisor_type', None),
            getattr(host_state, 'hypervisor_version', None),
            getattr(host_state, 'cpu_info', None))
        if modelled is not None:
            return modelled, host_capacity.SOURCE_MODEL
        return host_capacity.UNKNOWN


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
