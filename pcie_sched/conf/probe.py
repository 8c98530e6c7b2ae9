"""``[pcie_sched_probe]``: how the probe boots this host's QEMU."""

from oslo_config import cfg

GROUP = cfg.OptGroup(
    'pcie_sched_probe',
    title='PCIe hotplug port probe')

ALL_OPTS = [
    cfg.StrOpt(
        'cache_dir',
        help='Where boot payloads and measured results are kept. Default: '
             '/var/cache/pcie-sched when running as root, else '
             '~/.cache/pcie-sched. Results are keyed by a fingerprint of '
             'the QEMU binary, the firmware file and the machine type, so a '
             'host re-measures only after one of them changes.'),
    cfg.FloatOpt(
        'boot_timeout', default=300.0, min=10.0,
        help='Seconds one probe boot may take before it counts as a '
             'timeout. TCG boots of q35 with OVMF and 240 ports take about '
             '20 seconds on one core.'),
    cfg.FloatOpt(
        'stall_timeout', default=120.0, min=5.0,
        help='Seconds of serial console silence after which a running '
             'guest counts as hung.'),
    cfg.StrOpt(
        'accel', default='tcg', choices=['tcg', 'kvm', 'auto'],
        help='QEMU accelerator for probe boots; auto uses KVM when '
             '/dev/kvm is usable. The firmware limits measured do not '
             'depend on it.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(GROUP)
    conf.register_opts(ALL_OPTS, group=GROUP)


def list_opts():
    return {GROUP: ALL_OPTS}
