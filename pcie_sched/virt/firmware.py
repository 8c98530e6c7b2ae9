"""Make nova's UEFI guest XML acceptable to the libvirt it talks to.

nova 34 asks for UEFI with firmware autoselection (``<os
firmware='efi'>``) and states the Secure Boot choice twice: as a
firmware feature (``<firmware><feature name='secure-boot'/>``), which is
what autoselection reads, and as ``<loader secure=.../>``, which nova
keeps for libvirt older than 8.6. libvirt 9.0 (Debian 12) refuses the
second with autoselection ("loader attribute 'secure' cannot be
specified when firmware autoselection is enabled"), so no UEFI guest
starts there; later libvirt takes it as a selection hint again.

Which libvirt refuses is not guessed from its version: the driver asks
the libvirt it is connected to, once per libvirt version, machine and
architecture, to convert two minimal UEFI domains to a QEMU command
line (``virConnectDomainXMLToNative``, which parses and validates the
XML the way a define does, but defines nothing). Only when the domain
with ``secure`` is refused and the same domain without it is accepted
does the driver drop the attribute, and only from guests that carry the
same choice as a firmware feature, so no Secure Boot choice is lost.
"""

import typing as ty

from lxml import etree
from oslo_log import log as logging

LOG = logging.getLogger(__name__)


def _probe_domain(virt_type: str, arch: str, machine: str,
                  loader_secure: bool) -> str:
    domain = etree.Element('domain', type=virt_type)
    etree.SubElement(domain, 'name').text = 'pcie-sched-firmware-check'
    etree.SubElement(domain, 'memory', unit='MiB').text = '64'
    etree.SubElement(domain, 'vcpu').text = '1'
    os_element = etree.SubElement(domain, 'os', firmware='efi')
    firmware = etree.SubElement(os_element, 'firmware')
    etree.SubElement(firmware, 'feature', enabled='no', name='secure-boot')
    etree.SubElement(os_element, 'type', arch=arch,
                     machine=machine).text = 'hvm'
    if loader_secure:
        etree.SubElement(os_element, 'loader', secure='no')
    # libvirt refuses UEFI without ACPI on x86_64 and aarch64.
    etree.SubElement(etree.SubElement(domain, 'features'), 'acpi')
    etree.SubElement(domain, 'devices')
    return etree.tostring(domain).decode()


def _accepts(connection, xml: str) -> ty.Optional[str]:
    """None if libvirt accepts ``xml``, else its error message."""
    try:
        connection.domainXMLToNative('qemu-argv', xml, 0)
    except Exception as exc:  # libvirt.libvirtError, without importing it
        return str(exc)
    return None


def refuses_loader_secure(connection, virt_type: str, arch: str,
                          machine: str) -> bool:
    """Whether this libvirt refuses ``<loader secure>`` with autoselection.

    False when it cannot tell (both probe domains refused, for a reason
    that has nothing to do with the attribute): nova's XML is then left
    as nova wrote it.
    """
    without = _accepts(connection, _probe_domain(virt_type, arch, machine,
                                                 loader_secure=False))
    if without is not None:
        LOG.warning('Cannot tell whether libvirt accepts <loader secure> '
                    'with UEFI firmware autoselection for %(arch)s '
                    '%(machine)s: even the domain without it is refused: '
                    '%(error)s', {'arch': arch, 'machine': machine,
                                  'error': without})
        return False
    refusal = _accepts(connection, _probe_domain(virt_type, arch, machine,
                                                 loader_secure=True))
    if refusal is None:
        return False
    LOG.info('libvirt refuses <loader secure> with UEFI firmware '
             'autoselection (%s); UEFI guests get the Secure Boot choice as '
             'a firmware feature only', refusal)
    return True


def drop_refused_loader_secure(guest) -> bool:
    """Drop ``<loader secure>`` where the firmware feature says the same.

    :returns: whether the guest config changed.
    """
    if (guest.os_firmware != 'efi' or guest.os_loader_secure is None or
            guest.os_firmware_secure != guest.os_loader_secure):
        return False
    guest.os_loader_secure = None
    return True
