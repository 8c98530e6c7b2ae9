"""``[pcie_sched_probe]``: how the probe boots this host's QEMU."""

import os

from oslo_config import cfg
from oslo_config import types

#: Where the probe keeps results when ``cache_dir`` is not set, for every
#: user alike: the probe run by root and nova-compute running as another
#: user must look in the same place.
DEFAULT_CACHE_DIR = '/var/cache/pcie-sched'
#: The least a boot or a console silence may be given: what a working
#: boot can meet (pcie_sched.probe.CONCLUSIVE_SILENCE says why).
MIN_BOOT_TIMEOUT = 60.0
MIN_STALL_TIMEOUT = 60.0


class AbsolutePath(types.String):
    """A string that must be an absolute path.

    nova-compute's working directory is not the operator's, so a relative
    path would name a different directory in the service than in the CLI.
    """

    def __call__(self, value):
        value = super().__call__(value)
        if not os.path.isabs(value):
            raise ValueError(
                f'[pcie_sched_probe] cache_dir={value!r} is not an absolute '
                f'path; accepted: an absolute directory path such as '
                f'{DEFAULT_CACHE_DIR}')
        return os.path.normpath(value)


GROUP = cfg.OptGroup(
    'pcie_sched_probe',
    title='PCIe hotplug port probe')

ALL_OPTS = [
    cfg.Opt(
        'cache_dir', type=AbsolutePath(), default=DEFAULT_CACHE_DIR,
        help='Absolute path of the directory where boot payloads and '
             'measured results are kept. nova-compute reads the measured '
             'maximum from here, so run the probe with the same setting '
             '(pcie-sched probe --find-max --config-file '
             '/etc/nova/nova.conf). Directories the probe creates are mode '
             '0755 and results 0644, so a probe run by root is readable by '
             'the nova-compute user. Results are keyed by a fingerprint of '
             'the QEMU binary, the firmware file and the machine type, so a '
             'host re-measures only after one of them changes.'),
    cfg.FloatOpt(
        'boot_timeout', default=300.0, min=MIN_BOOT_TIMEOUT,
        help='Seconds one probe boot may take before it counts as a '
             'timeout. TCG boots of q35 with OVMF and 232 ports take 20 '
             'to 45 seconds on a shared 2-core host, silent on the serial '
             'console for most of it, hence the minimum. A boot that '
             'times out says nothing about the firmware: find-max then '
             'stops with an error and caches nothing.'),
    cfg.FloatOpt(
        'stall_timeout', default=120.0, min=MIN_STALL_TIMEOUT,
        help='Seconds of serial console silence after which a running '
             'guest counts as hung. OVMF prints nothing until its boot '
             'manager runs (about 30 seconds for 232 ports under TCG), '
             'hence the minimum. find-max boots a hung count once more '
             'before it counts it as not booting.'),
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
