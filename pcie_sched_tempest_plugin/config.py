"""tempest.conf options of the pcie-sched tempest plugin."""

from oslo_config import cfg

from pcie_sched import spec

service_option = cfg.BoolOpt(
    'pcie_sched', default=False,
    help='Whether pcie-sched is installed on the cloud under test.')

group = cfg.OptGroup(name='pcie_sched', title='pcie-sched options')

opts = [
    cfg.IntOpt('hotplug_ports', default=8, min=1, max=spec.MAX_PORTS,
               help='Free hotplug ports the test flavor asks for; every '
                    'one must accept an interface attachment.'),
]
