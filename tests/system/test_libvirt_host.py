"""What a real libvirtd says about this host, and the CLI using it.

A private libvirtd (:class:`tests.system.libvirt_support.LibvirtDaemon`)
runs Debian 12's QEMU 7.2 and OVMF; these tests ask it through ``virsh``
the way :mod:`pcie_sched.libvirt_host` does on an operator's host, and
run ``pcie-sched check`` with a nova.conf whose ``connection_uri`` points
at it. Needs root, libvirt-daemon-system, libvirt-clients,
qemu-system-x86 and ovmf.
"""

import json
import os
import subprocess
import sys

import fixtures
import testtools

from pcie_sched import libvirt_host
from pcie_sched import payload
from tests.system import libvirt_support


class TestLibvirtHost(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(600, gentle=True))
        self.libvirt = self.useFixture(
            libvirt_support.LibvirtDaemon(private_state=True))

    def test_what_libvirt_runs_for_q35(self):
        view = libvirt_host.describe(self.libvirt.uri, 'x86_64', 'q35',
                                     'qemu')
        caps = view.capabilities
        self.assertEqual('/usr/bin/qemu-system-x86_64', caps.emulator)
        self.assertEqual('pc-q35-7.2', caps.machine)
        self.assertEqual((7, 2), view.qemu_version)
        self.assertEqual('qemu', caps.virt_type)
        self.assertIn('/usr/share/OVMF/OVMF_CODE_4M.fd', caps.loaders)
        # Debian's Secure Boot build is offered too.
        self.assertIn('/usr/share/OVMF/OVMF_CODE_4M.secboot.fd',
                      caps.loaders)
        self.assertIn('pflash', caps.loader_types)
        error = self.assertRaises(libvirt_host.LibvirtError,
                                  libvirt_host.domain_capabilities,
                                  self.libvirt.uri, 'x86_64', 'no-such',
                                  'qemu')
        self.assertIn(f'libvirt at {self.libvirt.uri}: virsh '
                      f'domcapabilities failed', str(error))
        self.assertIn("the machine 'no-such' is not supported", str(error))

    def test_check_with_qemu_reachable_only_through_libvirt(self):
        workdir = self.useFixture(fixtures.TempDir()).path
        cache = os.path.join(workdir, 'cache')
        # Built with the full PATH (grub, mtools); check then finds it.
        payload.disk_image('x86_64', 'uefi', cache)
        nova_conf = os.path.join(workdir, 'nova.conf')
        with open(nova_conf, 'w') as handle:
            handle.write(f'[libvirt]\nconnection_uri = {self.libvirt.uri}\n'
                         f'virt_type = qemu\nhw_machine_type = x86_64=q35\n')
        # PATH holds virsh and nothing else: no QEMU to look up locally,
        # as on a RHEL-family host (/usr/libexec/qemu-kvm) or where the
        # CLI sees QEMU only through libvirt.
        bindir = os.path.join(workdir, 'bin')
        os.mkdir(bindir)
        os.symlink('/usr/bin/virsh', os.path.join(bindir, 'virsh'))
        result = subprocess.run(
            [sys.executable, '-m', 'pcie_sched.cmd.main', 'check',
             '--config-file', nova_conf, '--ports', '4', '--format', 'json',
             '--cache-dir', cache],
            capture_output=True, text=True, timeout=400,
            stdin=subprocess.DEVNULL,
            env={**os.environ, 'PATH': bindir})
        self.assertEqual(0, result.returncode, result.stderr)
        report = json.loads(result.stdout)
        self.assertEqual('yes', report['answer'])
        self.assertEqual('q35', report['machine'])
        self.assertEqual('config', report['machine_source'])
        self.assertEqual('libvirt', report['host_source'])
        self.assertEqual(self.libvirt.uri, report['libvirt_uri'])
        self.assertIsNone(report['libvirt_error'])
        self.assertEqual('/usr/bin/qemu-system-x86_64', report['emulator'])
        self.assertEqual('libvirt', report['emulator_source'])
        self.assertEqual('pc-q35-7.2', report['canonical_machine'])
        self.assertEqual('libvirt', report['canonical_machine_source'])
        self.assertEqual('7.2', report['qemu_version'])
        self.assertEqual('libvirt', report['qemu_version_source'])
        self.assertEqual('pc-q35-7.2', report['model_machine'])
        self.assertEqual({'machine': 'pc-q35-7.2', 'qemu_version': '7.2'},
                         {key: report['model']['profile'][key]
                          for key in ('machine', 'qemu_version')})
        self.assertIn('/usr/share/OVMF/OVMF_CODE_4M.fd',
                      report['libvirt_loaders'])
        self.assertEqual('booted', report['boot']['outcome'])
        self.assertIn(f'host: libvirt at {self.libvirt.uri}',
                      report['host_note'])
