"""Capacity sources read from strings that programs and people wrote."""

import json
import logging

import fixtures
import testscenarios
import testtools

from pcie_sched import host_capacity
from pcie_sched import spec

load_tests = testscenarios.load_tests_apply_scenarios

KEY = spec.HOST_CAPACITY_KEY


class TestParseCapacity(testtools.TestCase):

    scenarios = [
        ('string', {'value': '64', 'expected': 64}),
        ('int', {'value': 64, 'expected': 64}),
        ('padded', {'value': ' 64 ', 'expected': 64}),
        ('zero', {'value': '0', 'expected': 0}),
        ('none', {'value': None, 'expected': None}),
        ('negative', {'value': '-3', 'expected': None}),
        ('garbage', {'value': 'lots', 'expected': None}),
        ('too_big', {'value': '100000', 'expected': None}),
        ('float', {'value': '12.5', 'expected': None}),
    ]

    def test_parse(self):
        self.assertEqual(self.expected,
                         host_capacity.parse_capacity(self.value))


class TestSources(testtools.TestCase):

    def test_stats(self):
        self.assertEqual(40, host_capacity.from_stats({KEY: '40'}))
        self.assertIsNone(host_capacity.from_stats({}))
        self.assertIsNone(host_capacity.from_stats(None))
        self.assertIsNone(host_capacity.from_stats({KEY: 'x'}))

    def test_aggregates_take_the_smallest_valid_value(self):
        self.assertEqual(16, host_capacity.from_aggregates(
            [{KEY: '64'}, {KEY: '16'}, {KEY: 'junk'}, {}, None,
             {'other': '1'}]))
        self.assertIsNone(host_capacity.from_aggregates([{KEY: '-1'}]))
        self.assertIsNone(host_capacity.from_aggregates([]))

    def test_arch_from_cpu_info(self):
        self.assertEqual('x86_64', host_capacity.arch_from_cpu_info(
            json.dumps({'arch': 'x86_64', 'model': 'Haswell'})))
        for broken in (None, '', '{', '[]', '"x"', 42,
                       json.dumps({'arch': 7})):
            self.assertIsNone(host_capacity.arch_from_cpu_info(broken))

    def test_one_aggregate(self):
        class Aggregate:
            id = 3
            name = 'rack'
            metadata = {KEY: '24'}
        self.assertEqual(24, host_capacity.from_aggregate(Aggregate()))
        Aggregate.metadata = {}
        self.assertIsNone(host_capacity.from_aggregate(Aggregate()))
        self.assertIsNone(host_capacity.from_aggregate(object()))

    def test_cold_plugged_reserve(self):
        self.assertEqual(3, host_capacity.cold_plugged_reserve(3, 0, 0, 0))
        self.assertEqual(7, host_capacity.cold_plugged_reserve(3, 1, 0, 0,
                                                               3))
        self.assertEqual(3, host_capacity.cold_plugged_reserve(3, 0, 0, 0,
                                                               -2))
        self.assertEqual(6, host_capacity.cold_plugged_reserve(3, 1, 10, 512))
        self.assertEqual(5, host_capacity.cold_plugged_reserve(3, 2, 0, 0))
        self.assertEqual(3, host_capacity.cold_plugged_reserve(3, -1, 0, 0))


class TestMalformedValueWarnings(testtools.TestCase):

    def setUp(self):
        super().setUp()
        host_capacity.reset_caches()
        self.addCleanup(host_capacity.reset_caches)
        self.log = self.useFixture(fixtures.FakeLogger(
            name=host_capacity.__name__, level=logging.WARNING))

    def test_warned_once_per_value_and_source(self):
        for _ in range(100):
            self.assertIsNone(host_capacity.parse_capacity_cached('abc'))
            self.assertIsNone(host_capacity.parse_capacity_cached(
                'abc', host_capacity.SOURCE_AGGREGATE))
            self.assertIsNone(host_capacity.parse_capacity_cached('300'))
            self.assertEqual(12, host_capacity.parse_capacity_cached('12'))
            self.assertIsNone(host_capacity.parse_capacity_cached(None))
        lines = self.log.output.splitlines()
        self.assertEqual(3, len(lines), self.log.output)
        self.assertIn("pci_hotplug_ports_max='abc' in host stats", lines[0])
        self.assertIn("pci_hotplug_ports_max='abc' in aggregate metadata",
                      lines[1])
        self.assertIn('greater than the maximum of 255', lines[2])
        for line in lines:
            self.assertIn(f'accepted: {spec.ACCEPTED}', line)
        # What ignoring the value means: no capacity, never a fallback.
        for line in lines[0], lines[2]:
            self.assertIn('The host counts as publishing no capacity',
                          line)
            self.assertNotIn('model', line)
        self.assertIn('The aggregate sets no ceiling.', lines[1])

    def test_values_equal_as_keys_are_parsed_apart(self):
        # 16.0 == 16 and True == 1 as dictionary keys; only ints and
        # digit strings are capacities, whatever was parsed first.
        for valid, invalid in ((16, 16.0), (1, True), ('16', b'16')):
            self.assertEqual(int(valid),
                             host_capacity.parse_capacity_cached(valid))
            self.assertIsNone(host_capacity.parse_capacity_cached(invalid))
            self.assertEqual(int(valid),
                             host_capacity.parse_capacity_cached(valid))
        self.assertEqual(3, len(self.log.output.splitlines()),
                         self.log.output)

    def test_origin_that_cannot_describe_itself(self):
        class Broken:
            @property
            def name(self):
                raise RuntimeError('not loaded')
        self.assertIsNone(host_capacity.parse_capacity_cached(
            '-', host_capacity.SOURCE_AGGREGATE, Broken()))
        self.assertIn('aggregate of Broken', self.log.output)


class TestNoSchedulerSideModel(testtools.TestCase):
    """The scheduler does not estimate a capacity for a silent host."""

    def test_model_cache_is_gone(self):
        self.assertFalse(hasattr(host_capacity, 'ModelCache'))

    def test_model_options_are_deprecated_with_a_reason(self):
        from pcie_sched.conf import pcie_sched as group
        opts = {opt.name: opt for opt in group.ALL_OPTS}
        for name in ('default_machine_types', 'default_firmware'):
            self.assertTrue(opts[name].deprecated_for_removal, name)
            self.assertIn('unknown_host_policy',
                          opts[name].deprecated_reason)
            self.assertTrue(opts[name].help.startswith('No effect; any '
                                                       'value is accepted.'))

    def test_unknown_host_policy_help_says_what_accept_means(self):
        from pcie_sched.conf import pcie_sched as group
        (opt,) = [opt for opt in group.ALL_OPTS
                  if opt.name == 'unknown_host_policy']
        choices = dict(opt.type.choices)
        self.assertIn('runs no pcie-sched driver', opt.help)
        self.assertIn("nova's pc", opt.help)
        self.assertIn('cannot give ports', opt.help)
        self.assertIn('ACTIVE', choices['accept'])
        self.assertIn('ERROR', choices['accept'])


class TestGuestVectorLimitHelp(testtools.TestCase):

    def test_help_quotes_the_model(self):
        from pcie_sched import capacity
        from pcie_sched.conf import pcie_sched as group
        from pcie_sched import topology
        one_vcpu = capacity.estimate(topology.machine_profile(
            'x86_64', 'q35', vcpus=1, guest_devices=0)).budgets[
                capacity.GUEST_VECTORS].max_ports
        self.assertEqual(one_vcpu, host_capacity.guest_vector_limit(1, 0))
        (opt,) = [opt for opt in group.ALL_OPTS
                  if opt.name == 'enforce_guest_vector_limit']
        self.assertIn(f'at most {one_vcpu} root ports', opt.help)
