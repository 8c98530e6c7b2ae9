"""Faults during real probe boots: signals, a crashing QEMU, find-max.

Needs qemu-system-x86, ovmf and seabios (bindep.txt). Each test gives its
probes a private temp root and cache, then checks that no QEMU process,
temp directory or half-written cache file is left behind.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import fixtures
import testscenarios
import testtools

from pcie_sched import probe
from tests import ctrl_c
from tests.system import leftovers

load_tests = testscenarios.load_tests_apply_scenarios


class FaultTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(600, gentle=True))
        self.useFixture(ctrl_c.CtrlCRaises())
        self.cache = self.useFixture(fixtures.TempDir()).path
        self.temp_root = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MonkeyPatch('tempfile.tempdir',
                                             self.temp_root))

    def wait_for_qemu(self, deadline=120):
        end = time.monotonic() + deadline
        while True:
            found = leftovers.probe_processes(self.temp_root)
            if found:
                return found
            self.assertLess(time.monotonic(), end, 'QEMU never started')
            time.sleep(0.1)

    def assertNothingLeft(self):
        self.assertEqual([], leftovers.probe_processes(self.temp_root))
        self.assertEqual([], leftovers.probe_temp_dirs(self.temp_root))
        # Staged cache files start with a dot; none may survive.
        self.assertEqual([], [name for name in os.listdir(self.cache)
                              if name.startswith('.')
                              or name.startswith('pcie-sched-payload-')])


class TestSignalsDuringCli(FaultTestCase):
    """SIGINT, SIGTERM and SIGHUP unwind find-max like Ctrl-C, mid-boot.

    A single ``--ports`` boot is covered in test_probe_boots.TestCleanup;
    here the signal lands inside find-max, which must neither leave QEMU
    nor cache a result it did not finish measuring.
    """

    scenarios = [
        ('sigint_find_max', dict(signum=signal.SIGINT,
                                 command=['--find-max', '--no-cache'])),
        ('sigterm_find_max', dict(signum=signal.SIGTERM,
                                  command=['--find-max', '--no-cache'])),
        ('sighup_find_max', dict(signum=signal.SIGHUP,
                                 command=['--find-max', '--no-cache'])),
    ]

    def test_signal_leaves_nothing(self):
        process = subprocess.Popen(
            [sys.executable, '-m', 'pcie_sched.cmd.main', 'probe',
             '--arch', 'x86_64', '--machine', 'q35', '--firmware', 'uefi',
             '--cache-dir', self.cache, '--format', 'json'] + self.command,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, TMPDIR=self.temp_root))
        try:
            self.wait_for_qemu()
            process.send_signal(self.signum)
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.assertEqual(130, process.returncode, err)
        self.assertIn(b'interrupted', err)
        self.assertEqual(b'', out)
        self.assertNothingLeft()
        self.assertEqual([], [name for name in os.listdir(self.cache)
                              if name.startswith('find-max-')])


class TestSignalInsideCriticalSections(FaultTestCase):
    """Ctrl-C where a handler running at once would leave QEMU behind.

    Each test sends SIGINT to this process from inside the section (real
    Popen, real cleanup) and waits, so Python's KeyboardInterrupt handler
    would run right there; the probe must defer it, clean up, then raise.
    """

    def _interrupt_self(self):
        os.kill(os.getpid(), signal.SIGINT)
        # Python runs the handler at the next bytecode; give it plenty.
        for _ in range(1000):
            pass
        time.sleep(0.2)

    def test_ctrl_c_inside_popen_after_the_fork(self):
        real_popen = subprocess.Popen

        def popen_then_interrupted(command, *args, **kwargs):
            started = real_popen(command, *args, **kwargs)
            if 'qemu-system' in os.path.basename(command[0]):
                # QEMU is forked and running; Popen has not returned yet.
                self._interrupt_self()
                calls.append(started.pid)
            return started
        calls = []
        self.useFixture(fixtures.MonkeyPatch(
            'pcie_sched.probe.subprocess.Popen', popen_then_interrupted))
        self.assertRaises(KeyboardInterrupt, probe.boot, 'x86_64', 'q35',
                          'uefi', 2, cache_dir=self.cache)
        self.assertEqual(1, len(calls))
        self.assertNothingLeft()

    def test_second_ctrl_c_while_reaping_qemu(self):
        real_stop = probe._stop
        calls = []

        def interrupted_stop(process):
            calls.append(process.pid)
            self._interrupt_self()
            real_stop(process)
        self.useFixture(fixtures.MonkeyPatch('pcie_sched.probe._stop',
                                             interrupted_stop))
        self.assertRaises(KeyboardInterrupt, probe.boot, 'x86_64', 'q35',
                          'uefi', 2, cache_dir=self.cache)
        self.assertEqual(1, len(calls))
        self.assertNothingLeft()


class TestQemuDies(FaultTestCase):

    def test_killed_qemu_is_a_qemu_error(self):
        results = []
        worker = threading.Thread(target=lambda: results.append(probe.boot(
            'x86_64', 'q35', 'uefi', 64, cache_dir=self.cache)))
        worker.start()
        try:
            for pid in self.wait_for_qemu():
                os.kill(pid, signal.SIGKILL)
        finally:
            worker.join(300)
        self.assertFalse(worker.is_alive())
        self.assertEqual(probe.QEMU_ERROR, results[0].outcome, results[0])
        self.assertIn('status -9', results[0].detail)
        self.assertNothingLeft()


class TestPathsWithCommas(FaultTestCase):
    """QEMU splits option values at commas; the probe's paths may hold one.

    Firmware, variable store (TMPDIR) and payload (cache) paths all pass
    through ``-drive file=...``; an unescaped comma would end the value
    and feed the rest to QEMU as options.
    """

    def test_firmware_tmpdir_and_cache_with_commas_boot(self):
        odd = os.path.join(self.temp_root, 'a,b=on')
        os.mkdir(odd)
        self.useFixture(fixtures.MonkeyPatch('tempfile.tempdir', odd))
        firmware = os.path.join(odd, 'OVMF_CODE_4M.fd')
        for name in ('OVMF_CODE_4M.fd', 'OVMF_VARS_4M.fd'):
            with open(os.path.join('/usr/share/OVMF', name), 'rb') as src:
                with open(os.path.join(odd, name), 'wb') as dst:
                    dst.write(src.read())
        result = probe.boot('x86_64', 'q35', firmware, 2,
                            cache_dir=os.path.join(odd, 'cache,x'))
        self.assertEqual(probe.BOOTED, result.outcome, result)
        self.assertEqual([], leftovers.probe_processes(odd))
        self.assertEqual([], leftovers.probe_temp_dirs(odd))


_SECURE_BOOT_CODE = '/usr/share/OVMF/OVMF_CODE_4M.ms.fd'


class TestSecureBootFirmware(FaultTestCase):
    """Debian's OVMF with Microsoft's keys refuses the unsigned payload.

    That says nothing about ports: one boot reports it as such, and
    find-max (full matrix only, it boots the model's 232 ports first)
    refuses to measure rather than cache a maximum of 0.
    """

    scenarios = [('one_boot', dict(find_max=False))] + (
        [('find_max', dict(find_max=True))]
        if os.environ.get('PCIE_SCHED_FULL_MATRIX') == '1' else [])

    def test_refusal_is_named(self):
        self.assertTrue(os.path.exists(_SECURE_BOOT_CODE),
                        f'{_SECURE_BOOT_CODE} missing: install the Debian '
                        f'package ovmf')
        if self.find_max:
            error = self.assertRaises(
                probe.ProbeError, probe.find_max, 'x86_64', 'q35',
                _SECURE_BOOT_CODE, cache_dir=self.cache)
            self.assertIn(probe.SECURE_BOOT_REFUSED, str(error))
            self.assertIn(f'firmware={_SECURE_BOOT_CODE!r}', str(error))
            self.assertEqual([], [name for name in os.listdir(self.cache)
                                  if name.startswith('find-max-')])
        else:
            result = probe.boot('x86_64', 'q35', _SECURE_BOOT_CODE, 2,
                                cache_dir=self.cache)
            self.assertEqual(probe.FIRMWARE_SHELL, result.outcome, result)
            self.assertTrue(
                result.detail.startswith(probe.SECURE_BOOT_REFUSED), result)
            self.assertIn('from PciRoot(0x0)/Pci(', result.detail)
        self.assertNothingLeft()


_FIND_MAX = ['probe', '--arch', 'x86_64', '--machine', 'q35', '--firmware',
             'bios', '--find-max', '--format', 'json']


class TestCacheFaults(FaultTestCase):
    """find-max against a cache that is shared or cannot be written.

    SeaBIOS boots the model's 232 ports in seconds and 233 do not fit
    the plan, so each find-max is one real boot.
    """

    def find_max(self, cache, *extra):
        return subprocess.Popen(
            [sys.executable, '-m', 'pcie_sched.cmd.main'] + _FIND_MAX +
            ['--cache-dir', cache] + list(extra),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, TMPDIR=self.temp_root))

    def test_two_find_max_runs_share_one_cache(self):
        runs = [self.find_max(self.cache, '--no-cache') for _ in range(2)]
        documents = []
        for run in runs:
            out, err = run.communicate(timeout=500)
            self.assertEqual(0, run.returncode, err)
            documents.append(json.loads(out))
        for document in documents:
            self.assertEqual(232, document['max_ports'], document)
            self.assertEqual('', document['cache_error'])
            self.assertFalse(document['cached'])
        self.assertEqual(documents[0]['fingerprint'],
                         documents[1]['fingerprint'])
        cached = [name for name in os.listdir(self.cache)
                  if name.startswith('find-max-')]
        self.assertEqual(
            [f'find-max-{documents[0]["fingerprint"]}.json'], cached)
        with open(os.path.join(self.cache, cached[0])) as handle:
            stored = json.load(handle)
        self.assertEqual(232, stored['max_ports'])
        # The stored document is one of the two runs' whole answers.
        self.assertIn(stored['seconds'],
                      [document['seconds'] for document in documents])
        self.assertNothingLeft()
        # And the next run reads it instead of booting.
        again = self.find_max(self.cache)
        out, err = again.communicate(timeout=120)
        self.assertEqual(0, again.returncode, err)
        self.assertTrue(json.loads(out)['cached'])

    def assertMeasuredButNotStored(self, reason):
        """find-max answers from its boot; the cache keeps what it had."""
        before = sorted(os.listdir(self.cache))
        run = self.find_max(self.cache, '--no-cache')
        out, err = run.communicate(timeout=500)
        self.assertEqual(0, run.returncode, err)
        document = json.loads(out)
        self.assertEqual(232, document['max_ports'])
        self.assertEqual(1, document['boots'])
        self.assertIn(f'cache_dir={self.cache!r}', document['cache_error'])
        self.assertIn(reason, document['cache_error'])
        self.assertEqual(before, sorted(os.listdir(self.cache)))
        self.assertNothingLeft()

    def test_read_only_cache_keeps_the_measured_result(self):
        from pcie_sched import payload
        from tests import readonly_dir
        # The boot disk is already cached; only the result cannot be.
        payload.disk_image('x86_64', 'bios', self.cache)
        readonly = self.useFixture(readonly_dir.ReadOnlyDir(self.cache))
        self.assertMeasuredButNotStored(readonly.reason)

    def test_full_cache_keeps_the_measured_result(self):
        from pcie_sched import payload
        from tests import full_dir
        full = self.useFixture(full_dir.FullDir(self.cache))
        payload.disk_image('x86_64', 'bios', self.cache)
        full.fill()
        self.assertMeasuredButNotStored(full.reason)
