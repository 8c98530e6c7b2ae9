"""``[pcie_sched]``: how nova-scheduler judges a host's capacity."""

from oslo_config import cfg

from pcie_sched import capacity

#: What the capacity model gives a 1-vCPU guest with no cold-plugged
#: device, so that the help below cannot drift from the model.
_ONE_VCPU_PORTS = (capacity.X86_VECTORS_PER_CPU - capacity.X86_BOOT_VECTORS -
                   capacity.X86_CONSOLE_VECTORS) // capacity.VECTORS_PER_PORT

GROUP = cfg.OptGroup(
    'pcie_sched',
    title='PCIe hotplug port scheduling')

ALL_OPTS = [
    cfg.StrOpt(
        'unknown_host_policy',
        default='reject',
        choices=[
            ('reject', 'A host whose capacity is unknown cannot take a '
                       'guest that asks for hotplug ports.'),
            ('accept', 'A host whose capacity is unknown takes any such '
                       'guest; the compute driver still aborts a build it '
                       'cannot boot, with the reason in the instance '
                       'fault.'),
        ],
        help='What the PciHotplugPortsFilter does with a host that publishes '
             'no capacity, is in no aggregate with pci_hotplug_ports_max and '
             'for which the capacity model has no answer (for example a '
             'non-libvirt host, or an architecture the model does not '
             'know). The default is safe: a guest that asks for ports never '
             'lands where it might stop in the firmware.'),
    cfg.IntOpt(
        'cold_plugged_base_ports',
        default=3,
        min=0,
        max=255,
        help='Root ports a guest uses for devices nova always cold-plugs, '
             'before counting its networks and extra disks. With the '
             'libvirt driver on q35 or virt these are the root disk '
             '(virtio-blk), the memory balloon and the USB controller. '
             'The filter adds one port per requested network, one for an '
             'ephemeral disk, one for swap, one per PCI device the '
             'flavor passes through ([pci] alias) and one for the virtio '
             'RNG nova adds unless the flavor sets hw_rng:allowed=False, '
             'then the requested free hotplug ports.'),
    cfg.BoolOpt(
        'enforce_guest_vector_limit',
        default=True,
        help='Refuse requests an x86_64 Linux guest with the flavor\'s vCPUs '
             'would not survive: each root port takes an interrupt vector '
             f'and a vCPU has {capacity.X86_VECTORS_PER_CPU}, of which the '
             'kernel and the console take '
             f'{capacity.X86_BOOT_VECTORS + capacity.X86_CONSOLE_VECTORS} '
             f'and each cold-plugged device {capacity.VECTORS_PER_DEVICE}. '
             'So a 1-vCPU guest keeps its console with at most '
             f'{_ONE_VCPU_PORTS} root ports, fewer with cold-plugged '
             'devices, even on hosts whose firmware boots more. Set to '
             'False only for guests known to cope; they may boot with '
             'ports lacking hotplug/AER interrupts and without a working '
             'serial console.'),
    cfg.DictOpt(
        'default_machine_types',
        default={'x86_64': 'q35', 'aarch64': 'virt'},
        help='Machine type per guest architecture that the capacity model '
             'assumes for a host that publishes no capacity. Keep it in '
             'line with [libvirt] hw_machine_type on the compute hosts.'),
    cfg.DictOpt(
        'default_firmware',
        default={'x86_64': 'uefi', 'aarch64': 'uefi'},
        help='Firmware kind (uefi or bios) per guest architecture that the '
             'capacity model assumes for a host that publishes no capacity.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(GROUP)
    conf.register_opts(ALL_OPTS, group=GROUP)


def list_opts():
    return {GROUP: ALL_OPTS}
