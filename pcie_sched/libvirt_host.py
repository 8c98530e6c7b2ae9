"""What libvirt says about this host's QEMU, asked with ``virsh``.

nova-compute reaches the hypervisor only through ``[libvirt]
connection_uri``; in containerised deployments QEMU, its firmware and
libvirtd live in another container. This module asks libvirt over that
URI, the way an operator would: ``virsh domcapabilities`` gives the
emulator's path, the canonical machine type behind an alias (``q35`` ->
``pc-q35-7.2``) and the firmware loader files libvirt offers; ``virsh
version`` gives the QEMU version.

``virsh`` runs as a subprocess (argument lists, a timeout each) so the
CLI works where only libvirt's client tools are installed, without the
libvirt Python binding. No nova imports.
"""

import dataclasses
import re
import shutil
import subprocess  # nosec B404  # argument lists only, no shell
import typing as ty

from lxml import etree

#: nova's URI for each ``[libvirt] virt_type`` when ``connection_uri`` is
#: empty (nova's ``LibvirtDriver._uri``), for the virt types whose guests
#: have the PCI Express machines this project plans.
DEFAULT_URIS = {'kvm': 'qemu:///system', 'qemu': 'qemu:///system'}

#: Seconds each ``virsh`` call may take. ``domcapabilities`` makes
#: libvirtd probe QEMU the first time it is asked, which takes seconds.
TIMEOUT = 120.0

VIRSH_PACKAGE = ('the package libvirt-clients (Debian, Ubuntu) or '
                 'libvirt-client (RHEL family)')

_HYPERVISOR = re.compile(r'^Running hypervisor:\s*QEMU\s+(\d+)\.(\d+)'
                         r'(?:\.(\d+))?', re.MULTILINE)


_ERROR_PREFIX = re.compile(r'^error:\s*')


class LibvirtError(RuntimeError):
    """libvirt could not be asked, or gave an answer that cannot be read."""


@dataclasses.dataclass(frozen=True)
class DomainCapabilities:
    """What ``virsh domcapabilities`` says for one guest machine."""

    emulator: str                    # <path>
    machine: str                     # <machine>: canonical, pc-q35-7.2
    arch: str
    virt_type: str                   # <domain>: qemu or kvm
    #: ``<os><loader><value>``: the firmware code files libvirt offers.
    loaders: ty.Tuple[str, ...] = ()
    #: ``<os><loader><enum name='type'>``: rom, pflash.
    loader_types: ty.Tuple[str, ...] = ()
    #: ``<os><enum name='firmware'>``: what autoselection offers (efi).
    firmware: ty.Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class HostView:
    """libvirt's answers for one guest machine, and the URI asked."""

    uri: str
    qemu_version: ty.Tuple[int, int]
    qemu_version_line: str
    capabilities: DomainCapabilities

    def to_dict(self) -> dict:
        caps = self.capabilities
        return {'uri': self.uri, 'emulator': caps.emulator,
                'machine': caps.machine, 'virt_type': caps.virt_type,
                'qemu_version': '.'.join(map(str, self.qemu_version)),
                'loaders': list(caps.loaders),
                'loader_types': list(caps.loader_types)}


def default_uri(virt_type: str) -> str:
    """nova's connection URI for ``virt_type`` when none is configured."""
    try:
        return DEFAULT_URIS[virt_type]
    except KeyError:
        raise LibvirtError(
            f'[libvirt] virt_type={virt_type!r} has no PCI Express guests '
            f'pcie-sched plans; accepted: {", ".join(DEFAULT_URIS)}')


def virsh(uri: str, *args: str, timeout: float = TIMEOUT) -> str:
    """``virsh -c URI ARGS...``'s output; :class:`LibvirtError` otherwise.

    The error names the URI and carries virsh's own message.
    """
    binary = shutil.which('virsh')
    if binary is None:
        raise LibvirtError(f'virsh not found on PATH, so libvirt at '
                           f'{uri} cannot be asked: install '
                           f'{VIRSH_PACKAGE}')
    command = [binary, '-c', uri, *args]
    try:
        result = subprocess.run(command, capture_output=True,  # nosec B603
                                text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL, check=False)
    except OSError as exc:
        raise LibvirtError(f'cannot run {binary}: {exc}')
    except Exception as exc:
        # Matched by name: in a process eventlet has patched (nova's
        # services and test runners) the subprocess module can exist
        # twice, and the TimeoutExpired that run() raises is then not
        # this module's class (seen in CI: the except clause missed it).
        if type(exc).__name__ != 'TimeoutExpired':
            raise
        raise LibvirtError(f'virsh {args[0]} at {uri} gave no answer in '
                           f'{timeout:g}s (is libvirtd there busy or '
                           f'stuck?)')
    if result.returncode != 0:
        message = '; '.join(
            _ERROR_PREFIX.sub('', line.strip())
            for line in result.stderr.splitlines()
            if line.strip()) or f'exit status {result.returncode}'
        raise LibvirtError(f'libvirt at {uri}: virsh {args[0]} failed: '
                           f'{message}')
    return result.stdout


def parse_version(text: str, uri: str = '') -> ty.Tuple[str, ty.Tuple[int,
                                                                      int]]:
    """The ``Running hypervisor: QEMU X.Y.Z`` line of ``virsh version``."""
    match = _HYPERVISOR.search(text)
    if not match:
        where = f' at {uri}' if uri else ''
        raise LibvirtError(f'libvirt{where} reports no QEMU hypervisor '
                           f'version in virsh version ({text.strip()!r}); '
                           f'accepted: a qemu:// connection URI')
    return (match.group(0).split(':', 1)[1].strip(),
            (int(match.group(1)), int(match.group(2))))


def parse_domcapabilities(text: str, uri: str = '') -> DomainCapabilities:
    """Read ``virsh domcapabilities`` XML."""
    where = f' from {uri}' if uri else ''
    try:
        root = etree.fromstring(text.encode())
    except etree.XMLSyntaxError as exc:
        raise LibvirtError(f'domain capabilities{where} are not XML: {exc}')
    if root.tag != 'domainCapabilities':
        raise LibvirtError(f'domain capabilities{where}: root element '
                           f'<{root.tag}>, not <domainCapabilities>')

    def text_of(tag):
        value = (root.findtext(tag) or '').strip()
        if not value:
            raise LibvirtError(f'domain capabilities{where} have no '
                               f'<{tag}>')
        return value

    def values(path):
        return tuple((item.text or '').strip()
                     for item in root.findall(path)
                     if (item.text or '').strip())

    return DomainCapabilities(
        emulator=text_of('path'), machine=text_of('machine'),
        arch=text_of('arch'), virt_type=text_of('domain'),
        loaders=values('os/loader/value'),
        loader_types=values("os/loader/enum[@name='type']/value"),
        firmware=values("os/enum[@name='firmware']/value"))


def domain_capabilities(uri: str, arch: str, machine: str,
                        virt_type: str) -> DomainCapabilities:
    """libvirt's capabilities for guests of ``arch`` + ``machine``.

    ``machine`` may be an alias and carry options (``virt,highmem=off``):
    libvirt is asked for the type only.
    """
    return parse_domcapabilities(
        virsh(uri, 'domcapabilities', '--arch', arch, '--machine',
              machine.split(',')[0], '--virttype', virt_type), uri)


def qemu_version(uri: str) -> ty.Tuple[str, ty.Tuple[int, int]]:
    """(version text, (major, minor)) of the QEMU libvirt runs."""
    return parse_version(virsh(uri, 'version'), uri)


def describe(uri: str, arch: str, machine: str, virt_type: str) -> HostView:
    """Everything this project asks libvirt about one guest machine."""
    line, version = qemu_version(uri)
    return HostView(uri, version, line,
                    domain_capabilities(uri, arch, machine, virt_type))
