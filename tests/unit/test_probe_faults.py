"""Probe inputs and faults that need no boot: consoles, paths, caches."""

import json
import os

import fixtures
import testscenarios
import testtools

from pcie_sched import hostinfo
from pcie_sched import payload
from pcie_sched import probe

load_tests = testscenarios.load_tests_apply_scenarios

# Console excerpts captured from this project's probe boots (QEMU 7.2,
# Debian 12 firmware); see /doc/source/probe.rst.
_AAVMF_NO_ESP = (
    'BdsDxe: starting Boot0001 "EFI Internal Shell" from Fv(64074AFE)\r\n'
    'UEFI Interactive Shell v2.2\r\nEDK II\r\nMapping table\r\n'
    'map: No mapping found.\r\n'
    'Press ESC in 5 seconds to skip startup.nsh or any other key to '
    'continue.')
_AAVMF_ESP = (
    'UEFI Interactive Shell v2.2\r\nMapping table\r\n'
    '      FS0: Alias(s):F0:;BLK0:\r\n'
    '          PciRoot(0x0)/Pci(0x1,0x0)/Pci(0x0,0x0)\r\n'
    'Press ESC in 5 seconds to skip startup.nsh or any other key to '
    'continue.')
_OVMF_SECURE_BOOT = (
    'BdsDxe: failed to start Boot0001 "EFI Internal Shell" from Fv(7CB8)'
    ': Security Violation\r\n'
    'BdsDxe: No bootable option or device was found.\r\n'
    'BdsDxe: Press any key to enter the Boot Manager Menu.\r\n')


class TestFirmwareGaveUp(testtools.TestCase):
    """Signals that end the boot at once, without the shell's grace."""

    scenarios = [
        ('aavmf_no_file_system', dict(console=_AAVMF_NO_ESP,
                                      expected=probe.FIRMWARE_SHELL,
                                      why='No mapping found')),
        ('ovmf_boot_manager_fallback', dict(
            console=_OVMF_SECURE_BOOT, expected=probe.FIRMWARE_SHELL,
            why='No bootable option')),
        ('aavmf_esp_found_keep_watching', dict(console=_AAVMF_ESP,
                                               expected=None, why=None)),
        ('marker_wins_over_everything', dict(
            console=_AAVMF_NO_ESP + f'\r\n{payload.MARKER}\r\n',
            expected=probe.BOOTED, why=None)),
    ]

    def test_verdict(self):
        text = probe.clean_console(self.console)
        verdict, shell_seen_at = probe.classify_console(text, 0.5, None)
        self.assertEqual(self.expected, verdict)
        self.assertIsNone(shell_seen_at)
        if self.why:
            self.assertIn(self.why, probe._verdict_detail(verdict, text))


class TestHostFiles(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path

    def touch(self, name):
        path = os.path.join(self.root, name)
        with open(path, 'wb') as handle:
            handle.write(b'\0' * 16)
        return path

    def test_vars_paired_by_the_name_given_not_the_symlink_target(self):
        # Debian: OVMF_CODE_4M.ms.fd -> OVMF_CODE_4M.secboot.fd, and only
        # OVMF_VARS_4M.ms.fd exists.
        target = self.touch('X_CODE_4M.secboot.fd')
        os.symlink(target, os.path.join(self.root, 'X_CODE_4M.ms.fd'))
        variables = self.touch('X_VARS_4M.ms.fd')
        fw = hostinfo.firmware('x86_64',
                               os.path.join(self.root, 'X_CODE_4M.ms.fd'))
        self.assertEqual(('uefi', target, variables),
                         (fw.kind, fw.code, fw.variables))

    def test_code_without_vars_names_the_missing_file(self):
        code = self.touch('Y_CODE.fd')
        error = self.assertRaises(hostinfo.HostError, hostinfo.firmware,
                                  'aarch64', code)
        self.assertIn(os.path.join(self.root, 'Y_VARS.fd'), str(error))

    def test_missing_qemu_names_the_debian_package(self):
        self.useFixture(fixtures.EnvironmentVariable('PATH', self.root))
        for arch, package in (('x86_64', 'qemu-system-x86'),
                              ('aarch64', 'qemu-system-arm')):
            error = self.assertRaises(hostinfo.HostError,
                                      hostinfo.qemu_binary, arch)
            self.assertIn(f'install the Debian package {package}',
                          str(error))
        error = self.assertRaises(probe.ProbeError, probe.boot, 'x86_64',
                                  'q35', 'bios', 1, cache_dir=self.root)
        self.assertIn('qemu-system-x86', str(error))

    def test_unknown_arch_and_firmware_kind_say_what_is_accepted(self):
        error = self.assertRaises(hostinfo.HostError, hostinfo.qemu_binary,
                                  'riscv64')
        self.assertIn("arch='riscv64'", str(error))
        self.assertIn('x86_64, aarch64', str(error))
        error = self.assertRaises(hostinfo.HostError, hostinfo.firmware,
                                  'aarch64', 'bios')
        self.assertIn("firmware='bios'", str(error))
        self.assertIn('accepted: uefi', str(error))


class TestUnusableCache(testtools.TestCase):
    """A cache that cannot be written is a clear error or a warning."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        # A file where the directory should be: fails even for root.
        self.blocked = os.path.join(self.root, 'blocked')
        with open(self.blocked, 'w') as handle:
            handle.write('not a directory')

    def result(self):
        return probe.FindMaxResult(
            max_ports=15, boots=2, seconds=30.0, model_max_ports=15,
            limited_by='ecam-window', strategy='model', fingerprint='k',
            steps=((15, 'booted', 10.0), (16, 'firmware-shell', 11.0)))

    def test_boot_with_unusable_cache_dir_is_a_probe_error(self):
        cache = os.path.join(self.blocked, 'cache')
        error = self.assertRaises(probe.ProbeError, probe.boot, 'x86_64',
                                  'q35', 'bios', 1, cache_dir=cache)
        self.assertIn(f'cache_dir={cache!r}', str(error))
        self.assertIn('accepted: a writable directory', str(error))
        self.assertEqual(['blocked'], os.listdir(self.root))

    def test_result_survives_an_unwritable_cache(self):
        said = []
        kept = probe.store_or_warn(os.path.join(self.blocked, 'cache'),
                                   self.result(), said.append)
        self.assertEqual(15, kept.max_ports)
        self.assertIn('cache_dir=', kept.cache_error)
        self.assertEqual(1, len(said))
        self.assertIn('warning: result not cached', said[0])
        self.assertEqual(['blocked'], os.listdir(self.root))

    def test_stored_file_has_no_runtime_fields(self):
        cache = os.path.join(self.root, 'cache')
        kept = probe.store_or_warn(cache, self.result(), lambda m: None)
        self.assertEqual('', kept.cache_error)
        with open(os.path.join(cache, 'find-max-k.json')) as handle:
            document = json.load(handle)
        self.assertNotIn('cached', document)
        self.assertNotIn('cache_error', document)
        self.assertEqual(['find-max-k.json'], os.listdir(cache))


class TestModelNeedsTheHost(testtools.TestCase):
    """The CLI's check and publish catch ProbeError: never a traceback."""

    def test_missing_firmware_is_a_probe_error(self):
        missing = os.path.join(self.useFixture(fixtures.TempDir()).path,
                               'OVMF_CODE.fd')
        error = self.assertRaises(probe.ProbeError, probe.model_capacity,
                                  'x86_64', 'q35', missing)
        self.assertIn(f'firmware={missing!r}', str(error))

    def test_missing_qemu_is_a_probe_error(self):
        self.useFixture(fixtures.EnvironmentVariable(
            'PATH', self.useFixture(fixtures.TempDir()).path))
        error = self.assertRaises(probe.ProbeError, probe.model_capacity,
                                  'aarch64', 'virt', 'uefi')
        self.assertIn('qemu-system-arm', str(error))
