"""The benchmarks run at a tiny size and write well-formed results.

No timing is asserted here: speed is measured by ``tox -e bench``.
"""

import json
import os
import subprocess  # nosec B404
import tempfile

import fixtures
import testtools

from benchmarks import boot_time
from benchmarks import filter_cost
from benchmarks import filter_work
from benchmarks import find_max
from benchmarks import port_memory
from pcie_sched import probe


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
        self.assertEqual({'stats', 'aggregate', 'unpublished'}, sources)
        for row in document['filters']:
            self.assertGreater(row['us_per_host'], 0)
            # Every host that publishes has 200 ports (under a ceiling of
            # 200 on the aggregate set): all pass. A host that publishes
            # nothing runs no pcie-sched driver: none passes a spec.
            rejected = (row['capacity_source'] == 'unpublished' and
                        row['filter'] == 'PciHotplugPortsFilter, spec')
            self.assertEqual(0 if rejected else 20, row['passed'], row)
        self.assertEqual([None, 'AllHostsFilter', filter_cost.ONE_READ,
                          'PciHotplugPortsFilter'],
                         [c['added'] for c in document['chain']])
        self.assertEqual([False, False, False, True],
                         [c['with_pci_hotplug_ports']
                          for c in document['chain']])
        self.assertTrue(os.path.exists(os.path.join(self.out, 'filter.rst')))

    def test_filter_work(self):
        # Real valgrind (bindep.txt): the child counts, the parent writes.
        self.assertEqual(0, filter_work.main(
            ['--hosts', '20', '40', '--chain-hosts', '20', '--sources',
             'stats', '--out', self.out, '--no-plot']))
        with open(os.path.join(self.out, 'filter_work.json')) as handle:
            document = json.load(handle)
        self.assertEqual(
            {(size, name) for size in (20, 40) for name in filter_work.CASES},
            {(row['hosts'], row['filter']) for row in document['filters']})
        for row in document['filters'] + document['chain']:
            self.assertGreater(row['Ir'], 0, row)
            self.assertEqual(row['hosts'], row['passed'], row)
        self.assertEqual([None, 'AllHostsFilter', filter_cost.ONE_READ,
                          'PciHotplugPortsFilter'],
                         [row['added'] for row in document['chain']])
        # Counting is deterministic: nova's per-host path costs far more
        # instructions than nothing, whatever else runs on the machine.
        without, floor = document['chain'][:2]
        self.assertGreater(floor['Ir'], without['Ir'])
        self.assertTrue(document['verdicts'])
        self.assertTrue(os.path.exists(
            os.path.join(self.out, 'filter_work.rst')))

    def _boot_time(self, *argv):
        self.assertEqual(0, boot_time.main([*argv, '--out', self.out]))
        with open(os.path.join(self.out, 'boot_time.json')) as handle:
            document = json.load(handle)
        names = ['boot_time.rst'] + (
            [] if '--no-plot' in argv else ['boot_time.png'])
        for name in names:
            self.assertTrue(os.path.exists(os.path.join(self.out, name)),
                            name)
        for key in ('cpu', 'cores', 'qemu', 'packages', 'date'):
            self.assertIn(key, document['machine'])
        return document

    def test_boot_time(self):
        document = self._boot_time('--ports', '0', '2', '--machines',
                                   'q35-bios', '--repeat', '1')
        boots = document['boots']
        self.assertEqual([(0, 'none'), (2, 'nova'), (2, 'libvirt'),
                          (2, 'pcie-sched')],
                         [(row['ports'], row['layout']) for row in boots])
        self.assertEqual(['booted'] * 4, [row['outcome'] for row in boots])
        self.assertIsNone(boots[0]['ms_per_port'])
        for row in boots[1:]:
            self.assertEqual(round((row['seconds'] - boots[0]['seconds']) *
                                   1000 / 2, 1), row['ms_per_port'])
            # query-pci saw both ports and both got a memory window.
            self.assertEqual(2, row['ports_seen'], row)
            self.assertEqual(2, row['memory_windows'], row)
            self.assertGreater(row['memory_window_min_bytes'], 0, row)
        # io-reserve=0 is the one difference the plan makes here.
        self.assertEqual(0, boots[3]['io_windows'])

    def test_boot_time_max_from_model(self):
        document = self._boot_time('--ports', 'max', '--machines',
                                   'q35-bios', '--layouts', 'nova',
                                   'pcie-sched', '--repeat', '1', '--no-plot')
        expected = probe.model_capacity('x86_64', 'q35', 'bios').max_ports
        # nova's layout stops at its own cap; the plan goes to the model's.
        self.assertEqual([(boot_time.NOVA_MAX_PORTS, 'nova'),
                          (expected, 'pcie-sched')],
                         [(row['ports'], row['layout'])
                          for row in document['boots']])
        self.assertEqual(['booted', 'booted'],
                         [row['outcome'] for row in document['boots']])

    def test_boot_time_aarch64_virt(self):
        document = self._boot_time('--ports', '1', '--machines',
                                   'virt-uefi', '--layouts', 'pcie-sched',
                                   '--repeat', '1', '--no-plot')
        [row] = document['boots']
        self.assertEqual(('virt + AAVMF', 'booted', 1),
                         (row['label'], row['outcome'], row['ports_seen']))

    def test_boot_time_variants(self):
        document = self._boot_time(
            '--ports', '0', '--machines', 'q35-bios', '--repeat', '1',
            '--variants', '--variant-machine', 'q35-bios',
            '--variant-ports', '2', '--packing-ports', '2')
        self.assertEqual(
            [name for name, _, _ in boot_time.VARIANTS +
             boot_time.PACKING_VARIANTS],
            [row['variant'] for row in document['variants']])
        for row in document['variants']:
            self.assertEqual(('booted', 2), (row['outcome'],
                                             row['ports_seen']), row)

    def test_port_memory(self):
        started, workdirs = [], []
        popen, mkdtemp = subprocess.Popen, tempfile.mkdtemp

        def record_popen(command, *args, **kwargs):
            process = popen(command, *args, **kwargs)
            if '-no-shutdown' in command:  # QEMU, not dpkg-query
                started.append(process)
            return process

        def record_mkdtemp(*args, **kwargs):
            path = mkdtemp(*args, **kwargs)
            if kwargs.get('prefix') == probe.TEMP_PREFIX:
                workdirs.append(path)
            return path

        self.useFixture(fixtures.MonkeyPatch(
            'benchmarks.port_memory.subprocess.Popen', record_popen))
        self.useFixture(fixtures.MonkeyPatch(
            'benchmarks.port_memory.tempfile.mkdtemp', record_mkdtemp))
        self.assertEqual(0, port_memory.main(
            ['--ports', '0', '1', '--machines', 'q35-bios', '--repeat', '1',
             '--out', self.out]))
        with open(os.path.join(self.out, 'port_memory.json')) as handle:
            document = json.load(handle)
        for name in ('port_memory.rst', 'port_memory.png'):
            self.assertTrue(os.path.exists(os.path.join(self.out, name)),
                            name)
        for key in ('cpu', 'cores', 'qemu', 'packages', 'date',
                    'load_average_at_start'):
            self.assertIn(key, document['machine'])
        rows = document['rows']
        self.assertEqual([(0, 1), (1, 1)],
                         [(row['ports'], row['booted']) for row in rows])
        for row in rows:
            [sample] = row['samples']
            for phase in ('at_marker', 'settled'):
                memory = sample[phase]
                self.assertGreater(memory['rss'], 0, row)
                self.assertLessEqual(memory['pss'], memory['rss'], row)
                self.assertGreater(memory['guest_ram_rss'], 0, row)
                self.assertEqual(memory['rss'] - memory['guest_ram_rss'] -
                                 memory['tcg_buffer_rss'],
                                 memory['qemu_own_rss'])
            self.assertGreaterEqual(sample['vmhwm'],
                                    sample['settled']['rss'])
        self.assertIsNone(rows[0]['kib_per_port'])
        self.assertEqual(
            rows[1]['settled']['rss']['median'] -
            rows[0]['settled']['rss']['median'],
            rows[1]['kib_per_port']['settled']['rss'])
        # Every QEMU started is gone and so is its scratch directory.
        self.assertEqual(2, len(started))
        for process in started:
            self.assertIsNotNone(process.poll())
        self.assertEqual(2, len(workdirs))
        for path in workdirs:
            self.assertFalse(os.path.exists(path), path)

    def _find_max(self, *argv):
        self.assertEqual(0, find_max.main([*argv, '--out', self.out]))
        with open(os.path.join(self.out, 'find_max.json')) as handle:
            document = json.load(handle)
        self.assertTrue(os.path.exists(os.path.join(self.out,
                                                    'find_max.rst')))
        return document

    def test_find_max_model(self):
        document = self._find_max('--targets', 'q35-bios', '--strategies',
                                  'model')
        [row] = document['searches']
        self.assertEqual(('q35-bios', 'model', False),
                         (row['target'], row['strategy'], row['capped']))
        self.assertEqual(row['boots'], len(row['steps']))
        booted = [step['ports'] for step in row['steps']
                  if step['outcome'] == 'booted']
        self.assertEqual(max(booted), row['max_ports'])
        self.assertTrue(os.path.exists(os.path.join(self.out,
                                                    'find_max.png')))

    def test_find_max_budget_caps_bisection(self):
        # A budget spent before the first boot: the search stops there
        # and says so instead of running on.
        document = self._find_max('--targets', 'q35-bios', '--strategies',
                                  'bisect', '--budget', '0.000001',
                                  '--no-plot')
        [row] = document['searches']
        self.assertEqual((True, 0, [], None),
                         (row['capped'], row['boots'], row['steps'],
                          row['max_ports']))
        with open(os.path.join(self.out, 'find_max.rst')) as handle:
            self.assertIn('none booted (capped)', handle.read())
