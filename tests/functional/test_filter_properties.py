"""The filter never raises and decides like a plain reference rule.

Hosts vary in everything the filter reads: published stats (through
nova's ComputeNode, or raw values put on the HostState behind nova's
back), shared aggregates that disagree or hold garbage, hypervisor type
and version, architecture and broken ``cpu_info``. Requests vary in the
flavor value, vCPUs, networks, PCI alias devices, and flavors whose
extra specs are empty or were never loaded.
"""

import json

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
from nova import objects
from nova.scheduler import filters
from nova import test

from pcie_sched import capacity
from pcie_sched.filters import pci_hotplug_ports
from pcie_sched import host_capacity
from pcie_sched import spec
from pcie_sched import topology
from tests.functional import scheduler_support as support
from tests.unit import test_spec_properties

RESERVE_BASE = 3
#: nova's own reading of hw_rng:allowed (oslo.utils' true words; any
#: other value is false), default true: a virtio RNG on every guest.
RNG_TRUE_WORDS = ('1', 't', 'true', 'on', 'y', 'yes')

#: What a stat or metadata value can be once it reaches the filter.
#: Numbers cluster where requests and limits meet (a few ports plus the
#: reserve; the guest vector limit near 195; the top of the range), so
#: that an off-by-one in the rule changes some decision.
stat_values = st.one_of(
    st.none(), st.integers(min_value=-5, max_value=300),
    st.integers(min_value=0, max_value=30),
    st.integers(min_value=185, max_value=260),
    st.text(max_size=6), st.binary(max_size=4),
    st.sampled_from(['', ' 12 ', '1e2', '-0', '255', '256', '0', '\uff11',
                     b'16', ' 40\n']))
#: A value just below, at or above what the request needs, resolved by
#: the test once it knows the request: boundaries are where a wrong
#: reserve or comparison shows.
near_needed = st.integers(min_value=-2, max_value=2).map(
    lambda delta: ('near', delta))
capacity_values = st.one_of(stat_values, near_needed)
cpu_infos = st.one_of(
    st.sampled_from(['x86_64', 'x86_64', 'aarch64', 's390x']).map(
        lambda arch: json.dumps({'arch': arch, 'model': 'Haswell'})),
    st.sampled_from(['', '{not json', '[]', '"x86_64"',
                     json.dumps({'arch': 7}), json.dumps({})]))
hypervisor_versions = st.sampled_from(
    [2011000, 4002000, 7002000, 8002000, 9001000, 0, -1])
host_strategy = st.fixed_dictionaries({
    'stat': capacity_values,
    # True: put the stat on the HostState as is, as a broken or future
    # nova could; False: through ComputeNode, which makes it a string.
    'raw_stat': st.booleans(),
    # Indexes into the request's pool of shared aggregates.
    'aggregates': st.lists(st.integers(min_value=0, max_value=3),
                           max_size=3, unique=True),
    'hypervisor_type': st.sampled_from(['QEMU', 'ironic']),
    'hypervisor_version': hypervisor_versions,
    'cpu_info': cpu_infos,
})


def reference_value(value):
    """A capacity value as the docs describe it, or None if unusable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return test_spec_properties.reference_parse(value)
    return test_spec_properties.reference_parse(str(value).strip())


def reference_arch(cpu_info):
    try:
        arch = json.loads(cpu_info).get('arch')
    except (ValueError, AttributeError):
        return None
    return arch if isinstance(arch, str) else None


def reference_rng(value):
    if value is None:
        return 1
    return 1 if value.strip().lower() in RNG_TRUE_WORDS else 0


def reference_vector_limit(vcpus, guest_devices):
    return capacity.estimate(topology.machine_profile(
        'x86_64', 'q35', vcpus=vcpus, guest_devices=guest_devices)).budgets[
            capacity.GUEST_VECTORS].max_ports


def reference_decision(host, pool, needed, reserve, vcpus, policy,
                       enforce):
    arch = reference_arch(host['cpu_info'])
    if (enforce and arch == 'x86_64' and
            needed > reference_vector_limit(vcpus, reserve)):
        return False
    stat = host['stat']
    if not host['raw_stat'] and stat is not None:
        stat = str(stat)
    published = reference_value(stat)
    ceilings = [reference_value(aggregate_value(pool[index]))
                for index in host['aggregates']]
    ceilings = [value for value in ceilings if value is not None]
    # An aggregate value is a ceiling, whatever the host publishes.
    if ceilings and min(ceilings) < needed:
        return False
    if published is None:
        # No pcie-sched driver: nothing else speaks for the host.
        return policy == 'accept'
    return published >= needed


def build_host(name, host, pool):
    kwargs = {}
    if not host['raw_stat'] and host['stat'] is not None:
        kwargs['max_ports'] = host['stat']
    host_state = support.make_host(
        name, hypervisor_type=host['hypervisor_type'],
        hypervisor_version=host['hypervisor_version'],
        cpu_info=host['cpu_info'],
        aggregates=[pool[index] for index in host['aggregates']], **kwargs)
    if host['raw_stat']:
        host_state.stats = {spec.HOST_CAPACITY_KEY: host['stat']}
    return host_state


def aggregate_value(value):
    """What Aggregate.metadata holds for ``value``.

    nova's object refuses bytes (it holds strings only, even when its
    dict is changed in place); a program that wrote ``str(b'16')`` would
    have stored ``"b'16'"``, so that is what bytes become here. Raw bytes
    reach the filter only through stats, above.
    """
    if isinstance(value, bytes):
        return str(value)
    return value


def build_pool(values):
    """Aggregates shared by hosts, as nova's HostManager shares them."""
    return [support.make_aggregate(index, aggregate_value(value))
            for index, value in enumerate(values)]


class TestFilterProperties(test.NoDBTestCase):

    @settings(max_examples=600, deadline=None,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.function_scoped_fixture])
    @given(flavor_value=st.one_of(
               st.none(), st.just('missing'),
               test_spec_properties.text_values,
               st.integers(min_value=0, max_value=24).map(str),
               st.integers(min_value=180, max_value=spec.MAX_PORTS).map(
                   str),
               # Around the guest vector limit of the request's vCPUs.
               st.integers(min_value=-2, max_value=2).map(
                   lambda delta: ('limit', delta))),
           hosts=st.lists(host_strategy, max_size=5),
           pool_values=st.lists(capacity_values, min_size=4, max_size=4),
           networks=st.integers(min_value=0, max_value=3),
           alias_counts=st.lists(st.integers(min_value=0, max_value=3),
                                 max_size=2),
           sriov_ports=st.integers(min_value=0, max_value=2),
           vcpus=st.sampled_from([1, 2, 4]),
           rng=st.sampled_from([None, 'True', 'False', 'no', 'YES', '1',
                                'garbage', '']),
           policy=st.sampled_from(['reject', 'accept']),
           enforce=st.booleans())
    def test_decision_matches_reference(self, flavor_value, hosts,
                                        pool_values, networks, alias_counts,
                                        sriov_ports, vcpus, rng, policy,
                                        enforce):
        self.flags(unknown_host_policy=policy,
                   enforce_guest_vector_limit=enforce, group='pcie_sched')
        host_capacity.reset_caches()
        reserve = (RESERVE_BASE + max(networks, 1) + sum(alias_counts) +
                   reference_rng(rng))
        if isinstance(flavor_value, tuple):
            flavor_value = str(max(
                reference_vector_limit(vcpus, reserve) - reserve +
                flavor_value[1], 0))
        requested = test_spec_properties.reference_parse(flavor_value)
        # An invalid or absent request still gets hosts near a plausible
        # need, for the other branches of the rule.
        needed = (16 if requested is None else requested) + reserve

        def resolve(value):
            if isinstance(value, tuple):
                return max(needed + value[1], 0)
            return value
        pool_values = [resolve(value) for value in pool_values]
        hosts = [dict(host, stat=resolve(host['stat'])) for host in hosts]
        pool = build_pool(pool_values)
        host_states = [build_host(f'h{index}', host, pool)
                       for index, host in enumerate(hosts)]
        extra_specs = ({} if flavor_value in (None, 'missing') else
                       {spec.FLAVOR_KEY: flavor_value})
        if rng is not None:
            extra_specs['hw_rng:allowed'] = rng
        request = support.make_request(
            extra_specs, networks=networks, vcpus=vcpus,
            pci_requests=support.make_pci_requests(alias_counts,
                                                   sriov_ports))
        if flavor_value == 'missing':
            # A flavor whose extra specs were never loaded.
            request.flavor = objects.Flavor(
                flavorid='f2', name='f2', vcpus=vcpus, memory_mb=512,
                root_gb=1, ephemeral_gb=0, swap=0)

        passing = filters.HostFilterHandler().get_filtered_objects(
            [pci_hotplug_ports.PciHotplugPortsFilter()], host_states, request)
        got = [host.host for host in passing or []]

        if flavor_value is None:
            expected = [host.host for host in host_states]
        elif flavor_value == 'missing' or requested is None:
            # Unreadable or invalid: nothing can be promised.
            expected = []
        else:
            expected = [
                state.host for state, host in zip(host_states, hosts)
                if reference_decision(host, pool_values, needed, reserve,
                                      vcpus, policy, enforce)]
        self.assertEqual(expected, got)

    @settings(max_examples=500, deadline=None,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.function_scoped_fixture])
    @given(vcpus=st.integers(min_value=1, max_value=2),
           networks=st.integers(min_value=0, max_value=3),
           alias_counts=st.lists(st.integers(min_value=0, max_value=3),
                                 max_size=2),
           delta=st.integers(min_value=-3, max_value=3),
           hosts=st.lists(st.fixed_dictionaries({
               'stat': st.sampled_from([None, 255, 'junk']),
               'raw_stat': st.just(False),
               'aggregates': st.sampled_from([[], [0], [0, 1]]),
               'hypervisor_type': st.sampled_from(['QEMU', 'ironic']),
               'hypervisor_version': st.sampled_from([7002000, 9001000]),
               'cpu_info': st.sampled_from(['x86_64', 'aarch64']).map(
                   lambda arch: json.dumps({'arch': arch})),
           }), min_size=1, max_size=4),
           rng=st.sampled_from([None, 'False', 'true', 'nonsense']),
           policy=st.sampled_from(['reject', 'accept']),
           enforce=st.booleans())
    def test_guest_vector_limit_boundary(self, vcpus, networks, alias_counts,
                                         delta, hosts, rng, policy, enforce):
        """Requests at the guest vector limit, on hosts that boot more."""
        self.flags(unknown_host_policy=policy,
                   enforce_guest_vector_limit=enforce, group='pcie_sched')
        host_capacity.reset_caches()
        reserve = (RESERVE_BASE + max(networks, 1) + sum(alias_counts) +
                   reference_rng(rng))
        requested = min(max(
            reference_vector_limit(vcpus, reserve) - reserve + delta, 0),
            spec.MAX_PORTS)
        pool_values = [250, '255']
        pool = build_pool(pool_values)
        host_states = [build_host(f'h{index}', host, pool)
                       for index, host in enumerate(hosts)]
        extra_specs = {spec.FLAVOR_KEY: str(requested)}
        if rng is not None:
            extra_specs['hw_rng:allowed'] = rng
        request = support.make_request(
            extra_specs, networks=networks,
            vcpus=vcpus, pci_requests=support.make_pci_requests(
                alias_counts))

        passing = filters.HostFilterHandler().get_filtered_objects(
            [pci_hotplug_ports.PciHotplugPortsFilter()], host_states, request)

        expected = [
            state.host for state, host in zip(host_states, hosts)
            if reference_decision(host, pool_values, requested + reserve,
                                  reserve, vcpus, policy, enforce)]
        self.assertEqual(expected, [host.host for host in passing or []])
