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
from tests import ctrl_c
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
            # One more port does not fit the plan's root bus (q35 keeps
            # slot 1 for video): the planner says so before QEMU is
            # asked. TestRootBusLimit asks QEMU about the root bus.
            self.assertEqual('root-bus-slots', model.limited_by)
            self.assertIn(f'at most {model.max_ports}', str(exc))
        else:
            self.assertNotEqual(probe.BOOTED, beyond.outcome,
                                f'{model.max_ports + 1} ports: {beyond}')
            self.assertIn(beyond.outcome, (probe.FIRMWARE_SHELL, probe.HANG,
                                           probe.QEMU_ERROR))
        self.assertNothingLeft()


def _extra_port(qemu_id, chassis, address):
    slot, function = (int(part, 16) for part in address.split('.'))
    return (f'pcie-root-port,id={qemu_id},bus=pcie.0,chassis={chassis},'
            f'port=0x{slot * 8 + function:x},addr=0x{slot:x}.{function},'
            f'io-reserve=0')


class TestRootBusLimit(ProbeTestCase):
    """The root bus maximum, asked of QEMU rather than of the planner.

    Without the video slot (``root_bus_devices=0``) the plan fills every
    device number the machine does not own. That count boots, and QEMU
    itself refuses a port at each address the machine owns. On q35 the
    ICH9 device at 1f is multifunction and QEMU accepts ports at its
    unused functions 1 and 4-7: the model counts whole slots only, so
    it stays 5 below what QEMU and the firmware take (the planner never
    uses those functions; see doc/source/capacity.rst).
    """

    scenarios = [
        ('q35_ovmf', dict(
            arch='x86_64', machine='q35', firmware='uefi', root_max=240,
            owned={'00.0': 'in use by mch',
                   '00.1': "single function device can't be populated",
                   '1f.0': 'in use by ICH9-LPC',
                   '1f.2': 'in use by ich9-ahci',
                   '1f.3': 'in use by ICH9-SMB'},
            free_functions=['1f.1', '1f.4', '1f.5', '1f.6', '1f.7'])),
        ('virt_aavmf', dict(
            arch='aarch64', machine='virt', firmware='uefi', root_max=248,
            owned={'00.0': 'in use by gpex-root',
                   '00.1': "single function device can't be populated",
                   '00.7': "single function device can't be populated"},
            free_functions=[])),
    ]

    def test_root_bus_maximum_boots_and_qemu_refuses_one_more(self):
        from pcie_sched import capacity
        model = capacity.estimate(topology.machine_profile(
            self.arch, self.machine, root_bus_devices=0))
        self.assertEqual((self.root_max, capacity.ROOT_BUS_SLOTS),
                         (model.max_ports, model.limited_by))
        plan = probe.probe_plan(model.max_ports, self.arch, self.machine,
                                root_bus_devices=0)
        # No device number is left for another slot of ports.
        used = {port.slot for port in plan.ports}
        owned = {int(address.split('.')[0], 16) for address in self.owned}
        self.assertEqual(set(range(32)), used | owned)

        at_max = probe.boot(self.arch, self.machine, self.firmware,
                            model.max_ports, cache_dir=self.cache,
                            root_bus_devices=0)
        self.assertEqual(probe.BOOTED, at_max.outcome, at_max)

        for number, (address, message) in enumerate(sorted(
                self.owned.items())):
            beyond = probe.boot(
                self.arch, self.machine, self.firmware, model.max_ports,
                cache_dir=self.cache, root_bus_devices=0,
                extra_devices=[_extra_port('extra', 250 - number, address)])
            self.assertEqual(probe.QEMU_ERROR, beyond.outcome,
                             f'port at {address}: {beyond}')
            self.assertIn(message, beyond.detail)
            self.assertIn(f'addr=0x{address.replace("00.", "0.")}',
                          beyond.detail)

        if self.free_functions:
            extra = [_extra_port(f'extra{number}', 241 + number, address)
                     for number, address in enumerate(self.free_functions)]
            # The disk behind the very last of them: booting proves the
            # firmware numbered every one.
            more = probe.boot(
                self.arch, self.machine, self.firmware, model.max_ports,
                cache_dir=self.cache, root_bus_devices=0,
                extra_devices=extra,
                disk_bus=f'extra{len(extra) - 1}')
            self.assertEqual(probe.BOOTED, more.outcome,
                             f'{model.max_ports} + {len(extra)} ports at '
                             f'{self.free_functions}: {more}')
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

    def _signal_cli_probe(self, signum):
        """Start ``pcie-sched probe`` and send ``signum`` once QEMU runs."""
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
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
        self.assertEqual(130, process.returncode, err)
        self.assertNothingLeft()
        return err

    def test_sigint_during_cli_probe_leaves_nothing(self):
        import signal
        self.useFixture(ctrl_c.CtrlCRaises())
        self.assertIn(b'interrupted', self._signal_cli_probe(signal.SIGINT))

    def test_sigterm_during_cli_probe_leaves_nothing(self):
        import signal
        self._signal_cli_probe(signal.SIGTERM)

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
