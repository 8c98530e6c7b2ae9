"""PciHotplugPortsFilter through nova's own filter machinery."""

import logging

import fixtures
from nova import objects
from nova.pci import request as pci_request
from nova.scheduler import filters
from nova import test
from nova.tests import fixtures as nova_fixtures
import testscenarios

from pcie_sched import capacity
from pcie_sched.filters import pci_hotplug_ports
from pcie_sched import host_capacity
from pcie_sched import spec
from pcie_sched import topology
from tests.functional import scheduler_support as support

load_tests = testscenarios.load_tests_apply_scenarios

FILTER_PATH = 'pcie_sched.filters.pci_hotplug_ports.PciHotplugPortsFilter'
#: cold_plugged_base_ports default (3) + one network interface + the
#: virtio RNG nova 34 adds to every guest whose flavor allows it.
RESERVE = 5


#: What nova.compute.stats keeps for every compute node.
RESOURCE_TRACKER_STATS = {
    'num_instances': '1', 'num_vm_active': '1', 'num_task_None': '1',
    'num_os_type_linux': '1', 'num_proj_demo': '1', 'io_workload': '0',
    'failed_builds': '0'}


class _Unreadable(dict):
    """Stats whose every read fails, as a half-loaded object's might."""

    def __bool__(self):
        return True

    def get(self, *args):
        raise RuntimeError('stats not loaded')


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
        # Warnings about malformed capacities are given once per value
        # per process; each test starts from a scheduler that has seen
        # none.
        host_capacity.reset_caches()
        self.addCleanup(host_capacity.reset_caches)

    def run_filter(self, hosts, request):
        passing = self.handler.get_filtered_objects(
            [pci_hotplug_ports.PciHotplugPortsFilter()], hosts, request)
        return [host.host for host in passing or []]


class TestCapacitySources(FilterTestCase):

    scenarios = [
        # Each host's published stat decides; exactly-fitting passes.
        ('stats', {
            'hosts': dict(small=dict(max_ports=16), exact=dict(max_ports=21),
                          big=dict(max_ports=200)),
            'requested': 16, 'expected': ['exact', 'big']}),
        # Aggregate metadata is a ceiling on the published stat: it
        # lowers a capacity and never raises one.
        ('aggregate_ceiling_below_stats', {
            'hosts': dict(a=dict(max_ports=200, aggregate_max=[10])),
            'requested': 16, 'expected': []}),
        ('aggregate_ceiling_above_stats', {
            'hosts': dict(a=dict(max_ports=10, aggregate_max=[200])),
            'requested': 16, 'expected': []}),
        ('aggregate_ceiling_exact', {
            'hosts': dict(a=dict(max_ports=200, aggregate_max=[21])),
            'requested': 16, 'expected': ['a']}),
        # The smallest aggregate value is the ceiling; garbage sets none.
        ('aggregates', {
            'hosts': dict(one=dict(max_ports=200, aggregate_max=[64, 'junk']),
                          two=dict(max_ports=200, aggregate_max=[64, 12]),
                          junk=dict(max_ports=200, aggregate_max=['junk'])),
            'requested': 16, 'expected': ['one', 'junk']}),
        # A host that publishes no capacity has no pcie-sched driver: an
        # aggregate value does not make it pass, and neither does the
        # capacity model (which would give a QEMU 7.2 q35 host 232).
        ('aggregate_without_stats', {
            'hosts': dict(a=dict(aggregate_max=[64]),
                          b=dict(aggregate_max=[64],
                                 hypervisor_type='ironic')),
            'requested': 16, 'expected': []}),
        # A compute node's stats always hold nova's own counters; without
        # the capacity key the host has no pcie-sched driver.
        ('resource_tracker_stats_only', {
            'hosts': dict(
                aggregate=dict(stats=RESOURCE_TRACKER_STATS,
                               aggregate_max=[64]),
                plain=dict(stats=RESOURCE_TRACKER_STATS)),
            'requested': 16, 'expected': []}),
        # Broken stats are no capacity either.
        ('malformed_stats', {
            'hosts': dict(a=dict(max_ports='lots', aggregate_max=[30])),
            'requested': 16, 'expected': []}),
        ('reserve_counts_networks', {
            'hosts': dict(a=dict(max_ports=21)),
            'requested': 16, 'networks': 2, 'expected': []}),
        ('reserve_counts_disks', {
            'hosts': dict(a=dict(max_ports=22)),
            'requested': 16, 'ephemeral_gb': 5, 'swap': 512,
            'expected': []}),
        ('no_networks', {
            'hosts': dict(a=dict(max_ports=20)),
            'requested': 16, 'networks': 'none', 'expected': ['a']}),
        ('networks_unknown', {
            'hosts': dict(a=dict(max_ports=21)),
            'requested': 16, 'networks': None, 'expected': ['a']}),
        # nova adds no RNG when the flavor says so (its own parsing:
        # anything but a true word is false).
        ('rng_not_allowed', {
            'hosts': dict(a=dict(max_ports=20)),
            'requested': 16, 'extra': {'hw_rng:allowed': 'False'},
            'expected': ['a']}),
        ('rng_garbage_is_false', {
            'hosts': dict(a=dict(max_ports=20)),
            'requested': 16, 'extra': {'hw_rng:allowed': 'maybe'},
            'expected': ['a']}),
        ('rng_allowed', {
            'hosts': dict(a=dict(max_ports=20)),
            'requested': 16, 'extra': {'hw_rng:allowed': 'yes'},
            'expected': []}),
    ]
    extra = {}
    networks = 1
    ephemeral_gb = 0
    swap = 0

    def test_decision(self):
        hosts = [support.make_host(name, **kwargs)
                 for name, kwargs in sorted(self.hosts.items())]
        request = support.make_request(
            dict(ports(self.requested), **self.extra), networks=self.networks,
            ephemeral_gb=self.ephemeral_gb, swap=self.swap)
        self.assertEqual(sorted(self.expected),
                         sorted(self.run_filter(hosts, request)))


class TestCheckCommandAgrees(FilterTestCase):
    """``pcie-sched check`` asks the host for what the filter reserves."""

    def test_default_reserve_is_the_filters(self):
        from pcie_sched.cmd import check
        needed = 16 + check.default_cold_plugged()
        request = support.make_request(ports(16))
        exact = support.make_host('exact', max_ports=needed)
        short = support.make_host('short', max_ports=needed - 1)
        self.assertEqual(['exact'], self.run_filter([exact, short], request))


class TestFilterBehaviour(FilterTestCase):

    def test_no_spec_passes_every_host_untouched(self):
        hosts = [support.make_host('a', max_ports=0),
                 support.make_host('b', hypervisor_type='ironic')]
        request = support.make_request({'hw:cpu_policy': 'shared'})
        flt = pci_hotplug_ports.PciHotplugPortsFilter()
        self.assertIs(hosts, flt.filter_all(hosts, request))

    def test_bad_policy_in_the_config_file_passes_no_host(self):
        from oslo_config import fixture as config_fixture

        from pcie_sched import conf as pcie_conf
        # As read from nova.conf: oslo checks the choice only on access.
        self.useFixture(config_fixture.Config(pcie_conf.CONF)).\
            load_raw_values(group='pcie_sched', unknown_host_policy='rejct')
        hosts = [support.make_host('a', max_ports=255)]
        self.assertEqual([], self.run_filter(
            hosts, support.make_request(ports(16))))
        self.assertIn('rejct', self.filter_log.output)

    def test_deeply_nested_cpu_info_is_an_unknown_architecture(self):
        nested = '[' * 100000 + ']' * 100000
        hosts = [support.make_host('deep', cpu_info=nested)]
        self.assertEqual([], self.run_filter(
            hosts, support.make_request(ports(16))))
        self.assertIsNone(host_capacity.arch_from_cpu_info(nested))

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
        self.assertIn('needs 21 root ports (16 free + 5 cold-plugged)',
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

    def test_mixed_hosts_keep_their_order(self):
        # Hosts decided by the inlined path and by the full path (no stat,
        # an aggregate read for the first time or already read, a ceiling
        # that rejects, a value not seen before, a broken one) come back
        # in the handler's order, as nova's weighers see them.
        rack = support.make_aggregate(7, '64', name='rack7')
        fence = support.make_aggregate(8, '12', name='fenced')
        zone = support.make_aggregate(9, None, name='az1')
        hosts = [support.make_host('stats-big', max_ports=200),
                 support.make_host('unpublished'),
                 support.make_host('rack-1', max_ports=200,
                                   aggregates=[zone, rack]),
                 support.make_host('stats-small', max_ports=8),
                 support.make_host('fenced-1', max_ports=200,
                                   aggregates=[zone, fence]),
                 support.make_host('aggregate-only', aggregates=[rack]),
                 support.make_host('rack-2', max_ports=200,
                                   aggregates=[rack, zone]),
                 support.make_host('stats-new-value', max_ports=201),
                 support.make_host('fenced-2', max_ports=200,
                                   aggregates=[fence]),
                 support.make_host('vmware', hypervisor_type='VMware'),
                 support.make_host('stats-bad', max_ports='lots'),
                 support.make_host('fenced-unpublished', aggregates=[fence]),
                 support.make_host('stats-big-again', max_ports=200,
                                   aggregates=[zone])]
        request = support.make_request(ports(16))
        published = ['stats-big', 'rack-1', 'rack-2', 'stats-new-value',
                     'stats-big-again']
        # With "accept" the hosts without a usable stat pass too, unless
        # a ceiling is below the request.
        unknown = ['unpublished', 'aggregate-only', 'vmware', 'stats-bad']
        flt = pci_hotplug_ports.PciHotplugPortsFilter()
        for policy in ('reject', 'accept'):
            self.flags(unknown_host_policy=policy, group='pcie_sched')
            expected = [host.host for host in hosts
                        if host.host in published or
                        (policy == 'accept' and host.host in unknown)]
            # Twice: the second request finds every value already parsed.
            for _ in range(2):
                self.assertEqual(expected, self.run_filter(hosts, request))
            self.assertEqual(expected, [host.host for host in hosts
                                        if flt.host_passes(host, request)])

    def test_rejection_log_names_the_aggregate_ceiling(self):
        fence = support.make_aggregate(9, '12', name='bad-firmware')
        hosts = [support.make_host('fenced', max_ports=232,
                                   aggregates=[fence])]
        self.assertEqual([], self.run_filter(
            hosts, support.make_request(ports(16))))
        output = self.filter_log.output
        self.assertIn("can boot 12 (from the ceiling in the metadata of "
                      "aggregate 'bad-firmware' (id 9))", output)
        self.assertIn('largest known capacity: 12 (from the ceiling',
                      output)

    def test_one_host_with_unreadable_stats_does_not_fail_the_others(self):
        hosts = [support.make_host(f'h{index}', max_ports=64)
                 for index in range(3)]
        hosts[1].stats = None  # not a dict: the shortcut cannot read it
        hosts.append(support.make_host('h3', max_ports=64))
        hosts[3].stats = _Unreadable()
        request = support.make_request(ports(16))
        for _ in range(2):
            # h1 publishes nothing; h3's stats raise: both are unknown.
            self.assertEqual(['h0', 'h2'], self.run_filter(hosts, request))
        self.assertIn('cannot read the capacity of', self.filter_log.output)
        self.assertIn('2 host(s) publish no pci_hotplug_ports_max',
                      self.filter_log.output)

    def test_host_passes_agrees_with_filter_all(self):
        flt = pci_hotplug_ports.PciHotplugPortsFilter()
        request = support.make_request(ports(16))
        self.assertTrue(flt.host_passes(
            support.make_host('big', max_ports=100), request))
        self.assertFalse(flt.host_passes(
            support.make_host('small', max_ports=10), request))


class TestPciPassthroughReserve(FilterTestCase):
    """PCI devices from flavor aliases take root ports before hotplug."""

    def setUp(self):
        super().setUp()
        self.flags(alias=['{"name": "qat", "vendor_id": "8086", '
                          '"product_id": "37c9", "device_type": "type-VF"}'],
                   group='pci')

    def request_with_aliases(self, requested, alias_spec, networks=1):
        extra_specs = dict(ports(requested))
        extra_specs['pci_passthrough:alias'] = alias_spec
        request = support.make_request(extra_specs, networks=networks)
        # What nova-api stores on the RequestSpec for this flavor.
        request.pci_requests = pci_request.get_pci_requests_from_flavor(
            request.flavor)
        return request

    def test_alias_count_adds_to_the_reserve(self):
        request = self.request_with_aliases(16, 'qat:2')
        self.assertEqual(2, sum(r.count for r in
                                request.pci_requests.requests))
        hosts = [support.make_host('short', max_ports=22),
                 support.make_host('exact', max_ports=23)]
        self.assertEqual(['exact'], self.run_filter(hosts, request))
        self.assertIn('needs 23 root ports (16 free + 7 cold-plugged)',
                      self.filter_log.output)

    def test_several_requests_are_summed(self):
        request = support.make_request(
            ports(16), pci_requests=support.make_pci_requests((2, 3)))
        hosts = [support.make_host('short', max_ports=25),
                 support.make_host('exact', max_ports=26)]
        self.assertEqual(['exact'], self.run_filter(hosts, request))

    def test_sriov_port_requests_are_counted_as_networks_only(self):
        # Two SR-IOV ports: two networks, two PCI requests without alias.
        request = support.make_request(
            ports(16), networks=2,
            pci_requests=support.make_pci_requests(neutron_ports=2))
        hosts = [support.make_host('short', max_ports=21),
                 support.make_host('exact', max_ports=22)]
        self.assertEqual(['exact'], self.run_filter(hosts, request))

    def test_empty_or_absent_pci_requests(self):
        hosts = [support.make_host('exact', max_ports=21)]
        for pci_requests in (None, objects.InstancePCIRequests(
                instance_uuid=support.uuids.instance, requests=[])):
            request = support.make_request(ports(16))
            if pci_requests is not None:
                request.pci_requests = pci_requests
            self.assertEqual(['exact'], self.run_filter(hosts, request))


class TestMalformedCapacityWarnings(FilterTestCase):
    """A bad pci_hotplug_ports_max is named once, never raised."""

    def warnings(self):
        return [line for line in self.filter_log.output.splitlines()
                if 'Ignoring pci_hotplug_ports_max' in line]

    def setUp(self):
        super().setUp()
        self.capacity_log = self.useFixture(fixtures.FakeLogger(
            name=host_capacity.__name__, level=logging.WARNING))

    def capacity_warnings(self):
        return [line for line in self.capacity_log.output.splitlines()
                if 'Ignoring pci_hotplug_ports_max' in line]

    def test_bad_stat_is_named_once_per_value(self):
        hosts = [support.make_host(f'h{i}', max_ports='lots',
                                   hypervisor_type='ironic')
                 for i in range(50)]
        hosts.append(support.make_host('other', max_ports='-3',
                                       hypervisor_type='ironic'))
        request = support.make_request(ports(16))
        for _ in range(3):
            self.assertEqual([], self.run_filter(hosts, request))
        lines = self.capacity_warnings()
        self.assertEqual(2, len(lines), self.capacity_log.output)
        lots, negative = lines
        self.assertIn("pci_hotplug_ports_max='lots'", lots)
        self.assertIn('the stats of host h0 (node h0)', lots)
        self.assertIn('not a whole number', lots)
        self.assertIn(f'accepted: {spec.ACCEPTED}', lots)
        self.assertIn("pci_hotplug_ports_max='-3'", negative)
        self.assertIn('other', negative)
        for line in lines:
            self.assertIn('The host counts as publishing no capacity: '
                          '[pcie_sched] unknown_host_policy decides for it.',
                          line)

    def test_bad_aggregate_metadata_names_the_aggregate(self):
        shared = [support.make_aggregate(7, '1e3', name='rack-7'),
                  support.make_aggregate(8, '40', name='rack-8')]
        hosts = [support.make_host(f'h{i}', max_ports=255, aggregates=shared)
                 for i in range(20)]
        self.assertEqual(
            [host.host for host in hosts],
            self.run_filter(hosts, support.make_request(ports(16))))
        self.run_filter(hosts, support.make_request(ports(16)))
        lines = self.capacity_warnings()
        self.assertEqual(1, len(lines), self.capacity_log.output)
        self.assertIn("pci_hotplug_ports_max='1e3'", lines[0])
        self.assertIn("aggregate 'rack-7' (id 7)", lines[0])
        self.assertIn(f'accepted: {spec.ACCEPTED}', lines[0])
        self.assertIn('The aggregate sets no ceiling.', lines[0])

    def test_same_value_in_stats_and_aggregate_is_named_for_each(self):
        hosts = [support.make_host(
            'h', max_ports='x', aggregates=[support.make_aggregate(1, 'x')],
            hypervisor_type='ironic')]
        self.assertEqual([], self.run_filter(
            hosts, support.make_request(ports(16))))
        lines = self.capacity_warnings()
        self.assertEqual(2, len(lines), self.capacity_log.output)

    def test_unhashable_and_bytes_values_never_raise(self):
        # ComputeNode.stats would coerce these to strings; a HostState
        # changed behind nova's back must still not break scheduling.
        odd = support.make_host('odd', hypervisor_type='ironic')
        odd.stats = {spec.HOST_CAPACITY_KEY: ['64']}
        raw = support.make_host('raw', hypervisor_type='ironic')
        raw.stats = {spec.HOST_CAPACITY_KEY: b'64'}
        for _ in range(2):
            self.assertEqual([], self.run_filter(
                [odd, raw], support.make_request(ports(1))))
        lines = self.capacity_warnings()
        self.assertEqual(2, len(lines), self.capacity_log.output)
        self.assertIn("['64']", lines[0])
        self.assertIn("b'64'", lines[1])


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


class UnknownHostLogCase(FilterTestCase):
    """Captures the filter's log with the level of each line."""

    def setUp(self):
        super().setUp()
        # As FilterTestCase's, with the level of each line.
        self.filter_log = self.info_log = self.useFixture(
            fixtures.FakeLogger(name=pci_hotplug_ports.__name__,
                                level=logging.DEBUG,
                                format='%(levelname)s %(message)s'))

    def unknown_host_lines(self):
        return [line for line in self.info_log.output.splitlines()
                if 'publish no pci_hotplug_ports_max' in line]


class TestHostsWithoutTheDriver(UnknownHostLogCase):
    """A host that publishes no capacity cannot give ports.

    Only PcieSchedLibvirtDriver gives a guest its ports, and it publishes
    pci_hotplug_ports_max. A host running nova's own libvirt driver
    publishes nothing and boots the guest with nova's ports; the capacity
    model (which would answer for its QEMU and architecture) must not
    pass it.
    """

    scenarios = [
        ('x86_64_q35_uefi', {'arch': 'x86_64', 'machine': 'q35',
                             'firmware': 'uefi'}),
        ('aarch64_virt_uefi', {'arch': 'aarch64', 'machine': 'virt',
                               'firmware': 'uefi'}),
        ('x86_64_q35_bios', {'arch': 'x86_64', 'machine': 'q35',
                             'firmware': 'bios'}),
    ]

    def test_model_no_longer_decides(self):
        # The options the scheduler-side model read are deprecated and
        # ignored: set as the model's own inputs, they change nothing.
        self.flags(default_firmware=f'{self.arch}:{self.firmware}',
                   default_machine_types=f'{self.arch}:{self.machine}',
                   group='pcie_sched')
        modelled = capacity.estimate(topology.machine_profile(
            self.arch, self.machine, self.firmware, (7, 2))).max_ports
        self.assertGreater(modelled, RESERVE + 1)
        plain = support.make_host('plain', arch=self.arch,
                                  stats=RESOURCE_TRACKER_STATS)
        driver = support.make_host('driver', arch=self.arch,
                                   max_ports=RESERVE + 1)
        request = support.make_request(ports(1))
        self.assertEqual(['driver'], self.run_filter([plain, driver],
                                                     request))
        (line,) = self.unknown_host_lines()
        self.assertTrue(line.startswith('INFO '), line)
        self.assertIn('1 host(s) publish no pci_hotplug_ports_max', line)
        self.assertIn(f'instance {support.uuids.instance}', line)
        self.assertIn(': plain; rejected ([pcie_sched] '
                      'unknown_host_policy = reject)', line)

    def test_accept_passes_them_and_still_names_them(self):
        self.flags(unknown_host_policy='accept', group='pcie_sched')
        plain = support.make_host('plain', arch=self.arch)
        self.assertEqual(['plain'], self.run_filter(
            [plain], support.make_request(ports(1))))
        (line,) = self.unknown_host_lines()
        self.assertIn(': plain; passed unless an aggregate ceiling is '
                      'lower ([pcie_sched] unknown_host_policy = accept)',
                      line)


class TestUnknownHostLog(UnknownHostLogCase):
    """Hosts without a capacity are named once per request, bounded."""

    def test_one_line_per_request_with_a_bounded_list(self):
        hosts = ([support.make_host(f'plain{index:02d}')
                  for index in range(25)] +
                 [support.make_host('driver', max_ports=255),
                  support.make_host('bad', max_ports='lots')])
        request = support.make_request(ports(16))
        for _ in range(2):
            self.assertEqual(['driver'], self.run_filter(hosts, request))
        lines = self.unknown_host_lines()
        self.assertEqual(2, len(lines), self.info_log.output)
        for line in lines:
            self.assertIn('25 host(s) publish no pci_hotplug_ports_max',
                          line)
            named = ', '.join(f'plain{index:02d}' for index in range(10))
            self.assertIn(f': {named} and 15 more; rejected', line)
            self.assertNotIn('plain10', line)
        invalid = [line for line in self.info_log.output.splitlines()
                   if 'publish an invalid pci_hotplug_ports_max' in line]
        self.assertEqual(2, len(invalid), self.info_log.output)
        self.assertIn('1 host(s)', invalid[0])
        self.assertIn(': bad; rejected', invalid[0])
        # No line per host: the per-request line says it all.
        self.assertNotIn('plain03 fails', self.info_log.output)
        self.assertNotIn('DEBUG', self.info_log.output)

    def test_hosts_that_publish_are_not_named(self):
        hosts = [support.make_host('small', max_ports=8),
                 support.make_host('big', max_ports=255)]
        self.assertEqual(['big'], self.run_filter(
            hosts, support.make_request(ports(16))))
        self.assertEqual([], self.unknown_host_lines())

    def test_aggregate_value_alone_does_not_pass_a_host(self):
        rack = support.make_aggregate(3, '255', name='rack3')
        plain = support.make_host('plain', aggregates=[rack])
        self.assertEqual([], self.run_filter(
            [plain], support.make_request(ports(16))))
        self.assertEqual(1, len(self.unknown_host_lines()))
        # With "accept" the host passes, but never above a ceiling.
        self.flags(unknown_host_policy='accept', group='pcie_sched')
        self.assertEqual(['plain'], self.run_filter(
            [plain], support.make_request(ports(16))))
        fenced = support.make_host('fenced', aggregates=[
            support.make_aggregate(4, '12', name='fenced')])
        self.assertEqual([], self.run_filter(
            [fenced], support.make_request(ports(16))))
        self.assertIn("can boot 12 (from the ceiling in the metadata of "
                      "aggregate 'fenced' (id 4))", self.info_log.output)


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

    def test_ignored_options_set_in_nova_conf_are_named(self):
        from nova.scheduler import host_manager
        from oslo_config import fixture as config_fixture

        from pcie_sched import conf as pcie_conf
        from tests.unit import test_cmd_config
        warnings = self.useFixture(test_cmd_config.DeprecatedOptionWarnings())
        # As read from nova.conf, a value the old options would not even
        # have understood.
        self.useFixture(config_fixture.Config(pcie_conf.CONF)).\
            load_raw_values(group='pcie_sched',
                            default_machine_types='x86_64:pc',
                            default_firmware='x86_64=seabios,')
        self.flags(available_filters=[FILTER_PATH],
                   enabled_filters=['PciHotplugPortsFilter'],
                   group='filter_scheduler')
        host_manager.HostManager()
        for name in pcie_conf.pcie_sched.IGNORED_OPTS:
            (line,) = warnings.lines(name)
            self.assertIn('deprecated for removal', line)
            self.assertIn('The option is ignored', line)

    def test_matching_classes_resolves_the_dotted_path(self):
        classes = filters.HostFilterHandler().get_matching_classes(
            [FILTER_PATH])
        self.assertEqual([pci_hotplug_ports.PciHotplugPortsFilter], classes)
