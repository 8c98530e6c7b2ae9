"""Under KVM, a guest that prints nothing points at KVM, not the firmware.

On this project's CI host /dev/kvm exists but KVM guests never run:
OVMF under ``-accel kvm`` sat silent for 290 s (QEMU at 0 s of CPU
time) where TCG boots it in 8 s, and every such boot used to be
reported as a firmware hang.
"""

import contextlib
import io
import os
import sys

import fixtures
import testscenarios
import testtools

from pcie_sched.cmd import main
from pcie_sched import probe

load_tests = testscenarios.load_tests_apply_scenarios

_SILENT = 'import time; time.sleep(60)'
_CHATTY_THEN_SILENT = ('import time; open(SERIAL, "w").write("BdsDxe: '
                       'loading Boot0001\\n"); time.sleep(60)')


class StandInQemu(fixtures.Fixture):
    """probe.boot runs ``script`` instead of QEMU, as accelerator ``accel``.

    Everything else is the real boot(): the watcher, the cleanup, the
    verdict and its detail.
    """

    def __init__(self, accel, script):
        self.accel = accel
        self.script = script

    def _setUp(self):
        def command(arch, machine, fw, plan, disk, workdir, accel, *rest):
            serial = os.path.join(workdir, 'serial.log')
            return [sys.executable, '-c',
                    f'SERIAL = {serial!r}\n{self.script}']
        self.useFixture(fixtures.MonkeyPatch(
            'pcie_sched.probe.qemu_command', command))
        self.useFixture(fixtures.MonkeyPatch(
            'pcie_sched.probe._resolve_accel', lambda accel: self.accel))


class TestBootDetail(testtools.TestCase):

    scenarios = [
        ('kvm_silent_hang', dict(accel='kvm', script=_SILENT, timeout=30,
                                 outcome=probe.HANG, suspect=True)),
        ('kvm_silent_timeout', dict(accel='kvm', script=_SILENT, timeout=1,
                                    outcome=probe.TIMEOUT, suspect=True)),
        ('kvm_firmware_spoke', dict(accel='kvm', script=_CHATTY_THEN_SILENT,
                                    timeout=30, outcome=probe.HANG,
                                    suspect=False)),
        ('tcg_silent', dict(accel='tcg', script=_SILENT, timeout=30,
                            outcome=probe.HANG, suspect=False)),
    ]

    def test_detail_names_the_accelerator_only_when_likely(self):
        cache = self.useFixture(fixtures.TempDir()).path
        self.useFixture(StandInQemu(self.accel, self.script))
        result = probe.boot('x86_64', 'q35', 'bios', 2, cache_dir=cache,
                            accel='auto', timeout=self.timeout,
                            stall_timeout=1.5)
        self.assertEqual(self.outcome, result.outcome, result)
        self.assertEqual(self.accel, result.accel)
        self.assertEqual(self.suspect, probe.accelerator_suspect(result))
        self.assertEqual(self.suspect, probe.KVM_SILENT in result.detail,
                         result.detail)
        if self.suspect:
            self.assertIn('--accel tcg', result.detail)
            self.assertIn('accelerator', probe.undecided(result))
            self.assertEqual(0, result.console_bytes)


def _kvm(outcome, count, console_bytes=0):
    return probe.BootResult(outcome, 120.0, count, 'x86_64', 'q35', 'uefi',
                            detail='console silent for 120s',
                            console_bytes=console_bytes,
                            silent_seconds=120.0, accel='kvm')


class TestFindMaxUnderKvm(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.cache = self.useFixture(fixtures.TempDir()).path
        self.counts = []

    def fake(self, outcome_of):
        def boot(arch, machine, firmware, count, **options):
            self.counts.append(count)
            return outcome_of(count)
        self.useFixture(fixtures.MonkeyPatch('pcie_sched.probe.boot', boot))

    def entries(self):
        return [name for name in os.listdir(self.cache)
                if name.startswith('find-max-')]

    def test_kvm_that_runs_nothing_is_named_after_one_small_boot(self):
        self.fake(lambda count: _kvm(probe.HANG, count))
        error = self.assertRaises(probe.ProbeError, probe.find_max,
                                  'x86_64', 'q35', 'uefi', use_cache=False,
                                  cache_dir=self.cache, accel='kvm')
        self.assertIn('accel=kvm: ports=232 and ports=1', str(error))
        self.assertIn('--accel tcg', str(error))
        self.assertIn('nothing cached', str(error))
        # Not a bisection of hangs: the model's count twice, then one.
        self.assertEqual([232, 232, 1], self.counts)
        self.assertEqual([], self.entries())

    def test_working_kvm_with_a_silent_firmware_limit_is_measured(self):
        self.fake(lambda count: _kvm(probe.BOOTED, count) if count <= 100
                  else _kvm(probe.HANG, count))
        result = probe.find_max('x86_64', 'q35', 'uefi', use_cache=False,
                                cache_dir=self.cache, accel='kvm')
        self.assertEqual(100, result.max_ports)
        self.assertEqual([232, 232, 1], self.counts[:3])
        self.assertEqual(1, self.counts.count(1))
        self.assertEqual(1, len(self.entries()))

    def test_firmware_that_spoke_under_kvm_is_not_blamed_on_kvm(self):
        self.fake(lambda count: _kvm(probe.BOOTED, count) if count <= 100
                  else _kvm(probe.HANG, count, console_bytes=200))
        result = probe.find_max('x86_64', 'q35', 'uefi', use_cache=False,
                                cache_dir=self.cache, accel='kvm')
        self.assertEqual(100, result.max_ports)
        self.assertEqual([232, 232, 116], self.counts[:3])

    def test_tcg_hangs_are_not_blamed_on_an_accelerator(self):
        self.fake(lambda count: probe.BootResult(
            probe.HANG, 120.0, count, 'x86_64', 'q35', 'uefi',
            silent_seconds=120.0, accel='tcg'))
        error = self.assertRaises(probe.ProbeError, probe.find_max,
                                  'x86_64', 'q35', 'uefi', use_cache=False,
                                  cache_dir=self.cache)
        self.assertIn('no port count booted', str(error))
        self.assertNotIn('accel', str(error))
        self.assertEqual([232, 232, 116, 116], self.counts[:4])


class TestCliUnderKvm(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(main.load_config, [])
        self.cache = self.useFixture(fixtures.TempDir()).path

        def boot(arch, machine, firmware, count, **options):
            result = _kvm(probe.HANG, count)
            return probe.BootResult(**dict(
                result.to_dict(),
                detail=f'{result.detail}; {probe.KVM_SILENT}'))
        self.useFixture(fixtures.MonkeyPatch('pcie_sched.probe.boot', boot))

    def run_main(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main.main(
                list(argv) + ['--cache-dir', self.cache, '--accel', 'kvm'])
        return status, out.getvalue(), err.getvalue()

    def test_single_boot_is_no_answer_naming_the_accelerator(self):
        status, out, err = self.run_main('probe', '--ports', '8')
        self.assertEqual(2, status, err)
        self.assertIn('8 root ports: hang', out)
        self.assertIn('the accelerator, not the port count', out)
        self.assertIn('--accel tcg', err)

    def test_check_is_inconclusive_naming_the_accelerator(self):
        status, out, err = self.run_main('check', '--ports', '8')
        self.assertEqual(2, status, err)
        self.assertIn('INCONCLUSIVE', out)
        self.assertIn('--accel tcg', out)
        self.assertIn('accelerator', err)
