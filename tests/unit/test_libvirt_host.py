"""Reading libvirt's answers, and the errors when libvirt cannot answer.

The XML is a trimmed copy of what Debian 12's libvirt 9.0 gave for
``virsh domcapabilities --arch x86_64 --machine q35 --virttype qemu``
(the CPU models and devices cut). ``virsh`` itself is replaced by small
scripts on ``PATH`` that answer as the real one does when it fails; the
real one against a real libvirtd is in tests/system/test_libvirt_host.py.
"""

import argparse
import os
import stat

import fixtures
import testtools

from pcie_sched.cmd import host as host_cmd
from pcie_sched import hostinfo
from pcie_sched import libvirt_host

DOMCAPS = """\
<domainCapabilities>
  <path>/usr/bin/qemu-system-x86_64</path>
  <domain>qemu</domain>
  <machine>pc-q35-7.2</machine>
  <arch>x86_64</arch>
  <vcpu max='288'/>
  <iothreads supported='yes'/>
  <os supported='yes'>
    <enum name='firmware'>
      <value>efi</value>
    </enum>
    <loader supported='yes'>
      <value>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</value>
      <value>/usr/share/OVMF/OVMF_CODE_4M.secboot.fd</value>
      <value>/usr/share/OVMF/OVMF_CODE_4M.fd</value>
      <enum name='type'>
        <value>rom</value>
        <value>pflash</value>
      </enum>
      <enum name='readonly'>
        <value>yes</value>
        <value>no</value>
      </enum>
      <enum name='secure'>
        <value>yes</value>
        <value>no</value>
      </enum>
    </loader>
  </os>
  <cpu>
    <mode name='host-passthrough' supported='no'/>
  </cpu>
</domainCapabilities>
"""

VERSION = """\
Compiled against library: libvirt 9.0.0
Using library: libvirt 9.0.0
Using API: QEMU 9.0.0
Running hypervisor: QEMU 7.2.22
"""

URI = 'qemu:///system?socket=/nonexistent/libvirt-sock'


class TestParse(testtools.TestCase):

    def test_domain_capabilities(self):
        caps = libvirt_host.parse_domcapabilities(DOMCAPS)
        self.assertEqual('/usr/bin/qemu-system-x86_64', caps.emulator)
        self.assertEqual('pc-q35-7.2', caps.machine)
        self.assertEqual('x86_64', caps.arch)
        self.assertEqual('qemu', caps.virt_type)
        self.assertEqual(('/usr/share/OVMF/OVMF_CODE_4M.ms.fd',
                          '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd',
                          '/usr/share/OVMF/OVMF_CODE_4M.fd'), caps.loaders)
        self.assertEqual(('rom', 'pflash'), caps.loader_types)
        self.assertEqual(('efi',), caps.firmware)

    def test_no_loader_offered(self):
        text = DOMCAPS[:DOMCAPS.index('  <os')] + '  <os supported="no"/>\n' \
            '</domainCapabilities>\n'
        caps = libvirt_host.parse_domcapabilities(text)
        self.assertEqual((), caps.loaders)
        self.assertEqual((), caps.loader_types)

    def test_not_xml(self):
        error = self.assertRaises(libvirt_host.LibvirtError,
                                  libvirt_host.parse_domcapabilities,
                                  'error: nope', URI)
        self.assertIn(f'domain capabilities from {URI} are not XML',
                      str(error))

    def test_missing_element(self):
        text = DOMCAPS.replace('<machine>pc-q35-7.2</machine>', '')
        error = self.assertRaises(libvirt_host.LibvirtError,
                                  libvirt_host.parse_domcapabilities, text,
                                  URI)
        self.assertIn('have no <machine>', str(error))

    def test_wrong_document(self):
        error = self.assertRaises(libvirt_host.LibvirtError,
                                  libvirt_host.parse_domcapabilities,
                                  '<capabilities/>', URI)
        self.assertIn('<capabilities>, not <domainCapabilities>', str(error))

    def test_version(self):
        self.assertEqual(('QEMU 7.2.22', (7, 2)),
                         libvirt_host.parse_version(VERSION))

    def test_version_of_another_hypervisor(self):
        error = self.assertRaises(
            libvirt_host.LibvirtError, libvirt_host.parse_version,
            'Running hypervisor: LXC 9.0.0\n', 'lxc:///')
        self.assertIn('libvirt at lxc:/// reports no QEMU', str(error))

    def test_default_uri_is_novas(self):
        self.assertEqual('qemu:///system', libvirt_host.default_uri('kvm'))
        self.assertEqual('qemu:///system', libvirt_host.default_uri('qemu'))
        error = self.assertRaises(libvirt_host.LibvirtError,
                                  libvirt_host.default_uri, 'lxc')
        self.assertIn("virt_type='lxc'", str(error))
        self.assertIn('accepted: kvm, qemu', str(error))


class FakeVirsh(fixtures.Fixture):
    """``PATH`` is one directory, with a ``virsh`` running ``script``."""

    def __init__(self, script=None):
        super().__init__()
        self.script = script

    def _setUp(self):
        self.bin = self.useFixture(fixtures.TempDir()).path
        if self.script is not None:
            path = os.path.join(self.bin, 'virsh')
            with open(path, 'w') as handle:
                handle.write('#!/bin/sh\n' + self.script)
            os.chmod(path, stat.S_IRWXU)
        self.useFixture(fixtures.EnvironmentVariable('PATH', self.bin))


class TestVirsh(testtools.TestCase):

    def test_missing_virsh_says_what_to_install(self):
        self.useFixture(FakeVirsh())
        error = self.assertRaises(libvirt_host.LibvirtError,
                                  libvirt_host.qemu_version, URI)
        self.assertIn(f'virsh not found on PATH, so libvirt at {URI}',
                      str(error))
        self.assertIn('libvirt-clients', str(error))

    def test_unreachable_names_uri_and_virshs_message(self):
        self.useFixture(FakeVirsh(
            "echo 'error: failed to connect to the hypervisor' >&2\n"
            "echo \"error: Failed to connect socket to '/nonexistent/"
            "libvirt-sock': No such file or directory\" >&2\nexit 1\n"))
        error = self.assertRaises(libvirt_host.LibvirtError,
                                  libvirt_host.describe, URI, 'x86_64',
                                  'q35', 'qemu')
        self.assertEqual(
            f"libvirt at {URI}: virsh version failed: failed to connect to "
            f"the hypervisor; Failed to connect socket to "
            f"'/nonexistent/libvirt-sock': No such file or directory",
            str(error))

    def test_timeout(self):
        self.useFixture(FakeVirsh('exec /bin/sleep 30\n'))
        error = self.assertRaises(libvirt_host.LibvirtError,
                                  libvirt_host.virsh, URI, 'version',
                                  timeout=0.5)
        self.assertIn(f'virsh version at {URI} gave no answer in 0.5s',
                      str(error))

    def test_answers_are_asked_for_the_machine_type_only(self):
        # The script answers only the exact arguments expected.
        self.useFixture(FakeVirsh(
            'if [ "$*" = "-c %s domcapabilities --arch x86_64 --machine '
            'q35 --virttype qemu" ]; then /bin/cat <<"EOF"\n%sEOF\n'
            'elif [ "$3" = version ]; then /bin/cat <<"EOF"\n%sEOF\n'
            'else echo "error: unexpected $*" >&2; exit 1; fi\n'
            % (URI, DOMCAPS, VERSION)))
        view = libvirt_host.describe(URI, 'x86_64', 'q35,smm=off', 'qemu')
        self.assertEqual((7, 2), view.qemu_version)
        self.assertEqual('pc-q35-7.2', view.capabilities.machine)
        self.assertEqual(URI, view.to_dict()['uri'])


class TestDiscover(testtools.TestCase):
    """The CLI's choice of source, with the real QEMU as the local one."""

    def args(self, *sources):
        return argparse.Namespace(arch='x86_64', machine=None,
                                  config_sources=list(sources))

    def nova_conf(self, text):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'nova.conf')
        with open(path, 'w') as handle:
            handle.write(text)
        return path

    def test_nova_options_and_their_defaults(self):
        options = host_cmd.nova_libvirt(['--config-file', self.nova_conf(
            '[libvirt]\nhw_machine_type = x86_64=q35,aarch64=virt\n')])
        self.assertEqual(('x86_64=q35', 'aarch64=virt'),
                         options.hw_machine_type)
        self.assertEqual('', options.connection_uri)
        self.assertEqual('kvm', options.virt_type)
        self.assertEqual('qemu:///system', options.uri)
        self.assertIsNone(host_cmd.nova_libvirt([]))

    def test_libvirt_is_not_asked_without_config(self):
        facts = host_cmd.discover(self.args(), 'q35')
        self.assertEqual(host_cmd.LOCAL, facts.source)
        self.assertIn('no --config-file', facts.note)
        self.assertIsNone(facts.libvirt_uri)
        self.assertEqual(hostinfo.qemu_binary('x86_64'), facts.emulator)
        self.assertEqual('local', facts.emulator_source)
        self.assertEqual('q35', facts.model_machine)
        self.assertTrue(facts.canonical_machine.startswith('pc-q35-'))

    def test_unreachable_libvirt_falls_back_with_a_note(self):
        path = self.nova_conf(f'[libvirt]\nconnection_uri = {URI}\n'
                              f'virt_type = qemu\n')
        facts = host_cmd.discover(self.args('--config-file', path), 'q35')
        self.assertEqual(host_cmd.LOCAL, facts.source)
        self.assertEqual(URI, facts.libvirt_uri)
        self.assertIn(f'libvirt at {URI}: virsh version failed',
                      facts.libvirt_error)
        self.assertIn(facts.libvirt_error, facts.note)
        self.assertNotIn('\n', facts.note)
        report = facts.report()
        self.assertEqual('local', report['host_source'])
        self.assertEqual('local', report['qemu_version_source'])
        self.assertIsNone(report['libvirt_loaders'])

    def test_missing_virsh_falls_back(self):
        path = self.nova_conf(f'[libvirt]\nconnection_uri = {URI}\n')
        qemu = hostinfo.qemu_binary('x86_64')
        fake = self.useFixture(FakeVirsh())
        # QEMU stays reachable on PATH, virsh is gone.
        local = os.path.join(fake.bin, os.path.basename(qemu))
        os.symlink(qemu, local)
        facts = host_cmd.discover(self.args('--config-file', path), 'q35')
        self.assertEqual(host_cmd.LOCAL, facts.source)
        self.assertIn('install the package libvirt-clients', facts.note)
        self.assertEqual(local, facts.emulator)
        self.assertEqual('local', facts.qemu_version_source)

    def test_libvirts_answers_drive_the_model_and_the_probe(self):
        view = libvirt_host.HostView(
            URI, (7, 2), 'QEMU 7.2.22',
            libvirt_host.parse_domcapabilities(DOMCAPS))
        facts = host_cmd._from_libvirt('x86_64', 'q35', view)
        self.assertEqual('pc-q35-7.2', facts.model_machine)
        self.assertEqual('libvirt', facts.report()['canonical_machine_source'])
        with facts.emulator_used('x86_64'):
            self.assertEqual('/usr/bin/qemu-system-x86_64',
                             hostinfo.qemu_binary('x86_64'))

    def test_an_emulator_elsewhere_is_not_booted(self):
        caps = libvirt_host.parse_domcapabilities(DOMCAPS.replace(
            '/usr/bin/qemu-system-x86_64', '/nonexistent/qemu-kvm'))
        view = libvirt_host.HostView(URI, (7, 2), 'QEMU 7.2.22', caps)
        facts = host_cmd._from_libvirt('x86_64', 'q35', view)
        self.assertIn('not on this file system', facts.note)
        with facts.emulator_used('x86_64'):
            self.assertNotEqual('/nonexistent/qemu-kvm',
                                hostinfo.qemu_binary('x86_64'))

    def test_a_distribution_machine_name_is_modelled_by_its_alias(self):
        caps = libvirt_host.parse_domcapabilities(DOMCAPS.replace(
            'pc-q35-7.2', 'pc-q35-rhel9.4.0'))
        view = libvirt_host.HostView(URI, (8, 2), 'QEMU 8.2.0', caps)
        facts = host_cmd._from_libvirt('x86_64', 'q35', view)
        self.assertEqual('pc-q35-rhel9.4.0', facts.canonical_machine)
        self.assertEqual('q35', facts.model_machine)
