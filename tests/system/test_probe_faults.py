"""Faults during real probe boots: signals, a crashing QEMU, find-max.

Needs qemu-system-x86, ovmf and seabios (bindep.txt). Each test gives its
probes a private temp root and cache, then checks that no QEMU process,
temp directory or half-written cache file is left behind.
"""

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
from tests.system import leftovers

load_tests = testscenarios.load_tests_apply_scenarios


class FaultTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(600, gentle=True))
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
    """SIGINT and SIGTERM unwind the CLI like Ctrl-C, mid-boot."""

    scenarios = [
        ('sigint_probe', dict(signum=signal.SIGINT,
                              command=['--ports', '64'])),
        ('sigterm_probe', dict(signum=signal.SIGTERM,
                               command=['--ports', '64'])),
        ('sigterm_find_max', dict(signum=signal.SIGTERM,
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
