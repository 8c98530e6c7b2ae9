"""Measured results after an upgrade: stale entries are said, listed, pruned.

nova-compute looks a measured maximum up by the fingerprint of the
current QEMU and firmware; after an upgrade of either, the old entry no
longer matches and the host silently falls back to the model. These
tests upgrade "QEMU" by writing the entry a probe of another QEMU would
have written (the same arch, machine and firmware, other inputs).
"""

import contextlib
import io
import json
import os

import fixtures
import testscenarios
import testtools

from pcie_sched.cmd import main
from pcie_sched import probe

load_tests = testscenarios.load_tests_apply_scenarios

OLD_QEMU = 'QEMU emulator version 7.1.0 (Debian 1:7.1+dfsg-2)'


def measured(arch='x86_64', machine='q35', firmware='bios', max_ports=200,
             changed=None):
    """The result find-max would cache, under changed inputs if given.

    ``changed``: input name (:data:`probe.INPUT_NAMES`) -> the value
    another QEMU or firmware would have given.
    """
    inputs = probe.fingerprint_inputs(arch, machine, firmware)
    inputs.update(changed or {})
    from pcie_sched import hostinfo
    return probe.FindMaxResult(
        max_ports=max_ports, boots=2, seconds=3.0, model_max_ports=232,
        limited_by='root-bus-slots', strategy='model',
        fingerprint=probe._digest(inputs),
        steps=((max_ports, 'booted', 1.0),), arch=arch, machine=machine,
        firmware=firmware,
        firmware_code=hostinfo.firmware(arch, firmware).code,
        inputs=tuple(inputs.items()), measured_at='2026-01-02T03:04:05+00:00')


def legacy(key, max_ports=150):
    """An entry written before identities were recorded."""
    return probe.FindMaxResult(
        max_ports=max_ports, boots=1, seconds=1.0, model_max_ports=232,
        limited_by='root-bus-slots', strategy='model', fingerprint=key,
        steps=((max_ports, 'booted', 1.0),))


class CacheTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.cache = self.useFixture(fixtures.TempDir()).path
        self.log = self.useFixture(fixtures.FakeLogger(name='pcie_sched'))
        self.addCleanup(probe._WARNED_STALE.clear)

    def write(self, name, text):
        path = os.path.join(self.cache, name)
        with open(path, 'w') as handle:
            handle.write(text)
        return path

    def warnings(self):
        return [line for line in self.log.output.splitlines()
                if 'is stale' in line]


class TestIdentityIsRecorded(CacheTestCase):

    def test_stored_result_says_what_it_measured(self):
        result = measured()
        probe._store(self.cache, result)
        with open(os.path.join(
                self.cache, f'find-max-{result.fingerprint}.json')) as f:
            document = json.load(f)
        self.assertEqual(('x86_64', 'q35', 'bios'),
                         (document['arch'], document['machine'],
                          document['firmware']))
        self.assertEqual(set(probe.INPUT_NAMES), set(document['inputs']))
        self.assertEqual(probe.fingerprint('x86_64', 'q35', 'bios'),
                         document['fingerprint'])
        loaded = probe.load_cached('x86_64', 'q35', 'bios', self.cache)
        self.assertEqual(dict(result.inputs), dict(loaded.inputs))
        self.assertEqual(result.measured_at, loaded.measured_at)

    def test_find_max_records_identity(self):
        def boot(arch, machine, firmware, count, **options):
            return probe.BootResult(probe.BOOTED, 1.0, count, arch, machine,
                                    firmware)
        self.useFixture(fixtures.MonkeyPatch('pcie_sched.probe.boot', boot))
        result = probe.find_max('x86_64', 'q35', 'bios', use_cache=False,
                                cache_dir=self.cache)
        self.assertEqual(('x86_64', 'q35', 'bios', '/usr/share/seabios/'
                          'bios-256k.bin'),
                         (result.arch, result.machine, result.firmware,
                          result.firmware_code))
        self.assertEqual(result.fingerprint,
                         probe._digest(dict(result.inputs)))
        self.assertTrue(result.measured_at.endswith('+00:00'))
        entry, = probe.cache_entries(self.cache)
        self.assertEqual((probe.CURRENT, ''),
                         (probe.entry_status(entry)[0], entry.problem))

    def test_fingerprint_is_unchanged_for_existing_caches(self):
        # The key entries were stored under before the inputs were kept.
        import hashlib
        inputs = probe.fingerprint_inputs('x86_64', 'q35', 'bios')
        parts = [f'recipe={probe.RECIPE_VERSION}', 'arch=x86_64',
                 'machine=q35', f'qemu={inputs["qemu"]}',
                 f'qemu-binary={inputs["qemu-binary"]}',
                 f'firmware={inputs["firmware"]}', 'vars=-']
        self.assertEqual(
            hashlib.sha256('\n'.join(parts).encode()).hexdigest(),
            probe.fingerprint('x86_64', 'q35', 'bios'))


class TestStaleMeasurements(CacheTestCase):

    def test_upgrade_leaves_a_stale_measurement(self):
        probe._store(self.cache, measured(changed={'qemu': OLD_QEMU}))
        stale = probe.stale_measurements('x86_64', 'q35', 'bios',
                                         self.cache)
        self.assertEqual(1, len(stale), stale)
        self.assertEqual(200, stale[0]['max_ports'])
        self.assertIn(f'QEMU {OLD_QEMU!r} -> ', stale[0]['changed'])
        self.assertEqual('2026-01-02T03:04:05+00:00',
                         stale[0]['measured_at'])

    def test_firmware_upgrade_is_named(self):
        probe._store(self.cache, measured(
            changed={'firmware': 'bios:' + '0' * 64}))
        stale, = probe.stale_measurements('x86_64', 'q35', 'bios',
                                          self.cache)
        self.assertIn('firmware code changed', stale['changed'])

    def test_a_current_entry_means_nothing_is_stale(self):
        probe._store(self.cache, measured(changed={'qemu': OLD_QEMU}))
        probe._store(self.cache, measured())
        self.assertEqual([], probe.stale_measurements(
            'x86_64', 'q35', 'bios', self.cache))

    def test_other_machines_and_firmware_do_not_count(self):
        probe._store(self.cache, measured(machine='pc-q35-7.2',
                                          changed={'qemu': OLD_QEMU}))
        probe._store(self.cache, measured(firmware='uefi',
                                          changed={'qemu': OLD_QEMU}))
        self.assertEqual([], probe.stale_measurements(
            'x86_64', 'q35', 'bios', self.cache))

    def test_same_firmware_file_named_by_path_counts(self):
        probe._store(self.cache, measured(changed={'qemu': OLD_QEMU}))
        self.assertEqual(1, len(probe.stale_measurements(
            'x86_64', 'q35', '/usr/share/seabios/bios-256k.bin',
            self.cache)))

    def test_nothing_measured_and_legacy_entries_are_not_stale(self):
        self.assertEqual([], probe.stale_measurements(
            'x86_64', 'q35', 'bios', self.cache))
        probe._store(self.cache, legacy('0' * 64))
        self.write('find-max-broken.json', '{')
        self.assertEqual([], probe.stale_measurements(
            'x86_64', 'q35', 'bios', self.cache))

    def test_unusable_cache_dir_is_no_answer_not_an_error(self):
        blocked = self.write('blocked', 'a file')
        self.assertEqual([], probe.stale_measurements(
            'x86_64', 'q35', 'bios', os.path.join(blocked, 'x')))
        self.assertEqual([], probe.stale_measurements(
            'x86_64', 'q35', os.path.join(self.cache, 'missing-CODE.fd'),
            self.cache))


class TestNovaComputeIsWarnedOnce(CacheTestCase):
    """load_cached_max is the driver's lookup on every resource update."""

    def test_warned_once_per_fingerprint_with_how_to_remeasure(self):
        probe._store(self.cache, measured(changed={'qemu': OLD_QEMU}))
        for _ in range(3):
            self.assertIsNone(probe.load_cached_max('x86_64', 'q35', 'bios',
                                                    self.cache))
        warning, = self.warnings()
        self.assertIn('x86_64 q35 bios is stale', warning)
        self.assertIn('200 ports', warning)
        self.assertIn(OLD_QEMU, warning)
        self.assertIn('capacity model is used instead', warning)
        self.assertIn('pcie-sched probe --find-max --arch x86_64 --machine '
                      'q35 --firmware bios --config-file', warning)
        self.assertIn(f'--cache-dir {self.cache}', warning)
        self.assertIn('pcie-sched cache', warning)

    def test_each_distinct_fingerprint_is_warned(self):
        probe._store(self.cache, measured(changed={'qemu': OLD_QEMU}))
        probe._store(self.cache, measured(machine='pc-q35-7.2',
                                          changed={'qemu': OLD_QEMU}))
        probe.load_cached_max('x86_64', 'q35', 'bios', self.cache)
        probe.load_cached_max('x86_64', 'pc-q35-7.2', 'bios', self.cache)
        probe.load_cached_max('x86_64', 'q35', 'bios', self.cache)
        self.assertEqual(2, len(self.warnings()), self.warnings())

    def test_no_warning_when_measured_or_never_measured(self):
        probe.load_cached_max('x86_64', 'q35', 'bios', self.cache)
        probe._store(self.cache, measured())
        probe._store(self.cache, measured(changed={'qemu': OLD_QEMU}))
        self.assertEqual(200, probe.load_cached_max('x86_64', 'q35', 'bios',
                                                    self.cache))
        self.assertEqual([], self.warnings())

    def test_caller_may_say_it_itself(self):
        probe._store(self.cache, measured(changed={'qemu': OLD_QEMU}))
        probe.load_cached_max('x86_64', 'q35', 'bios', self.cache,
                              warn_stale=False)
        self.assertEqual([], self.warnings())


class TestEntryStatus(CacheTestCase):

    scenarios = [
        ('current', dict(make='current', status=probe.CURRENT,
                         reason='matches')),
        ('stale', dict(make='stale', status=probe.STALE, reason='QEMU')),
        ('legacy', dict(make='legacy', status=probe.UNKNOWN,
                        reason='written before')),
        ('not_json', dict(make='not_json', status=probe.CORRUPT,
                          reason='not valid JSON')),
        ('not_a_result', dict(make='not_a_result', status=probe.CORRUPT,
                              reason='not a find-max result')),
        ('renamed', dict(make='renamed', status=probe.CORRUPT,
                         reason='not the one in its file name')),
        ('edited_inputs', dict(make='edited_inputs', status=probe.CORRUPT,
                               reason='do not hash to its fingerprint')),
        ('symlink', dict(make='symlink', status=probe.CORRUPT,
                         reason='not a regular file')),
    ]

    def make_entry(self):
        if self.make == 'current':
            probe._store(self.cache, measured())
        elif self.make == 'stale':
            probe._store(self.cache, measured(changed={'qemu': OLD_QEMU}))
        elif self.make == 'legacy':
            probe._store(self.cache, legacy('a' * 64))
        elif self.make == 'not_json':
            self.write('find-max-x.json', '{')
        elif self.make == 'not_a_result':
            self.write('find-max-x.json', '[]')
        elif self.make == 'renamed':
            result = measured()
            probe._store(self.cache, result)
            os.rename(os.path.join(self.cache,
                                   f'find-max-{result.fingerprint}.json'),
                      os.path.join(self.cache, 'find-max-other.json'))
        elif self.make == 'edited_inputs':
            result = measured()
            probe._store(self.cache, result)
            path = os.path.join(self.cache,
                                f'find-max-{result.fingerprint}.json')
            with open(path) as handle:
                document = json.load(handle)
            document['inputs']['qemu'] = OLD_QEMU
            with open(path, 'w') as handle:
                json.dump(document, handle)
        elif self.make == 'symlink':
            target = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                  'elsewhere.json')
            with open(target, 'w') as handle:
                handle.write('{}')
            os.symlink(target, os.path.join(self.cache, 'find-max-l.json'))

    def test_status(self):
        self.make_entry()
        # Not entries: staged files, payloads, anything else.
        self.write('.find-max-staged', '{')
        self.write('payload-x86_64-bios-0.img', '')
        self.write('notes.txt', '')
        entry, = probe.cache_entries(self.cache)
        status, reason = probe.entry_status(entry)
        self.assertEqual(self.status, status, reason)
        self.assertIn(self.reason, reason)


class TestCacheCommand(CacheTestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(main.load_config, [])
        self.current = measured()
        self.stale = measured(changed={'qemu': OLD_QEMU})
        self.legacy = legacy('b' * 64)
        for result in (self.current, self.stale, self.legacy):
            probe._store(self.cache, result)
        self.corrupt = self.write('find-max-broken.json', '{')
        self.others = [self.write(name, 'keep') for name in (
            '.find-max-staged', 'payload-x86_64-bios-0.img', 'notes.txt',
            'find-max-x.json.bak')]
        self.outside = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'find-max-out.json')
        with open(self.outside, 'w') as handle:
            handle.write('{}')
        self.link = os.path.join(self.cache, 'find-max-link.json')
        os.symlink(self.outside, self.link)
        os.mkdir(os.path.join(self.cache, 'find-max-dir.json'))

    def path(self, result):
        return os.path.join(self.cache, f'find-max-{result.fingerprint}.json')

    def run_cache(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main.main(['cache'] + list(argv) +
                               ['--cache-dir', self.cache])
        return status, out.getvalue(), err.getvalue()

    def states(self, document):
        return {item['path']: item['status']
                for item in document['entries']}

    def test_list_in_json(self):
        status, out, err = self.run_cache('list', '--format', 'json')
        self.assertEqual(0, status, err)
        document = json.loads(out)
        self.assertEqual(self.cache, document['cache_dir'])
        self.assertEqual(
            {self.path(self.current): probe.CURRENT,
             self.path(self.stale): probe.STALE,
             self.path(self.legacy): probe.UNKNOWN,
             self.corrupt: probe.CORRUPT, self.link: probe.CORRUPT,
             os.path.join(self.cache, 'find-max-dir.json'): probe.CORRUPT},
            self.states(document))
        self.assertEqual({'current': 1, 'stale': 1, 'unknown': 1,
                          'corrupt': 3}, document['counts'])
        stale, = [item for item in document['entries']
                  if item['status'] == probe.STALE]
        self.assertEqual(
            {'file', 'path', 'fingerprint', 'status', 'reason', 'max_ports',
             'arch', 'machine', 'firmware', 'measured_at'}, set(stale))
        self.assertEqual((200, 'x86_64', 'q35', 'bios'),
                         (stale['max_ports'], stale['arch'],
                          stale['machine'], stale['firmware']))

    def test_list_text(self):
        status, out, _ = self.run_cache('list')
        self.assertEqual(0, status)
        self.assertIn('6 entries (1 current, 1 stale, 3 corrupt, 1 unknown)',
                      out)
        self.assertIn(f'QEMU {OLD_QEMU!r}', out)

    def test_verify_says_no_unless_every_entry_is_current(self):
        self.assertEqual(1, self.run_cache('verify')[0])
        self.assertEqual(0, self.run_cache('prune', '--all')[0])
        os.rmdir(os.path.join(self.cache, 'find-max-dir.json'))
        self.assertEqual(0, self.run_cache('verify')[0])
        probe._store(self.cache, self.current)
        self.assertEqual(0, self.run_cache('verify')[0])
        probe._store(self.cache, self.legacy)
        self.assertEqual(1, self.run_cache('verify')[0])

    def test_prune_options_only_with_prune(self):
        for option in ('--all', '--dry-run'):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = self.assertRaises(SystemExit, main.main, [
                    'cache', 'list', option]).code
            self.assertEqual(2, code)
            self.assertIn('only with prune', err.getvalue())

    def test_dry_run_removes_nothing(self):
        before = sorted(os.listdir(self.cache))
        status, out, _ = self.run_cache('prune', '--dry-run', '--all')
        self.assertEqual(0, status)
        self.assertIn('would remove 5', out)
        self.assertEqual(before, sorted(os.listdir(self.cache)))

    def test_prune_all_removes_every_entry_and_nothing_else(self):
        status, out, err = self.run_cache('prune', '--all', '--format',
                                          'json')
        self.assertEqual(0, status, err)
        self.assertEqual(
            sorted(['find-max-dir.json'] +
                   [os.path.basename(path) for path in self.others]),
            sorted(os.listdir(self.cache)))
        self.assertTrue(os.path.exists(self.outside))
        skipped, = json.loads(out)['skipped']
        self.assertIn('find-max-dir.json', skipped['path'])

    def test_unreadable_cache_dir_is_an_environment_error(self):
        blocked = self.write('blocked', 'a file')
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main.main(['cache', 'list', '--cache-dir', blocked])
        self.assertEqual(2, status)
        self.assertIn(f'cache_dir={blocked!r}', err.getvalue())
        self.assertIn('accepted: a readable directory', err.getvalue())

    def test_prune_removes_stale_and_corrupt_only(self):
        status, out, err = self.run_cache('prune', '--format', 'json')
        self.assertEqual(0, status, err)
        document = json.loads(out)
        self.assertEqual(
            sorted([self.path(self.stale), self.corrupt, self.link]),
            sorted(document['removed']))
        self.assertFalse(document['dry_run'])
        self.assertEqual([], document['failed'])
        # A directory of that name is not the probe's: named, kept.
        self.assertEqual([os.path.join(self.cache, 'find-max-dir.json')],
                         [item['path'] for item in document['skipped']])
        left = sorted(os.listdir(self.cache))
        self.assertEqual(sorted(
            [os.path.basename(self.path(self.current)),
             os.path.basename(self.path(self.legacy)), 'find-max-dir.json'] +
            [os.path.basename(path) for path in self.others]), left)
        # The link went, never what it pointed at.
        self.assertTrue(os.path.exists(self.outside))
        self.assertEqual(
            200, probe.load_cached_max('x86_64', 'q35', 'bios', self.cache))


class TestCheckSaysIt(CacheTestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(main.load_config, [])

        def boot(arch, machine, firmware, count, **options):
            return probe.BootResult(probe.BOOTED, 1.0, count, arch, machine,
                                    firmware)
        self.useFixture(fixtures.MonkeyPatch('pcie_sched.probe.boot', boot))

    def check(self, *extra):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main.main(['check', '--firmware', 'bios', '--ports',
                                '2', '--cache-dir', self.cache] +
                               list(extra))
        self.assertEqual(0, status, err.getvalue())
        return out.getvalue()

    def test_stale_measurement_in_json_and_text(self):
        probe._store(self.cache, measured(changed={'qemu': OLD_QEMU}))
        report = json.loads(self.check('--format', 'json'))
        self.assertIsNone(report['measured_max'])
        stale, = report['stale_measurements']
        self.assertEqual(200, stale['max_ports'])
        self.assertIn(OLD_QEMU, stale['changed'])
        text = self.check()
        self.assertIn('warning: Measured PCIe root port capacity for x86_64 '
                      'q35 bios is stale', text)
        self.assertIn('pcie-sched probe --find-max', text)

    def test_current_measurement_is_shown(self):
        probe._store(self.cache, measured(changed={'qemu': OLD_QEMU}))
        probe._store(self.cache, measured(max_ports=210))
        report = json.loads(self.check('--format', 'json'))
        self.assertEqual(210, report['measured_max'])
        self.assertEqual([], report['stale_measurements'])
        self.assertIn('measured maximum (cached): 210 root ports',
                      self.check())
