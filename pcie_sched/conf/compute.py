"""``[pcie_sched_compute]``: the compute driver's choices."""

from oslo_config import cfg

GROUP = cfg.OptGroup(
    'pcie_sched_compute',
    title='PCIe hotplug ports in nova-compute')

ALL_OPTS = [
    cfg.BoolOpt(
        'hotplug_on_cold_plugged_ports',
        default=True,
        help='Leave hotplug on for the ports that hold the guest\'s '
             'cold-plugged devices (root disk, NICs, ...). Turning it off '
             'stops a guest from ejecting its own boot disk, but nova can '
             'then no longer detach those devices from a running guest.'),
    cfg.StrOpt(
        'firmware',
        default='uefi',
        choices=['uefi', 'bios'],
        help='Firmware this host\'s guests usually boot with, for the '
             'capacity it reports to the scheduler (stats and Placement '
             'traits). Each guest is still checked against its own '
             'firmware when it is built.'),
    cfg.IntOpt(
        'max_ports_override',
        min=0, max=255,
        help='Report this many root ports as the host\'s capacity instead '
             'of the measured (cached probe) or modelled value, for hosts '
             'whose guests must stay below what the firmware boots. Guests '
             'are refused above it too.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(GROUP)
    conf.register_opts(ALL_OPTS, group=GROUP)


def list_opts():
    return {GROUP: ALL_OPTS}
