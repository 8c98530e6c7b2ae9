"""nova-api refuses an invalid hw:pci_hotplug_ports at 2.86."""

from tempest.api.compute import base
from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib import decorators
from tempest.lib import exceptions

CONF = config.CONF


class HotplugPortsExtraSpecTest(base.BaseV2ComputeAdminTest):

    min_microversion = '2.86'

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.service_available.pcie_sched:
            raise cls.skipException('pcie-sched is not installed')

    def _flavor(self):
        flavor = self.admin_flavors_client.create_flavor(
            name=data_utils.rand_name('pcie-sched'), ram=256, vcpus=1,
            disk=1)['flavor']
        self.addCleanup(self.admin_flavors_client.delete_flavor,
                        flavor['id'])
        return flavor['id']

    @decorators.idempotent_id('6d1f3a0e-4a55-4a8f-9b43-2f0d0c9a7b11')
    def test_invalid_value_refused(self):
        error = self.assertRaises(
            exceptions.BadRequest,
            self.admin_flavors_client.set_flavor_extra_spec, self._flavor(),
            **{'hw:pci_hotplug_ports': 'abc'})
        self.assertIn('hw:pci_hotplug_ports', str(error))

    @decorators.idempotent_id('0a3c5e26-9b7d-4f1e-8c2a-5b6d7e8f9a01')
    def test_valid_value_accepted(self):
        flavor = self._flavor()
        self.admin_flavors_client.set_flavor_extra_spec(
            flavor, **{'hw:pci_hotplug_ports': '16'})
        specs = self.admin_flavors_client.list_flavor_extra_specs(
            flavor)['extra_specs']
        self.assertEqual('16', specs['hw:pci_hotplug_ports'])
