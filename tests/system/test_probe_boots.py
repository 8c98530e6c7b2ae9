"""Real boots: the capacity model's maximum boots and one more does not.

Needs qemu-system-x86, qemu-system-arm, ovmf, qemu-efi-aarch64, seabios,
grub-efi-amd64-bin, mtools and dosfstools (bindep.txt); a missing one makes
the test fail with the package to install. The default run boots a few
configurations; ``tox -e system`` (PCIE_SCHED_FULL_MATRIX=1) adds the rest.
"""

import os
import subprocess
import tempfile

import fixtures
import testscenarios
import testtools

from pcie_sched import hostinfo
from pcie_sched import probe
from pcie_sched import topology
from tests.system import leftovers

load_tests = testscenarios.load_tests_apply_scenarios
FULL_MATRIX = os.environ.get('PCIE_SCHED_FULL_MATRIX') == '1'

_DEFAULT = [
    ('q35_ovmf', dict(arch='x86_64', machine='q35', firmware='uefi')),
    ('virt_2_11_aavmf', dict(arch='aarch64', machine='virt-2.11',
                             firmware='uefi')),
]
_FULL = [
    ('q35_seabios', dict(arch='x86_64', machine='q35', firmware='bios')),
    ('pc_q35_7_2_ovmf', dict(arch='x86_64', machine='pc-q35-7.2',
                             firmware='uefi')),
    ('virt_aavmf', dict(arch='aarch64', machine='virt', firmware='uefi')),
    ('virt_highmem_off_aavmf', dict(arch='aarch64',
                                    machine='virt,highmem=off',
                                    firmware='uefi')),
]


class ProbeTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(900, gentle=True))
        self.cache = self.useFixture(fixtures.TempDir()).path
        # A private temp root, so leftovers of parallel tests do not count.
        self.temp_root = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MonkeyPatch('tempfile.tempdir',
                                             self.temp_root))

    def assertNothingLeft(self):
        self.assertEqual([], leftovers.probe_processes(self.temp_root))
        self.assertEqual([], leftovers.probe_temp_dirs(self.temp_root))


class TestModelAgreesWithBoots(ProbeTestCase):

    scenarios = _DEFAULT + (_FULL if FULL_MATRIX else [])

    def test_max_boots_and_one_more_does_not(self):
        model = probe.model_capacity(self.arch, self.machine, self.firmware)
        at_max = probe.boot(self.arch, self.machine, self.firmware,
                            model.max_ports, cache_dir=self.cache)
        self.assertEqual(probe.BOOTED, at_max.outcome,
                         f'{model.max_ports} ports: {at_max}')
        try:
            beyond = probe.boot(self.arch, self.machine, self.firmware,
                                model.max_ports + 1, cache_dir=self.cache)
        except probe.ProbeError as exc:
            # One more port does not fit the root bus: the planner says so
            # before QEMU would; the slot budget itself is checked against
            # QEMU in TestRootBusSlots.
            self.assertEqual('root-bus-slots', model.limited_by)
            self.assertIn(f'at most {model.max_ports}', str(exc))
        else:
            self.assertNotEqual(probe.BOOTED, beyond.outcome,
                                f'{model.max_ports + 1} ports: {beyond}')
            self.assertIn(beyond.outcome, (probe.FIRMWARE_SHELL, probe.HANG,
                                           probe.QEMU_ERROR))
        self.assertNothingLeft()


class TestRootBusSlots(ProbeTestCase):
    """QEMU itself refuses a port on a device number the machine owns."""

    scenarios = [
        ('q35_ich9_lpc', dict(arch='x86_64', machine='q35', slot=0x1f,
                              owner='ICH9-LPC')),
        ('q35_mch', dict(arch='x86_64', machine='q35', slot=0x00,
                         owner='mch')),
    ]

    def test_reserved_slot_is_refused(self):
        plan = topology.plan(0, ['boot-disk'], self.arch, self.machine)
        command = [hostinfo.qemu_binary(self.arch), '-machine', self.machine,
                   '-accel', 'tcg', '-nodefaults', '-display', 'none',
                   '-S', '-monitor', 'none']
        command += topology.to_qemu_args(plan)
        command += ['-device', f'pcie-root-port,id=extra,bus=pcie.0,'
                               f'chassis=250,addr=0x{self.slot:x}.0']
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
        self.assertNotEqual(0, result.returncode)
        self.assertIn('not available', result.stderr)
        self.assertIn(self.owner, result.stderr)


class TestFindMax(ProbeTestCase):

    def test_model_guided_confirms_in_two_boots_and_caches(self):
        progress = []
        result = probe.find_max('aarch64', 'virt-2.11', 'uefi',
                                cache_dir=self.cache,
                                progress=progress.append)
        self.assertEqual(result.model_max_ports, result.max_ports)
        self.assertEqual(2, result.boots)
        self.assertEqual([(15, probe.BOOTED), (16, probe.FIRMWARE_SHELL)],
                         [(ports, outcome)
                          for ports, outcome, _ in result.steps])
        self.assertTrue(any('16 ports: firmware-shell' in line
                            for line in progress), progress)
        again = probe.find_max('aarch64', 'virt-2.11', 'uefi',
                               cache_dir=self.cache)
        self.assertTrue(again.cached)
        self.assertEqual(result.max_ports, again.max_ports)
        self.assertEqual(15, probe.load_cached_max('aarch64', 'virt-2.11',
                                                   'uefi', self.cache))
        self.assertNothingLeft()


class TestCleanup(ProbeTestCase):

    def test_timeout_kills_qemu_and_removes_temp_files(self):
        result = probe.boot('x86_64', 'q35', 'uefi', 8, timeout=1.0,
                            cache_dir=self.cache)
        self.assertEqual(probe.TIMEOUT, result.outcome)
        self.assertLess(result.seconds, 10)
        self.assertNothingLeft()

    def test_sigint_during_cli_probe_leaves_nothing(self):
        import signal
        import sys
        import time
        process = subprocess.Popen(
            [sys.executable, '-m', 'pcie_sched.cmd.main', 'probe', '--ports',
             '64', '--cache-dir', self.cache, '--format', 'json'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(os.environ, TMPDIR=self.temp_root))
        deadline = time.monotonic() + 60
        while not leftovers.probe_processes(self.temp_root):
            self.assertLess(time.monotonic(), deadline, 'QEMU never started')
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        self.assertEqual(130, process.returncode, err)
        self.assertIn(b'interrupted', err)
        self.assertNothingLeft()

    def test_sigterm_during_cli_probe_leaves_nothing(self):
        import signal
        import sys
        import time
        process = subprocess.Popen(
            [sys.executable, '-m', 'pcie_sched.cmd.main', 'probe', '--ports',
             '64', '--cache-dir', self.cache],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(os.environ, TMPDIR=self.temp_root))
        deadline = time.monotonic() + 60
        while not leftovers.probe_processes(self.temp_root):
            self.assertLess(time.monotonic(), deadline, 'QEMU never started')
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        self.assertEqual(130, process.returncode, err)
        self.assertNothingLeft()

    def test_missing_qemu_names_the_package(self):
        self.useFixture(fixtures.EnvironmentVariable('PATH', self.temp_root))
        error = self.assertRaises(probe.ProbeError, probe.boot, 'x86_64',
                                  'q35', 'uefi', 1, cache_dir=self.cache)
        self.assertIn('qemu-system-x86_64 not found', str(error))
        self.assertIn('qemu-system-x86', str(error))
        self.assertNothingLeft()

    def test_qemu_refusal_is_qemu_error_with_its_message(self):
        result = probe.boot('x86_64', 'q35,no-such-option=on', 'uefi', 2,
                            cache_dir=self.cache)
        self.assertEqual(probe.QEMU_ERROR, result.outcome)
        self.assertIn('no-such-option', result.detail)
        self.assertNothingLeft()

    def test_silent_firmware_is_a_hang(self):
        # A "firmware" of zeros runs but never prints anything.
        silent = os.path.join(self.cache, 'silent.bin')
        with open(silent, 'wb') as handle:
            handle.write(bytes(256 * 1024))
        result = probe.boot('x86_64', 'q35', silent, 1, stall_timeout=3,
                            timeout=60, cache_dir=self.cache)
        self.assertEqual(probe.HANG, result.outcome)
        self.assertNothingLeft()

    def test_two_probes_at_once(self):
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(
                lambda ports: probe.boot('x86_64', 'q35', 'bios', ports,
                                         cache_dir=self.cache), (4, 12)))
        self.assertEqual([probe.BOOTED, probe.BOOTED],
                         [result.outcome for result in results])
        self.assertNothingLeft()

    def test_missing_firmware_names_the_package(self):
        error = self.assertRaises(
            probe.ProbeError, probe.boot, 'x86_64', 'q35',
            os.path.join(tempfile.gettempdir(), 'no-such-OVMF_CODE.fd'), 1,
            cache_dir=self.cache)
        self.assertIn('not a readable file', str(error))
        self.assertNothingLeft()
