"""The benchmarks run at a tiny size and write well-formed results.

No timing is asserted here: speed is measured by ``tox -e bench``.
"""

import json
import os

import fixtures
import testtools

from benchmarks import boot_time
from benchmarks import filter_cost


class TestBenchmarksRun(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.out = self.useFixture(fixtures.TempDir()).path

    def test_filter_cost(self):
        self.assertEqual(0, filter_cost.main(
            ['--hosts', '20', '--chain-hosts', '20', '--repeat', '1',
             '--out', self.out, '--no-plot']))
        with open(os.path.join(self.out, 'filter.json')) as handle:
            document = json.load(handle)
        filters = {row['filter'] for row in document['filters']}
        self.assertIn('AllHostsFilter', filters)
        self.assertIn('PciHotplugPortsFilter, spec', filters)
        sources = {row['capacity_source'] for row in document['filters']}
        self.assertEqual({'stats', 'aggregate', 'model'}, sources)
        for row in document['filters']:
            self.assertGreater(row['us_per_host'], 0)
            # Every host publishes or models 200+ ports: all pass.
            self.assertEqual(20, row['passed'], row)
        self.assertEqual([False, True], [c['with_pci_hotplug_ports']
                                         for c in document['chain']])
        self.assertTrue(os.path.exists(os.path.join(self.out, 'filter.rst')))

    def test_boot_time(self):
        self.assertEqual(0, boot_time.main(
            ['--ports', '2', '--firmware', 'bios', '--out', self.out]))
        with open(os.path.join(self.out, 'boot_time.json')) as handle:
            document = json.load(handle)
        self.assertEqual(['pcie-sched', 'nova (1 per slot)'],
                         [row['layout'] for row in document['boots']])
        self.assertEqual(['booted', 'booted'],
                         [row['outcome'] for row in document['boots']])
