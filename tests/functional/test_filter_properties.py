"""The filter never raises and decides like a plain reference rule."""

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
from nova.scheduler import filters
from nova import test

from pcie_sched.filters import pci_hotplug_ports
from pcie_sched import spec
from tests.functional import scheduler_support as support
from tests.unit import test_spec_properties

RESERVE_BASE = 3

stat_values = st.one_of(
    st.none(), st.integers(min_value=-5, max_value=300),
    st.text(max_size=6), st.sampled_from(['', ' 12 ', '1e2', '-0', '255']))


def reference_capacity(stat, aggregate_values):
    def valid(value):
        if value is None:
            return None
        text = str(value).strip()
        return test_spec_properties.reference_parse(text)
    published = valid(stat)
    if published is not None:
        return published
    overrides = [valid(value) for value in aggregate_values]
    overrides = [value for value in overrides if value is not None]
    return min(overrides) if overrides else None


class TestFilterProperties(test.NoDBTestCase):

    @settings(max_examples=300, deadline=None,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.function_scoped_fixture])
    @given(flavor_value=st.one_of(
               st.none(), test_spec_properties.text_values),
           hosts=st.lists(st.tuples(stat_values,
                                    st.lists(stat_values, max_size=3)),
                          max_size=4),
           networks=st.integers(min_value=0, max_value=3),
           policy=st.sampled_from(['reject', 'accept']))
    def test_decision_matches_reference(self, flavor_value, hosts, networks,
                                        policy):
        self.flags(unknown_host_policy=policy, group='pcie_sched')
        host_states = [
            # 'ironic' keeps the capacity model out of the reference rule.
            support.make_host(f'h{index}', max_ports=stat,
                              aggregate_max=[a for a in aggs if a is not None],
                              hypervisor_type='ironic')
            for index, (stat, aggs) in enumerate(hosts)]
        extra_specs = {} if flavor_value is None else {
            spec.FLAVOR_KEY: flavor_value}
        request = support.make_request(extra_specs, networks=networks)

        passing = filters.HostFilterHandler().get_filtered_objects(
            [pci_hotplug_ports.PciHotplugPortsFilter()], host_states, request)
        got = [host.host for host in passing or []]

        requested = test_spec_properties.reference_parse(flavor_value)
        if flavor_value is None:
            expected = [host.host for host in host_states]
        elif requested is None:
            expected = []
        else:
            needed = requested + RESERVE_BASE + max(networks, 1)
            expected = []
            for host, (stat, aggs) in zip(host_states, hosts):
                capacity = reference_capacity(
                    stat, [a for a in aggs if a is not None])
                if capacity is None:
                    if policy == 'accept':
                        expected.append(host.host)
                elif capacity >= needed:
                    expected.append(host.host)
        self.assertEqual(expected, got)
