"""PciHotplugPortsFilter through nova's own filter machinery."""

import logging

import fixtures
from nova.scheduler import filters
from nova import test
from nova.tests import fixtures as nova_fixtures
import testscenarios

from pcie_sched import capacity
from pcie_sched.filters import pci_hotplug_ports
from pcie_sched import spec
from pcie_sched import topology
from tests.functional import scheduler_support as support

load_tests = testscenarios.load_tests_apply_scenarios

FILTER_PATH = 'pcie_sched.filters.pci_hotplug_ports.PciHotplugPortsFilter'
#: cold_plugged_base_ports default (3) + one network interface.
RESERVE = 4


def ports(requested):
    return {spec.FLAVOR_KEY: str(requested)}


class FilterTestCase(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.stdlog = self.useFixture(nova_fixtures.StandardLogging())
        # Per-host rejections are debug messages, like nova's own filters.
        self.filter_log = self.useFixture(fixtures.FakeLogger(
            name=pci_hotplug_ports.__name__, level=logging.DEBUG))
        self.handler = filters.HostFilterHandler()

    def run_filter(self, hosts, request):
        passing = self.handler.get_filtered_objects(
            [pci_hotplug_ports.PciHotplugPortsFilter()], hosts, request)
        return [host.host for host in passing or []]


class TestCapacitySources(FilterTestCase):

    scenarios = [
        # Each host's published stat decides; exactly-fitting passes.
        ('stats', {
            'hosts': dict(small=dict(max_ports=16), exact=dict(max_ports=20),
                          big=dict(max_ports=200)),
            'requested': 16, 'expected': ['exact', 'big']}),
        # Stats beat aggregate metadata.
        ('stats_over_aggregate', {
            'hosts': dict(a=dict(max_ports=10, aggregate_max=[200])),
            'requested': 16, 'expected': []}),
        # Smallest aggregate value wins; garbage is ignored.
        ('aggregates', {
            'hosts': dict(one=dict(aggregate_max=[64, 'junk']),
                          two=dict(aggregate_max=[64, 12]),
                          neg=dict(aggregate_max=[-5],
                                   hypervisor_type='ironic')),
            'requested': 16, 'expected': ['one']}),
        # Broken stats fall through to the next source.
        ('malformed_stats', {
            'hosts': dict(a=dict(max_ports='lots', aggregate_max=[30])),
            'requested': 16, 'expected': ['a']}),
        ('reserve_counts_networks', {
            'hosts': dict(a=dict(max_ports=20)),
            'requested': 16, 'networks': 2, 'expected': []}),
        ('reserve_counts_disks', {
            'hosts': dict(a=dict(max_ports=21)),
            'requested': 16, 'ephemeral_gb': 5, 'swap': 512,
            'expected': []}),
        ('no_networks', {
            'hosts': dict(a=dict(max_ports=19)),
            'requested': 16, 'networks': 'none', 'expected': ['a']}),
        ('networks_unknown', {
            'hosts': dict(a=dict(max_ports=20)),
            'requested': 16, 'networks': None, 'expected': ['a']}),
    ]
    networks = 1
    ephemeral_gb = 0
    swap = 0

    def test_decision(self):
        hosts = [support.make_host(name, **kwargs)
                 for name, kwargs in sorted(self.hosts.items())]
        request = support.make_request(
            ports(self.requested), networks=self.networks,
            ephemeral_gb=self.ephemeral_gb, swap=self.swap)
        self.assertEqual(sorted(self.expected),
                         sorted(self.run_filter(hosts, request)))


class TestFilterBehaviour(FilterTestCase):

    def test_no_spec_passes_every_host_untouched(self):
        hosts = [support.make_host('a', max_ports=0),
                 support.make_host('b', hypervisor_type='ironic')]
        request = support.make_request({'hw:cpu_policy': 'shared'})
        flt = pci_hotplug_ports.PciHotplugPortsFilter()
        self.assertIs(hosts, flt.filter_all(hosts, request))

    def test_invalid_spec_passes_no_host_and_logs_once(self):
        hosts = [support.make_host(f'h{i}', max_ports=255) for i in range(5)]
        request = support.make_request(ports('abc'))
        self.assertEqual([], self.run_filter(hosts, request))
        lines = [line for line in self.filter_log.output.splitlines()
                 if 'PciHotplugPortsFilter' in line and 'abc' in line]
        self.assertEqual(1, len(lines), self.filter_log.output)
        self.assertIn(str(support.uuids.instance), lines[0])
        self.assertIn('not a whole number', lines[0])

    def test_rejection_log_names_host_need_capacity_and_source(self):
        hosts = [support.make_host('tiny', max_ports=8)]
        self.assertEqual([], self.run_filter(
            hosts, support.make_request(ports(16))))
        output = self.filter_log.output
        self.assertIn('tiny', output)
        self.assertIn('needs 20 root ports (16 free + 4 cold-plugged)',
                      output)
        self.assertIn('can boot 8 (from stats)', output)
        self.assertIn('largest known capacity: 8 (from stats)', output)

    def test_host_without_compute_update_has_no_stats(self):
        from nova.scheduler import host_manager
        bare = host_manager.HostState('bare', 'bare', support.uuids.cell1)
        self.flags(unknown_host_policy='reject', group='pcie_sched')
        self.assertEqual([], self.run_filter(
            [bare], support.make_request(ports(1))))
        self.flags(unknown_host_policy='accept', group='pcie_sched')
        self.assertEqual(['bare'], self.run_filter(
            [bare], support.make_request(ports(1))))

    def test_unknown_host_policy(self):
        hosts = [support.make_host('vmware', hypervisor_type='VMware vCenter '
                                                             'Server')]
        self.assertEqual([], self.run_filter(
            hosts, support.make_request(ports(1))))
        self.flags(unknown_host_policy='accept', group='pcie_sched')
        self.assertEqual(['vmware'], self.run_filter(
            hosts, support.make_request(ports(1))))

    def test_rebuild_is_not_filtered(self):
        hosts = [support.make_host('tiny', max_ports=1)]
        self.assertEqual(['tiny'], self.run_filter(
            hosts, support.make_request(ports(64), rebuild=True)))

    def test_host_passes_agrees_with_filter_all(self):
        flt = pci_hotplug_ports.PciHotplugPortsFilter()
        request = support.make_request(ports(16))
        self.assertTrue(flt.host_passes(
            support.make_host('big', max_ports=100), request))
        self.assertFalse(flt.host_passes(
            support.make_host('small', max_ports=10), request))


class TestGuestVectorLimit(FilterTestCase):
    """A 1-vCPU x86_64 guest runs out of interrupt vectors first."""

    def test_one_vcpu_guest_limit_binds_even_on_a_capable_host(self):
        limit = capacity.estimate(topology.machine_profile(
            'x86_64', 'q35', vcpus=1, guest_devices=RESERVE)).budgets[
                capacity.GUEST_VECTORS].max_ports
        host = [support.make_host('big', max_ports=232)]
        fits = support.make_request(ports(limit - RESERVE), vcpus=1)
        too_many = support.make_request(ports(limit - RESERVE + 1), vcpus=1)
        self.assertEqual(['big'], self.run_filter(host, fits))
        self.assertEqual([], self.run_filter(host, too_many))
        self.assertIn("interrupt vectors with 1 vCPU(s)",
                      self.filter_log.output)
        self.assertEqual(['big'], self.run_filter(
            host, support.make_request(ports(limit - RESERVE + 1), vcpus=2)))

    def test_operator_can_relax_it(self):
        self.flags(enforce_guest_vector_limit=False, group='pcie_sched')
        host = [support.make_host('big', max_ports=232)]
        self.assertEqual(['big'], self.run_filter(
            host, support.make_request(ports(220), vcpus=1)))

    def test_not_applied_to_aarch64_hosts(self):
        host = [support.make_host('arm', max_ports=248, arch='aarch64')]
        self.assertEqual(['arm'], self.run_filter(
            host, support.make_request(ports(220), vcpus=1)))


class TestCapacityModelSource(FilterTestCase):
    """Hosts that publish nothing are judged by the capacity model."""

    scenarios = [
        ('x86_64_q35_uefi', {'arch': 'x86_64', 'machine': 'q35',
                             'firmware': 'uefi'}),
        ('aarch64_virt_uefi', {'arch': 'aarch64', 'machine': 'virt',
                               'firmware': 'uefi'}),
        ('x86_64_q35_bios', {'arch': 'x86_64', 'machine': 'q35',
                             'firmware': 'bios'}),
    ]

    def test_model_bound_is_exact(self):
        self.flags(default_firmware={self.arch: self.firmware},
                   default_machine_types={self.arch: self.machine},
                   group='pcie_sched')
        expected = capacity.estimate(topology.machine_profile(
            self.arch, self.machine, self.firmware, (7, 2))).max_ports
        self.assertGreater(expected, RESERVE)
        host = support.make_host('plain', arch=self.arch)
        fits = support.make_request(ports(expected - RESERVE))
        too_many = support.make_request(ports(expected - RESERVE + 1))
        self.assertEqual(['plain'], self.run_filter([host], fits))
        self.assertEqual([], self.run_filter([host], too_many))
        self.assertIn(f'can boot {expected} (from model)',
                      self.filter_log.output)


class TestNovaLoadsTheFilter(test.TestCase):
    """nova's HostManager builds its filter list from nova.conf."""

    def test_available_and_enabled_filters(self):
        from nova.scheduler import host_manager
        self.flags(available_filters=['nova.scheduler.filters.all_filters',
                                      FILTER_PATH],
                   enabled_filters=['ComputeFilter',
                                    'PciHotplugPortsFilter'],
                   group='filter_scheduler')
        manager = host_manager.HostManager()
        names = [type(flt).__name__ for flt in manager.enabled_filters]
        self.assertEqual(['ComputeFilter', 'PciHotplugPortsFilter'], names)
        self.assertIsInstance(manager.enabled_filters[1],
                              pci_hotplug_ports.PciHotplugPortsFilter)

    def test_matching_classes_resolves_the_dotted_path(self):
        classes = filters.HostFilterHandler().get_matching_classes(
            [FILTER_PATH])
        self.assertEqual([pci_hotplug_ports.PciHotplugPortsFilter], classes)
