"""The filter's cold-plugged reserve against what the driver really builds.

PciHotplugPortsFilter cannot see the guest config, so it estimates the
root ports a guest's cold-plugged devices take ([pcie_sched]
cold_plugged_base_ports + networks + ephemeral + swap + PCI devices + the
RNG nova adds unless hw_rng:allowed=False); the driver counts them in
nova's guest config. Where the estimate is low, a
guest passes the filter and is then aborted by the driver; where it is
high, the filter refuses a host that could boot it. Both are checked at
the edge of one host's capacity, through the real scheduler and driver.
"""

import testscenarios

from pcie_sched import spec
from tests.functional import nova_support
from tests.functional import test_libvirt_driver

load_tests = testscenarios.load_tests_apply_scenarios

CAPACITY = 12


class TestReserveMatchesTheDriver(test_libvirt_driver.DriverTestBase):

    scenarios = [
        # nova's defaults: RNG on (hw_rng:allowed defaults to True), and
        # the framework's default flavor has a 10 GiB ephemeral disk.
        ('default-flavor', {'flavor_args': {}, 'extra': {}, 'nic': False,
                            'rng': True}),
        ('rng-off-nic-swap', {
            'flavor_args': {'ephemeral': 0, 'swap': 512},
            'extra': {'hw_rng:allowed': 'False'}, 'nic': True,
            'rng': False}),
    ]

    def setUp(self):
        super().setUp()
        self.flags(max_ports_override=CAPACITY, group='pcie_sched_compute')
        self.start_compute('compute1')

    def boot(self, ports, **kwargs):
        flavor = self._create_flavor(
            extra_spec=dict(self.extra, **{spec.FLAVOR_KEY: str(ports)}),
            **self.flavor_args)
        # nova creates a port on network_1 for each server.
        networks = ([{'uuid': self.neutron.network_1['id']}] if self.nic
                    else 'none')
        return self._create_server(flavor_id=flavor, networks=networks,
                                   **kwargs)

    def test_edge_of_the_host_capacity(self):
        probe = self.boot(1)
        cold = nova_support.pcie_endpoints(self.domain_xml[probe['id']])
        self.assertEqual(self.rng, 'rng' in [d.tag for d in cold])
        fits = CAPACITY - len(cold)
        self.assertEqual('ACTIVE', self.boot(fits)['status'])
        one_more = self.boot(fits + 1, expected_state='ERROR')
        fault = one_more['fault']['message']
        # The filter, not the driver, refuses the port too many.
        self.assertIn('No valid host', fault)
