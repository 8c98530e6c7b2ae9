"""What nova's own test framework needs to run outside nova's tree.

nova's ``ConfFixture`` points ``[wsgi] api_paste_config`` at
``etc/nova/api-paste.ini`` under nova's state path (site-packages), but
the nova wheel installs that file under ``<prefix>/etc/nova/``.
"""

import os
import sys

import nova


def api_paste_config() -> str:
    candidates = [
        os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini'),
        os.path.join(os.path.dirname(os.path.dirname(nova.__file__)),
                     'etc', 'nova', 'api-paste.ini'),
    ]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise RuntimeError(
        'nova api-paste.ini not found in %s: install nova from PyPI '
        '("pip install nova>=34") into this environment' % candidates)


def use_installed_api_paste(test_case) -> None:
    """Point nova's config at the installed api-paste.ini."""
    test_case.flags(api_paste_config=api_paste_config(), group='wsgi')


# What libvirt puts behind a pcie-root-port on q35 and virt, read from the
# domain XML alone so the tests do not trust pcie_sched.virt.devices, which
# counts the same devices from nova's config objects. libvirt rule: a PCI
# Express endpoint needs a root port; q35 keeps the primary video on the
# root bus (00:01.0), virt has no such slot.
_PCIE_NIC_MODELS = ('virtio', 'e1000e', None)
# A USB controller without a model is piix3-uhci on x86_64 in libvirt 9.0:
# conventional PCI, behind a pcie-to-pci-bridge that takes the root port
# (and libvirt then adds ports of its own). Still one port for counting;
# guests with the plan must not have it (see assertPlanned).
_PCIE_USB_MODELS = ('qemu-xhci', 'nec-xhci', None)


def _unknown(device, what):
    return AssertionError(
        f'{what} {device.tag!r} ({dict(device.attrib)}): the test does not '
        f'know whether libvirt puts it behind a pcie-root-port; teach '
        f'nova_support.pcie_endpoints about it')


def pcie_endpoints(domain, arch='x86_64'):
    """Elements of ``domain`` that each take a pcie-root-port."""
    endpoints = []
    serial_controller = False
    videos = 0
    for device in domain.find('devices'):
        tag = device.tag
        if tag == 'disk':
            if device.find('target').get('bus') == 'virtio':
                endpoints.append(device)
        elif tag == 'interface':
            model = device.find('model')
            model = model.get('type') if model is not None else None
            if model not in _PCIE_NIC_MODELS:
                raise _unknown(device, f'NIC model {model!r}')
            endpoints.append(device)
        elif tag == 'hostdev':
            if device.get('type') == 'pci':
                endpoints.append(device)
        elif tag in ('memballoon', 'rng', 'vsock'):
            if device.get('model') not in (None, 'none'):
                endpoints.append(device)
        elif tag == 'controller':
            kind, model = device.get('type'), device.get('model')
            if kind == 'usb' and model != 'none':
                if model not in _PCIE_USB_MODELS:
                    raise _unknown(device, f'USB model {model!r}')
                endpoints.append(device)
            elif kind in ('scsi', 'virtio-serial'):
                endpoints.append(device)
                serial_controller |= kind == 'virtio-serial'
            elif kind not in ('pci', 'sata', 'ide', 'fdc'):
                raise _unknown(device, f'controller type {kind!r}')
        elif tag == 'channel':
            target = device.find('target')
            if target.get('type') == 'virtio' and not serial_controller:
                # libvirt adds one virtio-serial controller for them all.
                serial_controller = True
                endpoints.append(device)
        elif tag == 'video':
            videos += 1
            if arch == 'aarch64' or videos > 1:
                endpoints.append(device)
        elif tag not in ('serial', 'console', 'graphics', 'input', 'emulator',
                         'tpm'):
            raise _unknown(device, 'device')
    return endpoints


def root_port_occupants(domain, arch='x86_64'):
    """{pcie-root-port index: the endpoint libvirt puts there, or None}.

    A device with a PCI address sits on its bus; libvirt gives every other
    endpoint the lowest-indexed port still free, one device per port.
    """
    ports = sorted(int(c.get('index')) for c in domain.findall(
        "devices/controller[@model='pcie-root-port']"))
    occupants = dict.fromkeys(ports)
    unaddressed = []
    for device in pcie_endpoints(domain, arch):
        address = device.find("address[@type='pci']")
        if address is None:
            unaddressed.append(device)
        else:
            occupants[int(address.get('bus'), 16)] = device
    free = [index for index in ports if occupants[index] is None]
    if len(unaddressed) > len(free):
        raise AssertionError(
            f'{len(unaddressed)} endpoints without an address but only '
            f'{len(free)} free pcie-root-ports: libvirt would add ports of '
            f'its own')
    occupants.update(zip(free, unaddressed))
    return occupants
