"""Through nova's API: a real guest gets its ports and nova hot-plugs."""

from tests.e2e import stack


class TestHotplugThroughNova(stack.RealLibvirtStackTestBase):

    def test_boot_and_attach(self):
        image = self.create_guest_image('uefi')
        flavor = self.create_flavor(ports=16)
        server = self._create_server(image_uuid=image, flavor_id=flavor,
                                     networks=[{'uuid': stack.nova_fixtures.NeutronFixture.network_1['id']}])
        report = self.wait_for_report(server, 3)
        print(report)
        self._delete_server(server)
