"""Probe inputs and faults that need no boot: consoles, paths, caches."""

import json
import os
import subprocess
import sys
import time

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
_OVMF_SECURE_BOOT_DISK_REFUSED = (
    'BdsDxe: loading Boot0001 "UEFI Non-Block Boot Device" from '
    'PciRoot(0x0)/Pci(0x2,0x0)/Pci(0x0,0x0)\r\n'
    'BdsDxe: failed to load Boot0001 "UEFI Non-Block Boot Device" from '
    'PciRoot(0x0)/Pci(0x2,0x0)/Pci(0x0,0x0): Access Denied\r\n'
    'BdsDxe: failed to start Boot0002 "EFI Internal Shell" from '
    'Fv(7CB8BDC9)/FvFile(7C04A583): Security Violation\r\n'
    'BdsDxe: No bootable option or device was found.\r\n')
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
        ('secure_boot_refused_the_payload', dict(
            console=_OVMF_SECURE_BOOT_DISK_REFUSED,
            expected=probe.FIRMWARE_SHELL, why=probe.SECURE_BOOT_REFUSED)),
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
            detail = probe._verdict_detail(verdict, text)
            self.assertIn(self.why, detail)
            # Only a refused disk is blamed on Secure Boot; a refused
            # built-in shell with no disk found is an ordinary stop.
            self.assertEqual(self.why == probe.SECURE_BOOT_REFUSED,
                             detail.startswith(probe.SECURE_BOOT_REFUSED))


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


def _a_result():
    return probe.FindMaxResult(
        max_ports=15, boots=2, seconds=30.0, model_max_ports=15,
        limited_by='ecam-window', strategy='model', fingerprint='k',
        steps=((15, 'booted', 10.0), (16, 'firmware-shell', 11.0)))


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
        return _a_result()

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


class TestQemuCommand(testtools.TestCase):
    """QEMU gets the least it needs, and paths cannot become options."""

    scenarios = [
        ('q35_ovmf', dict(arch='x86_64', machine='q35', firmware='uefi')),
        ('q35_seabios', dict(arch='x86_64', machine='q35',
                             firmware='bios')),
        ('virt_aavmf', dict(arch='aarch64', machine='virt-2.11',
                            firmware='uefi')),
    ]

    def test_arguments(self):
        workdir = os.path.join(self.useFixture(fixtures.TempDir()).path,
                               'w,x')
        os.mkdir(workdir)
        fw = hostinfo.firmware(self.arch, self.firmware)
        plan = probe.probe_plan(9, self.arch, self.machine)
        command = probe.qemu_command(self.arch, self.machine, fw, plan,
                                     '/srv/a,b.img', workdir, 'tcg')
        joined = ' '.join(command)
        for needed in ('-nodefaults', '-no-user-config'):
            self.assertIn(needed, command)
        self.assertEqual(['-accel', 'tcg'],
                         command[command.index('-accel'):][:2])
        self.assertEqual(['-net', 'none'],
                         command[command.index('-net'):][:2])
        for forbidden in ('netdev', 'vfio', 'nic', 'usb', 'hostdev'):
            self.assertNotIn(forbidden, joined)
        self.assertIn('file=/srv/a,,b.img', joined)
        disk = command[command.index('-device', len(command) - 2) + 1]
        # Behind the last port: booting proves every port was numbered.
        self.assertIn(f'bus={plan.ports[-1].qemu_id}', disk)
        self.assertEqual('pci.9', plan.ports[-1].qemu_id)
        self.assertEqual(9, sum(1 for arg in command
                                if arg.startswith('pcie-root-port,')))
        if fw.kind == 'uefi':
            # A private copy of the variable store, never the template.
            private = os.path.join(workdir, 'vars.fd')
            self.assertTrue(os.path.isfile(private))
            self.assertIn(f'file={private.replace(",", ",,")}', joined)
            self.assertNotIn(fw.variables, joined)
            self.assertIn(f'readonly=on,file={fw.code}', joined)
        else:
            self.assertEqual(fw.code, command[command.index('-bios') + 1])


class TestWatch(testtools.TestCase):
    """The console watcher against small real stand-in processes.

    What they write to the serial log and when they exit decides the
    verdict, exactly as QEMU's would.
    """

    scenarios = [
        ('marker_then_exit', dict(
            script='open(SERIAL, "w").write("GRUB\\n" + MARKER + "\\n")',
            expected=probe.BOOTED, detail='payload behind the last port')),
        ('exit_with_message', dict(
            script='import sys; sys.stderr.write("qemu: bad option\\n"); '
                   'sys.exit(1)',
            expected=probe.QEMU_ERROR, detail='qemu: bad option')),
        ('silent_exit_zero', dict(
            script='pass', expected=probe.QEMU_ERROR,
            detail='exited with status 0 before the payload ran')),
        ('silent_forever', dict(
            script='import time; time.sleep(60)', expected=probe.HANG,
            stall_timeout=0.5, detail='console silent for 0.5s')),
        ('chatty_forever', dict(
            script='import time\nwith open(SERIAL, "w") as s:\n'
                   ' while True:\n  s.write("."); s.flush(); '
                   'time.sleep(0.05)',
            timeout=1.5, expected=probe.TIMEOUT,
            detail='no verdict within 1.5s')),
        ('shell_then_nothing', dict(
            script='import time; open(SERIAL, "w").write("Shell> "); '
                   'time.sleep(60)',
            stall_timeout=3.0, expected=probe.FIRMWARE_SHELL,
            detail="'Shell> ?'")),
    ]
    # Generous unless the scenario is about the limit itself: a stand-in
    # interpreter on a loaded 2-core host can take a second to start, and
    # a stall counted from its start must not pre-empt the verdict.
    timeout = 60.0
    stall_timeout = 30.0

    def test_verdict(self):
        workdir = self.useFixture(fixtures.TempDir()).path
        serial = os.path.join(workdir, 'serial.log')
        stderr_path = os.path.join(workdir, 'stderr')
        prelude = f'SERIAL = {serial!r}; MARKER = {payload.MARKER!r}\n'
        with open(stderr_path, 'wb') as stderr:
            process = subprocess.Popen(
                [sys.executable, '-c', prelude + self.script],
                stdin=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True)
        self.addCleanup(probe._stop, process)
        start = time.monotonic()
        outcome, detail, _, console = probe._watch(
            process, serial, stderr_path, start, timeout=self.timeout,
            stall_timeout=self.stall_timeout)
        self.assertEqual(self.expected, outcome, detail)
        self.assertIn(self.detail, detail)
        # What undecided() judges a hang or timeout by.
        wrote = os.path.exists(serial) and os.path.getsize(serial) > 0
        self.assertEqual(wrote, console.size > 0)
        if self.expected == probe.HANG:
            self.assertGreaterEqual(time.monotonic() - console.changed,
                                    self.stall_timeout)


class TestConclusive(testtools.TestCase):
    """Only a hang or a timeout earns a second boot of the same count."""

    scenarios = [
        ('booted', dict(outcomes=[probe.BOOTED], final=probe.BOOTED)),
        ('shell_is_final', dict(outcomes=[probe.FIRMWARE_SHELL],
                                final=probe.FIRMWARE_SHELL)),
        ('qemu_error_is_final', dict(outcomes=[probe.QEMU_ERROR],
                                     final=probe.QEMU_ERROR)),
        ('hang_then_booted', dict(outcomes=[probe.HANG, probe.BOOTED],
                                  final=probe.BOOTED)),
        ('timeout_then_shell', dict(
            outcomes=[probe.TIMEOUT, probe.FIRMWARE_SHELL],
            final=probe.FIRMWARE_SHELL)),
        ('hang_twice_stops', dict(outcomes=[probe.HANG, probe.HANG],
                                  final=probe.HANG)),
    ]

    def test_attempts(self):
        pending = list(self.outcomes) + [probe.BOOTED]
        tried = []

        def once():
            outcome = pending.pop(0)
            tried.append(outcome)
            return probe.BootResult(outcome, 1.0, 248, 'aarch64', 'virt',
                                    'uefi')
        self.assertEqual(self.final, probe.conclusive(once).outcome)
        self.assertEqual(self.outcomes, tried)


class TestFingerprintInputs(testtools.TestCase):

    def test_variable_store_content_counts(self):
        root = self.useFixture(fixtures.TempDir()).path
        for folder, keys in (('plain', b'\0'), ('enrolled', b'\1')):
            os.mkdir(os.path.join(root, folder))
            with open(os.path.join(root, folder, 'Z_CODE.fd'), 'wb') as out:
                out.write(b'\0' * 64)
            with open(os.path.join(root, folder, 'Z_VARS.fd'), 'wb') as out:
                out.write(keys * 64)
        plain, enrolled = (
            probe.fingerprint('x86_64', 'q35',
                              os.path.join(root, folder, 'Z_CODE.fd'))
            for folder in ('plain', 'enrolled'))
        self.assertNotEqual(plain, enrolled)
        self.assertEqual(plain, probe.fingerprint(
            'x86_64', 'q35', os.path.join(root, 'plain', 'Z_CODE.fd')))


_UNPRIVILEGED_BOOT = '''
import os, sys
# Imported first: the interpreter's own files need not be nobody's.
from pcie_sched import probe
if os.geteuid() == 0:
    # Root reads a mode-0000 file; the operator this protects is not root.
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
try:
    probe.boot('x86_64', 'q35', sys.argv[1], 1, cache_dir=sys.argv[2])
except probe.ProbeError as exc:
    print(exc)
    sys.exit(3)
'''


class TestUnreadableFirmware(testtools.TestCase):
    """A firmware path that exists but cannot be read as firmware."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        # The unprivileged child must reach the files to be refused them.
        os.chmod(self.root, 0o755)

    def assertRefused(self, choice, message):
        self.assertIn(f'firmware={choice!r} is not a readable file', message)
        self.assertIn('accepted: uefi, bios or a path to a firmware code '
                      'file', message)

    def test_directory_is_refused_even_for_root(self):
        # What root cannot read as a file whatever the mode bits.
        folder = os.path.join(self.root, 'OVMF_CODE.fd')
        os.mkdir(folder)
        error = self.assertRaises(probe.ProbeError, probe.boot, 'x86_64',
                                  'q35', folder, 1, cache_dir=self.root)
        self.assertRefused(folder, str(error))
        error = self.assertRaises(probe.ProbeError, probe.model_capacity,
                                  'x86_64', 'q35', folder)
        self.assertRefused(folder, str(error))
        self.assertEqual(['OVMF_CODE.fd'], os.listdir(self.root))

    def test_mode_0000_file_is_refused_for_its_reader(self):
        code = os.path.join(self.root, 'OVMF_CODE.fd')
        for name, mode in (('OVMF_CODE.fd', 0), ('OVMF_VARS.fd', 0o644)):
            path = os.path.join(self.root, name)
            with open(path, 'wb') as handle:
                handle.write(b'\0' * 4096)
            os.chmod(path, mode)
        cache = os.path.join(self.root, 'cache')
        result = subprocess.run(
            [sys.executable, '-c', _UNPRIVILEGED_BOOT, code, cache],
            capture_output=True, text=True, timeout=120,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        self.assertEqual(3, result.returncode, result.stderr)
        self.assertRefused(code, result.stdout)
        # Refused before anything was built or started.
        self.assertFalse(os.path.exists(cache))


class TestReadOnlyCache(testtools.TestCase):
    """A read-only cache directory: clear error, or a warned result."""

    def setUp(self):
        super().setUp()
        from tests import readonly_dir
        self.cache = self.useFixture(fixtures.TempDir()).path
        self.readonly = self.useFixture(readonly_dir.ReadOnlyDir(self.cache))

    def test_boot_without_cached_payload_is_a_probe_error(self):
        error = self.assertRaises(probe.ProbeError, probe.boot, 'x86_64',
                                  'q35', 'bios', 1, cache_dir=self.cache)
        self.assertIn(f'cache_dir={self.cache!r}', str(error))
        self.assertIn(self.readonly.reason, str(error))
        self.assertIn('accepted: a writable directory', str(error))
        self.assertEqual([], os.listdir(self.cache))

    def test_result_is_kept_with_a_warning(self):
        said = []
        kept = probe.store_or_warn(self.cache, _a_result(), said.append)
        self.assertEqual(15, kept.max_ports)
        self.assertIn(self.readonly.reason, kept.cache_error)
        self.assertEqual(1, len(said))
        self.assertIn('warning: result not cached', said[0])
        self.assertEqual([], os.listdir(self.cache))


_STORE_LOOP = '''
import sys
from pcie_sched import probe
for round in range(int(sys.argv[3])):
    probe._store(sys.argv[1], probe.FindMaxResult(
        max_ports=int(sys.argv[2]), boots=round, seconds=1.0,
        model_max_ports=15, limited_by='ecam-window', strategy='model',
        fingerprint='same', steps=((15, 'booted', 1.0),)))
'''


class TestConcurrentCacheWriters(testtools.TestCase):
    """Two processes storing the same key while a third reads it."""

    def test_reader_only_ever_sees_whole_documents(self):
        cache = self.useFixture(fixtures.TempDir()).path
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        writers = [subprocess.Popen(
            [sys.executable, '-c', _STORE_LOOP, cache, str(ports), '300'],
            stderr=subprocess.PIPE, env=env) for ports in (15, 16)]
        target = os.path.join(cache, 'find-max-same.json')
        reads = 0
        try:
            while any(writer.poll() is None for writer in writers):
                try:
                    with open(target) as handle:
                        document = json.load(handle)
                except FileNotFoundError:
                    continue
                self.assertIn(document['max_ports'], (15, 16))
                reads += 1
        finally:
            errors = [writer.communicate(timeout=120)[1]
                      for writer in writers]
        self.assertEqual([0, 0], [writer.returncode for writer in writers],
                         errors)
        self.assertGreater(reads, 0)
        with open(target) as handle:
            self.assertIn(json.load(handle)['max_ports'], (15, 16))
        self.assertEqual(['find-max-same.json'], os.listdir(cache))


class TestOneMorePort(testtools.TestCase):
    """Extra devices and the disk's port, for asking QEMU not the plan."""

    def test_extra_port_and_disk_behind_it(self):
        workdir = self.useFixture(fixtures.TempDir()).path
        fw = hostinfo.firmware('x86_64', 'bios')
        plan = probe.probe_plan(240, 'x86_64', 'q35', root_bus_devices=0)
        self.assertEqual((1, 0x1e), (plan.ports[0].slot, plan.ports[-1].slot))
        extra = 'pcie-root-port,id=x,bus=pcie.0,chassis=241,addr=0x1f.1'
        command = probe.qemu_command('x86_64', 'q35', fw, plan, '/d.img',
                                     workdir, 'tcg', [extra], 'x')
        devices = [command[index + 1] for index, arg in enumerate(command)
                   if arg == '-device']
        self.assertEqual(242, len(devices))
        self.assertEqual(extra, devices[-2])
        self.assertEqual('virtio-blk-pci,drive=bootdisk,bus=x', devices[-1])

    def test_find_max_refuses_a_layout_its_cache_does_not_key(self):
        for option, value in (('root_bus_devices', 0),
                              ('extra_devices', ['pcie-root-port']),
                              ('disk_bus', 'x')):
            error = self.assertRaises(probe.ProbeError, probe.find_max,
                                      'x86_64', 'q35', 'bios',
                                      **{option: value})
            self.assertIn(f'{option}={value!r}: not accepted by find_max',
                          str(error))
