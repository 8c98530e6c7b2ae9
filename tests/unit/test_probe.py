"""The probe's pure parts: console verdicts, payloads, cache files."""

import json
import os
import stat

import fixtures
from oslo_config import fixture as config_fixture
import testscenarios
import testtools

from pcie_sched import hostinfo
from pcie_sched import payload
from pcie_sched import probe

load_tests = testscenarios.load_tests_apply_scenarios


class TestConsole(testtools.TestCase):

    def test_marker_line_means_booted(self):
        text = probe.clean_console(
            '\x1b[2J\x1b[01;01HBdsDxe: loading\r\n'
            f'{payload.MARKER}\r\n')
        self.assertEqual((probe.BOOTED, None),
                         probe.classify_console(text, 10.0, None))

    def test_echoed_command_is_not_the_marker(self):
        # The UEFI shell echoes the startup.nsh line before running it.
        text = 'Shell> echo PCIE-SCHED-PAYLOAD-%PCIESCHED%\n'
        verdict, seen = probe.classify_console(text, 5.0, None)
        self.assertIsNone(verdict)
        self.assertEqual(5.0, seen)

    def test_shell_prompt_after_grace_is_firmware_shell(self):
        text = 'Shell> '
        verdict, seen = probe.classify_console(text, 1.0, None)
        self.assertIsNone(verdict)
        verdict, _ = probe.classify_console(
            text, 1.0 + probe.SHELL_GRACE, seen)
        self.assertEqual(probe.FIRMWARE_SHELL, verdict)

    def test_seabios_no_bootable_device(self):
        self.assertEqual(probe.FIRMWARE_SHELL, probe.classify_console(
            'Booting from Hard Disk...\nNo bootable device.\n', 1, None)[0])

    def test_nothing_yet(self):
        self.assertEqual((None, None),
                         probe.classify_console('SeaBIOS (version', 1, None))


class TestBootSector(testtools.TestCase):

    def test_shape(self):
        sector = payload.boot_sector()
        self.assertEqual(512, len(sector))
        self.assertEqual(b'\x55\xaa', sector[-2:])
        self.assertIn(payload.MARKER.encode(), sector)
        # mov si, imm16 points at the message as loaded at 0000:7c00.
        address = int.from_bytes(sector[5:7], 'little')
        self.assertEqual(sector.index(b'\r\n' + payload.MARKER.encode()),
                         address - 0x7c00)


class TestArguments(testtools.TestCase):

    def test_ports_must_leave_room_for_the_disk(self):
        for bad in (0, -1, True, '3'):
            error = self.assertRaises(probe.ProbeError, probe.probe_plan,
                                      bad, 'x86_64', 'q35')
            self.assertIn('at least 1', str(error))

    def test_plan_counts_every_port_and_puts_no_device_first(self):
        # The boot disk goes behind the last port (qemu_command), so no
        # port is set aside for it at the front of the plan.
        plan = probe.probe_plan(3, 'x86_64', 'q35')
        self.assertEqual([None, None, None],
                         [port.occupant for port in plan.ports])
        self.assertEqual(240, len(probe.probe_plan(
            240, 'x86_64', 'q35', root_bus_devices=0).ports))

    def test_too_many_ports_is_a_clear_error(self):
        error = self.assertRaises(probe.ProbeError, probe.probe_plan,
                                  500, 'x86_64', 'q35')
        self.assertIn('at most 232', str(error))

    def test_strategy_is_checked(self):
        self.assertRaises(probe.ProbeError, probe.find_max, 'x86_64', 'q35',
                          strategy='guess')


class TestModelGuidedSearch(testtools.TestCase):
    """The search logic against a host whose true maximum is known."""

    def search(self, predicted, true_max, limit=232):
        tried = []

        def boots(count):
            tried.append(count)
            return count <= true_max
        return probe._model_guided(predicted, limit, boots), tried

    def test_right_model_costs_two_boots(self):
        self.assertEqual((15, [15, 16]), self.search(15, 15))

    def test_right_model_at_the_slot_limit_costs_one_boot(self):
        self.assertEqual((232, [232]), self.search(232, 232))

    def test_optimistic_model_falls_back_to_bisection(self):
        found, tried = self.search(100, 37)
        self.assertEqual(37, found)
        self.assertEqual(100, tried[0])

    def test_pessimistic_model_searches_upwards(self):
        found, tried = self.search(15, 40)
        self.assertEqual(40, found)
        self.assertEqual([15, 16], tried[:2])

    def test_bisection_matches_linear_scan(self):
        for true_max in (0, 1, 2, 17, 231, 232):
            tried = []

            def boots(count):
                tried.append(count)
                return count <= true_max
            self.assertEqual(true_max, probe._bisect(0, 233, boots))
            self.assertLessEqual(len(tried), 8)


class TestCache(testtools.TestCase):
    """Corrupt, foreign or stale cache files are never trusted."""

    def setUp(self):
        super().setUp()
        self.cache = self.useFixture(fixtures.TempDir()).path

    def write(self, name, content):
        with open(os.path.join(self.cache, name), 'w') as handle:
            handle.write(content)

    def result(self, key):
        return probe.FindMaxResult(
            max_ports=15, boots=2, seconds=30.0, model_max_ports=15,
            limited_by='ecam-window', strategy='model', fingerprint=key,
            steps=((15, 'booted', 10.0), (16, 'firmware-shell', 20.0)))

    def test_round_trip_and_corruption(self):
        key = probe.fingerprint('x86_64', 'q35', 'uefi')
        probe._store(self.cache, self.result(key))
        self.assertEqual([f'find-max-{key}.json'], os.listdir(self.cache))
        self.assertEqual(15, probe.load_cached_max('x86_64', 'q35', 'uefi',
                                                   self.cache))
        for broken in ('', '{', '[]', json.dumps({'max_ports': 'x'}),
                       json.dumps(dict(self.result('other').to_dict()))):
            self.write(f'find-max-{key}.json', broken)
            self.assertIsNone(probe.load_cached_max(
                'x86_64', 'q35', 'uefi', self.cache), broken)

    def test_fingerprint_depends_on_machine(self):
        self.assertNotEqual(probe.fingerprint('x86_64', 'q35', 'uefi'),
                            probe.fingerprint('x86_64', 'pc-q35-7.1', 'uefi'))
        self.assertNotEqual(probe.fingerprint('x86_64', 'q35', 'uefi'),
                            probe.fingerprint('x86_64', 'q35', 'bios'))

    def test_unwritable_cache_leaves_nothing_behind(self):
        # A file where the directory should be: fails even for root.
        blocked = os.path.join(self.cache, 'blocked')
        self.write('blocked', 'not a directory')
        self.assertRaises(OSError, probe._store, blocked, self.result('k'))
        self.assertEqual(['blocked'], os.listdir(self.cache))

    def test_result_readable_by_other_users_whatever_the_umask(self):
        # Root's umask is often 077; nova-compute runs as another user.
        old = os.umask(0o077)
        self.addCleanup(os.umask, old)
        shared = os.path.join(self.cache, 'new', 'pcie-sched')
        probe._store(shared, self.result('k'))
        self.assertEqual(0o755, stat.S_IMODE(os.stat(shared).st_mode))
        # Every directory made on the way, not just the last.
        self.assertEqual(0o755, stat.S_IMODE(os.stat(
            os.path.dirname(shared)).st_mode))
        stored = os.path.join(shared, 'find-max-k.json')
        self.assertEqual(0o644, stat.S_IMODE(os.stat(stored).st_mode))
        self.assertEqual(['find-max-k.json'], os.listdir(shared))

    def test_existing_directory_keeps_the_operators_mode(self):
        os.chmod(self.cache, 0o750)
        probe._store(self.cache, self.result('k'))
        self.assertEqual(0o750, stat.S_IMODE(os.stat(self.cache).st_mode))

    def test_closed_directory_on_the_path_is_named(self):
        closed = os.path.join(self.cache, 'closed')
        os.mkdir(closed, 0o700)
        os.chmod(closed, 0o700)
        said = []
        result = probe.store_or_warn(os.path.join(closed, 'c'),
                                     self.result('k'), said.append)
        self.assertFalse(result.cache_error)
        self.assertEqual(1, len(said), said)
        self.assertIn(repr(closed), said[0])
        self.assertIn('chmod 755', said[0])
        said.clear()
        os.chmod(closed, 0o755)
        os.chmod(self.cache, 0o755)
        probe.store_or_warn(os.path.join(closed, 'c'), self.result('k'),
                            said.append)
        self.assertEqual([], [line for line in said if closed in line])


class TestNothingBootsIsNotAMaximum(testtools.TestCase):
    """A QEMU that never starts is an error, never a cached 0."""

    scenarios = [
        ('qemu_error', dict(outcome=probe.QEMU_ERROR,
                            detail='-accel kvm: failed to initialize kvm',
                            expected='QEMU failed to start')),
        ('hangs_everywhere', dict(outcome=probe.HANG, detail='',
                                  expected='no port count booted')),
    ]

    def test_error_and_nothing_stored(self):
        cache = self.useFixture(fixtures.TempDir()).path

        def boot(arch, machine, firmware, count, **options):
            # A hang that long is the firmware's, not a boot cut short.
            return probe.BootResult(
                self.outcome, 0.1, count, arch, machine, firmware,
                detail=self.detail,
                silent_seconds=2 * probe.CONCLUSIVE_SILENCE)
        self.useFixture(fixtures.MonkeyPatch(
            'pcie_sched.probe.boot', boot))
        error = self.assertRaises(
            probe.ProbeError, probe.find_max, 'x86_64', 'q35', 'bios',
            use_cache=False, cache_dir=cache)
        self.assertIn(self.expected, str(error))
        self.assertIn('accepted:', str(error))
        self.assertEqual([], [name for name in os.listdir(cache)
                              if name.startswith('find-max-')])


class TestLoadCachedNeverRaises(testtools.TestCase):

    def test_bad_cache_dir_option_falls_back_to_the_model(self):
        from pcie_sched import conf
        fixture = self.useFixture(config_fixture.Config(conf.CONF))
        # As if read from nova.conf: oslo only checks the type on access.
        fixture.load_raw_values(group='pcie_sched_probe',
                                cache_dir='relative/dir')
        self.assertIsNone(probe.load_cached_max('x86_64', 'q35', 'bios'))


class TestFingerprintMemo(testtools.TestCase):
    """The periodic task fingerprints often; a changed file still counts."""

    def setUp(self):
        super().setUp()
        # A firmware path of our own (a SeaBIOS-style code file: no
        # 'CODE' in the name, so no variable store is needed).
        self.firmware = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'bios.bin')
        self.write(b'\x00' * 4096, mtime_ns=1_000_000_000)

    def write(self, content, mtime_ns):
        with open(self.firmware, 'wb') as handle:
            handle.write(content)
        os.utime(self.firmware, ns=(mtime_ns, mtime_ns))

    def fingerprint(self):
        return probe.fingerprint('x86_64', 'q35', self.firmware)

    def test_same_file_same_fingerprint_and_no_rehash(self):
        first = self.fingerprint()
        # Remembered under the file's identity, size and mtime: the next
        # call is a stat(), not a read of the whole file.
        key = ('sha256',) + hostinfo._file_key(self.firmware)
        self.assertEqual(hostinfo._sha256(self.firmware),
                         hostinfo._BY_FILE[key])
        self.assertEqual(first, self.fingerprint())

    def test_changed_content_and_mtime_changes_the_fingerprint(self):
        first = self.fingerprint()
        self.write(b'\x01' * 4096, mtime_ns=2_000_000_000)
        second = self.fingerprint()
        self.assertNotEqual(first, second)
        self.assertEqual(second, probe.fingerprint(
            'x86_64', 'q35', self.firmware))

    def test_changed_size_changes_the_fingerprint(self):
        first = self.fingerprint()
        self.write(b'\x00' * 8192, mtime_ns=1_000_000_000)
        self.assertNotEqual(first, self.fingerprint())

    def test_replaced_file_changes_the_fingerprint(self):
        # How a package upgrade lands: a new file renamed over the old.
        first = self.fingerprint()
        staged = self.firmware + '.new'
        with open(staged, 'wb') as handle:
            handle.write(b'\x02' * 4096)
        os.utime(staged, ns=(1_000_000_000, 1_000_000_000))
        os.replace(staged, self.firmware)
        self.assertNotEqual(first, self.fingerprint())
