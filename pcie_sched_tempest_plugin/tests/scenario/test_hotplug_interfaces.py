"""A server of a flavor with N hotplug ports accepts N interfaces."""

from tempest.common import waiters
from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib import decorators
from tempest.scenario import manager

CONF = config.CONF


class HotplugPortsScenarioTest(manager.ScenarioTest):

    credentials = ['primary', 'admin']

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.service_available.pcie_sched:
            raise cls.skipException('pcie-sched is not installed')
        if not CONF.service_available.neutron:
            raise cls.skipException('interface attachment needs neutron')

    @decorators.idempotent_id('b5f1d7a4-3c2e-4e9b-8d61-7a0c9e2f4b33')
    def test_attach_one_interface_per_port(self):
        ports = CONF.pcie_sched.hotplug_ports
        flavors = self.os_admin.flavors_client
        flavor = flavors.create_flavor(
            name=data_utils.rand_name('pcie-sched'),
            ram=256, vcpus=1, disk=1)['flavor']
        self.addCleanup(flavors.delete_flavor, flavor['id'])
        flavors.set_flavor_extra_spec(
            flavor['id'], **{'hw:pci_hotplug_ports': str(ports)})
        server = self.create_server(flavor=flavor['id'],
                                    wait_until='ACTIVE')
        network = self.create_network()
        self.create_subnet(network)
        # The server boots with the interfaces nova gave it; those sit on
        # cold-plugged ports, so only attachments beyond them are counted.
        booted_with = len(self.interface_client.list_interfaces(
            server['id'])['interfaceAttachments'])
        for _ in range(ports):
            attachment = self.interface_client.create_interface(
                server['id'], net_id=network['id'])['interfaceAttachment']
            waiters.wait_for_interface_status(
                self.interface_client, server['id'], attachment['port_id'],
                'ACTIVE')
        attached = self.interface_client.list_interfaces(
            server['id'])['interfaceAttachments']
        self.assertEqual(booted_with + ports, len(attached))
