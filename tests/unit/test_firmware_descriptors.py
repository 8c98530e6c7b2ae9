"""Finding QEMU and the firmware on hosts laid out the ways distributions do.

The host layouts (RHEL family, Debian/Ubuntu, broken ones) are
simulated: each test builds a tree in a temporary root. The files in
them are real: firmware copied from this Debian host's /usr/share/OVMF
and the emulator a symlink to this host's QEMU, so a lookup that
resolves a machine alias asks a real QEMU. Nothing boots.
"""

import json
import os
import shutil

import fixtures
import testtools

from pcie_sched import firmware_descriptors as fd
from pcie_sched import hostinfo
from pcie_sched import probe

OVMF = '/usr/share/OVMF'
DEBIAN_DESCRIPTORS = '/usr/share/qemu/firmware'
QEMU_X86 = shutil.which('qemu-system-x86_64')
#: The canonical q35 type the tests name, any version: the globs match it.
Q35 = 'pc-q35-7.2'


def _need_real_files(test, *paths):
    for path in paths:
        if not path or not os.path.exists(path):
            test.fail(f'{path} is not installed on this host: install the '
                      f'Debian packages ovmf and qemu-system-x86 '
                      f'(bindep.txt)')


class HostTree:
    """A host layout under a temporary root."""

    def __init__(self, root):
        self.root = root

    def path(self, rel):
        return os.path.join(self.root, rel.lstrip('/'))

    def copy(self, source, rel):
        """A real file (or symlink, kept as one) placed at ``rel``."""
        target = self.path(rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        else:
            shutil.copyfile(source, target)
        return target

    def emulator(self, rel):
        target = self.path(rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(QEMU_X86, target)
        return target

    def write(self, rel, text):
        target = self.path(rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, 'w') as handle:
            handle.write(text)
        return target

    def descriptor(self, rel, code, variables, features=(),
                   machines=('pc-q35-*',), arch='x86_64', interface='uefi',
                   fmt='raw'):
        mapping = {'device': 'flash',
                   'executable': {'filename': code, 'format': fmt},
                   'nvram-template': {'filename': variables,
                                      'format': fmt}}
        document = {'description': rel, 'interface-types': [interface],
                    'mapping': mapping,
                    'targets': [{'architecture': arch,
                                 'machines': list(machines)}],
                    'features': list(features), 'tags': []}
        return self.write(rel, json.dumps(document, indent=4))


class _TreeTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        _need_real_files(self, QEMU_X86, os.path.join(OVMF,
                                                      'OVMF_CODE_4M.fd'))
        self.tree = HostTree(self.useFixture(fixtures.TempDir()).path)

    def firmware(self, *args, **kwargs):
        return hostinfo.firmware(*args, root=self.tree.root,
                                 **kwargs)

    def debian_tree(self):
        """Debian 12's own descriptors and OVMF files.

        Ubuntu's layout is the same: package ovmf, /usr/share/OVMF, the
        4M builds.
        """
        for name in os.listdir(OVMF):
            self.tree.copy(os.path.join(OVMF, name), f'usr/share/OVMF/{name}')
        for name in os.listdir(DEBIAN_DESCRIPTORS):
            self.tree.copy(os.path.join(DEBIAN_DESCRIPTORS, name),
                           f'usr/share/qemu/firmware/{name}')
        self.tree.emulator('usr/bin/qemu-system-x86_64')


class TestRhelLayout(_TreeTest):
    """RHEL 9 / CentOS Stream / Rocky.

    qemu-kvm off PATH, edk2 under /usr/share/edk2/ovmf, descriptors
    pointing there.
    """

    def setUp(self):
        super().setUp()
        if hostinfo.host_arch() != 'x86_64':
            # qemu-kvm stands in only for the host's own architecture.
            self.fail('the simulated RHEL tree is an x86_64 host: run on '
                      'x86_64, as the test tiers do (bindep.txt)')
        tree = self.tree
        self.qemu = tree.emulator('usr/libexec/qemu-kvm')
        edk2 = 'usr/share/edk2/ovmf'
        tree.copy(f'{OVMF}/OVMF_CODE_4M.secboot.fd',
                  f'{edk2}/OVMF_CODE.secboot.fd')
        tree.copy(f'{OVMF}/OVMF_VARS_4M.ms.fd', f'{edk2}/OVMF_VARS.secboot.fd')
        tree.copy(f'{OVMF}/OVMF_CODE_4M.fd', f'{edk2}/OVMF_CODE.fd')
        tree.copy(f'{OVMF}/OVMF_VARS_4M.fd', f'{edk2}/OVMF_VARS.fd')
        shared = 'usr/share/qemu/firmware'
        tree.descriptor(f'{shared}/30-edk2-ovmf-x64-sb-enrolled.json',
                        f'/{edk2}/OVMF_CODE.secboot.fd',
                        f'/{edk2}/OVMF_VARS.secboot.fd',
                        ('acpi-s3', 'enrolled-keys', 'requires-smm',
                         'secure-boot'))
        tree.descriptor(f'{shared}/50-edk2-ovmf-x64-nosb.json',
                        f'/{edk2}/OVMF_CODE.fd', f'/{edk2}/OVMF_VARS.fd',
                        ('acpi-s3', 'amd-sev'),
                        ('pc-i440fx-*', 'pc-q35-*'))
        # Nothing on PATH under this root: the libexec file is the only
        # emulator, as on RHEL.
        self.useFixture(fixtures.EnvironmentVariable('PATH',
                                                     '/usr/bin:/bin'))

    def test_emulator_found_off_path(self):
        self.assertEqual(self.qemu,
                         hostinfo.qemu_binary('x86_64', self.tree.root))

    def test_libexec_emulator_is_not_taken_for_another_arch(self):
        error = self.assertRaises(hostinfo.HostError, hostinfo.qemu_binary,
                                  'aarch64', self.tree.root)
        self.assertIn('qemu-system-aarch64 on PATH', str(error))
        self.assertIn('RHEL family on aarch64: qemu-kvm', str(error))

    def test_alias_resolved_through_the_libexec_qemu(self):
        # The descriptors list pc-q35-*, never the alias: only QEMU (here
        # the real one behind the libexec path) knows q35's version.
        fw = self.firmware('x86_64', 'uefi', 'q35')
        self.assertEqual(self.tree.path('usr/share/edk2/ovmf/OVMF_CODE.fd'),
                         fw.code)
        self.assertEqual(self.tree.path('usr/share/edk2/ovmf/OVMF_VARS.fd'),
                         fw.variables)
        self.assertEqual(
            self.tree.path('usr/share/qemu/firmware/'
                           '50-edk2-ovmf-x64-nosb.json'), fw.descriptor)

    def test_secure_boot_gets_the_enrolled_smm_build(self):
        fw = self.firmware('x86_64', 'uefi', Q35, secure_boot=True)
        self.assertEqual(
            self.tree.path('usr/share/edk2/ovmf/OVMF_CODE.secboot.fd'),
            fw.code)
        self.assertIn('requires-smm', fw.features)

    def test_seabios_without_descriptor_or_file_says_what_to_install(self):
        error = self.assertRaises(hostinfo.HostError, self.firmware,
                                  'x86_64', 'bios', Q35)
        self.assertIn(self.tree.path('usr/share/seabios/bios-256k.bin'),
                      str(error))
        self.assertIn('firmware descriptors', str(error))


class TestDebianLayout(_TreeTest):

    def setUp(self):
        super().setUp()
        _need_real_files(self, DEBIAN_DESCRIPTORS)
        self.debian_tree()

    def test_emulator_on_path_under_the_root(self):
        self.useFixture(fixtures.EnvironmentVariable('PATH', '/usr/bin'))
        self.assertEqual(self.tree.path('usr/bin/qemu-system-x86_64'),
                         hostinfo.qemu_binary('x86_64', self.tree.root))

    def test_secure_boot_and_not_get_different_builds(self):
        plain = self.firmware('x86_64', 'uefi', Q35)
        secure = self.firmware('x86_64', 'uefi', Q35, secure_boot=True)
        self.assertEqual(
            (self.tree.path('usr/share/OVMF/OVMF_CODE_4M.fd'),
             self.tree.path('usr/share/OVMF/OVMF_VARS_4M.fd')),
            (plain.code, plain.variables))
        # libvirt's pick for nova's Secure Boot guests: the first build
        # with secure-boot, which on Debian 12 has Microsoft's keys.
        self.assertEqual(
            (self.tree.path('usr/share/OVMF/OVMF_CODE_4M.ms.fd'),
             self.tree.path('usr/share/OVMF/OVMF_VARS_4M.ms.fd')),
            (secure.code, secure.variables))
        self.assertEqual({'secure-boot', 'enrolled-keys', 'requires-smm'},
                         {'secure-boot', 'enrolled-keys', 'requires-smm'}
                         & secure.features)
        self.assertNotIn('secure-boot', plain.features)

    def test_candidates_in_file_name_order(self):
        descriptors = fd.load(self.tree.root)
        names = [d.name for d in fd.candidates(descriptors, 'x86_64', Q35)]
        self.assertEqual(['40-edk2-x86_64-secure-enrolled.json',
                          '50-edk2-x86_64-secure.json',
                          '60-edk2-x86_64.json'], names)
        self.assertEqual(['60-edk2-x86_64.json'], [
            d.name for d in fd.candidates(descriptors, 'x86_64',
                                          'pc-i440fx-7.2')])

    def test_machine_options_do_not_hide_the_type(self):
        fw = self.firmware('x86_64', 'uefi', f'{Q35},smm=off')
        self.assertEqual(self.tree.path('usr/share/OVMF/OVMF_CODE_4M.fd'),
                         fw.code)

    def test_etc_replaces_usr_share_of_the_same_name(self):
        self.tree.copy(f'{OVMF}/OVMF_CODE.fd', 'opt/fw/CODE.fd')
        self.tree.copy(f'{OVMF}/OVMF_VARS.fd', 'opt/fw/VARS.fd')
        local = self.tree.descriptor('etc/qemu/firmware/60-edk2-x86_64.json',
                                     '/opt/fw/CODE.fd', '/opt/fw/VARS.fd')
        fw = self.firmware('x86_64', 'uefi', Q35)
        self.assertEqual((self.tree.path('opt/fw/CODE.fd'), local),
                         (fw.code, fw.descriptor))

    def test_empty_file_in_etc_hides_the_descriptor(self):
        self.tree.write('etc/qemu/firmware/60-edk2-x86_64.json', '')
        error = self.assertRaises(hostinfo.HostError, self.firmware,
                                  'x86_64', 'uefi', Q35)
        self.assertIn('50-edk2-x86_64-secure.json: has secure-boot',
                      str(error))

    def test_order_is_by_name_across_directories(self):
        self.tree.copy(f'{OVMF}/OVMF_CODE.fd', 'opt/fw/CODE.fd')
        self.tree.copy(f'{OVMF}/OVMF_VARS.fd', 'opt/fw/VARS.fd')
        self.tree.descriptor('etc/qemu/firmware/55-local.json',
                             '/opt/fw/CODE.fd', '/opt/fw/VARS.fd')
        self.assertEqual(self.tree.path('opt/fw/CODE.fd'),
                         self.firmware('x86_64', 'uefi', Q35).code)

    def test_user_directory_is_not_read(self):
        # libvirt's system daemon reads only the system directories, and
        # the probe and nova-compute run as different users.
        self.tree.copy(f'{OVMF}/OVMF_CODE.fd', 'home/u/fw/CODE.fd')
        self.tree.copy(f'{OVMF}/OVMF_VARS.fd', 'home/u/fw/VARS.fd')
        self.tree.descriptor('home/u/.config/qemu/firmware/'
                             '10-edk2-x86_64.json',
                             '/home/u/fw/CODE.fd', '/home/u/fw/VARS.fd')
        with fixtures.EnvironmentVariable('HOME', self.tree.path('home/u')):
            self.assertNotEqual(self.tree.path('home/u/fw/CODE.fd'),
                                self.firmware('x86_64', 'uefi', Q35).code)
        self.assertEqual(
            [self.tree.path('usr/share/qemu/firmware'),
             self.tree.path('etc/qemu/firmware')],
            fd.search_dirs(self.tree.root))

    def test_missing_file_skips_to_the_next_build(self):
        os.unlink(self.tree.path('usr/share/OVMF/OVMF_CODE_4M.ms.fd'))
        secure = self.firmware('x86_64', 'uefi', Q35, secure_boot=True)
        self.assertEqual(
            self.tree.path('usr/share/OVMF/OVMF_CODE_4M.secboot.fd'),
            secure.code)

    def test_qcow2_format_is_kept(self):
        self.tree.descriptor('etc/qemu/firmware/10-qcow2.json',
                             '/usr/share/OVMF/OVMF_CODE_4M.fd',
                             '/usr/share/OVMF/OVMF_VARS_4M.fd', fmt='qcow2')
        fw = self.firmware('x86_64', 'uefi', Q35)
        self.assertEqual(('qcow2', 'qcow2'),
                         (fw.code_format, fw.variables_format))
        # ... and the probe maps the flash in that format.
        workdir = self.useFixture(fixtures.TempDir()).path
        command = probe.qemu_command(
            'x86_64', 'q35', fw, probe.probe_plan(1, 'x86_64', 'q35'),
            os.devnull, workdir, 'tcg')
        drives = [arg for arg in command if arg.startswith('if=pflash')]
        self.assertEqual(2, len(drives))
        for drive in drives:
            self.assertIn('format=qcow2', drive)


class TestBrokenHosts(_TreeTest):

    def test_no_descriptor_for_the_machine_names_machine_and_dirs(self):
        self.tree.copy(f'{OVMF}/OVMF_CODE_4M.fd', 'usr/share/OVMF/C.fd')
        self.tree.copy(f'{OVMF}/OVMF_VARS_4M.fd', 'usr/share/OVMF/V.fd')
        self.tree.descriptor('usr/share/qemu/firmware/60-i440fx.json',
                             '/usr/share/OVMF/C.fd', '/usr/share/OVMF/V.fd',
                             machines=('pc-i440fx-*',))
        error = str(self.assertRaises(hostinfo.HostError, self.firmware,
                                      'x86_64', 'uefi', Q35))
        self.assertIn(f"machine='{Q35}'", error)
        self.assertIn(self.tree.path('usr/share/qemu/firmware'), error)
        self.assertIn(self.tree.path('etc/qemu/firmware'), error)
        self.assertIn('list machines: pc-i440fx-*', error)
        # No QEMU in this tree to tell whether it was an alias: said too.
        self.assertIn('not resolved as a machine alias', error)

    def test_corrupt_descriptor_names_the_file_and_the_json_error(self):
        bad = self.tree.write('etc/qemu/firmware/70-broken.json',
                              '{"interface-types": ["uefi"],\n')
        error = str(self.assertRaises(hostinfo.HostError, self.firmware,
                                      'x86_64', 'uefi', Q35))
        self.assertIn(bad, error)
        self.assertIn('not valid JSON', error)
        self.assertIn('line 2', error)

    def test_descriptor_of_the_wrong_shape_names_the_file_and_field(self):
        bad = self.tree.write('usr/share/qemu/firmware/10-shape.json',
                              json.dumps({'interface-types': ['uefi'],
                                          'mapping': {'device': 'flash'},
                                          'targets': [], 'features': []}))
        error = str(self.assertRaises(fd.DescriptorError, fd.load,
                                      self.tree.root))
        self.assertIn(bad, error)
        self.assertIn('mapping.executable', error)

    def test_no_descriptors_at_all_falls_back_to_debian_paths(self):
        self.tree.copy(f'{OVMF}/OVMF_CODE_4M.fd',
                       'usr/share/OVMF/OVMF_CODE_4M.fd')
        self.tree.copy(f'{OVMF}/OVMF_VARS_4M.fd',
                       'usr/share/OVMF/OVMF_VARS_4M.fd')
        fw = self.firmware('x86_64', 'uefi', Q35)
        self.assertEqual(
            (self.tree.path('usr/share/OVMF/OVMF_CODE_4M.fd'), None),
            (fw.code, fw.descriptor))
        error = str(self.assertRaises(hostinfo.HostError, self.firmware,
                                      'x86_64', 'uefi', Q35,
                                      secure_boot=True))
        self.assertIn('no firmware descriptor describes a Secure Boot',
                      error)

    def test_every_candidate_refused_says_why_each(self):
        self.tree.descriptor('usr/share/qemu/firmware/60-gone.json',
                             '/usr/share/OVMF/GONE.fd',
                             '/usr/share/OVMF/GONE_VARS.fd')
        error = str(self.assertRaises(hostinfo.HostError, self.firmware,
                                      'x86_64', 'uefi', Q35))
        self.assertIn('60-gone.json: ', error)
        self.assertIn(self.tree.path('usr/share/OVMF/GONE.fd'), error)
        self.assertIn('is missing', error)


class TestThisHost(testtools.TestCase):
    """On this Debian 12 host discovery picks what the probe always used."""

    def setUp(self):
        super().setUp()
        _need_real_files(self, DEBIAN_DESCRIPTORS, QEMU_X86)

    def test_same_files_as_the_debian_table(self):
        for (arch, kind), (code, variables, _) in sorted(
                hostinfo.FIRMWARE_FILES.items()):
            machine = hostinfo.DEFAULT_MACHINES[arch]
            fw = hostinfo.firmware(arch, kind, machine)
            self.assertEqual((kind, code, variables),
                             (fw.kind, fw.code, fw.variables),
                             f'{arch} {kind}')
            # Also without a machine (the lookup then assumes this one).
            self.assertEqual(fw, hostinfo.firmware(arch, kind))

    def test_uefi_comes_from_the_descriptors(self):
        self.assertEqual(
            os.path.join(DEBIAN_DESCRIPTORS, '60-edk2-x86_64.json'),
            hostinfo.firmware('x86_64', 'uefi', 'q35').descriptor)

    def test_same_emulator_as_path(self):
        for arch, (name, _) in hostinfo.QEMU_BINARIES.items():
            expected = shutil.which(name)
            if expected:
                self.assertEqual(expected, hostinfo.qemu_binary(arch))
