"""A boot cut short by a timeout decides nothing, and is never cached.

Seen before this was fixed: ``pcie-sched probe --find-max --timeout 5``
answered ``max_ports 29`` for q35 + OVMF (the model and real boots say
232) and cached it where nova-compute reads, because every count above
29 timed out and was counted as "does not boot".
"""

import contextlib
import io
import json
import os

import fixtures
import testscenarios
import testtools

from pcie_sched.cmd import main
from pcie_sched.conf import probe as probe_conf
from pcie_sched import probe

load_tests = testscenarios.load_tests_apply_scenarios


def _result(outcome, ports=232, silent=3.0, detail='', seconds=5.0,
            console_bytes=0):
    return probe.BootResult(outcome, seconds, ports, 'x86_64', 'q35', 'uefi',
                            detail=detail, console_bytes=console_bytes,
                            silent_seconds=silent)


class TestUndecided(testtools.TestCase):

    scenarios = [
        ('timeout_cut_short', dict(
            result=_result(probe.TIMEOUT, detail='no verdict within 5s'),
            says=['ports boot', 'timed out after 5s', 'no verdict within 5s',
                  '--timeout', '[pcie_sched_probe] boot_timeout',
                  'at least 60s', '232 root ports'])),
        ('timeout_while_console_changes', dict(
            result=_result(probe.TIMEOUT, silent=0.2, seconds=300,
                           console_bytes=4096,
                           detail='no verdict within 300s'),
            says=['timed out after 300s', 'boot_timeout'])),
        ('short_stall', dict(
            result=_result(probe.HANG, silent=10.0, seconds=10.0,
                           detail='console silent for 10s while QEMU kept '
                                  'running'),
            says=['cut short after 10s (console silent for 10s',
                  '[pcie_sched_probe] stall_timeout', 'at least 60s'])),
        ('long_stall_is_the_firmware', dict(
            result=_result(probe.HANG, silent=120.0, seconds=121.0),
            says=None)),
        ('long_silence_before_timeout_is_the_firmware', dict(
            result=_result(probe.TIMEOUT, silent=60.0, seconds=90.0),
            says=None)),
        ('booted', dict(result=_result(probe.BOOTED), says=None)),
        ('firmware_shell', dict(result=_result(probe.FIRMWARE_SHELL),
                                says=None)),
        ('qemu_error', dict(result=_result(probe.QEMU_ERROR), says=None)),
    ]

    def test_reason(self):
        why = probe.undecided(self.result)
        if self.says is None:
            self.assertIsNone(why)
            return
        for text in self.says:
            self.assertIn(text, why)


class TestMinimaAgree(testtools.TestCase):

    def test_options_cannot_go_below_what_decides(self):
        self.assertEqual(probe.CONCLUSIVE_SILENCE,
                         probe_conf.MIN_BOOT_TIMEOUT)
        self.assertEqual(probe.CONCLUSIVE_SILENCE,
                         probe_conf.MIN_STALL_TIMEOUT)
        self.assertGreaterEqual(probe.DEFAULT_TIMEOUT,
                                probe_conf.MIN_BOOT_TIMEOUT)


class FakeBoots(fixtures.Fixture):
    """probe.boot answering from ``outcome_of(count)``, boots recorded."""

    def __init__(self, outcome_of):
        self.outcome_of = outcome_of
        self.counts = []

    def _setUp(self):
        def boot(arch, machine, firmware, count, **options):
            self.counts.append(count)
            self.options = options
            return self.outcome_of(count)
        self.useFixture(fixtures.MonkeyPatch('pcie_sched.probe.boot', boot))


class TestFindMaxNeverCachesATimeout(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.cache = self.useFixture(fixtures.TempDir()).path

    def entries(self):
        return [name for name in os.listdir(self.cache)
                if name.startswith('find-max-')]

    def test_timeouts_above_29_are_an_error_not_a_maximum(self):
        # The reported case: 29 boots within 5 s, 30 and more time out.
        boots = self.useFixture(FakeBoots(
            lambda count: _result(probe.BOOTED, count) if count <= 29 else
            _result(probe.TIMEOUT, count, detail='no verdict within 5s')))
        progress = []
        error = self.assertRaises(
            probe.ProbeError, probe.find_max, 'x86_64', 'q35', 'uefi',
            use_cache=False, cache_dir=self.cache, progress=progress.append,
            timeout=5)
        message = str(error)
        for text in ('ports=232', 'timed out after 5s', '--timeout',
                     'boot_timeout', 'at least 60s', 'nothing cached'):
            self.assertIn(text, message)
        # The model's count, once more as for any hang, then stop.
        self.assertEqual([232, 232], boots.counts)
        self.assertEqual([], self.entries())
        self.assertTrue(any('no verdict within 5s' in line
                            for line in progress), progress)

    def test_timeout_in_the_bisection_is_an_error_too(self):
        # The model's count stops in the shell; a lower one times out.
        boots = self.useFixture(FakeBoots(
            lambda count: _result(probe.FIRMWARE_SHELL, count)
            if count > 100 else _result(probe.BOOTED, count)
            if count <= 50 else _result(probe.TIMEOUT, count)))
        error = self.assertRaises(
            probe.ProbeError, probe.find_max, 'x86_64', 'q35', 'bios',
            use_cache=False, cache_dir=self.cache)
        self.assertIn('ports=58', str(error))
        self.assertEqual([232, 116, 58, 58], boots.counts)
        self.assertEqual([], self.entries())

    def test_short_stall_is_an_error_naming_stall_timeout(self):
        self.useFixture(FakeBoots(lambda count: _result(
            probe.HANG, count, silent=5.0,
            detail='console silent for 5s while QEMU kept running')))
        error = self.assertRaises(
            probe.ProbeError, probe.find_max, 'x86_64', 'q35', 'bios',
            use_cache=False, cache_dir=self.cache, stall_timeout=5)
        self.assertIn('stall_timeout', str(error))
        self.assertEqual([], self.entries())

    def test_long_stall_still_counts_as_not_booting(self):
        # A firmware silent for two minutes, twice, has stopped.
        boots = self.useFixture(FakeBoots(
            lambda count: _result(probe.BOOTED, count) if count <= 100 else
            _result(probe.HANG, count, silent=120.0, seconds=120.0)))
        result = probe.find_max('x86_64', 'q35', 'bios', use_cache=False,
                                cache_dir=self.cache)
        self.assertEqual(100, result.max_ports)
        self.assertEqual([232, 232], boots.counts[:2])
        self.assertEqual([f'find-max-{result.fingerprint}.json'],
                         self.entries())


class TestCli(testtools.TestCase):
    """Timeouts a real boot cannot meet are usage errors, before a boot."""

    scenarios = [
        (f'{command}_{name}', dict(command=command, value=value, says=says))
        for command in ('probe', 'check')
        for name, value, says in (
            ('negative', '-5', "'-5' is less than the minimum of 60"),
            ('zero', '0', "'0' is less than the minimum of 60"),
            ('just_below', '59.9', "'59.9' is less than the minimum"),
            ('not_a_number', 'soon', "'soon' is not a number"),
            ('nan', 'nan', "'nan' is not a finite number"),
            ('infinite', 'inf', "'inf' is not a finite number"),
        )
    ]

    def setUp(self):
        super().setUp()
        self.addCleanup(main.load_config, [])
        self.useFixture(FakeBoots(lambda count: self.fail('booted')))

    def test_refused_with_option_value_and_range(self):
        argv = [self.command, '--timeout', self.value]
        if self.command == 'probe':
            argv.append('--find-max')
        err = io.StringIO()
        with contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            status = self.assertRaises(SystemExit, main.main, argv).code
        self.assertEqual(2, status)
        self.assertIn('argument --timeout', err.getvalue())
        self.assertIn(self.says, err.getvalue())
        self.assertIn('accepted: a number of seconds, 60 or more',
                      err.getvalue())


class TestCliOutcomes(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(main.load_config, [])
        self.cache = self.useFixture(fixtures.TempDir()).path

    def run_main(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            status = main.main(list(argv) + ['--cache-dir', self.cache])
        return status, out.getvalue(), err.getvalue()

    def test_timeout_given_is_passed_on(self):
        boots = self.useFixture(FakeBoots(
            lambda count: _result(probe.BOOTED, count)))
        status, _, _ = self.run_main('probe', '--ports', '2', '--timeout',
                                     '60')
        self.assertEqual(0, status)
        self.assertEqual(60.0, boots.options['timeout'])

    def test_find_max_timeout_exits_2_and_caches_nothing(self):
        self.useFixture(FakeBoots(lambda count: _result(
            probe.TIMEOUT, count, detail='no verdict within 60s',
            seconds=60.0)))
        status, out, err = self.run_main(
            'probe', '--find-max', '--firmware', 'bios', '--timeout', '60',
            '--format', 'json')
        self.assertEqual(2, status)
        self.assertEqual('', out)
        self.assertIn('ports=232: the boot timed out after 60s', err)
        self.assertIn('--timeout', err)
        self.assertEqual([], [name for name in os.listdir(self.cache)
                              if name.startswith('find-max-')])

    def test_single_boot_timeout_is_not_a_no(self):
        self.useFixture(FakeBoots(lambda count: _result(
            probe.TIMEOUT, count, detail='no verdict within 60s',
            seconds=60.0)))
        status, out, err = self.run_main(
            'probe', '--ports', '100', '--format', 'json')
        self.assertEqual(2, status, err)
        self.assertEqual(probe.TIMEOUT, json.loads(out)['outcome'])
        self.assertIn('ports=100: the boot timed out', err)
        self.assertEqual([], [name for name in os.listdir(self.cache)
                              if name.startswith('find-max-')])

    def test_single_boot_firmware_stop_is_still_a_no(self):
        self.useFixture(FakeBoots(lambda count: _result(
            probe.FIRMWARE_SHELL, count)))
        status, _, err = self.run_main('probe', '--ports', '100')
        self.assertEqual(1, status, err)

    def test_check_says_inconclusive(self):
        self.useFixture(FakeBoots(lambda count: _result(
            probe.TIMEOUT, count, detail='no verdict within 60s',
            seconds=60.0)))
        status, out, err = self.run_main(
            'check', '--ports', '16', '--format', 'json')
        self.assertEqual(2, status, err)
        report = json.loads(out)
        self.assertEqual('inconclusive', report['answer'])
        self.assertIn('boot_timeout', report['inconclusive'])
        self.assertIn('timed out', err)


class TestConfigMinimum(testtools.TestCase):

    scenarios = [
        ('boot_timeout', dict(option='boot_timeout')),
        ('stall_timeout', dict(option='stall_timeout')),
    ]

    def test_config_below_the_minimum_is_refused(self):
        self.addCleanup(main.load_config, [])
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'nova.conf')
        with open(path, 'w') as handle:
            handle.write(f'[pcie_sched_probe]\n{self.option} = 5\n')
        err = io.StringIO()
        with contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            status = main.main(['probe', '--find-max', '--config-file',
                                path])
        self.assertEqual(2, status)
        self.assertIn(self.option, err.getvalue())
        self.assertIn('60', err.getvalue())
