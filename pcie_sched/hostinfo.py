"""This host's QEMU binaries and firmware files, as Debian installs them."""

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess  # nosec B404  # argument lists only, no shell
import threading
import typing as ty

QEMU_BINARIES = {
    'x86_64': ('qemu-system-x86_64', 'qemu-system-x86'),
    'aarch64': ('qemu-system-aarch64', 'qemu-system-arm'),
}

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

    def digest(self) -> str:
        return file_digest(self.code)


def qemu_binary(arch: str) -> str:
    try:
        name, package = QEMU_BINARIES[arch]
    except KeyError:
        raise HostError(f'arch={arch!r} is not supported; accepted: '
                        f'{", ".join(QEMU_BINARIES)}')
    path = shutil.which(name)
    if path is None:
        raise HostError(f'{name} not found: install the Debian package '
                        f'{package} (see bindep.txt)')
    return path


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


def firmware(arch: str, choice: str) -> Firmware:
    """Resolve ``uefi``, ``bios`` or a path to a firmware code file."""
    if choice in ('uefi', 'bios'):
        try:
            code, variables, package = FIRMWARE_FILES[(arch, choice)]
        except KeyError:
            accepted = sorted(kind for a, kind in FIRMWARE_FILES if a == arch)
            raise HostError(f'firmware={choice!r} is not supported on '
                            f'{arch}; accepted: {", ".join(accepted)} or a '
                            f'path to a firmware code file')
        for path in filter(None, (code, variables)):
            if not os.path.isfile(path):
                raise HostError(f'{path} not found: install the Debian '
                                f'package {package} (see bindep.txt)')
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
