"""This host's QEMU binaries and firmware files, wherever it keeps them.

QEMU is looked for where the distributions put it (:data:`QEMU_CANDIDATES`),
the firmware in the host's QEMU firmware descriptors
(:mod:`pcie_sched.firmware_descriptors`), and only a host whose
descriptors describe no firmware of the kind asked for falls back to the
file paths Debian uses (:data:`FIRMWARE_FILES`). Every lookup takes a
``root`` (default ``/``) so tests can build a host layout in a temporary
directory.
"""

import contextlib
import contextvars
import dataclasses
import hashlib
import os
import platform
import re
import shutil
import subprocess  # nosec B404  # argument lists only, no shell
import threading
import typing as ty

from pcie_sched import firmware_descriptors

QEMU_BINARIES = {
    'x86_64': ('qemu-system-x86_64', 'qemu-system-x86'),
    'aarch64': ('qemu-system-aarch64', 'qemu-system-arm'),
}

#: Where the emulator for an arch is looked for, first hit wins:
#: ``('path', name)`` searches ``PATH``, ``('native', file)`` is a file
#: (relative to the root) that only emulates the host's own arch.
QEMU_CANDIDATES = {
    arch: (
        # The upstream name, on PATH: Debian, Ubuntu, Fedora, SUSE, Arch
        # (the qemu-system-* packages).
        ('path', name),
        # RHEL, CentOS Stream, Rocky, Alma: the qemu-kvm package installs
        # only this, off PATH, and it runs only the host's arch (KVM).
        ('native', 'usr/libexec/qemu-kvm'),
    )
    for arch, (name, _package) in QEMU_BINARIES.items()
}

#: What to install for the emulator, per distribution family.
QEMU_PACKAGES = {
    'x86_64': 'the Debian package qemu-system-x86 (see bindep.txt; '
              'RHEL family: qemu-kvm)',
    'aarch64': 'the Debian package qemu-system-arm (see bindep.txt; '
               'RHEL family on aarch64: qemu-kvm)',
}

#: The machine type a firmware lookup assumes when none is given.
DEFAULT_MACHINES = {'x86_64': 'q35', 'aarch64': 'virt'}

#: Last fallback, for a host whose firmware descriptors describe no
#: firmware of the kind for the arch (Debian's SeaBIOS ships none):
#: (arch, kind) -> (code file, vars template or None, Debian package)
FIRMWARE_FILES = {
    ('x86_64', 'uefi'): ('/usr/share/OVMF/OVMF_CODE_4M.fd',
                         '/usr/share/OVMF/OVMF_VARS_4M.fd', 'ovmf'),
    ('x86_64', 'bios'): ('/usr/share/seabios/bios-256k.bin', None,
                         'seabios'),
    ('aarch64', 'uefi'): ('/usr/share/AAVMF/AAVMF_CODE.fd',
                          '/usr/share/AAVMF/AAVMF_VARS.fd',
                          'qemu-efi-aarch64'),
}

_VERSION = re.compile(r'QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?')


class HostError(RuntimeError):
    """Something the probe needs is not installed or not usable."""


@dataclasses.dataclass(frozen=True)
class Firmware:
    kind: str                  # 'uefi' or 'bios'
    code: str
    variables: ty.Optional[str]
    #: How QEMU maps the files (``raw`` or ``qcow2`` flash).
    code_format: str = 'raw'
    variables_format: str = 'raw'
    #: The descriptor's features (``secure-boot``, ``requires-smm``...);
    #: empty when the build was not found through a descriptor.
    features: ty.FrozenSet[str] = frozenset()
    #: The descriptor file it came from, None for a fallback or a path.
    descriptor: ty.Optional[str] = None

    def digest(self) -> str:
        return file_digest(self.code)


def host_arch() -> str:
    machine = platform.machine()
    return {'amd64': 'x86_64', 'arm64': 'aarch64'}.get(machine, machine)


#: Emulators named by someone who asked libvirt (the CLI, with nova's
#: ``connection_uri``): arch -> path, seen only in the context that set
#: it (a new thread starts without), so it never leaks into a service.
_EMULATORS: contextvars.ContextVar = contextvars.ContextVar(
    'pcie_sched_emulators', default={})


@contextlib.contextmanager
def emulator_for(arch: str, path: str):
    """Within the block, :func:`qemu_binary` answers ``path`` for ``arch``.

    For the emulator libvirt runs (its domain capabilities' ``<path>``),
    wherever that is: the probe then boots the binary nova's guests get.
    """
    token = _EMULATORS.set({**_EMULATORS.get(), arch: path})
    try:
        yield
    finally:
        _EMULATORS.reset(token)


def qemu_binary(arch: str, root: str = '/') -> str:
    """The emulator for ``arch``: the first of :data:`QEMU_CANDIDATES`.

    Under a ``root`` other than ``/``, ``PATH``'s directories are taken
    relative to it. Inside :func:`emulator_for`, the emulator given there
    (for the real root only).
    """
    chosen = _EMULATORS.get().get(arch) if root == '/' else None
    if chosen is not None:
        return chosen
    try:
        candidates = QEMU_CANDIDATES[arch]
    except KeyError:
        raise HostError(f'arch={arch!r} is not supported; accepted: '
                        f'{", ".join(QEMU_BINARIES)}')
    looked = []
    for how, name in candidates:
        if how == 'path':
            search = os.environ.get('PATH', os.defpath)
            if root != '/':
                search = os.pathsep.join(
                    os.path.join(root, d.lstrip('/'))
                    for d in search.split(os.pathsep) if d)
            path = shutil.which(name, path=search)
            looked.append(f'{name} on PATH')
        else:
            if arch != host_arch():
                continue
            path = os.path.join(root, name)
            looked.append(f'/{name}')
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                path = None
        if path is not None:
            return path
    raise HostError(f'{QEMU_BINARIES[arch][0]} not found (looked for '
                    f'{", ".join(looked)}): install {QEMU_PACKAGES[arch]}')


_ALIAS = re.compile(r'^(\S+)\s.*\(alias of (\S+)\)')


def machine_aliases(binary: str) -> ty.Dict[str, str]:
    """QEMU's machine aliases (``q35`` -> ``pc-q35-7.2``).

    From the binary's own ``-machine help``.
    """
    return _memoised('machine-aliases', binary, _run_machine_help)


def _run_machine_help(binary: str) -> ty.Dict[str, str]:
    try:
        result = subprocess.run([binary, '-machine', 'help'],  # nosec B603
                                capture_output=True, text=True, timeout=30,
                                check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HostError(f'{binary} -machine help failed: {exc}')
    aliases = {}
    for line in result.stdout.splitlines():
        match = _ALIAS.match(line)
        if match:
            aliases[match.group(1)] = match.group(2)
    return aliases


def canonical_machine(arch: str, machine: str, root: str = '/') -> str:
    """``machine`` without its alias: what QEMU runs for ``q35``."""
    return machine_aliases(qemu_binary(arch, root)).get(machine, machine)


#: Answers that depend only on a file's content, keyed by what
#: :func:`_file_key` says about the file. nova-compute fingerprints the
#: host on every resource update; hashing QEMU (tens of MiB) and the
#: firmware and running ``qemu --version`` each time would make the
#: periodic task cost seconds instead of a few stat() calls.
_BY_FILE: ty.Dict[tuple, ty.Any] = {}
_BY_FILE_LOCK = threading.Lock()
_BY_FILE_MAX = 256


def _file_key(path: str) -> tuple:
    # A package upgrade writes a new file (new inode, size or mtime), so
    # these identify the content well enough without reading it.
    stat = os.stat(path)
    return (os.path.realpath(path), stat.st_ino, stat.st_size,
            stat.st_mtime_ns)


def _memoised(kind: str, path: str, compute: ty.Callable[[str], ty.Any]):
    """``compute(path)``, remembered until the file at ``path`` changes."""
    try:
        key = (kind,) + _file_key(path)
    except OSError:
        # Let compute() report the missing or unreadable file its own way.
        return compute(path)
    try:
        return _BY_FILE[key]
    except KeyError:
        pass
    value = compute(path)
    with _BY_FILE_LOCK:
        if len(_BY_FILE) >= _BY_FILE_MAX:
            _BY_FILE.clear()
        _BY_FILE[key] = value
    return value


def qemu_version(binary: str) -> ty.Tuple[str, ty.Tuple[int, int]]:
    """QEMU's own version line and its (major, minor)."""
    return _memoised('qemu-version', binary, _run_qemu_version)


def _run_qemu_version(binary: str) -> ty.Tuple[str, ty.Tuple[int, int]]:
    try:
        result = subprocess.run([binary, '--version'],  # nosec B603
                                capture_output=True, text=True, timeout=30,
                                check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HostError(f'{binary} --version failed: {exc}')
    line = result.stdout.splitlines()[0] if result.stdout else ''
    match = _VERSION.search(line)
    if not match:
        raise HostError(f'cannot read the QEMU version from {line!r}')
    return line, (int(match.group(1)), int(match.group(2)))


def firmware(arch: str, choice: str, machine: ty.Optional[str] = None, *,
             secure_boot: bool = False, root: str = '/') -> Firmware:
    """Resolve ``uefi``, ``bios`` or a path to a firmware code file.

    ``uefi`` and ``bios`` are the build a guest of ``machine`` (default:
    :data:`DEFAULT_MACHINES`; an alias is resolved through QEMU when the
    descriptors do not list it as given) gets, from the firmware
    descriptors (``secure_boot``: the Secure Boot build), falling back
    to :data:`FIRMWARE_FILES` only when the descriptors offer no
    firmware of that kind for ``arch`` at all.
    """
    if choice in ('uefi', 'bios'):
        found = _from_descriptors(arch, choice, machine, secure_boot, root)
        if found is not None:
            return found
        if secure_boot:
            raise HostError(
                f'no firmware descriptor describes a Secure Boot build '
                f'for arch={arch} (searched '
                f'{", ".join(firmware_descriptors.search_dirs(root))}'
                f'); accepted: install one (Debian: ovmf, RHEL family: '
                f'edk2-ovmf) or a path to a firmware code file')
        try:
            code, variables, package = FIRMWARE_FILES[(arch, choice)]
        except KeyError:
            accepted = sorted(kind for a, kind in FIRMWARE_FILES if a == arch)
            raise HostError(f'firmware={choice!r} is not supported on '
                            f'{arch}; accepted: {", ".join(accepted)} or a '
                            f'path to a firmware code file')
        code = os.path.join(root, code.lstrip('/'))
        if variables:
            variables = os.path.join(root, variables.lstrip('/'))
        for path in filter(None, (code, variables)):
            if not os.path.isfile(path):
                raise HostError(f'{path} not found: install the Debian '
                                f'package {package} (see bindep.txt), or a '
                                f'package installing QEMU firmware '
                                f'descriptors for it')
        return Firmware(choice, code, variables)
    path = os.path.realpath(choice)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise HostError(f'firmware={choice!r} is not a readable file; '
                        f'accepted: uefi, bios or a path to a firmware code '
                        f'file')
    # The variable store is paired by the name given, not the symlink
    # target: Debian's OVMF_CODE_4M.ms.fd points at OVMF_CODE_4M.secboot.fd,
    # which has no VARS file of its own, while OVMF_VARS_4M.ms.fd exists.
    given = os.path.abspath(choice)
    name = os.path.basename(given)
    if 'CODE' in name:
        variables = os.path.join(os.path.dirname(given),
                                 name.replace('CODE', 'VARS'))
        if not os.path.isfile(variables):
            raise HostError(f'{path} looks like UEFI code but {variables} '
                            f'(its variable store template) is missing')
        return Firmware('uefi', path, variables)
    return Firmware('bios', path, None)


def _from_descriptors(arch, kind, machine, secure_boot, root
                      ) -> ty.Optional[Firmware]:
    """The descriptors' answer for a ``kind`` firmware.

    None when they describe no ``kind`` firmware for ``arch`` at all
    (then the fallback table applies).
    """
    unresolved = ''
    try:
        descriptors = firmware_descriptors.for_interface(
            firmware_descriptors.load(root), arch, kind)
        if not descriptors:
            return None
        # The type only: a probe machine may carry options
        # (``virt-2.12,highmem=off``), the descriptors' globs do not.
        machine = (machine or DEFAULT_MACHINES.get(arch, '')).split(',')[0]
        if not firmware_descriptors.candidates(descriptors, arch, machine,
                                               kind):
            # Perhaps an alias (q35, virt): the descriptors list
            # canonical types only.
            try:
                machine = canonical_machine(arch, machine, root)
            except HostError as exc:
                unresolved = (f' (not resolved as a machine alias either: '
                              f'{exc})')
        chosen = firmware_descriptors.select(
            descriptors, arch, machine, kind, secure_boot,
            firmware_descriptors.search_dirs(root))
    except firmware_descriptors.DescriptorError as exc:
        raise HostError(f'{exc}{unresolved}') from exc
    return Firmware(kind, chosen.code, chosen.variables, chosen.code_format,
                    chosen.variables_format or 'raw', chosen.features,
                    chosen.path)


def file_digest(path: str) -> str:
    """SHA-256 of the file's content, computed once per file version."""
    return _memoised('sha256', path, _sha256)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def kvm_usable() -> bool:
    return os.access('/dev/kvm', os.R_OK | os.W_OK)
