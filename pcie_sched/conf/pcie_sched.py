"""``[pcie_sched]``: how nova-scheduler judges a host's capacity."""

from oslo_config import cfg

from pcie_sched import capacity

#: What the capacity model gives a 1-vCPU guest with no cold-plugged
#: device, so that the help below cannot drift from the model.
_ONE_VCPU_PORTS = (capacity.X86_VECTORS_PER_CPU - capacity.X86_BOOT_VECTORS -
                   capacity.X86_CONSOLE_VECTORS) // capacity.VECTORS_PER_PORT

#: Why [pcie_sched] default_machine_types and default_firmware are gone.
_NO_MODEL_REASON = (
    'The scheduler no longer models the capacity of a host that publishes '
    'none: such a host runs no pcie-sched compute driver (or its guests '
    'get a machine type without PCI Express) and cannot give ports, '
    'whatever the model says; [pcie_sched] unknown_host_policy decides for '
    'it. The option is ignored.')

#: Options kept registered (their names are an interface) that nothing
#: reads any more.
IGNORED_OPTS = ('default_machine_types', 'default_firmware')

GROUP = cfg.OptGroup(
    'pcie_sched',
    title='PCIe hotplug port scheduling')

ALL_OPTS = [
    cfg.StrOpt(
        'unknown_host_policy',
        default='reject',
        choices=[
            ('reject', 'A host that publishes no capacity takes no guest '
                       'that asks for hotplug ports.'),
            ('accept', 'A host that publishes no capacity takes such '
                       'guests anyway. On a host running nova\'s own '
                       'libvirt driver the guest then goes ACTIVE with the '
                       'ports nova gives every guest ([libvirt] '
                       'num_pcie_ports, or libvirt\'s one or two spare) '
                       'instead of the ports asked for, and nothing '
                       'reports it; on a pcie-sched host whose '
                       'guests get a machine type without PCI Express the '
                       'build aborts in ERROR.'),
        ],
        help='What PciHotplugPortsFilter does with a host that publishes '
             'no pci_hotplug_ports_max stat, or an invalid one. Only the '
             'pcie-sched compute driver (PcieSchedLibvirtDriver) publishes '
             'it and only that driver gives a guest its hotplug ports, so '
             'such a host runs no pcie-sched driver (nova\'s own libvirt '
             'driver, a rolling upgrade, a reverted config, another '
             'hypervisor) or its guests get a machine type without PCI '
             'Express (nova\'s pc when [libvirt] hw_machine_type is not '
             'set): it cannot give ports. The filter does not estimate a '
             'capacity for it, and aggregate metadata '
             'pci_hotplug_ports_max alone does not make it pass. Each '
             'request that asks for ports logs at INFO which hosts publish '
             'none. "accept" is only for a cloud that knows every such '
             'host boots the guests it is sent anyway.'),
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
    # Strings now, no longer dicts: nothing reads them, and a value in
    # nova's own "x86_64=q35" syntax must not make nova.conf unreadable
    # for pcie-sched --config-file over an option without effect.
    cfg.StrOpt(
        'default_machine_types',
        default='x86_64:q35,aarch64:virt',
        deprecated_for_removal=True,
        deprecated_reason=_NO_MODEL_REASON,
        help='No effect; any value is accepted. Machine type per guest '
             'architecture that the scheduler\'s capacity model used to '
             'assume for a host that publishes no capacity. The compute '
             'driver uses [libvirt] hw_machine_type on each host.'),
    cfg.StrOpt(
        'default_firmware',
        default='x86_64:uefi,aarch64:uefi',
        deprecated_for_removal=True,
        deprecated_reason=_NO_MODEL_REASON,
        help='No effect; any value is accepted. Firmware kind per guest '
             'architecture that the scheduler\'s capacity model used to '
             'assume for a host that publishes no capacity. The compute '
             'driver uses [pcie_sched_compute] firmware on each host.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(GROUP)
    conf.register_opts(ALL_OPTS, group=GROUP)


def list_opts():
    return {GROUP: ALL_OPTS}
