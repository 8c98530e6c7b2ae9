"""``[libvirt] num_pcie_ports`` against ``hw:pci_hotplug_ports``.

The precedence is documented in doc/source/install.rst ("The spec and
[libvirt] num_pcie_ports") and doc/source/configuration.rst; this test
builds the documented table's guests through nova's functional framework
with the pcie-sched driver and checks that the page says what they got.
"""

import os

from tests.functional import nova_support
from tests.functional import test_libvirt_driver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
#: The compute-wide value in the documented example: nova's maximum.
NUM_PCIE_PORTS = 28


def read_doc(name):
    with open(os.path.join(ROOT, 'doc', 'source', name)) as handle:
        return handle.read()


class TestSpecAndNumPciePorts(test_libvirt_driver.DriverTestBase):

    def setUp(self):
        super().setUp()
        self.flags(num_pcie_ports=NUM_PCIE_PORTS, group='libvirt')
        self.start_compute('compute1')

    def boot(self, flavor_id):
        server = self._create_server(flavor_id=flavor_id, networks='none')
        self.assertEqual('ACTIVE', server['status'])
        domain = self.domain_xml[server['id']]
        cold = len(nova_support.pcie_endpoints(domain, 'x86_64'))
        return server, len(self.root_ports(server)), cold

    def test_the_spec_replaces_num_pcie_ports_as_documented(self):
        rows = []
        # Without the spec: nova's ports, as many as num_pcie_ports.
        server, total, cold = self.boot(self._create_flavor(ephemeral=0))
        self.assertEqual(NUM_PCIE_PORTS, total)
        rows.append(('no ``hw:pci_hotplug_ports``', total, total - cold))
        for requested in (0, 2, 40):
            server, total, cold = self.boot(self.ports_flavor(requested))
            # The spec wins: its free ports on top of one per cold-plugged
            # device, whatever num_pcie_ports says (fewer or more).
            _, occupants = self.assertPlanned(server, requested)
            free = list(occupants.values()).count(None)
            self.assertEqual(requested, free)
            self.assertEqual(requested + cold, total)
            rows.append((f'``hw:pci_hotplug_ports={requested}``', total,
                         free))
        # hw:pci_hotplug_ports=0 leaves no port free at boot: fewer spare
        # ports than nova's num_pcie_ports or libvirt's own default.
        self.assertEqual(0, rows[1][2])
        self.assertLess(rows[1][1], NUM_PCIE_PORTS)
        install = read_doc('install.rst')
        start = install.index('The spec and ``[libvirt] num_pcie_ports``')
        section = install[start:install.index('\nWhere a host', start)]
        self.assertIn(f'with ``[libvirt] num_pcie_ports = {NUM_PCIE_PORTS}``'
                      f' and no NIC ({cold} cold-plugged devices',
                      ' '.join(section.split()))
        for flavor, total, free in rows:
            self.assertIn(f'   * - {flavor}\n     - {total}\n     - {free}\n',
                          section)
        configuration = ' '.join(read_doc('configuration.rst').split())
        self.assertIn('``[libvirt] num_pcie_ports``', configuration)
        self.assertIn('``hw:pci_hotplug_ports=0`` gives no free port',
                      configuration)
