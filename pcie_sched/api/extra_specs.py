"""nova-api validator for ``hw:pci_hotplug_ports``.

nova-api loads this module through the ``nova.api.extra_spec_validators``
entry point and calls :func:`register`. From compute API microversion 2.86
nova refuses unknown keys in the ``hw:`` namespace, so without pcie-sched
installed in nova-api's environment the key cannot be set at all; below
2.86 nova validates nothing and the scheduler filter and compute driver
re-validate whatever was stored.
"""

from nova.api.validation.extra_specs import base
from nova import exception

from pcie_sched import spec


class HotplugPortsValidator(base.ExtraSpecValidator):
    """Validates through :func:`pcie_sched.spec.parse`.

    nova's own ``int`` validator would accept ``' 16'`` and non-ASCII
    digits, which other readers of the extra spec might not; delegating
    keeps the API, the filter and the driver in exact agreement.
    """

    def validate(self, name, value):
        super().validate(name, '0')  # the name check, with a known value
        try:
            spec.parse(value, name)
        except spec.InvalidHotplugPortsSpec as exc:
            raise exception.ValidationError(
                f'Validation failed; {exc}.')


def register():
    return [
        HotplugPortsValidator(
            name=spec.FLAVOR_KEY,
            description=(
                'The number of free PCIe hotplug ports (pcie-root-port '
                'controllers) the guest boots with, on top of the ports its '
                'cold-plugged devices use. Only hosts whose QEMU, firmware '
                'and machine type can boot that many ports are scheduled '
                '(PciHotplugPortsFilter). Applies to q35 (x86_64) and virt '
                '(aarch64) guests of the libvirt driver.'),
            value={
                'type': int,
                'min': spec.MIN_PORTS,
                'max': spec.MAX_PORTS,
                'description': spec.ACCEPTED,
            },
        ),
    ]
